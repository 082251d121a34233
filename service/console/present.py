"""What the item page shows, worked out from the stored item: the post's text cut into
highlighted and plain pieces (and why there are none), the reasons with their articles and
their evidence in words, the cluster's timeline; the dashboard's plots."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from difflib import SequenceMatcher
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from service.console import articles as regulation
from service.console import plots
from service.console.times import duration, offset, unit_of, when
from service.explaining import NO_EVIDENCE
from service.neardup.cluster import Cluster
from service.policy import Policy
from service.review import dormancy, engagement, followers, protected, signups, views
from service.review.items import ACTIONS, EARLIER, FINAL
from service.storage.console_sql import (
    AGE_BUCKETS_H,
    MAX_SCORES,
    ConsoleReads,
    Thresholds,
    days_back,
)

Words = Callable[[str], str]
"""A translator: a key of ``service.console.i18n.TEXT`` in the reader's language."""
Worded = Callable[[str, str], str]
"""A code word of a family (``head``, ``evidence``, ...) in the reader's language."""


@dataclass(frozen=True)
class Piece:
    text: str
    heads: tuple[str, ...] = ()
    weight: float = 0.0


@dataclass(frozen=True)
class ReasonRow:
    code: str
    score: float
    head: str | None
    summary: str
    articles: list[tuple[str, str]]
    facts: list[tuple[str, str]] = field(default_factory=list)
    """The evidence, each as its label and its value in the reader's language (:func:`facts`)."""


@dataclass(frozen=True)
class HeadRow:
    head: str
    score: float
    review: float
    block: float
    flagged: bool
    now_review: float | None = None
    """The current policy's review threshold, where it is not the record's (the policy changed
    since the record was scored)."""
    now_block: float | None = None
    """The current policy's block threshold, likewise."""


def record_of(item: views.Item) -> dict[str, Any] | None:
    record = (item.evidence or {}).get("record")
    return record if isinstance(record, dict) else None


def evidence_note(record: dict[str, Any], model_version: str) -> str | None:
    """The message key that says why the record's reasons carry no spans, if one is due: they
    are on their way, they wait for a model this server does not run (the record was scored
    before a model change, and only a process of its model finds them), or the search failed."""
    if record.get("evidence_pending"):
        return "pending" if record.get("model_version") == model_version else "pending_elsewhere"
    return "no_evidence" if NO_EVIDENCE in record.get("warnings", []) else None


def pieces(text: str, reasons: list[dict[str, Any]], policy: Policy) -> list[Piece]:
    """``text`` cut at every span edge; each piece names the heads whose spans cover it."""
    heads_of = {rule.reason.code: risk for risk, rule in policy.risks.items()}
    spans: list[tuple[int, int, str, float]] = []
    for reason in reasons:
        head = heads_of.get(str(reason.get("code")), str(reason.get("code")))
        for span in (reason.get("evidence") or {}).get("spans", []):
            start, end = int(span["start"]), int(span["end"])
            if 0 <= start < end <= len(text):
                spans.append((start, end, head, float(span.get("weight", 0.0))))
    edges = sorted({0, len(text)} | {s for s, *_ in spans} | {e for _, e, *_ in spans})
    out: list[Piece] = []
    for start, end in pairwise(edges):
        covering = [s for s in spans if s[0] <= start and end <= s[1]]
        heads = tuple(sorted({s[2] for s in covering}))
        out.append(Piece(text[start:end], heads, max((s[3] for s in covering), default=0.0)))
    return out


