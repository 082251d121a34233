"""The storage of posts' engagement counts (art12, :mod:`service.review.engagement`): a report
is weighed against the post's previous one, the account's reach and its other posts in the
transaction that stores it, and what it finds opens or joins the account's ``engagement``
item in that transaction too."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from service.policy import Policy
from service.policy.governance import Count
from service.review import dormancy, engagement, views
from service.review.engagement import Counts
from service.review.items import ConflictError, NotFoundError
from service.storage.item_steps import OPEN_STATUSES, flag_account, open_item, withdraw
from service.storage.protected_sql import ProtectedSql
from service.storage.repository import Idempotency, reads_only
from service.storage.review_rows import utc
from service.storage.tables import (
    PostEngagement,
    ReviewItem,
    StoredAccount,
    StoredPost,
    StoredRecord,
)
from service.storage.transaction import CodePoints, Tx, locking


class EngagementSql(ProtectedSql):
    """Mixed into :class:`~service.storage.sql.SqlRepository`."""

    def put_engagement(
        self,
        policy: Policy,
        post_id: str,
        account_id: str,
        counts: Counts,
        *,
        idem: Idempotency | None = None,
        now: datetime | None = None,
    ) -> views.Engagement:
        """Store the counts the platform reports for the post of ``account_id`` (a count left
        as None keeps its stored value), and open or join the account's ``engagement`` item
        for what the report finds (:func:`engagement.findings`). A post another account's is
        refused: the account the publish path stored it with, else the one reported before
        (the stored account wins over earlier reports that named another, and the post's row
        moves to it with its findings, :func:`move_post`). A count may fall (reposts and comments
        deleted, likes taken back, fake ones the platform removed): the next jump is weighed
        from it."""
        rules = policy.engagement

        def run(tx: Tx) -> views.Engagement:
            row = tx.session.scalar(
                select(PostEngagement).where(PostEngagement.post_id == post_id).with_for_update()
            )
            stored = tx.session.get(StoredPost, post_id)
            # the publish path's account, where it stored the post with one, as a report's
            # owner is (post_owner): a report that came first, naming another, does not keep
            # the post from its author
            owner = stored.account_id if stored is not None else None
            if owner is None and row is not None:
                owner = row.account_id
            if owner is not None and owner != account_id:
                raise ConflictError(
                    "post_account", post_id=post_id, account_id=owner, given=account_id
                )
            before, since = Counts(), None
            if row is None:
                # a second first report of the post loses the insert and is run again
                row = PostEngagement(post_id=post_id, account_id=account_id)
                tx.session.add(row)
            else:
                # the counts are the post's, whoever the earlier reports named: they stay, and
                # go to its owner (a post stored before the publish path moved it itself)
                move_post(tx, row, account_id)
                before, since = _counts(row), utc(row.reported_at)
            after = before.updated(counts)
            row.reads, row.reposts, row.comments = after.reads, after.reposts, after.comments
            row.likes, row.reposters, row.reported_at = after.likes, after.reposters, tx.now
            known = tx.session.get(StoredAccount, account_id)
            followers = known.followers if known is not None else 0
            growing = engagement.growing(rules, before, after)
            found = engagement.findings(
                rules,
                post_id,
                before,
                counts,
                at=tx.now,
                since=since,
                published=_published(stored),
                followers=followers,
                usual=_usual(tx, policy, account_id, post_id, growing),
            )
            flagged = _flag(tx, post_id, account_id, followers, found) if found else None
            tx.session.flush()
            return views.Engagement(
                post_id=post_id,
                account_id=account_id,
                reads=after.reads,
                reposts=after.reposts,
                comments=after.comments,
                likes=after.likes,
                reposters=after.reposters,
                reported_at=tx.now,
                findings=found,
                item_id=None if flagged is None else flagged.id,
            )

        # retried on a lost race: two first reports of one post both inserting its row, or
        # two first findings of one account both opening its item
        return self._once(policy, now, idem, views.Engagement, run)

    @reads_only
    def get_engagement(self, post_id: str) -> views.EngagementCounts:
        """The post's counts as stored; :class:`NotFoundError` for a post with none, in words
        that say whether the service knows the post (it scored and kept it) or not at all."""
        with self._session() as session:
            row = session.get(PostEngagement, post_id)
            if row is None:
                kept = session.get(StoredPost, post_id) is not None or (
                    session.scalar(
                        select(StoredRecord.id).where(StoredRecord.post_id == post_id).limit(1)
                    )
                    is not None
                )
                raise NotFoundError("no_engagement" if kept else "no_post", post_id=post_id)
            return views.EngagementCounts(
                post_id=row.post_id,
                account_id=row.account_id,
                **vars(_counts(row)),
                reported_at=utc(row.reported_at),
            )


def _flag(
    tx: Tx, post_id: str, account_id: str, followers: int, found: list[dict[str, Any]]
) -> ReviewItem:
    """Open or join the account's ``engagement`` item with ``found``, the findings on its post
    ``post_id``, at the reach of its ``followers``."""
    case = engagement.merge_key(account_id)
    # the item after the post's row, which no other writer locks: a report that finds nothing
    # waits for no item, however many of the account's are reported
    item = flag_account(
        tx,
        open_item(tx, case),
        kind=engagement.KIND,
        merge_key=case,
        account_id=account_id,
        head=engagement.CATEGORY,
        reach=followers,
        listed="findings",
        found=found,
        grown={},
        kept=engagement.FINDINGS_KEPT,
    )
    # the counts are not chained report by report (a platform reports every post many times a
    # day): those that found something are, whole
    tx.record(
        "engagement.flagged",
        f"post:{post_id}",
        {"item": item.id, "account_id": account_id, "findings": found},
    )
    return item


def move_posts(tx: Tx, owners: Mapping[str, str]) -> None:
    """Give each post of ``owners`` (post id: the account the publish path just stored it
    with) whose counts were reported for another account to its owner (:func:`move_post`):
    a post is its author's from the moment the service stores it, and the other account's
    reports are refused from then on. The posts' rows are locked first, in id order, then the
    items, as a report locks its post's row before an item."""
    rows = tx.session.scalars(
        select(PostEngagement)
        .where(PostEngagement.post_id.in_(owners))
        .order_by(CodePoints(PostEngagement.post_id))
        .with_for_update()
    ).all()
    for row in rows:
        move_post(tx, row, owners[row.post_id])


