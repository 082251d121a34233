"""The near-duplicate step's review items: a coordinated batch is one item listing its members,
a confirmed-rumour match is an item; on the publish path (after the answer) and with
``qinglang rescore --enqueue``; on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from batchkit import CAMPAIGN, post_line, read_records
from servicekit import Api, open_api, record

from service.cli import main
from service.heads import RISKS
from service.neardup.queue import requests
from service.pipeline import Pipeline
from service.record import ClusterPost, ClusterSummary, Post, Reason, ScoreRecord
from service.review.dispositions import Standing, Stop
from service.storage import open_repository, upgrade

K = 5
"""The shipped policy's ``batch_accounts``."""


@pytest.fixture
def service(tmp_path: Path, database_url: str, pipeline: Pipeline) -> Iterator[Api]:
    with open_api(tmp_path, database_url, pipeline.classifier) as running:
        yield running


def copy(i: int) -> str:
    return f"{'速看！' if i % 2 else ''}{CAMPAIGN.replace('全市', f'第{i}区')}"


def items(service: Api, kind: str) -> list[dict[str, object]]:
    reviewer = service.headers(service.new_key("reviewer"))
    page = service.client.get(f"/v1/review/items?kind={kind}", headers=reviewer)
    assert page.status_code == 200, page.text
    found: list[dict[str, object]] = page.json()["items"]
    return found


def test_a_coordinated_batch_is_one_review_item_listing_its_members(service: Api) -> None:
    now = time.time() - 600
    for i in range(K + 3):
        post = {"id": f"c{i}", "text": copy(i), "account_id": f"a{i}", "created_at": now + 30 * i}
        service.score(post)
    service.settle()
    (item,) = items(service, "cluster")
    evidence = item["evidence"]
    assert isinstance(evidence, dict)
    # queued with the post that completed the batch, and kept current by each later member:
    # every member, the earliest first, and the batch's size as its reach
    members = [m["post_id"] for m in evidence["members"]]
    assert members == [f"c{i}" for i in range(K + 3)]
    accounts = {m["account_id"] for m in evidence["members"]}
    assert accounts == {f"a{i}" for i in range(K + 3)}
    assert item["reach"] == K + 3 and evidence["cluster"]["size"] == K + 3
    assert item["head"] == "coordination" and evidence["cluster"]["batch"] is True
    assert item["account_id"] == "a0"


