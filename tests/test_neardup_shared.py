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
from servicekit import Proxy

from service.neardup import NearDuplicates
from service.neardup.match import CROWD, EDITED, UNSHARED
from service.neardup.shared import LAYOUT
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
        down = near.observe([post(1), post(2)], [0.0, 0.0])
        assert all(f.degraded and UNSHARED in f.warnings for f in down)
        assert down[1].cluster is not None  # the local index still clusters
        assert near.problem is not None
        proxy.restore()
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