def move_post(tx: Tx, row: PostEngagement, owner: str) -> None:
    """Give the post of ``row`` (locked), with its counts, to ``owner``, the account the
    publish path stored it with, where its reports named another. Its findings were weighed
    against that other account's reach, and would charge it for a post not its own: they leave
    its open ``engagement`` item, which is withdrawn (by the service, its note saying why) once
    it lists none; a confirmed item keeps what its reviewer saw and charged, the post listed
    under :data:`~service.review.engagement.MOVED` in its evidence, for its account's appeal.
    Each finding is weighed again for ``owner`` (:func:`engagement.reweighed`), and those that
    hold open or join its item. The record ``engagement.moved`` says what went where."""
    previous, post_id = row.account_id, row.post_id
    if previous == owner:
        return
    row.account_id = owner
    items = tx.session.scalars(
        locking(
            select(ReviewItem)
            .where(
                ReviewItem.merge_key == engagement.merge_key(previous),
                ReviewItem.status.in_((*OPEN_STATUSES, "confirmed")),
            )
            .order_by(ReviewItem.id)
        )
    ).all()
    moved: list[dict[str, Any]] = []
    withdrawn: list[int] = []
    confirmed: list[int] = []
    mark = {"post_id": post_id, "account_id": owner, "at": tx.now.isoformat()}
    for item in items:
        evidence = item.evidence or {}
        listed: list[dict[str, Any]] = evidence.get("findings", [])
        its = [f for f in listed if f.get("post_id") == post_id]
        if not its:
            continue
        moved += its
        marked = [*evidence.get(engagement.MOVED, []), mark]
        if item.status == "confirmed":
            item.evidence = {**evidence, engagement.MOVED: marked}
            confirmed.append(item.id)
            continue
        left = [f for f in listed if f.get("post_id") != post_id]
        item.evidence = {**evidence, "findings": left, engagement.MOVED: marked}
        if not left:
            withdraw(tx, item, dormancy.SERVICE, _moved_note(post_id, owner))
            withdrawn.append(item.id)
    known = tx.session.get(StoredAccount, owner)
    followers = known.followers if known is not None else 0
    rules = tx.policy.engagement
    jumped = sorted({f["count"] for f in moved if f["check"] == "jump"})
    usual = _usual(tx, tx.policy, owner, post_id, jumped)
    found = [
        kept
        for finding in moved
        if (kept := engagement.reweighed(rules, finding, followers, usual)) is not None
    ]
    flagged = _flag(tx, post_id, owner, followers, found) if found else None
    tx.record(
        "engagement.moved",
        f"post:{post_id}",
        {
            "from": previous,
            "to": owner,
            "findings": len(moved),
            "withdrawn": withdrawn,
            "confirmed": confirmed,
            "item": None if flagged is None else flagged.id,
        },
    )


def _moved_note(post_id: str, owner: str) -> str:
    return (
        f"帖子 {post_id} 属于账号 {owner},其互动异常的发现已随帖子转出,本案不再有发现 / "
        f"post {post_id!r} is account {owner!r}'s: its engagement findings went with it, and "
        "none are left here"
    )


def _counts(row: PostEngagement) -> Counts:
    return Counts(
        reads=row.reads,
        reposts=row.reposts,
        comments=row.comments,
        likes=row.likes,
        reposters=row.reposters,
    )


def _published(stored: StoredPost | None) -> datetime | None:
    """When the post was published, where the service stored it with a time."""
    if stored is None or stored.created_at is None:
        return None
    return datetime.fromtimestamp(stored.created_at, UTC)


def _usual(
    tx: Tx, policy: Policy, account_id: str, post_id: str, counts: list[Count]
) -> dict[Count, float | None]:
    """What the account's other posts ordinarily get of each of ``counts``
    (:func:`engagement.typical`), over its latest reported; read only for counts that grew
    enough to be weighed by it."""
    if not counts:
        return {}
    columns = [getattr(PostEngagement, c) for c in counts]
    rows = tx.session.execute(
        select(*columns)
        .where(PostEngagement.account_id == account_id, PostEngagement.post_id != post_id)
        .order_by(PostEngagement.reported_at.desc())
        .limit(engagement.OTHERS)
    ).all()
    return {
        count: engagement.typical([row[i] for row in rows if row[i] is not None], policy.engagement)
        for i, count in enumerate(counts)
    }
