"""Who may call the scoring endpoints: keys, roles, rate limits over HTTP."""

from __future__ import annotations

from pathlib import Path

from servicekit import Api, open_api

from service.pipeline import Pipeline

POST = {"id": "1", "text": "周末去公园散步"}


def test_missing_and_unknown_keys_are_401_with_a_bearer_challenge(api: Api) -> None:
    missing = api.client.post("/v1/score", json=POST)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]
    unknown = api.score(POST, key="ql_0123456789ab_" + "x" * 43)
    assert unknown.status_code == 401
    assert api.client.post("/v1/score/batch", json={"posts": []}).status_code == 401


def test_the_key_is_checked_before_the_body_is_read(api: Api) -> None:
    # a caller without a valid key learns nothing from the body's 422
    json = {"Content-Type": "application/json"}
    reviewer = {**json, **api.headers(api.new_key("reviewer"))}
    for url, body in [
        ("/v1/score", b'{"id": "1", "text": '),
        ("/v1/score", b'{"text": 5}'),
        ("/v1/score/batch", b"\xff"),
        ("/v1/reports", b'{"category": "nonsense"}'),
    ]:
        assert api.client.post(url, content=body, headers=json).status_code == 401, url
        if url.startswith("/v1/score"):
            assert api.client.post(url, content=body, headers=reviewer).status_code == 403, url
    nobody = api.client.put("/v1/accounts/a1", content=b"{", headers=json)
    assert nobody.status_code == 401
    valid = api.client.post("/v1/score", content=b'{"text": 5}', headers={**json, **api.headers()})
    assert valid.status_code == 422


def test_a_reviewer_key_may_not_score_and_an_admin_key_may(api: Api) -> None:
    reviewer = api.new_key("reviewer")
    assert api.score(POST, key=reviewer).status_code == 403
    assert api.score(POST, key=api.new_key("admin")).status_code == 200


def test_a_key_over_its_rate_gets_429_with_retry_after(tmp_path: Path, pipeline: Pipeline) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with open_api(
        tmp_path, url, pipeline.classifier, rate_limit_per_s=0.5, rate_limit_burst=2
    ) as api:
        statuses = [api.score(POST).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = api.score(POST)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert api.score(POST, key=api.new_key("publisher")).status_code == 200


def test_probes_and_metrics_need_no_key(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert api.client.get(path).status_code == 200, path
