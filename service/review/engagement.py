"""Abnormal engagement with a post (art12): the platform must guard against faked subscriber
counts, attention, click-through rates and repost and comment counts (数据造假). The platform
reports each post's counts as they change (reads, reposts, comments, likes, and how many
distinct accounts made its reposts); a report is weighed against the post's previous one, the
account's reach and its other posts (:func:`is_jump`), and its counts against each other
(:func:`ratios`). What it finds opens an ``engagement`` review item for the account, which
later findings join while it is open, as an account's follower jumps do.

The counts are the platform's: the service sees no reader, click or repost, so it cannot tell
bought engagement that grows the way a post that spreads does, or that stays under the
policy's floors, from the real thing.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from service.policy.governance import COUNTS, Count, EngagementRules
from service.review.items import Kind

KIND: Kind = "engagement"
"""The kind of the review item abnormal engagement with an account's posts opens."""
CATEGORY = "fake_engagement"
"""Its head, and the category its confirmation charges."""

Check = Literal["jump", "per_read", "per_reposter"]
"""What found a report abnormal: a count's jump, more interactions than reads, or reposts
made again and again by few accounts."""

OTHERS = 20
"""The account's other posts a jump is weighed against: the latest reported, so that the read
stays bounded for an account of many posts."""
FINDINGS_KEPT = 100
"""The findings an open item's evidence keeps, the latest (each is chained whole)."""
MOVED = "moved"
"""Where an item's evidence lists the posts whose findings left it for their own account."""


def merge_key(account_id: str) -> str:
    """The merge key of an account's ``engagement`` item: one open item per account."""
    return f"{KIND}:{account_id}"


@dataclass(frozen=True)
class Counts:
    """A post's counts as reported; None for one the platform never gave."""

    reads: int | None = None
    reposts: int | None = None
    comments: int | None = None
    likes: int | None = None
    reposters: int | None = None
    """The distinct accounts that made the reposts."""

    def of(self, count: Count) -> int | None:
        value: int | None = getattr(self, count)
        return value

    def updated(self, report: Counts) -> Counts:
        """These counts with those ``report`` gives in their place; ``reposters`` counts the
        accounts of the reposts it came with, so reposts given without it leave it unknown."""
        given = {name: value for name, value in vars(report).items() if value is not None}
        if report.reposts is not None:
            given["reposters"] = report.reposters
        return replace(self, **given)


def interactions(counts: Counts) -> int:
    """The post's reposts, comments and likes: each is a reader's."""
    return sum(counts.of(c) or 0 for c in COUNTS if c != "reads")


def typical(values: Sequence[int], rules: EngagementRules) -> float | None:
    """The median of a count over the account's other posts: what its posts ordinarily get,
    None with fewer than ``others_min`` of them."""
    return float(statistics.median(values)) if len(values) >= rules.others_min else None


def grows(rules: EngagementRules, count: Count, before: int, after: int) -> bool:
    """Whether ``count`` grew from ``before`` to ``after`` by at least its ``min_gain`` and to
    ``factor`` times: the part of :func:`is_jump` that needs nothing but the two counts."""
    floor = rules.min_gain.get(count)
    return floor is not None and after - before >= floor and after >= rules.factor * before


def growing(rules: EngagementRules, before: Counts, after: Counts) -> list[Count]:
    """The counts that grew from ``before`` to ``after`` enough to be weighed by the account's
    reach (:func:`grows`); a count never given before grew from 0."""
    return [
        count
        for count in COUNTS
        if (now := after.of(count)) is not None and grows(rules, count, before.of(count) or 0, now)
    ]


