"""Stage: decide. Scores and the policy give flags, a decision and the reasons with their codes.

A risk is flagged when its score reaches the policy's ``review`` threshold; the decision is
``block`` when any risk reaches its ``block`` threshold on a post long enough for the policy to
block on it (``block_min_chars``: a rumour is a claim, and "求证" or "转发一次" states none),
``review`` when any is flagged, else ``pass``. Reasons come strongest first. The post's account
level can lower the review thresholds (``review_factor`` of the policy's credit levels): a
low-credit account's post goes to review sooner; block thresholds stay. An active disposition
of the account that stops it publishing (``stops_publishing`` in the policy's ladder: a
suspension of updates, a closed account) makes the decision ``block`` whatever the scores: the
account may not publish now. Flags stay the text's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from service.heads import RISKS, Risk
from service.policy import Policy
from service.record import Decision
from service.review.dispositions import Standing, Stop


@dataclass(frozen=True)
class Verdict:
    flags: dict[Risk, bool]
    decision: Decision
    flagged: list[Risk]
    """Flagged risks, highest score first."""
    too_short: list[Risk]
    """Risks whose block threshold the score reached on a post too short to block on."""
    review_factor: float
    """What the account's level multiplied the review thresholds by."""
    stopped: list[Stop]
    """The account's dispositions that stop it publishing, active at the decision."""
    text_decision: Decision
    """The decision on the text alone, which ``stopped`` may have made ``block``: the severity
    its review item gets."""


def decide(
    scores: dict[Risk, float],
    policy: Policy,
    account: Standing | None = None,
    *,
    chars: int,
    now: datetime | None = None,
) -> Verdict:
    """The verdict on a post of ``chars`` letters and digits (:func:`service.claims.body_chars`)
    with these ``scores``, by an account of this standing (none: content alone), at ``now``
    (default: the current time)."""
    standing = account or Standing()
    factor = policy.review_factor(standing.level)
    # the clock only for an account with stops: nearly every post has none
    stopped = [stop for stop in standing.stops if stop.active(now or datetime.now(UTC))]
    flags = {r: scores[r] >= policy.risks[r].review * factor for r in RISKS}
    flagged = sorted((r for r in RISKS if flags[r]), key=lambda r: -scores[r])
    blocked = [r for r in RISKS if policy.blocks(r, scores[r], chars)]
    too_short = [r for r in RISKS if scores[r] >= policy.risks[r].block and r not in blocked]
    text: Decision = "pass"
    if blocked:
        text = "block"
    elif flagged:
        text = "review"
    decision: Decision = "block" if stopped else text
    return Verdict(flags, decision, flagged, too_short, factor, stopped, text)
