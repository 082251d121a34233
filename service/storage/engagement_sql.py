"""The storage of posts' engagement counts (art12, :mod:`service.review.engagement`): a report
is weighed against the post's previous one, the account's reach and its other posts in the
transaction that stores it, and what it finds opens or joins the account's ``engagement``
item in that transaction too."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from service.policy import Policy
from service.policy.governance import Count
from service.review import engagement, views
from service.review.engagement import Counts
from service.review.items import ConflictError, NotFoundError
from service.storage.protected_sql import ProtectedSql
from service.storage.repository import Idempotency, reads_only
from service.storage.review_rows import utc
from service.storage.review_steps import Tx, flag_account, open_item
from service.storage.tables import PostEngagement, StoredAccount, StoredPost, StoredRecord


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
        moves to it). A count may fall (reposts and comments
        deleted, likes taken back, fake ones the platform removed): the next jump is weighed
        from it."""
        rules = policy.engagement
        case = f"engagement:{account_id}"

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
                # the counts are the post's, whoever the earlier reports named: they stay
                row.account_id = account_id
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
            flagged = None
            if found:
                # the item after the post's row, which no other writer locks: a report that
                # finds nothing waits for no item, however many of the account's are reported
                flagged = flag_account(
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
                # the counts are not chained report by report (a platform reports every post
                # many times a day): those that found something are, whole
                tx.record(
                    "engagement.flagged",
                    f"post:{post_id}",
                    {"item": flagged.id, "account_id": account_id, "findings": found},
                )
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