def is_jump(
    rules: EngagementRules,
    count: Count,
    before: int,
    after: int,
    followers: int,
    usual: float | None,
) -> bool:
    """Whether ``count`` going from ``before`` to ``after`` between two reports is abnormal:
    a gain of at least its ``min_gain`` to ``factor`` times the count before, and, weighed by
    the account's reach, ``others_factor`` times what its other posts ordinarily get
    (``usual``, :func:`typical`), or, where it has too few of them, ``reach_share`` times its
    followers. The organic repost cascades of real data rarely make one (docs/review.md, "Abnormal
    engagement")."""
    gain = after - before
    if not grows(rules, count, before, after):
        return False
    if usual is not None:
        return gain >= rules.others_factor * usual
    return gain >= rules.reach_share * followers


def reweighed(
    rules: EngagementRules,
    finding: Mapping[str, Any],
    followers: int,
    usual: Mapping[Count, float | None],
) -> dict[str, Any] | None:
    """``finding``, made of a post while its reports named another account, as it stands for
    the account the post turned out to be (``followers``, ``usual``: that account's reach, as
    :func:`findings` takes them): a ratio is the post's counts alone and holds as it was found,
    a jump is weighed again against this account's reach (None where it is none)."""
    if finding["check"] != "jump":
        return dict(finding)
    count: Count = finding["count"]
    typical = usual.get(count)
    if not is_jump(rules, count, finding["before"], finding["after"], followers, typical):
        return None
    return {**finding, "followers": followers, "typical": typical}


def ratios(rules: EngagementRules, counts: Counts) -> set[Check]:
    """The ratio checks ``counts`` trip: more reposts, comments and likes than ``per_read``
    times the reads (each is a reader's), and reposts ``per_reposter`` times the accounts that
    made them. A count never given trips nothing."""
    found: set[Check] = set()
    done, reads = interactions(counts), counts.reads
    if reads is not None and done >= rules.per_read_min and done > rules.per_read * reads:
        found.add("per_read")
    reposts, reposters = counts.reposts or 0, counts.reposters
    repeated = reposters is not None and reposts >= rules.per_reposter * reposters
    if repeated and reposts >= rules.per_reposter_min:
        found.add("per_reposter")
    return found


def findings(
    rules: EngagementRules,
    post_id: str,
    before: Counts,
    report: Counts,
    *,
    at: datetime,
    since: datetime | None,
    published: datetime | None,
    followers: int,
    usual: Mapping[Count, float | None],
) -> list[dict[str, Any]]:
    """What ``report``, at ``at``, finds of the post whose counts were ``before`` (reported at
    ``since``), as the item's evidence lists it: each count that jumped (a count the post never
    had is a gain from 0 since it was ``published``, when the service knows it), and each
    ratio check the counts now trip that ``before`` did not (a post that stays past one is one
    finding, not one a report). A ratio is weighed on a report that gives its counts afresh,
    reads for ``per_read`` and reposters for ``per_reposter``: one count given long ago beside
    another given now is no ratio of one moment."""
    after = before.updated(report)
    fresh = {
        check
        for check, given in (("per_read", report.reads), ("per_reposter", report.reposters))
        if given is not None
    }
    found: list[dict[str, Any]] = []
    for count in COUNTS:
        now, then = after.of(count), before.of(count)
        if now is None or not is_jump(rules, count, then or 0, now, followers, usual.get(count)):
            continue
        start = since if then is not None else published
        found.append(
            {
                "post_id": post_id,
                "check": "jump",
                "count": count,
                "before": then or 0,
                "after": now,
                "at": at.isoformat(),
                "since": None if start is None else start.isoformat(),
                "followers": followers,
                "typical": usual.get(count),
            }
        )
    crossed = (ratios(rules, after) & fresh) - ratios(rules, before)
    if "per_read" in crossed:
        found.append(
            {
                "post_id": post_id,
                "check": "per_read",
                "reads": after.reads,
                "interactions": interactions(after),
                "at": at.isoformat(),
            }
        )
    if "per_reposter" in crossed:
        found.append(
            {
                "post_id": post_id,
                "check": "per_reposter",
                "reposts": after.reposts,
                "reposters": after.reposters,
                "at": at.isoformat(),
            }
        )
    return found
