"""``qinglang rescore`` end to end with the shipped model, on the awkward inputs of the issue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from eval.batch import without_spans

GOOD: list[dict[str, Any]] = [
    {"id": "plain", "text": "今天和家人去公园散步，天气很好。"},
    {"id": "traditional", "text": "這幫人都是垃圾，滾出我們城市"},
    {"id": "mixed", "text": "iPhone 15 真的太贵了 but 我还是买了"},
    {"id": "emoticons", "text": "[蜡烛][蜡烛]"},
    {"id": "empty", "text": "   "},
    {"id": 12345678901234567, "text": "数字 id", "created_at": "2016-01-01T08:00:00+08:00"},
    {"id": "long", "text": "长" * 100_000, "account_id": "u1"},
]


def write_input(path: Path) -> None:
    lines = [json.dumps(p, ensure_ascii=False).encode() for p in GOOD[:3]]
    lines.append(b'{"id": "bad-utf8", "text": "\xff\xfe"}')
    lines += [json.dumps(p, ensure_ascii=False).encode() for p in GOOD[3:5]]
    lines.append(b'{"id": "broken", "text": ')
    lines.append(b'{"text": "no id"}')
    lines += [json.dumps(p, ensure_ascii=False).encode() for p in GOOD[5:]]
    path.write_bytes(b"\n".join(lines) + b"\n")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "rescore", "--no-progress", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_scores_good_lines_in_order_and_reports_bad_ones(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src)
    result = run(str(src), "-o", str(out))
    assert result.returncode == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [str(p["id"]) for p in GOOD]
    by_id = {r["id"]: r for r in records}
    assert by_id["long"]["truncated"] and by_id["long"]["account_id"] == "u1"
    assert by_id["empty"]["warnings"] and by_id["empty"]["decision"] == "pass"
    assert len({r["model_version"] for r in records}) == 1
    for line_no, kind in ((4, "invalid_utf8"), (7, "malformed_json"), (8, "missing_id")):
        assert f"in.jsonl:{line_no}: error: {kind}" in result.stderr
    rejects = [
        json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()
    ]
    assert [r["line"] for r in rejects] == [4, 7, 8]

    skipped = run(str(src), "-o", str(tmp_path / "again.jsonl"), "--skip-bad")
    assert skipped.returncode == 0
    assert (tmp_path / "again.jsonl").read_text() == out.read_text()


def test_without_evidence_the_records_are_those_with_it_but_for_their_spans(
    tmp_path: Path,
) -> None:
    src = tmp_path / "in.jsonl"
    texts = [
        "这帮人都是垃圾，滚出我们城市，恶心死了",
        "今天和家人去公园散步，天气很好。",
        "求扩散！杭州一女孩走失，穿红色外套，有线索请联系，大家帮忙转发！",
    ]
    src.write_text(
        "".join(
            json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n"
            for i, t in enumerate(texts)
        )
    )
    records, stderr = {}, {}
    for name, extra in (("with", ()), ("without", ("--no-evidence",))):
        result = run(str(src), "-o", str(tmp_path / f"{name}.jsonl"), *extra)
        assert result.returncode == 0, result.stderr
        lines = (tmp_path / f"{name}.jsonl").read_text().splitlines()
        records[name], stderr[name] = [json.loads(line) for line in lines], result.stderr
    flagged = [r["id"] for r in records["with"] if r["decision"] != "pass"]
    assert len(flagged) == 2
    for full, fast in zip(records["with"], records["without"], strict=True):
        assert not full["evidence_pending"]
        assert fast["evidence_pending"] == (full["id"] in flagged)
        assert any("spans" in r["evidence"] for r in full["reasons"]) == (full["id"] in flagged)
        assert all("spans" not in r["evidence"] for r in fast["reasons"])
        assert without_spans(fast) == without_spans(full)
    assert "2 flagged records keep evidence_pending" in stderr["without"]
    assert "evidence_pending" not in stderr["with"]
