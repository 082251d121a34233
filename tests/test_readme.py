"""What the README and the pages under docs/ say that the code can check: every setting and every
endpoint of the API is named in them, the post of the README's first example gets the score record
docs/rescore.md shows for it, and every relative link among them leads to a file, and a heading,
that exist."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

from servicekit import Api

from service.neardup import NearDuplicates
from service.pipeline import Pipeline
from service.record import Post
from service.rescore import batch_settings
from service.settings import ROOT, Settings

README = ROOT / "README.md"
DOCS = ROOT / "docs"
HISTORY = DOCS / "model.md"
"""The record of what was tried on the model: past runs' figures, not where a setting is told."""
PAGES = {page: page.read_text(encoding="utf-8") for page in [README, *sorted(DOCS.glob("*.md"))]}
TRIMMED = "…"
"""What the docs put in place of a value too long or too variable to show."""
DIGITS = 2e-3
"""How far a shown score or weight may be from this host's: the int8 graph's integer kernels
differ by instruction set (an AVX2-only AMD EPYC gives the shown rumor score of 0.8526 as
0.8524), while a change to the model, the policy or the pipeline moves them by far more."""
FENCE = re.compile(r"\s*(```|~~~)")
HEADING = re.compile(r"(#{1,6}) +(.+?)(?: +#+)? *")
LINK = re.compile(r"!?\[(?:[^\]`]|`[^`]*`)*\]\(([^()\s]+)\)")
"""A Markdown link or image (its text may hold code spans) and its target."""
EXTERNAL = re.compile(r"[a-z][a-z0-9+.-]*:", re.I)
PATH_PARAMETER = re.compile(r"\{\w+\}")
"""A path parameter of a route, which the docs write ``{id}`` whatever the code names it."""


def unfenced(text: str) -> list[str]:
    """The lines of ``text`` with those of fenced code blocks left empty: a ``#`` or a link there is
    code."""
    lines: list[str] = []
    fenced = False
    for line in text.split("\n"):
        fence = FENCE.match(line) is not None
        fenced ^= fence
        lines.append("" if fenced or fence else line)
    return lines


def headings(text: str) -> list[tuple[int, int, str]]:
    """The headings of ``text``: 0-based line number, level, title."""
    return [
        (number, len(m[1]), m[2])
        for number, line in enumerate(unfenced(text))
        if (m := HEADING.fullmatch(line))
    ]


def section(page: Path, title: str) -> str:
    """The text of ``page`` from the heading ``title`` to the next heading of its level or above."""
    text = PAGES[page]
    marks = headings(text)
    found = [(number, level) for number, level, name in marks if name == title]
    assert found, f"{page.relative_to(ROOT)} has no heading {title!r}"
    start, level = found[0]
    lines = text.split("\n")
    end = next((n for n, lv, _ in marks if n > start and lv <= level), len(lines))
    return "\n".join(lines[start:end])


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of ``text``: the title in lower case without its
    punctuation (letters of every script, digits, ``_`` and ``-`` kept), each space a ``-``;
    a repeated anchor gets ``-1``, ``-2``… in order."""
    seen: Counter[str] = Counter()
    found: set[str] = set()
    for _, _, title in headings(text):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def broken_links(page: Path, text: str) -> list[str]:
    """Each relative link of ``text``, read as the page ``page``, whose file does not exist, or
    whose ``#anchor`` names no heading of its Markdown page: as ``LINE: TARGET (why)``."""
    prose = "\n".join(unfenced(text))
    broken: list[str] = []
    for m in LINK.finditer(prose):
        target = m[1]
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page.resolve()
        line = prose.count("\n", 0, m.start()) + 1
        if not where.exists():
            broken.append(f"{line}: {target} (no such file)")
        elif anchor and where.suffix == ".md":
            held = text if where == page.resolve() else where.read_text(encoding="utf-8")
            if anchor not in anchors(held):
                broken.append(f"{line}: {target} (no such heading)")
    return broken


