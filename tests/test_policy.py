from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.decide import decide
from service.heads import RISKS, Risk
from service.policy import PolicyError, load_policy
from service.review.dispositions import Standing, Stop
from service.settings import Settings


def scores(**given: float) -> dict[Risk, float]:
    return {r: given.get(r, 0.0) for r in RISKS}


def test_default_policy_loads_with_a_rule_per_risk(settings: Settings) -> None:
    policy = load_policy(settings.policy_file)
    assert set(policy.risks) == set(RISKS)
    assert policy.risks["rumor"].reason.code.startswith("art18.6")
    assert policy.risks["incitement"].reason.code.startswith("art18.5")
    assert policy.risks["coordination"].reason.code.startswith("art18.4")


def test_the_incitement_reason_says_what_the_head_flags_and_the_article_it_may_fall_under(
    settings: Settings,
) -> None:
    """The head is trained on offensive and toxic language (COLD, ToxiCN), not on incitement
    or mobilising calls (models/card.md): the reason a reviewer, an appeal and an audit read
    says what it flags, in both languages, and names art18.5 as the category such language may
    fall under, not as what was detected."""
    zh, en = load_policy(settings.policy_file).risks["incitement"].reason.summary.split(" / ")
    assert "侮辱" in zh and "煽动性言论" not in zh and "第十八条第五项" in zh
    assert "offensive" in en and "inflammatory" not in en and "art18.5" in en
    card = (settings.model_dir / "card.md").read_text()
    assert "neither corpus labels incitement" in card


def test_policy_thresholds_are_the_models_operating_points(settings: Settings) -> None:
    policy = load_policy(settings.policy_file)
    card = json.loads((settings.model_dir / "card.json").read_text())
    for head in ("rumor", "incitement"):
        assert policy.risks[head].review == pytest.approx(card["thresholds"][head]["review"])
        assert policy.risks[head].block == pytest.approx(card["thresholds"][head]["block"])
    claim = card["thresholds"]["originality_claim"]["review"]
    assert policy.near_duplicates.originality_claim == pytest.approx(claim)


def test_the_digest_follows_the_values_not_the_version_or_the_layout(
    settings: Settings, tmp_path: Path
) -> None:
    text = settings.policy_file.read_text()
    digest = load_policy(settings.policy_file).digest
    laid_out = tmp_path / "laid_out.toml"
    laid_out.write_text("# reviewed again\n\n" + text.replace(" = ", "   =   "))
    assert load_policy(laid_out).digest == digest
    edited = tmp_path / "edited.toml"
    edited.write_text(
        text.replace("[risks.rumor]\nreview = 0.5\n", "[risks.rumor]\nreview = 0.2\n")
    )
    assert edited.read_text() != text
    policy = load_policy(edited)
    assert policy.version == load_policy(settings.policy_file).version
    assert policy.digest != digest


LONG = 200
"""Letters and digits of a post long enough for any block."""


def test_decision_ladder(settings: Settings) -> None:
    policy = load_policy(settings.policy_file)
    rumor, inc = policy.risks["rumor"], policy.risks["incitement"]
    assert decide(scores(), policy, chars=LONG).decision == "pass"
    # the rung between review and block
    assert inc.review < inc.block
    v = decide(scores(incitement=inc.review), policy, chars=LONG)
    assert v.decision == "review" and v.flags["incitement"] and v.flagged == ["incitement"]
    assert decide(scores(rumor=rumor.review - 0.01), policy, chars=LONG).decision == "pass"
    assert decide(scores(rumor=rumor.block), policy, chars=LONG).decision == "block"
    never = policy.risks["coordination"]
    assert never.block > 1
    assert decide(scores(coordination=1.0), policy, chars=LONG).decision == "review"
    # flagged risks come highest score first
    higher = min(1.0, max(inc.review, rumor.review) + 0.01)
    both = decide(scores(rumor=rumor.review, incitement=higher), policy, chars=LONG)
    assert both.flagged == ["incitement", "rumor"]


