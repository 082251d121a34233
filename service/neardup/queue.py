"""What the near-duplicate step puts in the review queue (art18.4, art13): a coordinated batch as
one item listing its members, and each match of the confirmed-rumour bank as an item.

Both are derived from score records, so the publish path and ``qinglang rescore --enqueue`` queue
the same items: a record flagged for coordination in a coordinated batch gives the cluster's
item (merge key ``cluster:ID``: the queue keeps one open item per key; each later post of the
batch finds it open and, the cluster having grown, brings it up to date: size as reach, the
members the window holds, bounded as the cluster keeps them), a record whose rumour reason
cites a bank entry gives the match's item (merge key ``bank:ENTRY:post:ID``). Each is at the
severity of the record's text (:func:`service.record.text_decision`), not of its account's
state.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.record import ScoreRecord, text_decision
from service.review.items import QueueRequest

__all__ = ["QueueRequest", "batch_cluster", "members_in", "requests"]

Members = list[dict[str, str | None]]
"""A cluster's members as the review item lists them: post and account ids."""


def batch_cluster(record: ScoreRecord) -> str | None:
    """The id of the coordinated batch ``record`` was flagged in, if it was."""
    cluster = record.cluster
    if record.flags["coordination"] and cluster is not None and cluster.batch:
        return cluster.id
    return None


def requests(
    record: ScoreRecord, text: str | None, members: dict[str, Members]
) -> list[QueueRequest]:
    """The items ``record`` (of a post with ``text``) gives; ``members`` by cluster id."""
    out: list[QueueRequest] = []
    severity = text_decision(record)
    cid = batch_cluster(record)
    if cid is not None and record.cluster is not None:
        listed = members.get(cid, [])
        out.append(
            QueueRequest(
                kind="cluster",
                merge_key=f"cluster:{cid}",
                head="coordination",
                severity=severity,
                reach=record.cluster.size,
                evidence={"cluster": record.cluster.model_dump(), "members": listed},
                account_id=record.cluster.earliest.account_id,
                model_version=record.model_version,
            )
        )
    for reason in record.reasons:
        rumor = reason.evidence.get("confirmed_rumor")
        if rumor is None:
            continue
        keep = ("confirmed_rumor", "similarity", "notice", "match")
        out.append(
            QueueRequest(
                kind="bank_match",
                merge_key=f"bank:{rumor}:post:{record.id}",
                head="rumor",
                severity=severity,
                reach=0,
                evidence={k: reason.evidence[k] for k in keep if k in reason.evidence},
                post_id=record.id,
                account_id=record.account_id,
                model_version=record.model_version,
                text=text,
            )
        )
    return out


def members_in(records: Iterable[ScoreRecord], cids: set[str]) -> dict[str, Members]:
    """The members of clusters ``cids`` among ``records`` (every post of a batch run's output),
    earliest source first: its own record was written before it had a copy, without a cluster."""
    found: dict[str, Members] = {cid: [] for cid in cids}
    for record in records:
        cluster = record.cluster
        if cluster is None or cluster.id not in found:
            continue
        listed = found[cluster.id]
        first = cluster.earliest
        if not listed and first.id != record.id:
            listed.append({"post_id": first.id, "account_id": first.account_id})
        if not any(m["post_id"] == record.id for m in listed[:1]):
            listed.append({"post_id": record.id, "account_id": record.account_id})
    return found
