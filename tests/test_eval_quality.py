"""The quality benchmark's reading of the policy (the benchmark itself runs in ``eval/``)."""

from __future__ import annotations

from eval.quality import block_threshold
from service.policy import load_policy
from service.settings import Settings


def test_the_proxies_are_blocked_at_the_policys_own_block(settings: Settings) -> None:
    policy = load_policy(settings.policy_file)
    assert block_threshold(policy, "rumor") == policy.risks["rumor"].block
    assert block_threshold(policy, "incitement") == policy.risks["incitement"].block
    # the originality claim blocks nothing by itself: it only feeds the fake-originality check
    assert block_threshold(policy, "originality_claim") is None
    rule = policy.risks["rumor"].model_copy(update={"block": 0.7})
    moved = policy.model_copy(update={"risks": {**policy.risks, "rumor": rule}})
    assert block_threshold(moved, "rumor") == 0.7