def reason_rows(
    record: dict[str, Any],
    policy: Policy,
    articles: dict[str, str],
    t: Words,
    worded: Worded,
    zone: ZoneInfo,
) -> list[ReasonRow]:
    """The record's reasons with the articles they rest on and their evidence in ``t``'s
    words, its moments in ``zone``. The articles and summary are the record's own, those of
    the policy it was scored under, which a reviewer's decision, an appeal and the audit
    export all read; the current policy's rule for the code stands in for a record that kept
    none, and the code's article for a reason no rule gives."""
    rules = {rule.reason.code: (risk, rule.reason) for risk, rule in policy.risks.items()}
    rows = []
    for reason in record.get("reasons", []):
        code = str(reason.get("code"))
        evidence = reason.get("evidence") or {}
        risk, rule = rules.get(code, (None, None))
        kept = evidence.get("articles")
        if isinstance(kept, list) and kept:
            names = [str(name) for name in kept]
        else:
            names = rule.articles if rule else [code.rsplit(".", 1)[0]]
        summary = evidence.get("summary", rule.summary if rule else "")
        rows.append(
            ReasonRow(
                code=code,
                score=float(reason.get("score", 0.0)),
                head=risk,
                summary=str(summary),
                articles=[(name, articles.get(name, "")) for name in names],
                facts=facts(evidence, t, worded, zone),
            )
        )
    return rows


SHOWN_ELSEWHERE = frozenset(
    {"spans", "articles", "summary", "earlier_text", "record", "match", EARLIER}
)
"""Evidence the item page shows in its own way (the highlighted spans, the articles and summary
of the reason, the earlier post beside the copy, an item's score record, the item decided
before it), or that says again what others do (a bank match's ``match``: its rumour and
similarity, in English)."""


def facts(
    evidence: Mapping[str, Any], t: Words, worded: Worded, zone: ZoneInfo
) -> list[tuple[str, str]]:
    """What a reason's (or a bank match item's) ``evidence`` holds, each as its label and its
    value in ``t``'s language: moments as the pages show them (in ``zone``), lengths of time,
    decisions, dispositions and articles in words, a nested value under its own label."""
    return [
        (worded("evidence", name), _value(name, value, t, worded, zone))
        for name, value in _flattened(evidence)
    ]


