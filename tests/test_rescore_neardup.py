"""``rescore`` gives the near-duplicate scores the live service gives for the same posts in the
same order: coordination flags, fake originality and clusters in the output records."""

from __future__ import annotations

import json
from pathlib import Path

from servicekit import open_api

from service.pipeline import Pipeline
from service.rescore import InlineEngine, rescore
from service.settings import Settings

TEMPLATE = "网传某地明天起全市停水三天，自来水厂已被污染，请大家赶紧囤水并转给家人朋友！"


def posts() -> list[dict[str, object]]:
    batch = [
        {
            "id": f"p{i}",
            "text": f"{'速看！' if i % 2 else ''}{TEMPLATE.replace('三', str(i))}",
            "account_id": f"acct{i}",
            "created_at": 1_700_000_000 + 60 * i,
        }
        for i in range(6)
    ]
    batch.append(
        {"id": "boiler", "text": "转发微博", "account_id": "x", "created_at": 1_700_000_400}
    )
    batch.append(
        {
            "id": "claim",
            "text": "原创：" + TEMPLATE,
            "account_id": "thief",
            "created_at": 1_700_000_500,
            "declared_original": True,
        }
    )
    return batch


NEAR = ("coordination", "fake_originality")


def test_rescore_matches_the_live_service_post_by_post(tmp_path: Path, pipeline: Pipeline) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts()))
    scorer = Pipeline(pipeline.classifier, pipeline.policy)
    summary = rescore(src, out, InlineEngine(scorer), chunk_size=3, progress=False)
    assert summary.scored == len(posts())
    batch = [json.loads(line) for line in out.read_text().splitlines()]
    flags = {r["id"]: r["flags"] for r in batch}
    assert [flags[f"p{i}"]["coordination"] for i in range(6)] == [False] * 4 + [True, True]
    assert flags["claim"]["fake_originality"] and not flags["boiler"]["coordination"]
    assert batch[-1]["cluster"]["earliest"]["id"] == "p0"
    shipped = Settings().policy_file
    url = f"sqlite:///{tmp_path / 'live.db'}"
    with open_api(tmp_path, url, pipeline.classifier, policy=shipped) as api:
        live = [api.score(p).json() for p in posts()]
    for offline, online in zip(batch, live, strict=True):
        assert {r: offline["scores"][r] for r in NEAR} == {r: online["scores"][r] for r in NEAR}
        assert offline["cluster"] == online["cluster"]


def test_an_edited_post_is_rescored_on_its_new_text(tmp_path: Path, pipeline: Pipeline) -> None:
    rumour = [
        {
            "id": f"n0{i + 1}",
            "text": f"{'速看！' if i % 2 else ''}{TEMPLATE}",
            "account_id": account,
            "created_at": 1_700_000_000 + 120 * i,
        }
        for i, account in enumerate("ABCDEFA")
    ]
    edit = {
        "id": "n04",
        "account_id": "D",
        "created_at": 1_700_000_900,
        "text": "完全不同的另一条内容，今天天气很好，我们去公园散步吧，心情愉快",
    }
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in [*rumour, edit]))
    rescore(src, out, InlineEngine(Pipeline(pipeline.classifier, pipeline.policy)), progress=False)
    *batch, edited = [json.loads(line) for line in out.read_text().splitlines()]
    assert batch[-1]["cluster"]["size"] == 7 and batch[-1]["flags"]["coordination"]
    assert edited["cluster"] is None and edited["scores"]["coordination"] == 0.2
    assert not edited["flags"]["coordination"] and edited["decision"] == "pass"