def test_a_match_of_the_rumour_bank_is_a_review_item(service: Api) -> None:
    admin = service.headers(service.new_key("admin"))
    body = {"text": CAMPAIGN, "notice": "自来水厂已辟谣：水质正常"}
    rumor = service.client.post("/v1/bank/rumors", json=body, headers=admin).json()
    service.score({"id": "m1", "text": copy(1), "account_id": "x", "created_at": time.time()})
    service.score({"id": "plain", "text": "周末和家人去公园散步，天气很好。", "account_id": "y"})
    service.settle()
    # the flagged record's item is the post's one item: the match joins it, decided once
    assert items(service, "bank_match") == []
    (item,) = [i for i in items(service, "score") if i["post_id"] == "m1"]
    assert item["head"] == "rumor"
    evidence = item["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["confirmed_rumor"] == rumor["id"]
    assert evidence["notice"] == body["notice"]


def test_a_post_blocked_for_its_accounts_state_gives_items_at_its_texts_severity(
    pipeline: Pipeline,
) -> None:
    """A suspended account's post is blocked; its cluster and bank-match items are at the
    severity its text alone gets, as the same post of an account in good standing."""
    policy = pipeline.policy
    # every risk flagged, none blocked: the text alone is ``review``
    risks = {r: policy.risks[r].model_copy(update={"review": 0.0, "block": 1.01}) for r in RISKS}
    tuned = Pipeline(pipeline.classifier, policy.model_copy(update={"risks": risks}))
    post = Post(id="p", text=copy(1), account_id="bot")
    suspended = Standing(stops=(Stop(kind="suspend_updates", basis="art19", ends_at=None),))
    (alone,) = tuned.score_many([post])
    (blocked,) = tuned.score_many([post], {"bot": suspended})
    assert (alone.decision, blocked.decision) == ("review", "block")
    earliest = ClusterPost(id="p0", account_id="bot0", created_at=0.0)
    cluster = ClusterSummary(
        id="c1", size=K, accounts=K, first_at=0.0, last_at=1.0, earliest=earliest, batch=True
    )
    match = Reason(code="art18.6.false_information", score=1.0, evidence={"confirmed_rumor": 7})

    def severities(record: ScoreRecord) -> dict[str, str]:
        batched = record.model_copy(
            update={
                "cluster": cluster,
                "flags": {**record.flags, "coordination": True},
                "reasons": [*record.reasons, match],
            }
        )
        return {r.kind: r.severity for r in requests(batched, post.text, {})}

    assert severities(blocked) == severities(alone) == {"cluster": "review", "bank_match": "review"}


def test_rescore_enqueue_queues_each_batch_once(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QINGLANG_DATABASE_URL", database_url)
    from service.settings import get_settings

    get_settings.cache_clear()
    start = 1_700_000_000
    lines = [
        post_line(f"c{i}", copy(i), account_id=f"a{i}", created_at=start + 30 * i)
        for i in range(K + 2)
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines))
    before = tmp_path / "before.jsonl"
    # the earlier run knew nothing of near-duplicates: every post passed
    before.write_text(
        "".join(record(f"c{i}", "pass").model_dump_json() + "\n" for i in range(K + 2))
    )
    args = ["rescore", str(source), "-o", str(tmp_path / "now.jsonl"), "--workers", "1"]
    args += ["--no-progress", "--compare", str(before), "--enqueue"]
    try:
        assert main(args) == 0
        assert main(args) == 0  # twice: nothing new
        upgrade(database_url)
        repo = open_repository(database_url, 10.0)
        from service.policy import load_policy

        policy = load_policy(get_settings().policy_file)
        clusters = repo.list_items(policy, kind="cluster").items
        assert len(clusters) == 1
        assert clusters[0].evidence is not None
        members = [m["post_id"] for m in clusters[0].evidence["members"]]
        assert members == [f"c{i}" for i in range(K + 2)]
        repo.close()
    finally:
        get_settings.cache_clear()


def test_rescore_with_the_bank_raises_and_queues_its_matches(
    tmp_path: Path, database_url: str, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_api(tmp_path, database_url, pipeline.classifier) as api:
        admin = api.headers(api.new_key("admin"))
        body = {"text": CAMPAIGN, "notice": "已辟谣"}
        rumor = api.client.post("/v1/bank/rumors", json=body, headers=admin).json()
    monkeypatch.setenv("QINGLANG_DATABASE_URL", database_url)
    from service.settings import get_settings

    get_settings.cache_clear()
    lines = [
        post_line("m1", copy(1), account_id="x", created_at=1_700_000_000),
        post_line("calm", "周末和家人去公园散步，天气很好，拍了几张荷花。", account_id="y"),
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines))
    before = tmp_path / "before.jsonl"
    before.write_text("".join(record(i, "pass").model_dump_json() + "\n" for i in ("m1", "calm")))
    out = tmp_path / "now.jsonl"
    args = ["rescore", str(source), "-o", str(out), "--workers", "1", "--no-progress"]
    try:
        assert main([*args, "--bank", "--compare", str(before), "--enqueue"]) == 0
        matched, calm = read_records(out)
        reason = next(r for r in matched.reasons if "confirmed_rumor" in r.evidence)
        assert reason.evidence["confirmed_rumor"] == rumor["id"]
        assert matched.flags["rumor"] and not calm.flags["rumor"]
        repo = open_repository(database_url, 10.0)
        from service.policy import load_policy

        policy = load_policy(get_settings().policy_file)
        # the match's item is the newly flagged post's one item
        (item,) = [i for i in repo.list_items(policy).items if i.post_id == "m1"]
        assert item.kind == "score" and item.head == "rumor"
        shown = repo.get_item(policy, item.id).evidence
        assert shown is not None and shown["confirmed_rumor"] == rumor["id"]
        (found,) = repo.rumor_copies(rumor["id"])
        assert (found.post_id, found.account_id, found.created_at) == ("m1", "x", 1_700_000_000)
        repo.close()
        # without --bank the same posts match nothing
        assert main([*args, "--skip-bad"]) == 0
        assert all("confirmed_rumor" not in r.evidence for r in read_records(out)[0].reasons)
    finally:
        get_settings.cache_clear()