def trimmed_as(got: object, shown: object) -> object:
    """``got`` with what ``shown`` leaves out left out: the keys it does not show, and each string
    it trims cut as it does, where the string starts as it shows, and each number it shows as it
    shows it, where this host's is within :data:`DIGITS` of it."""
    if isinstance(got, dict) and isinstance(shown, dict):
        return {k: trimmed_as(got[k], shown[k]) for k in shown if k in got}
    if isinstance(got, list) and isinstance(shown, list) and len(got) == len(shown):
        return [trimmed_as(g, s) for g, s in zip(got, shown, strict=True)]
    if isinstance(got, str) and isinstance(shown, str) and shown.endswith(TRIMMED):
        kept = shown.removesuffix(TRIMMED)
        return kept + TRIMMED if got.startswith(kept) else got
    if isinstance(got, float) and isinstance(shown, float):
        return shown if math.isclose(got, shown, rel_tol=DIGITS, abs_tol=DIGITS) else got
    return got


def test_every_setting_is_named_in_the_docs() -> None:
    told = "\n".join(text for page, text in PAGES.items() if page != HISTORY)
    missing = [
        name for name in Settings.model_fields if not re.search(rf"(?<!\w){name}(?!\w)", told)
    ]
    assert missing == []


def test_every_endpoint_of_the_api_is_named_in_the_docs(api: Api) -> None:
    told = "\n".join(text for page, text in PAGES.items() if page != HISTORY)
    endpoints = [
        f"{method.upper()} {PATH_PARAMETER.sub('{id}', path)}"
        for path, operations in api.client.get("/openapi.json").json()["paths"].items()
        for method in operations
    ]
    # named as a code span opens: `GET /v1/clusters` or `GET /v1/clusters?limit=`, never as the
    # start of a longer path (`GET /v1/clusters/{id}`)
    missing = [e for e in endpoints if not re.search(rf"`{re.escape(e)}(?![\w/{{-])", told)]
    assert missing == []


def test_the_first_examples_post_gets_the_record_the_docs_show(
    settings: Settings, pipeline: Pipeline, tmp_path: Path
) -> None:
    quick_start = section(README, "The service")
    (body,) = re.findall(r"-d '(\{.*?\})'", quick_start)
    shown = json.loads(
        re.findall(r"```json\n(.*?)```", section(DOCS / "rescore.md", "Scoring a file"), re.S)[0]
    )
    # as `qinglang rescore` scores it: replay time, and a window of its own
    replay = batch_settings(settings.model_copy(update={"state_dir": tmp_path}))
    near = NearDuplicates.from_settings(replay, pipeline.policy)
    fresh = Pipeline(pipeline.classifier, pipeline.policy, near, pipeline.explainer)
    (record,) = fresh.score_many([Post.model_validate(json.loads(body))])
    assert trimmed_as(record.model_dump(mode="json"), shown) == shown
    # and the README's words on the answer name its decision and first reason
    assert f'`"decision": "{record.decision}"`' in quick_start
    assert f"`{record.reasons[0].code}`" in quick_start


def test_every_relative_link_of_the_docs_leads_somewhere() -> None:
    broken = {
        str(page.relative_to(ROOT)): found
        for page, text in PAGES.items()
        if (found := broken_links(page, text))
    }
    assert broken == {}


def test_a_link_to_a_missing_file_or_heading_is_broken() -> None:
    page = DOCS / "service.md"
    text = (
        "# 清朗 的 服务\n\n## Speed (`python -m eval.load`)\n\n"
        "[kept](../README.md#the-service) [here](#speed-python--m-evalload) "
        "[cjk](#清朗-的-服务) [web](https://example.com/x.md)\n"
        "![gone](screenshots/gone.png) [no heading](review.md#no-such-heading)\n"
        "```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(page, text) == [
        "6: screenshots/gone.png (no such file)",
        "6: review.md#no-such-heading (no such heading)",
    ]
