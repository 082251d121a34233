"""Abnormal engagement (art12) against real organic cascades: ``python -m eval.engagement``.

Reads Weibo16 under ``Settings.data_dir`` (``QINGLANG_DATA_DIR``): each source post's repost
and comment counts and its account's followers (``posts.jsonl``), and its repost cascade with
every repost's time and account (``reposts.jsonl.gz``). Replays each cascade as a platform that
reports a post's repost count every 10 minutes, hour, 6 hours or day from its publication
would, and as one that reports it once (the post's final count, the worst case: every repost
in one gain from 0), and counts the posts whose reports the policy's jump check
(:func:`service.review.engagement.is_jump`, the service's own) would flag: each weighed against
the median of the account's other posts in the file where it has ``others_min`` of them, else
against its followers, as the service weighs it. The crawl holds a sample of the larger
cascades' reposts (a median 72% of a post's count, a fifth of the largest'), so each cascade is
counted as crawled and scaled up to the post's own count. Comments have no times: they are
weighed once. The ratio of reposts to the accounts that made them is checked at every hourly
report (as crawled: a scaled cascade has no accounts).

Every post here spread (the file's events had at least 30 reposts, a median 406): the shares
are those of posts that went viral, higher than among a platform's posts at large.

Prints hardware, date, the distributions the thresholds were chosen from, and the shares.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from eval.speed import hardware
from service.policy import load_policy
from service.policy.governance import Count, EngagementRules
from service.review import engagement
from service.settings import settings_or_exit
from training import data

CADENCES = {"every 10 minutes": 600, "hourly": 3600, "every 6 hours": 6 * 3600, "daily": 86400}
"""How often a platform reports a post's counts, in seconds."""
PERCENTILES = (50, 90, 99, 99.9, 100)
ONCE = "once (the final count)"
Row = tuple[str, str, str, tuple[int, int], tuple[int, int] | None]
"""A row of the shares table: the check, the count, the reports, the posts flagged as crawled
and scaled (None where nothing was crawled to scale)."""


@dataclass
class Cascade:
    """A source post, its account's reach and its crawled reposts."""

    post_id: str
    account_id: str
    followers: int
    published: int
    reposts: int
    comments: int
    times: np.ndarray
    """Seconds after publication of each crawled repost, sorted."""
    accounts: list[str]
    """Who made each crawled repost, in the order of ``times``."""

    @property
    def scale(self) -> float:
        """How many reposts each crawled one stands for."""
        return max(1.0, self.reposts / max(1, len(self.times)))


def load(data_dir: Path) -> list[Cascade]:
    reposted: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for repost in data.reposts(data_dir):
        reposted[repost.event].append((repost.created_at, repost.account))

    def cascade(post: dict[str, Any]) -> Cascade:
        made = sorted(reposted.get(str(post["id"]), []))
        published = int(post["created_at"])
        return Cascade(
            str(post["id"]),
            str(post["account"]["id"]),
            int(post["account"]["followers"]),
            published,
            int(post["reposts"]),
            int(post["comments"]),
            # a handful were crawled with times before the post's own
            np.maximum(np.array([t for t, _ in made], dtype=np.int64) - published, 0),
            [a for _, a in made],
        )

    return list(data.records(data_dir / data.WEIBO16_POSTS, cascade))


def usual(
    cascades: list[Cascade], rules: EngagementRules, of: Callable[[Cascade], int]
) -> dict[str, float | None]:
    """What each post's account's other posts ordinarily get (:func:`engagement.typical`):
    its latest :data:`engagement.OTHERS` others, as the service reads them."""
    by_account: dict[str, list[Cascade]] = defaultdict(list)
    for c in cascades:
        by_account[c.account_id].append(c)
    found = {}
    for c in cascades:
        others = sorted(
            (o for o in by_account[c.account_id] if o.post_id != c.post_id),
            key=lambda o: -o.published,
        )
        found[c.post_id] = engagement.typical([of(o) for o in others[: engagement.OTHERS]], rules)
    return found


def reports(cascade: Cascade, step: int, scaled: bool) -> np.ndarray:
    """The repost counts a platform reporting every ``step`` seconds from publication would
    give, from the first (at publication) to the first after the last repost."""
    end = int(cascade.times[-1]) if len(cascade.times) else 0
    moments = np.arange(0, end + 2 * step, step)
    counts = np.searchsorted(cascade.times, moments, side="right").astype(np.float64)
    return np.round(counts * cascade.scale) if scaled else counts


def final_reposts(cascade: Cascade) -> np.ndarray:
    return np.array([float(cascade.reposts)])


def final_comments(cascade: Cascade) -> np.ndarray:
    return np.array([float(cascade.comments)])


def flags(
    rules: EngagementRules,
    count: Count,
    series: np.ndarray,
    followers: int,
    typical: float | None,
) -> bool:
    """Whether any report of ``series`` (a first report is a gain from 0) is a jump."""
    before = np.concatenate(([0.0], series[:-1]))
    # the jump check's own floor first: the few reports past it are weighed one by one
    floor = rules.min_gain.get(count)
    if floor is None:
        return False
    (candidates,) = np.nonzero(series - before >= floor)
    return any(
        engagement.is_jump(rules, count, int(before[i]), int(series[i]), followers, typical)
        for i in candidates
    )