def test_a_post_too_short_to_state_a_claim_is_reviewed_not_blocked(settings: Settings) -> None:
    policy = load_policy(settings.policy_file)
    minimum = policy.block_min_chars["rumor"]
    assert minimum > 0
    short = decide(scores(rumor=1.0), policy, chars=minimum - 1)
    assert short.decision == "review" and short.flagged == ["rumor"]
    assert short.too_short == ["rumor"]
    enough = decide(scores(rumor=1.0), policy, chars=minimum)
    assert enough.decision == "block" and enough.too_short == []
    # insults are short: the incitement block keeps no minimum
    assert "incitement" not in policy.block_min_chars
    both = decide(scores(rumor=1.0, incitement=1.0), policy, chars=1)
    assert both.decision == "block" and both.too_short == ["rumor"]


def test_a_disposition_that_stops_publishing_blocks_until_it_ends(settings: Settings) -> None:
    policy = load_policy(settings.policy_file)
    # the shipped ladder: suspending updates or service (art8's, until a name is corrected)
    # and closing stop publishing, a warning does not
    assert policy.publishing_stops == ["suspend_updates", "suspend_service", "close_account"]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    ends = now + timedelta(days=7)
    suspended = Standing("D", (Stop("suspend_updates", "art19", ends),))
    during = decide(scores(), policy, suspended, chars=LONG, now=now)
    assert during.decision == "block" and during.stopped == list(suspended.stops)
    # the text's own flags stay the text's
    assert not any(during.flags.values()) and during.flagged == []
    # a suspension that ended no longer applies, though the standing read before still holds it
    after = decide(scores(), policy, suspended, chars=LONG, now=ends)
    assert (after.decision, after.stopped) == ("pass", [])
    closed = Standing("X", (Stop("close_account", "art19", None),))
    years = decide(scores(), policy, closed, chars=LONG, now=now + timedelta(days=3650))
    assert years.decision == "block"
    assert decide(scores(), policy, Standing("D"), chars=LONG, now=now).decision == "pass"


def test_bad_policy_files_say_what_is_wrong(tmp_path: Path, settings: Settings) -> None:
    text = settings.policy_file.read_text()
    broken = tmp_path / "p.toml"
    broken.write_text(text.replace("[risks.coordination]", "[risks.nothing]", 1))
    with pytest.raises(PolicyError, match="coordination"):
        load_policy(broken)
    broken.write_text(
        text.replace("[block_min_chars]\nrumor = ", "[block_min_chars]\nrumor = -", 1)
    )
    with pytest.raises(PolicyError, match="block_min_chars"):
        load_policy(broken)
    broken.write_text(text + "\nthis is not toml")
    with pytest.raises(PolicyError, match=re.escape(str(broken))):
        load_policy(broken)
    with pytest.raises(PolicyError, match=r"missing\.toml"):
        load_policy(tmp_path / "missing.toml")
    broken.write_bytes(text.encode("gb18030"))  # not UTF-8
    with pytest.raises(PolicyError, match=re.escape(str(broken))):
        load_policy(broken)


def test_a_reason_code_begins_with_an_article_its_reason_rests_on(
    tmp_path: Path, settings: Settings
) -> None:
    """The console offers a code's article as a confirmation's basis, and a reviewer reads the
    legal basis from it: it must be one the reason names."""
    text = settings.policy_file.read_text()
    broken = tmp_path / "p.toml"
    for wrong in ("art18.7.extreme_emotion", "art99.extreme_emotion", "extreme_emotion", "art18.5"):
        broken.write_text(text.replace('"art18.5.extreme_emotion"', f'"{wrong}"', 1))
        with pytest.raises(PolicyError, match=re.escape(f"reason code {wrong!r}")):
            load_policy(broken)
    # the item's article alone is not the one it rests on when the reason names the item
    broken.write_text(text.replace('"art18.5.extreme_emotion"', '"art18.extreme_emotion"', 1))
    with pytest.raises(PolicyError, match="does not begin with one of its articles"):
        load_policy(broken)
    # two risks with one code: a record's reasons could not be told apart
    broken.write_text(
        text.replace('"art18.5.extreme_emotion"', '"art18.6.false_information"', 1).replace(
            'articles = ["art18.5"]', 'articles = ["art18.6"]', 1
        )
    )
    with pytest.raises(PolicyError, match="two risks give one reason code"):
        load_policy(broken)
    assert load_policy(settings.policy_file).risks["incitement"].reason.articles == ["art18.5"]
