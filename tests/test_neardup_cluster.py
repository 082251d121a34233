"""Clusters: earliest source, coordinated batches of K accounts within T, bounded memory."""

from __future__ import annotations

from service.neardup.cluster import ClusterBook, Member

MIN = 60.0


def book(k: int = 5, t_min: float = 30) -> ClusterBook:
    return ClusterBook(batch_accounts=k, batch_s=t_min * MIN, max_members=10, max_accounts=50)


def test_k_distinct_accounts_within_t_make_a_batch_at_the_kth() -> None:
    b = book()
    cid = None
    for i in range(6):
        cluster = b.add(Member(f"p{i}", f"a{i}", i * MIN), cid)
        cid = cluster.id
        assert (cluster.batch_at is not None) == (i >= 4)
    assert cluster.batch_at == 4 * MIN
    assert cluster.batch_accounts == ["a0", "a1", "a2", "a3", "a4"]
    assert [c.id for c in b.flagged(10)] == [cid]


def test_accounts_spread_beyond_t_or_one_account_repeating_are_no_batch() -> None:
    b = book()
    slow = b.add(Member("s0", "a0", 0.0), None)
    for i in range(1, 8):
        b.add(Member(f"s{i}", f"a{i}", i * 20 * MIN), slow.id)
    flood = b.add(Member("f0", "same", 0.0), None)
    for i in range(1, 100):
        b.add(Member(f"f{i}", "same", float(i)), flood.id)
    assert slow.batch_at is None and flood.batch_at is None
    assert b.flagged(10) == []


def test_posts_arriving_newest_first_are_judged_by_their_times() -> None:
    # five accounts an hour apart, sent newest first: no five of them within T
    b = book()
    cluster = b.add(Member("p4", "a4", 4 * 60 * MIN), None)
    for i in (3, 2, 1, 0):
        b.add(Member(f"p{i}", f"a{i}", i * 60 * MIN), cluster.id)
    assert cluster.batch_at is None and len(cluster.recent) == 1
    # four within minutes, then a copy dated two days earlier: it does not complete the batch
    late = book()
    burst = late.add(Member("b0", "a0", 3000 * MIN), None)
    for i in range(1, 4):
        late.add(Member(f"b{i}", f"a{i}", (3000 + 2 * i) * MIN), burst.id)
    late.add(Member("old", "a9", 120 * MIN), burst.id)
    assert burst.batch_at is None and "a9" not in burst.recent
    late.add(Member("b4", "a4", 3007 * MIN), burst.id)
    assert burst.batch_at == 3007 * MIN


def test_the_earliest_post_is_the_source_even_when_it_arrives_late() -> None:
    b = book()
    cluster = b.add(Member("second", "a1", 100.0), None)
    b.add(Member("first", "a0", 50.0), cluster.id)
    assert cluster.earliest.post_id == "first"
    assert (cluster.first_at, cluster.last_at) == (50.0, 100.0)


def test_a_flood_grows_the_count_but_not_the_members_kept() -> None:
    b = book()
    cluster = b.add(Member("p0", "a0", 0.0), None)
    for i in range(1, 10_000):
        b.add(Member(f"p{i}", f"a{i}", float(i)), cluster.id)
    assert cluster.size == 10_000
    assert len(cluster.members) == 10 and len(cluster.accounts) == 50
    assert cluster.distinct_accounts == 10_000
    assert len(cluster.recent) <= 64


def test_accounts_count_the_flagged_batches_they_joined_in_a_week() -> None:
    b = book(k=2)
    for n, start in enumerate((0.0, 3600.0, 9 * 24 * 3600.0)):
        c = b.add(Member(f"x{n}", "bot", start), None)
        b.add(Member(f"y{n}", f"other{n}", start + 1), c.id)
    assert b.account_batches("bot", 3600.0 + 2) == 2
    assert b.account_batches("bot", 9 * 24 * 3600.0 + 2) == 1
    assert b.account_batches("nobody", 0.0) == 0


def test_clusters_leave_with_their_last_post() -> None:
    b = book()
    cluster = b.add(Member("p0", "a0", 0.0), None)
    b.expire([cluster.id], horizon=-1.0)
    assert b.get(cluster.id) is cluster
    b.expire([cluster.id], horizon=1.0)
    assert b.get(cluster.id) is None