def share(flagged: Iterable[bool]) -> tuple[int, int]:
    marks = list(flagged)
    return sum(marks), len(marks)


def repeated(rules: EngagementRules, cascade: Cascade) -> bool:
    """Whether any hourly report of the crawled cascade trips the reposts-per-reposter check."""
    seen: set[str] = set()
    first = []
    for account in cascade.accounts:
        first.append(account not in seen)
        seen.add(account)
    distinct = np.cumsum(first)  # the distinct accounts among the first n reposts, at n - 1
    made = np.unique(reports(cascade, 3600, scaled=False).astype(np.int64))
    return any(
        "per_reposter"
        in engagement.ratios(rules, engagement.Counts(reposts=n, reposters=int(distinct[n - 1])))
        for n in made[made >= rules.per_reposter_min]
    )


def percentiles(values: np.ndarray) -> str:
    if not len(values):
        return " | ".join("-" for _ in PERCENTILES)
    return " | ".join(f"{v:,.3g}" for v in np.percentile(values, PERCENTILES))


def distributions(cascades: list[Cascade], others: dict[str, float | None]) -> list[str]:
    """What organic engagement looks like: the rows of the distributions table."""
    hourly = []
    for c in cascades:
        counts = reports(c, 3600, scaled=False)
        before, after = counts[:-1], counts[1:]
        kept = (before >= 100) & (after > before)
        hourly.append((after[kept] - before[kept]) / before[kept])
    big = [c for c in cascades if len(c.times) >= 100]
    rows: list[tuple[str, Iterable[float]]] = [
        (
            "reposts gained in an hour / the count before (hours that gained, from 100)",
            np.concatenate(hourly),
        ),
        ("reposts / the account's followers", [c.reposts / max(1, c.followers) for c in cascades]),
        (
            "comments / the account's followers",
            [c.comments / max(1, c.followers) for c in cascades],
        ),
        (
            "reposts / the median of the account's other posts",
            [
                c.reposts / max(1.0, typical)
                for c in cascades
                if (typical := others[c.post_id]) is not None
            ],
        ),
        (
            "reposts per distinct reposter (cascades of 100 or more)",
            [len(c.accounts) / len(set(c.accounts)) for c in big],
        ),
        (
            "crawled reposts / the post's count",
            [len(c.times) / max(1, c.reposts) for c in cascades],
        ),
    ]
    said = []
    for name, values in rows:
        found = np.fromiter(values, dtype=np.float64)
        said.append(f"| {name} | {len(found):,} | {percentiles(found)} |")
    return said


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.engagement", description=__doc__)
    parser.parse_args(argv)
    settings = settings_or_exit(parser.prog)
    data.require(settings.data_dir, (data.WEIBO16_POSTS, data.WEIBO16_REPOSTS))
    policy = load_policy(settings.policy_file)
    rules = policy.engagement
    cascades = load(settings.data_dir)
    reposted = usual(cascades, rules, lambda c: c.reposts)
    commented = usual(cascades, rules, lambda c: c.comments)

    def jumps(count: Count, series: Callable[[Cascade], np.ndarray]) -> tuple[int, int]:
        weighed = reposted if count == "reposts" else commented
        return share(
            flags(rules, count, series(c), c.followers, weighed[c.post_id]) for c in cascades
        )

    rows: list[Row] = [
        (
            "jump",
            "reposts",
            name,
            jumps("reposts", partial(reports, step=step, scaled=False)),
            jumps("reposts", partial(reports, step=step, scaled=True)),
        )
        for name, step in CADENCES.items()
    ]
    # one report of the post's own count: nothing crawled to scale
    rows.append(("jump", "reposts", ONCE, jumps("reposts", final_reposts), None))
    rows.append(("jump", "comments", ONCE, jumps("comments", final_comments), None))
    per_reposter = share(repeated(rules, c) for c in cascades)
    rows.append(("per_reposter", "reposts, reposters", "hourly", per_reposter, None))

    print(f"{hardware()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"Weibo16: {len(cascades):,} source posts, {sum(len(c.times) for c in cascades):,} "
        f"crawled reposts; policy {policy.version}: {json.dumps(rules.model_dump())}\n"
    )
    print("| organic engagement | n | " + " | ".join(f"p{p:g}" for p in PERCENTILES) + " |")
    print("|---|---|" + "---|" * len(PERCENTILES))
    print("\n".join(distributions(cascades, reposted)), end="\n\n")
    print("| check | count | reports | posts flagged, as crawled | scaled to the post's count |")
    print("|---|---|---|---|---|")
    for check, count, cadence, crawled, scaled in rows:
        shown = [
            f"{n:,} of {total:,} ({n / total:.2%})" if total else "-"
            for n, total in (crawled, scaled or (0, 0))
        ]
        print(f"| {check} | {count} | {cadence} | {shown[0]} | {shown[1]} |")
    # the typical account in the file: how often its posts' counts are weighed by its others
    weighed = statistics.mean(reposted[c.post_id] is not None for c in cascades)
    print(f"\nposts weighed against the account's other posts (others_min): {weighed:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
