"""The quality benchmark's reading of the policy (the benchmark itself runs in ``eval/``)."""

from __future__ import annotations

import numpy as np

from eval.quality import blocked
from service.heads import Head
from service.policy import Policy, load_policy
from service.settings import Settings

TEXTS = ["求证", "北京地铁2号线有人卧轨!", "这帮人都是垃圾，滚出我们城市"]


def stopped(policy: Policy, head: Head, score: float) -> list[bool]:
    """Which of TEXTS the policy blocks on ``head``'s risk, each scored ``score``."""
    out = blocked(policy, head, np.full(len(TEXTS), score), TEXTS)
    assert out is not None
    return [bool(b) for b in out]


def test_the_proxies_are_blocked_by_the_policys_own_rule(settings: Settings) -> None:
    policy = load_policy(settings.policy_file)
    block = policy.risks["rumor"].block
    # "求证" states no claim: under the rumor block's minimum length, it is not blocked
    assert stopped(policy, "rumor", block) == [False, True, True]
    assert stopped(policy, "rumor", block - 0.01) == [False, False, False]
    # the incitement block keeps no minimum
    assert stopped(policy, "incitement", policy.risks["incitement"].block) == [True] * 3
    # the originality claim blocks nothing by itself: it only feeds the fake-originality check
    assert blocked(policy, "originality_claim", np.ones(len(TEXTS)), TEXTS) is None
    rule = policy.risks["rumor"].model_copy(update={"block": 0.7})
    moved = policy.model_copy(update={"risks": {**policy.risks, "rumor": rule}})
    assert stopped(moved, "rumor", 0.7) == [False, True, True]
