"""Who may call the scoring endpoints: keys, roles, rate limits over HTTP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from fastapi import FastAPI
from servicekit import Api, open_api, routes

from service.api.auth import required_roles
from service.pipeline import Pipeline
from service.storage.repository import Role

POST = {"id": "1", "text": "周末去公园散步"}
PUBLIC = {"/healthz", "/readyz", "/metrics"}
"""The JSON routes that take no key (docs/service.md): probes and metrics."""
PLATFORM: tuple[Role, ...] = ("publisher", "admin")
TRUST_TEAM: tuple[Role, ...] = ("reviewer", "admin")
EVERY_KEY: tuple[Role, ...] = ("publisher", "reviewer", "admin")
KEYED: dict[tuple[str, str], tuple[Role, ...]] = {
    ("POST", "/v1/score"): PLATFORM,
    ("POST", "/v1/score/batch"): PLATFORM,
    ("GET", "/v1/clusters"): TRUST_TEAM,
    ("GET", "/v1/clusters/{cluster_id}"): TRUST_TEAM,
    ("POST", "/v1/bank/rumors"): ("admin",),
    ("GET", "/v1/bank/rumors"): TRUST_TEAM,
    ("GET", "/v1/bank/rumors/{rumor_id}"): TRUST_TEAM,
    ("GET", "/v1/bank/rumors/{rumor_id}/copies"): TRUST_TEAM,
    ("DELETE", "/v1/bank/rumors/{rumor_id}"): ("admin",),
    ("GET", "/v1/review/items"): TRUST_TEAM,
    ("GET", "/v1/review/items/{item_id}"): TRUST_TEAM,
    ("POST", "/v1/review/items/{item_id}/claim"): TRUST_TEAM,
    ("POST", "/v1/review/items/{item_id}/decision"): TRUST_TEAM,
    ("GET", "/v1/accounts/{account_id}"): EVERY_KEY,
    ("PUT", "/v1/accounts/{account_id}"): PLATFORM,
    ("GET", "/v1/accounts/{account_id}/dispositions"): EVERY_KEY,
    ("GET", "/v1/dispositions"): EVERY_KEY,
    ("POST", "/v1/reports"): PLATFORM,
    ("GET", "/v1/reports/{report_id}"): EVERY_KEY,
    ("POST", "/v1/appeals"): PLATFORM,
    ("GET", "/v1/appeals"): TRUST_TEAM,
    ("GET", "/v1/appeals/{appeal_id}"): EVERY_KEY,
    ("POST", "/v1/appeals/{appeal_id}/decision"): TRUST_TEAM,
    ("POST", "/v1/registrations/check"): EVERY_KEY,
    ("POST", "/v1/protected-names"): ("admin",),
    ("GET", "/v1/protected-names"): TRUST_TEAM,
    ("DELETE", "/v1/protected-names/{entry_id}"): ("admin",),
    ("PUT", "/v1/posts/{post_id}/engagement"): PLATFORM,
    ("GET", "/v1/posts/{post_id}/engagement"): EVERY_KEY,
}
"""Who may call each keyed route, as docs/service.md and docs/review.md say: a route added
without its roles here fails the tests below until it is given them."""


def json_routes(app: FastAPI) -> dict[tuple[str, str], list[tuple[Role, ...]]]:
    """The role sets each route of the JSON API requires (the console's pages are its own)."""
    return {
        (method, path): required_roles(route.dependant)
        for method, path, route in routes(app)
        if not path.startswith("/console")
    }


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
    # a token a thousand seconds: at 0.5 a second, a loaded host whose first two requests took
    # 2 s had the third find a token refilled
    with open_api(
        tmp_path, url, pipeline.classifier, rate_limit_per_s=0.001, rate_limit_burst=2
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


def test_every_json_route_takes_a_key_of_its_documented_roles_or_is_a_probe(api: Api) -> None:
    app = api.client.app
    assert isinstance(app, FastAPI)
    found = json_routes(app)
    public = {route for route, required in found.items() if not required}
    assert {path for _, path in public} == PUBLIC
    assert {route: required for route, required in found.items() if required} == {
        route: [roles] for route, roles in KEYED.items()
    }


def test_every_keyed_route_refuses_no_key_and_the_roles_it_leaves_out(api: Api) -> None:
    """Through HTTP, so that a role check a route declares but does not make fails too."""
    keys = {role: api.headers(api.new_key(role)) for role in get_args(Role)}
    for (method, path), allowed in KEYED.items():
        url = re.sub(r"\{[a-z_]+\}", "1", path)
        assert api.client.request(method, url).status_code == 401, (method, path)
        for role, headers in keys.items():
            status = api.client.request(method, url, headers=headers).status_code
            assert (status == 403) == (role not in allowed), (method, path, role, status)
            assert status != 401, (method, path, role)