def _flattened(evidence: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in evidence.items():
        if not prefix and key in SHOWN_ELSEWHERE:
            continue
        if isinstance(value, dict):
            yield from _flattened(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _value(name: str, value: Any, t: Words, worded: Worded, zone: ZoneInfo) -> str:
    if value is None:
        # a disposition without an end lasts until it is lifted
        return t("until_lifted") if name == "disposition.ends_at" else "-"
    said = SAID.get(name)
    if said is not None:
        return said(value, t, worded, zone)
    return f"{round(value, 3):g}" if isinstance(value, float) else str(value)


def _claim(said: str, t: Words) -> str:
    """The finding says a claim of originality by the post's flag (``declared_original``) or by
    the claim head's name and score (``originality_claim 0.83``)."""
    if said == "declared_original":
        return t("claim.declared")
    head, _, score = said.partition(" ")
    return t("claim.score").format(score=score) if head == "originality_claim" else said


SAID: dict[str, Callable[[Any, Words, Worded, ZoneInfo], str]] = {
    "batch_at": lambda v, t, w, z: when(float(v), z),
    "disposition.ends_at": lambda v, t, w, z: when(datetime.fromisoformat(v), z),
    "gap_s": lambda v, t, w, z: duration(float(v), t),
    "batch_minutes": lambda v, t, w, z: duration(float(v) * 60, t),
    "text_decision": lambda v, t, w, z: w("decision", str(v)),
    "disposition.kind": lambda v, t, w, z: w("disposition", str(v)),
    "disposition.basis": lambda v, t, w, z: regulation.name(str(v), t),
    "claim": lambda v, t, w, z: _claim(str(v), t),
}
"""How a value of the evidence is said, by its name, where not as it is: moments, lengths of
time, code words and articles."""


def thresholds(policy: Policy) -> Thresholds:
    """Each risk's review and block thresholds under ``policy``."""
    return {risk: (rule.review, rule.block) for risk, rule in policy.risks.items()}


def head_rows(record: dict[str, Any], kept: Thresholds | None, policy: Policy) -> list[HeadRow]:
    """Each head's score against the thresholds the record was decided with: those of the
    policy it was scored under (``kept``, as storage kept its rules; None where they were
    not kept, and the current ``policy``'s stand in, the page saying so), the review
    threshold lowered by the account level's ``review_factor`` where its reasons name one.
    Where the current policy's thresholds differ from the record's, they are given beside
    them."""
    scores: dict[str, float] = record.get("scores", {})
    flags: dict[str, bool] = record.get("flags", {})
    factor = review_factor(record)
    current = thresholds(policy)
    rows = []
    for risk, now in current.items():
        if risk not in scores:
            continue
        review, block = (kept or current).get(risk, now)
        changed = (review, block) != now
        rows.append(
            HeadRow(
                risk,
                float(scores[risk]),
                round(review * factor, 4),
                block,
                bool(flags.get(risk)),
                round(now[0] * factor, 4) if changed else None,
                now[1] if changed else None,
            )
        )
    return rows


def policy_note(t: Words, scored_under: str | None, current: str, kept: bool) -> Markup | None:
    """What the item page says above a record's thresholds when they are not plainly the
    current policy's: the record was scored under a policy since replaced, or one whose rules
    were never kept (the current policy's then stand in). The versions are the policy's own
    names, set apart as its words are."""
    if scored_under is None or (kept and scored_under == current):
        return None
    named = Markup('<span class="policy">{}</span>')
    said = escape(t("policy_changed" if kept else "thresholds_not_kept"))
    return said.format(version=named.format(scored_under), current=named.format(current))


def review_factor(record: dict[str, Any]) -> float:
    for reason in record.get("reasons", []):
        level = reason.get("evidence", {}).get("account_level")
        if isinstance(level, dict) and "review_factor" in level:
            return float(level["review_factor"])
    return 1.0


def _cluster(item: views.Item) -> dict[str, Any] | None:
    """The near-duplicate cluster of the item: a cluster item's own evidence, else the one the
    post joined, as its score record says."""
    for cluster in ((item.evidence or {}).get("cluster"), (record_of(item) or {}).get("cluster")):
        if isinstance(cluster, dict) and "id" in cluster:
            return cluster
    return None


EARLIER_SAID: dict[str, tuple[str, str | None]] = {
    "cluster": ("earlier_cluster", "cluster_size"),
    "score": ("earlier_post", "followers"),
    "follower_jump": ("earlier_jump", "followers"),
    engagement.KIND: ("earlier_engagement", "followers"),
    "bank_match": ("earlier_match", None),
    signups.KIND: ("earlier_signup", "signup_accounts"),
}
"""What the item page says of the item decided before one of each kind, by the kind: the
message key of its line, and the label of the decided item's reach, which is a batch's size
for a cluster and the account's followers for an account's or a post's item; None where the
reach is nothing (a bank match's is 0)."""
EARLIER_ANY: tuple[str, str | None] = ("earlier_item", None)
"""The same for a kind :data:`EARLIER_SAID` does not name: the decided item, with no reach its
reader would have to guess the meaning of."""


@dataclass(frozen=True)
class Earlier:
    """The item decided on the same merge key before this one was opened (evidence
    :data:`~service.review.items.EARLIER`), as the item page says it (:data:`EARLIER_SAID`)."""

    item_id: int
    status: str
    reviewer: str
    decided_at: datetime
    reach: int
    said: str
    """The message key of the line."""
    reach_label: str | None
    """The message key of the reach's label; None where the page shows no reach."""


def earlier_item(item: views.Item) -> Earlier | None:
    """The item decided on the same merge key before ``item`` was opened, in the words of
    ``item``'s kind; None where there is none."""
    earlier = (item.evidence or {}).get(EARLIER)
    if not isinstance(earlier, dict):
        return None
    said, reach_label = EARLIER_SAID.get(item.kind, EARLIER_ANY)
    return Earlier(
        item_id=int(earlier["item_id"]),
        status=str(earlier["status"]),
        reviewer=str(earlier["reviewer"]),
        decided_at=datetime.fromisoformat(earlier["decided_at"]),
        reach=int(earlier["reach"]),
        said=said,
        reach_label=reach_label,
    )


def cluster_id(item: views.Item) -> str | None:
    cluster = _cluster(item)
    return None if cluster is None else str(cluster["id"])


def timeline(item: views.Item, live: Cluster | None) -> list[dict[str, Any]]:
    """The cluster's members, oldest first, the earliest being the traced source: a cluster
    item's own (stored without their times: those come from the live window's cluster and the
    cluster's earliest post, and a member neither knows goes last), else the live window's
    cluster of the post, else the record's earliest post."""
    members = [m for m in (item.evidence or {}).get("members", []) if isinstance(m, dict)]
    cluster = _cluster(item) or {}
    earliest = cluster.get("earliest")
    times = {m.post_id: m.created_at for m in live.members} if live is not None else {}
    if isinstance(earliest, dict) and earliest.get("created_at") is not None:
        times.setdefault(str(earliest.get("id")), float(earliest["created_at"]))
    if members:
        members = [
            {**m, "created_at": m.get("created_at") or times.get(str(m.get("post_id")))}
            for m in members
        ]
    elif live is not None:
        members = [asdict(m) for m in live.members]
    elif isinstance(earliest, dict) and cluster.get("size", 1) > 1:
        members = [earliest]
    return sorted(members, key=lambda m: m.get("created_at") or float("inf"))


def differences(earlier: str, copy: str) -> tuple[list[Piece], list[Piece]]:
    """Both texts cut into pieces, the ones that differ between them marked (``heads`` holds
    ``"diff"``), to set the earlier post beside its copy."""
    left: list[Piece] = []
    right: list[Piece] = []
    matcher = SequenceMatcher(None, earlier, copy, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        mark = () if op == "equal" else ("diff",)
        if a1 > a0:
            left.append(Piece(earlier[a0:a1], mark))
        if b1 > b0:
            right.append(Piece(copy[b0:b1], mark))
    return left, right


def earlier_post(record: dict[str, Any]) -> str | None:
    """The post a fake-originality reason names as the earlier one."""
    for reason in record.get("reasons", []):
        found = (reason.get("evidence") or {}).get("earlier_post")
        if found:
            return str(found)
    return None


def earlier_text(record: dict[str, Any], stored: str | None) -> str | None:
    """The earlier post's text to set beside its copy: as stored with a review item, else the
    excerpt the near-duplicate window kept of it and the fake-originality reason carries (the
    window keeps text only while the post is in it, for this view)."""
    if stored is not None:
        return stored
    for reason in record.get("reasons", []):
        found = (reason.get("evidence") or {}).get("earlier_text")
        if found:
            return str(found)
    return None


def banked_rumor(record: dict[str, Any], item_evidence: dict[str, Any] | None) -> str | None:
    """The confirmed rumour a bank match names: in the score record's reasons, or in the
    evidence of a ``bank_match`` item (which carries no record)."""
    for evidence in [
        *((r.get("evidence") or {}) for r in record.get("reasons", [])),
        item_evidence,
    ]:
        found = (evidence or {}).get("confirmed_rumor")
        if found:
            return str(found)
    return None


@dataclass(frozen=True)
class QueueRow:
    item: views.Item
    score: float | None
    cluster_size: int | None
    overdue: bool
    waited_s: float
    jump: Jump | None = None
    """A ``follower_jump`` item's latest jump."""
    protected: tuple[str, ...] = ()
    """The protected names an ``impersonation`` item's account name holds."""
    finding: Finding | None = None
    """An ``engagement`` item's latest finding."""
    excerpt: str | None = None
    """The start of a post item's text (:func:`excerpt`); its page shows the whole."""
    batch: SignupBatch | None = None
    """A ``signup_batch`` item's skeleton and accounts."""


@dataclass(frozen=True)
class Jump:
    """A jump of an account's follower count (art12) as the evidence of its item keeps it."""

    before: int
    after: int
    at: datetime
    since: datetime | None


def jumps(item: views.Item) -> list[Jump]:
    """A ``follower_jump`` item's jumps of the account's follower count, oldest first."""
    found = (item.evidence or {}).get("jumps") if item.kind == "follower_jump" else None
    return [
        Jump(
            int(j["before"]),
            int(j["after"]),
            datetime.fromisoformat(j["at"]),
            datetime.fromisoformat(j["since"]) if j.get("since") else None,
        )
        for j in found or []
    ]


@dataclass(frozen=True)
class Signup:
    """An account of a registration batch (art10) as its ``signup_batch`` item lists it."""

    account_id: str
    name: str | None
    registered_at: datetime


@dataclass(frozen=True)
class SignupBatch:
    """What a ``signup_batch`` item shows: the skeleton its accounts' names share, the
    accounts it lists (the first registered), how many the batch holds (its reach) and how
    many of them it does not list, whom its confirmation charges all the same."""

    skeleton: str
    accounts: list[Signup]
    size: int
    unlisted: int


def signup_batch(item: views.Item) -> SignupBatch | None:
    """A ``signup_batch`` item's evidence; None for an item of another kind."""
    if item.kind != signups.KIND:
        return None
    evidence = item.evidence or {}
    return SignupBatch(
        str(evidence.get("skeleton", "")),
        [
            Signup(str(a["account_id"]), a.get("name"), datetime.fromisoformat(a["registered_at"]))
            for a in evidence.get("accounts", [])
        ],
        item.reach,
        int(evidence.get(signups.UNLISTED, 0)),
    )


@dataclass(frozen=True)
class Together:
    """A registration batch that members of a coordinated batch were registered in (evidence
    :data:`~service.review.signups.SIGNUP_BATCHES`)."""

    item_id: int
    skeleton: str
    accounts: list[str]


def registered_together(item: views.Item) -> list[Together]:
    """The registration batches a cluster item's members were registered in."""
    found = (item.evidence or {}).get(signups.SIGNUP_BATCHES, [])
    return [Together(int(b["item_id"]), str(b["skeleton"]), list(b["accounts"])) for b in found]


@dataclass(frozen=True)
class Finding:
    """What found a post's engagement abnormal (art12), as its ``engagement`` item's evidence
    keeps it (:func:`service.review.engagement.findings`)."""

    post_id: str
    check: str
    at: datetime
    facts: Mapping[str, Any]
    """The counts it weighed, by their names in the evidence."""

    def said(self, t: Words) -> str:
        """The counts in ``t``'s words: a jump's count, before and after, and what it was
        weighed against; a ratio's two sides."""
        facts = {k: _number(v) for k, v in self.facts.items()}
        if self.check != "jump":
            return t(f"engagement.{self.check}").format(**facts)
        weighed = "typical" if self.facts.get("typical") is not None else "followers"
        count = t(f"engagement.count.{self.facts['count']}")
        return t(f"engagement.jump.{weighed}").format(**{**facts, "count": count})


def _number(value: Any) -> Any:
    """A count with its thousands marked; a median, which may fall between two, to a tenth."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{value:,.0f}" if isinstance(value, int | float) else value


def findings(item: views.Item) -> list[Finding]:
    """An ``engagement`` item's findings, oldest first."""
    found = (item.evidence or {}).get("findings") if item.kind == engagement.KIND else None
    return [
        Finding(
            str(f["post_id"]),
            str(f["check"]),
            datetime.fromisoformat(f["at"]),
            {k: v for k, v in f.items() if k not in ("post_id", "check", "at")},
        )
        for f in found or []
    ]


@dataclass(frozen=True)
class Moved:
    """A post whose findings left an ``engagement`` item: it turned out to be another
    account's (:data:`~service.review.engagement.MOVED`)."""

    post_id: str
    account_id: str
    """The account it went to."""
    at: datetime
    kept: bool
    """Whether the item still lists the post's findings: a confirmation keeps those it was
    decided on, for the account's appeal; an undecided item drops them (and a later
    confirmation of it rests on the others)."""


def moved(item: views.Item) -> list[Moved]:
    """The posts an ``engagement`` item's findings left with, oldest first."""
    if item.kind != engagement.KIND:
        return []
    evidence = item.evidence or {}
    listed = {str(f["post_id"]) for f in evidence.get("findings", [])}
    return [
        Moved(
            str(m["post_id"]),
            str(m["account_id"]),
            datetime.fromisoformat(m["at"]),
            str(m["post_id"]) in listed,
        )
        for m in evidence.get(engagement.MOVED, [])
    ]


@dataclass(frozen=True)
class ProtectedUse:
    """A protected name an account's name holds, as its ``impersonation`` item keeps it."""

    entry_id: int
    name: str
    kind: str


@dataclass(frozen=True)
class Impersonation:
    """What an ``impersonation`` item shows (art8): the account's name when it was flagged, the
    protected names it holds, and the article the item rests on, in its words."""

    name: str | None
    entries: list[ProtectedUse]
    article: str


def impersonation(item: views.Item, articles: dict[str, str]) -> Impersonation | None:
    """An ``impersonation`` item's evidence, with its article's text from ``articles``; None
    for an item of another kind."""
    if item.kind != protected.KIND:
        return None
    evidence = item.evidence or {}
    return Impersonation(
        evidence.get("name"),
        [
            ProtectedUse(int(p["id"]), str(p["name"]), str(p["kind"]))
            for p in evidence.get("protected", [])
        ],
        articles.get(str(evidence.get("basis")), ""),
    )


def dormancy_dates(item: views.Item) -> dict[str, datetime]:
    """When a dormant account's item says the platform was warned (``warned_at``) and the
    dormancy took effect (``takes_effect``), as the sweep found them: the reviewer sees that the
    holder could have kept the account. Those it does not say are left out (no warning under
    the policy then, or an item opened before its evidence said them)."""
    evidence = item.evidence or {}
    return {
        key: datetime.fromisoformat(evidence[key])
        for key in ("warned_at", "takes_effect")
        if evidence.get(key)
    }


def cluster_size(item: views.Item) -> int | None:
    """How many posts the item's cluster holds: its own count, where the members listed stop
    at the first 100 it keeps (and the timeline at those the live window still holds)."""
    evidence = item.evidence or {}
    cluster = _cluster(item)
    if cluster is not None and "size" in cluster:
        return int(cluster["size"])
    return len(evidence["members"]) if "members" in evidence else None


EXCERPT_CHARS = 40
"""Characters of a post's text its queue row shows: a line of the queue's table."""


def excerpt(start: str, cut: bool) -> str:
    """A post text's ``start`` on one line (its line breaks and runs of spaces one space),
    ending in an ellipsis where the text was ``cut``."""
    return " ".join(start.split()) + ("…" if cut else "")


def queue_row(item: views.Item, now: datetime, start: tuple[str, bool] | None = None) -> QueueRow:
    """The queue's row of ``item``; ``start``, the first characters of its post's text and
    whether it goes on (:meth:`~service.storage.console_sql.ConsoleReads.excerpts`)."""
    record = record_of(item) or {}
    score = record.get("scores", {}).get(item.head) if item.head else None
    held = impersonation(item, {})
    return QueueRow(
        item,
        None if score is None else float(score),
        cluster_size(item),
        item.deadline is not None and item.deadline < now and item.status not in FINAL,
        (now - item.enqueued_at).total_seconds(),
        next(reversed(jumps(item)), None),
        tuple(p.name for p in held.entries) if held else (),
        next(reversed(findings(item)), None),
        None if start is None else excerpt(*start),
        signup_batch(item),
    )


def basis_of(item: views.Item, policy: Policy) -> str:
    """The article a confirmation of the item's head rests on, offered as the default basis.
    Fake followers and engagement are read off the head, not the kind: a report of either (its
    category the head of its item) rests on art12 as a follower jump or an engagement item does."""
    if item.head == followers.CATEGORY:
        return policy.followers.basis
    if item.kind == protected.KIND:
        return policy.registration.protected_basis
    if item.head == engagement.CATEGORY:
        return policy.engagement.basis
    if item.kind == dormancy.KIND:
        return policy.dormancy.basis
    if item.head == signups.CATEGORY:
        return policy.registration.batch_basis
    rule = next((r for risk, r in policy.risks.items() if risk == item.head), None)
    return rule.reason.code.rsplit(".", 1)[0] if rule else ""


def age_buckets(t: Words) -> list[str]:
    """The dashboard's age buckets (:data:`AGE_BUCKETS_H`) in ``t``'s words, each range in the
    unit of its upper edge (4-24 hours, 1-3 days)."""
    edges = [hours * 3600 for hours in AGE_BUCKETS_H]
    ranges = []
    for low, high in pairwise(edges):
        unit, size = unit_of(high)
        ranges.append(t(f"unit.{unit}").format(n=f"{low // size}-{high // size}"))
    under = t("under").format(span=duration(edges[0], t))
    return [under, *ranges, t("over").format(span=duration(edges[-1], t))]


FLAGGED_DAYS = 14
"""The dates the dashboard counts flagged items on, today's the last."""


@dataclass(frozen=True)
class Tallies:
    """What the dashboard draws, read at ``now``, its per-day counts on the dates of ``zone``:
    the same for every language, so read once for all of them (the reads scan the queue)."""

    now: datetime
    zone: ZoneInfo
    flagged: dict[str, dict[str, int]]
    ages: list[int]
    decisions: dict[str, dict[str, int]]
    appeals: dict[str, int]
    scores: list[dict[str, float]]


def tallies(reads: ConsoleReads, now: datetime, zone: ZoneInfo, policy: Policy) -> Tallies:
    return Tallies(
        now,
        zone,
        flagged=reads.flagged_per_day(now, FLAGGED_DAYS, zone),
        ages=reads.open_by_age(now),
        decisions=reads.decisions_per_reviewer(now, 7),
        appeals=reads.appeal_outcomes(),
        scores=reads.recent_scores(now, policy.version),
    )


def scores_said(tallied: Tallies, policy: Policy, t: Words, worded: Worded) -> tuple[str, str]:
    """The score plots' title and what they count, in ``t``'s words: the records the policy
    stores (its ``persist`` decisions: the shipped policy's never the posts that passed, which
    storage then does not keep); how many (under the current policy, whose thresholds the
    plots draw), and whether only the newest of the day."""
    stored = t("list_separator").join(worded("decision", d) for d in policy.persist)
    title = t("score_dist").format(decisions=stored)
    counted = len(tallied.scores)
    key = "scores_counted_newest" if counted >= MAX_SCORES else "scores_counted"
    said = [t(key).format(n=f"{counted:,}")]
    if "pass" not in policy.persist:
        said.append(t("passed_not_stored"))
    return title, t("clause_separator").join(said)


def flagged_title(tallied: Tallies, t: Words) -> str:
    """The per-day plot's title, naming the zone whose dates it counts by its offset when the
    tallies were read."""
    return t("flagged_per_day").format(zone=offset(tallied.now.astimezone(tallied.zone)))


def dashboard(tallied: Tallies, policy: Policy, t: Words, worded: Worded) -> dict[str, Markup]:
    """The dashboard's plots of ``tallied`` in the reader's language: their titles (a plot's
    accessible name; the template captions each) as ``t`` says them, heads, actions and
    statuses as ``worded(family, code word)`` does."""
    days = [d.isoformat() for d in days_back(tallied.now, tallied.zone, FLAGGED_DAYS)]
    flagged, decisions, appeals = tallied.flagged, tallied.decisions, tallied.appeals
    reviewers = sorted(decisions)
    scores = tallied.scores
    nothing = t("no_data")
    out = {
        "flagged": plots.lines(
            [d[5:] for d in days],
            {
                worded("head", head): [flagged[head].get(d, 0) for d in days]
                for head in sorted(flagged)
            },
            flagged_title(tallied, t),
            no_data=nothing,
        ),
        "ages": plots.bars(
            age_buckets(t), [[n] for n in tallied.ages], t("queue_age"), no_data=nothing
        ),
        "reviewers": plots.bars(
            reviewers,
            [[decisions[r].get(a, 0) for a in ACTIONS] for r in reviewers],
            t("per_reviewer"),
            legend=[worded("action", a) for a in ACTIONS],
            no_data=nothing,
        ),
        "appeals": plots.bars(
            [worded("status", s) for s in sorted(appeals)],
            [[appeals[s]] for s in sorted(appeals)],
            t("appeal_outcomes"),
            no_data=nothing,
        ),
    }
    stored, _ = scores_said(tallied, policy, t, worded)
    for risk, rule in policy.risks.items():
        values = [s[risk] for s in scores if risk in s]
        title = f"{stored}: {worded('head', risk)}"
        out[f"scores:{risk}"] = plots.histogram(
            values, rule.review, title, no_data=nothing, marked=t("review_at")
        )
    return out
