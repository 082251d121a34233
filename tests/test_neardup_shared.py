"""The near-duplicate window and clusters in the real Redis (127.0.0.1:6379): shared by two
processes, bounded, expiring, and the local fallback while Redis is away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import redis
from servicekit import Proxy, banked_rumour

from service.neardup import NearDuplicates
from service.neardup.match import CROWD, EDITED, HELD, TAKEN, TOO_OLD, UNSHARED, Finding
from service.neardup.shared import LAYOUT
from service.neardup.store import StoreUnavailableError
from service.policy import load_policy
from service.record import Post
from service.settings import Settings

REDIS = os.environ.get("QINGLANG_TEST_REDIS", "redis://127.0.0.1:6379/0")
TEMPLATE = "网传某地明天起全市停水三天，自来水厂已被污染，请大家赶紧囤水并转给家人朋友！"
NOW = 1_700_000_000.0
OTHER = "周末和家人去公园散步，天气很好，拍了几张荷花的照片，晚上吃了火锅"


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"test:{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)


def shared(prefix: str, url: str | None = REDIS, **settings: object) -> NearDuplicates:
    configured = Settings(redis_url=url, neardup_redis_prefix=prefix, **settings)  # type: ignore[arg-type]
    near = NearDuplicates.from_settings(configured, load_policy(configured.policy_file))
    near.clock = lambda: NOW
    return near


def variant(i: int) -> str:
    return f"{'速看！' if i % 2 else ''}{TEMPLATE.replace('三', str(i))}"


def post(i: int, account: str | None = None, **kw: object) -> Post:
    return Post(
        id=f"p{i}",
        text=variant(i),
        account_id=account or f"acct{i}",
        created_at=NOW - 1000 + 60 * i,
        **kw,
    )


def test_two_instances_see_one_window_and_one_batch(prefix: str) -> None:
    first, second = shared(prefix), shared(prefix)
    a = first.observe([post(0), post(1), post(2)], [0.0] * 3)
    b = second.observe([post(3), post(4), post(5)], [0.0] * 3)
    assert a[0].cluster is None and a[2].cluster is not None
    assert [f.scores["coordination"] for f in b] == [0.8, 1.0, 1.0]
    assert b[-1].cluster is not None and b[-1].cluster.earliest.id == "p0"
    cid = b[-1].cluster.id
    cluster = first.cluster(cid)
    assert cluster is not None and cluster.size == 6
    assert [m.post_id for m in cluster.members] == [f"p{i}" for i in range(6)]
    assert cluster.batch_accounts == [f"acct{i}" for i in range(5)]
    assert [c.id for c in first.flagged(10)] == [cid]
    (claim,) = second.observe([post(9, "thief", declared_original=True)], [0.0])
    assert claim.evidence["fake_originality"]["earlier_post"] == "p0"


def test_two_processes_share_the_window(prefix: str) -> None:
    script = (
        "import json, sys\n"
        "from service.neardup import NearDuplicates\n"
        "from service.policy import load_policy\n"
        "from service.record import Post\n"
        "from service.settings import Settings\n"
        "s = Settings()\n"
        "near = NearDuplicates.from_settings(s, load_policy(s.policy_file))\n"
        "posts = [Post.model_validate(p) for p in json.loads(sys.argv[1])]\n"
        "found = near.observe(posts, [0.0] * len(posts))\n"
        "print(json.dumps([[f.scores.get('coordination'), f.degraded] for f in found]))\n"
    )
    env = {**os.environ, "QINGLANG_REDIS_URL": REDIS, "QINGLANG_NEARDUP_REDIS_PREFIX": prefix}
    outputs = []
    for part in ([0, 1, 2], [3, 4]):
        posts = json.dumps([post(i).model_dump() for i in part], ensure_ascii=False)
        done = subprocess.run(
            [sys.executable, "-c", script, posts],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[1] == [[0.8, False], [1.0, False]]


def test_the_same_post_twice_is_counted_once_and_keys_expire(prefix: str) -> None:
    near = shared(prefix)
    near.observe([post(0), post(1)], [0.0, 0.0])
    (again,) = near.observe([post(1)], [0.0])
    assert again.cluster is not None and again.cluster.size == 2
    client = redis.Redis.from_url(REDIS)
    ttls = [client.ttl(k) for k in client.scan_iter(f"{prefix}:*") if not k.endswith(b":clock")]
    window = (72 + 12) * 3600
    assert ttls and all(0 < t <= window for t in ttls)


@pytest.fixture(params=["local", "redis"])
def either(request: pytest.FixtureRequest, prefix: str) -> NearDuplicates:
    """The embedded store or Redis: what the two must do alike."""
    return shared(prefix, REDIS if request.param == "redis" else None)


def test_both_stores_count_a_post_not_indexed_once(either: NearDuplicates) -> None:
    either.observe([post(0)], [0.0])
    old = post(1).model_copy(update={"created_at": NOW - 200 * 3600})
    sizes = [f.cluster.size for f in either.observe([old] * 3, [0.0] * 3) if f.cluster]
    assert sizes == [2, 2, 2]
    flood = [
        Post(id=f"f{i}", text=TEMPLATE, account_id=f"s{i}", created_at=NOW)
        for i in range(CROWD + 1)
    ]
    found = either.observe(flood, [0.0] * len(flood))
    (again,) = either.observe(flood[-1:], [0.0])  # crowded out of the index
    assert again.cluster is not None and found[-1].cluster is not None
    assert again.cluster.size == found[-1].cluster.size


def test_both_stores_match_a_late_post_against_every_live_post(either: NearDuplicates) -> None:
    either.observe([post(0)], [0.0])
    # two days late: in the window, and four 12-hour buckets before the post it copies
    late = post(1).model_copy(update={"created_at": NOW - 2 * 86400})
    (found,) = either.observe([late], [0.0])
    assert found.cluster is not None and found.cluster.size == 2
    assert found.cluster.earliest.id == "p1"


def test_both_stores_list_a_rumours_copies_in_the_window_by_its_own_clock(
    either: NearDuplicates,
) -> None:
    # a backfill dated four days before the clock (the window is 72 hours), scored before the
    # rumour was banked: the window's newest post, not the wall clock, says what is live
    backfill = [post(i).model_copy(update={"created_at": NOW - 96 * 3600 + i}) for i in range(3)]
    rumour = banked_rumour(either, TEMPLATE)
    assert either.copies(rumour) == []  # a window with no post yet
    either.observe(backfill, [0.0] * 3)
    assert [m.entry.post_id for m in either.copies(rumour)] == ["p0", "p1", "p2"]
    # asking moves no clock: a copy dated within the window of the newest post is still matched
    (late,) = either.observe([post(3).model_copy(update={"created_at": NOW - 160 * 3600})], [0.0])
    assert late.cluster is not None and TOO_OLD not in late.warnings


def test_both_stores_date_a_batch_a_late_post_completes_when_its_k_accounts_had_posted(
    either: NearDuplicates,
) -> None:
    # p1 to p4 a minute apart, then p0, dated a minute before p1, arrives: the fifth account
    # within T. The batch was there once p4 was posted, not at p0's time, when one account had
    (*_, last) = either.observe([post(i) for i in (1, 2, 3, 4, 0)], [0.0] * 5)
    assert last.scores["coordination"] == 1.0
    assert last.evidence["coordination"]["batch_at"] == post(4).created_at
    assert last.cluster is not None and last.cluster.earliest.id == "p0"
    (flagged,) = either.flagged(10)
    assert flagged.batch_at == post(4).created_at


def test_the_earlier_text_is_kept_in_redis_with_its_post(prefix: str) -> None:
    first, second = shared(prefix), shared(prefix)
    original = post(0).model_copy(update={"text": "原\x00文" + variant(0)})  # any character
    first.observe([original], [0.0])
    (found,) = second.observe([post(1, declared_original=True)], [0.0])
    assert found.evidence["fake_originality"]["earlier_text"] == original.text
    entry = second.signature_of(None, "p0")
    assert entry is not None and entry.shape == (second.fingerprinter.num_perm,)


def test_a_flood_grows_the_cluster_not_the_index(prefix: str) -> None:
    near = shared(prefix)
    flood = [
        Post(id=f"f{i}", text=TEMPLATE, account_id="spam", created_at=NOW + i)
        for i in range(CROWD + 150)
    ]
    found = near.observe(flood, [0.0] * len(flood))
    assert found[-1].cluster is not None and found[-1].cluster.size == len(flood)
    client = redis.Redis.from_url(REDIS)
    indexed = sum(client.hlen(k) for k in client.scan_iter(f"{prefix}:{LAYOUT}:e:*"))
    assert indexed == CROWD


def test_without_redis_posts_are_matched_locally_and_marked_degraded(prefix: str) -> None:
    proxy = Proxy(6379)
    try:
        near = shared(prefix, f"redis://127.0.0.1:{proxy.port}/0", neardup_redis_retry_s=30.0)
        clock = [NOW]
        near.clock = lambda: clock[0]
        assert not near.observe([post(0)], [0.0])[0].degraded
        proxy.refuse()
        blank = Post(id="b", text="转发微博", account_id="b", created_at=NOW)
        down = near.observe([post(1), post(2), blank], [0.0] * 3)
        # whether a post with no fingerprint is an edit is the shared index's to say too
        assert all(f.degraded and UNSHARED in f.warnings for f in down)
        assert down[1].cluster is not None  # the local index still clusters
        assert near.problem is not None
        # the clusters are the shared index's to tell, not the posts this process saw since
        with pytest.raises(StoreUnavailableError):
            near.cluster(down[1].cluster.id)
        with pytest.raises(StoreUnavailableError):
            near.flagged(10)
        proxy.restore()
        # a probe that finds it back ends the outage before the retry period does
        assert near.check() is None and near.problem is None
        clock[0] += 31
        (back,) = near.observe([post(3)], [0.0])
        assert not back.degraded and near.problem is None
        assert back.cluster is not None and back.cluster.earliest.id == "p0"
    finally:
        proxy.close()


def test_both_stores_match_an_edited_post_on_its_new_text(either: NearDuplicates) -> None:
    k = 5
    found = either.observe([post(i) for i in range(k)], [0.0] * k)
    assert found[-1].cluster is not None and found[-1].scores["coordination"] == 1.0
    rumour = found[-1].cluster.id
    # the first post of the batch edited into something else: its own content is matched
    edit = post(0).model_copy(update={"text": OTHER})
    (edited,) = either.observe([edit], [0.0])
    assert edited.cluster is None and edited.scores["coordination"] == 0.2
    assert EDITED in edited.warnings
    # its new text is indexed, its old one is not: a copy of each finds what the post says now
    copy = Post(id="q", text=OTHER + "！", account_id="x", created_at=NOW)
    (found_copy,) = either.observe([copy], [0.0])
    assert found_copy.cluster is not None and found_copy.cluster.earliest.id == "p0"
    assert found_copy.cluster.size == 2 and found_copy.cluster.id != rumour
    (later,) = either.observe([post(k)], [0.0])
    assert later.cluster is not None and later.cluster.id == rumour
    assert later.cluster.size == k + 1  # what the batch posted stays counted
    # the same edit again is the same post: the same answer, counted once
    (again,) = either.observe([edit], [0.0])
    assert again.cluster is not None and again.cluster.size == 2 and EDITED not in again.warnings


def test_both_stores_count_an_edit_that_stays_a_copy_once(either: NearDuplicates) -> None:
    found = either.observe([post(i) for i in range(3)], [0.0] * 3)
    assert found[-1].cluster is not None
    # a typo fixed half a day later, in another time bucket: the same member of the cluster
    either.clock = lambda: NOW + 43_200
    fixed = post(1).model_copy(
        update={"text": variant(1).replace("赶紧", "尽快"), "created_at": NOW + 43_200}
    )
    (edited,) = either.observe([fixed], [0.0])
    assert edited.warnings == [EDITED]
    assert edited.cluster is not None and edited.cluster.id == found[-1].cluster.id
    assert edited.cluster.size == 3
    # later copies find it at its new text and time, once
    signature = either.signature_of(fixed.text, None)
    assert signature is not None
    keys = either.local.index.keys(signature)
    copies = either.store.match(signature, keys, NOW + 43_260, None)
    assert sorted(m.entry.post_id for m in copies) == ["p0", "p1", "p2"]
    assert next(m for m in copies if m.entry.post_id == "p1").similarity == 1.0


def members(near: NearDuplicates, cid: str) -> list[str]:
    cluster = near.cluster(cid)
    assert cluster is not None
    return [m.post_id for m in cluster.members]


def test_both_stores_count_a_post_once_in_a_cluster_however_often_it_is_edited(
    either: NearDuplicates,
) -> None:
    found = either.observe([post(i) for i in range(3)], [0.0] * 3)
    assert found[-1].cluster is not None
    rumour = found[-1].cluster.id
    walk = Post(id="y0", text=OTHER, account_id="y", created_at=NOW - 600)
    (other,) = either.observe([walk, walk.model_copy(update={"id": "y1"})], [0.0, 0.0])[1:]
    assert other.cluster is not None
    # A, then B (a copy in another cluster), then A again, then B, then A with a typo fixed
    texts = [OTHER + "！", variant(1), OTHER, variant(1).replace("赶紧", "尽快")]
    edits = [post(1).model_copy(update={"text": t}) for t in texts]
    records = [either.observe([e], [0.0])[0] for e in edits]
    assert all(EDITED in r.warnings for r in records)
    assert [r.cluster.id if r.cluster else None for r in records] == [other.cluster.id, rumour] * 2
    assert [r.cluster.size if r.cluster else 0 for r in records] == [3, 3, 3, 3]
    assert members(either, rumour) == ["p0", "p1", "p2"]
    assert members(either, other.cluster.id) == ["y0", "y1", "p1"]
    (later,) = either.observe([post(3)], [0.0])
    assert later.cluster is not None and later.cluster.size == 4
    assert later.cluster.accounts == 4


def test_both_stores_count_a_post_once_after_an_edit_with_no_copy_and_back(
    either: NearDuplicates,
) -> None:
    # the source of a batch edited into a text of its own, then back: still its one source
    k = 5
    found = either.observe([post(i) for i in range(k)], [0.0] * k)
    assert found[-1].cluster is not None and found[-1].cluster.batch
    rumour = found[-1].cluster.id
    (alone,) = either.observe([post(0).model_copy(update={"text": OTHER})], [0.0])
    assert alone.cluster is None
    (back,) = either.observe([post(0)], [0.0])
    assert EDITED in back.warnings and back.cluster is not None and back.cluster.id == rumour
    assert back.cluster.size == k and back.cluster.earliest.id == "p0"
    assert back.evidence["coordination"]["accounts"] == k
    # a copy of its text finds it, and takes it for the source
    (claim,) = either.observe([post(9, "thief", declared_original=True)], [0.0])
    assert claim.cluster is not None and claim.cluster.size == k + 1
    assert claim.evidence["fake_originality"]["earlier_post"] == "p0"
    assert members(either, rumour) == [*(f"p{i}" for i in range(k)), "p9"]


def test_both_stores_count_a_copy_of_an_edit_that_started_a_cluster_once(
    either: NearDuplicates,
) -> None:
    # the text an edit starts is a cluster of its own; edited away and back, the post is in it
    either.observe([post(0)], [0.0])
    mine = post(0).model_copy(update={"text": OTHER})
    (first,) = either.observe([mine], [0.0])
    copy = Post(id="q", text=OTHER + "！", account_id="x", created_at=NOW - 900)
    (copied,) = either.observe([copy], [0.0])
    assert copied.cluster is not None and copied.cluster.earliest.id == "p0"
    either.observe([post(0)], [0.0])
    (again,) = either.observe([mine], [0.0])
    assert EDITED in first.warnings and EDITED in again.warnings
    assert again.cluster is not None and again.cluster.id == copied.cluster.id
    assert again.cluster.size == 2 and members(either, again.cluster.id) == ["p0", "q"]


# Found by a search of random edits of TEMPLATE: EARLIER and LATER, two texts of one post in one
# bucket; COPY shares a band with EARLIER, none with LATER, and is a near-copy of LATER.
EARLIER = TEMPLATE
LATER = "网传某地明天起生一停中地就，自来水厂已被污了，请大了赶紧囤水并转给家人朋友！"
COPY = "网传某地明天起全市同水三天，自来水厂已被污染，请大家赶紧囤水用转给家人朋友出"


def test_both_stores_find_an_edited_post_by_the_bands_of_its_text_alone(
    either: NearDuplicates,
) -> None:
    signatures = [either.signature_of(t, None) for t in (EARLIER, LATER, COPY)]
    earlier, later, copy = [set(either.local.index.keys(s)) for s in signatures if s is not None]
    assert copy & earlier and not copy & later
    edit = Post(id="e", text=EARLIER, account_id="a", created_at=NOW)
    edited = edit.model_copy(update={"text": LATER, "created_at": NOW + 60})
    either.observe([edit, edited], [0.0, 0.0])
    # Redis keeps the earlier text's band fields in the bucket; the window drops them
    copies = [Post(id=t[:1], text=t, account_id="b", created_at=NOW + 120) for t in (COPY, LATER)]
    found, exact = (either.observe([c], [0.0])[0] for c in copies)
    assert found.cluster is None
    assert exact.cluster is not None and exact.cluster.earliest.id == "e"


def test_both_stores_forget_a_post_once_the_window_has_passed_it(either: NearDuplicates) -> None:
    either.observe([post(i) for i in range(3)], [0.0] * 3)
    old = Post(id="o", text=OTHER, account_id="z", created_at=NOW - 200 * 3600)
    (noted,) = either.observe([old], [0.0])
    assert TOO_OLD in noted.warnings
    later = NOW + 60 * 3600
    either.clock = lambda: later
    (kept,) = either.observe([post(3).model_copy(update={"created_at": later})], [0.0])
    assert kept.cluster is not None and kept.cluster.size == 4
    # 90 hours on: the bucket of p0 to p2 has left the window, and the id noted for "o" is past
    # the window and a bucket; the cluster lives on with p3
    last = NOW + 90 * 3600
    either.clock = lambda: last
    fixed = post(1).model_copy(
        update={"text": variant(1).replace("赶紧", "尽快"), "created_at": last}
    )
    (again,) = either.observe([fixed], [0.0])
    # a post the window has passed is no entry, though Redis keeps its keys until they expire
    assert either.store.get("p0") is None and either.store.get("p3") is not None
    assert EDITED not in again.warnings
    assert again.cluster is not None and again.cluster.size == 5
    (other,) = either.observe([old.model_copy(update={"text": OTHER + "！"})], [0.0])
    assert EDITED not in other.warnings


def test_both_stores_take_a_text_edited_into_boilerplate_out_of_the_window(
    either: NearDuplicates,
) -> None:
    either.observe([post(0)], [0.0])
    blank = post(0).model_copy(update={"text": "转发微博"})
    unknown = blank.model_copy(update={"id": "never"})
    found = either.observe([unknown, blank, post(1)], [0.0] * 3)
    assert found[0] == Finding() and found[1] == Finding(warnings=[EDITED])
    # the earlier text left: its copy is alone
    assert found[2].cluster is None
    assert either.observe([blank], [0.0]) == [Finding()]
    (back,) = either.observe([post(0)], [0.0])
    assert back.warnings == [EDITED]
    assert back.cluster is not None and back.cluster.size == 2
    assert back.cluster.earliest.id == "p0"  # by its time
    # in one call: a post, that post blanked (withdrawn in its own add), and a copy of its text
    walk = Post(id="w", text=OTHER, account_id="w", created_at=NOW)
    quick = [walk, walk.model_copy(update={"text": "[蜡烛]"}), walk.model_copy(update={"id": "v"})]
    found = either.observe(quick, [0.0] * 3)
    assert found[1] == Finding(warnings=[EDITED]) and found[2].cluster is None


def test_both_stores_refuse_a_post_id_held_for_another_account(either: NearDuplicates) -> None:
    found = either.observe([post(i) for i in range(3)], [0.0] * 3)
    assert found[-1].cluster is not None
    rumour = found[-1].cluster.id
    old = Post(id="o", text=OTHER, account_id="z", created_at=NOW - 200 * 3600)
    anonymous = Post(id="n", text=OTHER + "！", created_at=NOW)
    either.observe([old, anonymous], [0.0, 0.0])
    # a post id names one account's post (or one without an account): another account, or no
    # account, with any text or none (at the start of a call, and after a post in one), is
    # matched but changes nothing of that post
    blank = "转发微博"
    taken = [
        post(1, "other").model_copy(update={"text": t}) for t in (blank, OTHER, variant(1), blank)
    ]
    taken += [
        post(1).model_copy(update={"account_id": None}),
        old.model_copy(update={"account_id": "y", "text": variant(7)}),
        anonymous.model_copy(update={"account_id": "y"}),
    ]
    refused = either.observe(taken, [0.0] * len(taken))
    assert [HELD in r.warnings and EDITED not in r.warnings for r in refused] == [True] * 7
    assert all(r.cluster is None for r in refused)
    entry = either.store.get("p1")
    assert entry is not None and entry.account_id == "acct1"
    # p1's text is still in the window, in its cluster, which no other account joined
    (copy,) = either.observe([post(3)], [0.0])
    assert copy.cluster is not None and copy.cluster.id == rumour and copy.cluster.size == 4
    cluster = either.cluster(rumour)
    assert cluster is not None and cluster.accounts == {f"acct{i}" for i in range(4)}
    # the account that holds the id may still edit its post
    (edited,) = either.observe([post(1).model_copy(update={"text": OTHER})], [0.0])
    assert EDITED in edited.warnings and HELD not in edited.warnings


def test_both_stores_refuse_an_edit_where_edits_are_refused(either: NearDuplicates) -> None:
    def refusing(posts: list[Post]) -> list[Finding]:
        return either.match(posts, either.sign(posts), [0.0] * len(posts), edits=False)

    found = refusing([post(i) for i in range(3)])
    assert found[-1].cluster is not None
    rumour = found[-1].cluster.id
    edits = [post(1).model_copy(update={"text": t}) for t in (OTHER, "转发微博")]
    refused = refusing([*edits, post(1)])
    assert [r.warnings for r in refused[:2]] == [[TAKEN], [TAKEN]]
    # the text the id has is the same post, counted once; the window is as it was
    assert refused[2].warnings == [] and refused[2].cluster is not None
    assert refused[2].cluster.id == rumour and refused[2].cluster.size == 3
    (copy,) = refusing([post(3)])
    assert copy.cluster is not None and copy.cluster.size == 4


def test_replicas_of_two_layouts_share_no_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS)
    # what a replica of the release before (layout v2: P:w:<post> as cluster, bucket and the
    # text's digest) wrote for p1 of account acct1, in a rolling deploy
    earlier = {
        f"{prefix}:v2:w:p1".encode(): b"c_0123456789abcdef\x0039351\x000123456789abcdef",
        f"{prefix}:v2:clock".encode(): repr(NOW).encode(),
    }
    for key, value in earlier.items():
        client.set(key, value, ex=3600)
    near = shared(prefix)
    (found,) = near.observe([post(1, "other").model_copy(update={"text": OTHER})], [0.0])
    # this layout's replica did not read them (it knows no p1), nor wrote beside them
    assert found.warnings == [] and not found.degraded
    written = set(client.scan_iter(f"{prefix}:*"))
    assert written - earlier.keys()
    assert all(k.startswith(f"{prefix}:{LAYOUT}:".encode()) for k in written - earlier.keys())
    assert {k: client.get(k) for k in earlier} == earlier
