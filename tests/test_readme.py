"""What the README says that the code can check: every setting is named in it, and the post of its
first example gets the score record it shows for it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from service.neardup import NearDuplicates
from service.pipeline import Pipeline
from service.record import Post
from service.rescore import batch_settings
from service.settings import ROOT, Settings

README = (ROOT / "README.md").read_text(encoding="utf-8")
TRIMMED = "…"
"""What the README puts in place of a value too long or too variable to show."""
DIGITS = 2e-3
"""How far a shown score or weight may be from this host's: the int8 graph's integer kernels
differ by instruction set (an AVX2-only AMD EPYC gives the README's rumor score of 0.8526 as
0.8524), while a change to the model, the policy or the pipeline moves them by far more."""


def section(title: str) -> str:
    """The README's text from the heading ``title`` to the next heading of its level or above."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


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


def test_every_setting_is_named_in_the_readme() -> None:
    missing = [
        name for name in Settings.model_fields if not re.search(rf"(?<!\w){name}(?!\w)", README)
    ]
    assert missing == []


def test_the_first_examples_post_gets_the_record_the_readme_shows(
    settings: Settings, pipeline: Pipeline, tmp_path: Path
) -> None:
    (body,) = re.findall(r"-d '(\{.*?\})'", section("The service"))
    shown = json.loads(re.findall(r"```json\n(.*?)```", section("Scoring a file"), re.S)[0])
    # as `qinglang rescore` scores it: replay time, and a window of its own
    replay = batch_settings(settings.model_copy(update={"state_dir": tmp_path}))
    near = NearDuplicates.from_settings(replay, pipeline.policy)
    fresh = Pipeline(pipeline.classifier, pipeline.policy, near, pipeline.explainer)
    (record,) = fresh.score_many([Post.model_validate(json.loads(body))])
    assert trimmed_as(record.model_dump(mode="json"), shown) == shown
