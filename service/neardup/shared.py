"""The window and the clusters in Redis, shared by every server process and replica.

Layout (``P`` is the key prefix and :data:`LAYOUT`, ``n`` a time bucket of ``bucket_s`` seconds,
``i`` a band):

- ``P:b:n:i`` hash: band key (the band's 60-bit integer,
  :meth:`~service.neardup.index.WindowIndex.batch_keys`) to the ids of the bucket's posts with
  that band, NUL-separated;
- ``P:e:n`` hash: post id to its entry (account, cluster, time, text excerpt, signature);
- ``P:w:<post>``: the post's cluster, bucket, text's digest, when it was noted (empty for a post
  indexed), the clusters its earlier texts were in and its account (empty for none)
  (idempotency, edits, refusals, banking by post id; the rules are
  :mod:`service.neardup.store`'s, how long an id is known included: by the clock, not by the
  key's expiry). An edit's entry is deleted from its bucket; the band fields that
  still name the post there are left to expire with it, and :meth:`RedisStore.match` drops a
  candidate they alone found (what the embedded window would not find: its bands are the
  post's text's);
- ``P:c:<cluster>`` hash (size, first and last time, earliest post, batch time) with ``:m``
  (first members, a list), ``:a`` (accounts, a set) and ``:r`` (accounts by newest post time
  within ``T``, a sorted set); ``P:flagged`` (batches by time) and ``P:ab:<account>`` (the
  batches an account joined, for a week).

Every key expires ``window + bucket`` after its last write (``EXPIRE`` as it is written), so old
buckets leave whole and memory stays bounded with no deletes. Each call is one Lua script, one
round trip (:meth:`RedisStore.withdraw` one for a run of posts): :meth:`RedisStore.match` reads
every live bucket's band hashes (the window before ``P:clock``, the newest time added, as the
embedded store's window) and the candidates' entries; :meth:`RedisStore.add` updates the
cluster, detects the batch and indexes the post atomically, so that two processes adding to one
cluster cannot lose a count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import redis

from service.neardup.cluster import CLUSTER_ID, Cluster, Member, cluster_id
from service.neardup.fingerprint import Signature, digest, similarity
from service.neardup.index import Entry, Keys, Match, band_keys
from service.neardup.store import (
    NO_TEXT,
    Added,
    ClusterState,
    Poster,
    Seen,
    StoreUnavailableError,
    alone,
)

_MATCH = """
local p, exclude, at_s, window, width = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]),
  tonumber(ARGV[5])
local FIRST_KEY = 6
-- at_s empty: a lookup for no post, at the clock (none yet: an empty window)
local clock = tonumber(redis.call('GET', p .. ':clock') or at_s)
if at_s ~= '' then clock = math.max(tonumber(at_s), clock) end
if not clock then return {} end
local seen, out = {}, {}
for n = math.floor((clock - window) / width), math.floor(clock / width) do
  local bucket = string.format('%d', n)
  local hits, here = {}, {}
  for j = FIRST_KEY, #ARGV do
    local v = redis.call('HGET', p .. ':b:' .. bucket .. ':' .. (j - FIRST_KEY + 1), ARGV[j])
    if v then
      for id in string.gmatch(v, '[^%z]+') do
        if id ~= exclude and not seen[id] and not here[id] then
          here[id] = true; hits[#hits + 1] = id
        end
      end
    end
  end
  if #hits > 0 then
    local vals = redis.call('HMGET', p .. ':e:' .. bucket, unpack(hits))
    for k = 1, #hits do
      -- seen once found: a band field may still name an edited post whose entry is now in
      -- a later bucket
      if vals[k] then seen[hits[k]] = true; out[#out + 1] = hits[k]; out[#out + 1] = vals[k] end
    end
  end
end
return out
"""

_POST = (
    f"local NO_TEXT = '{NO_TEXT}'"
    + """

-- P:w:<post>, nil once the post is forgotten (the rule of service.neardup.store): indexed, when
-- its bucket has left the window; noted, the window and a bucket after it was
local function known(p, pid, clock, window, width)
  local raw = redis.call('GET', p .. ':w:' .. pid)
  if not raw then return nil end
  local f = {}
  for v in string.gmatch(raw .. '\0', '([^%z]*)%z') do f[#f + 1] = v end
  local w = {cid = f[1], bucket = f[2], version = f[3], noted = f[4], counted = f[5],
    owner = f[6]}
  if w.noted == '' then
    if (tonumber(w.bucket) + 1) * width <= clock - window then return nil end
  elseif tonumber(w.noted) <= clock - window - width then
    return nil
  end
  return w
end

-- what a post id known as w is, sent again with version by acc: service.neardup.store.judge
local function judge(w, version, acc, edits)
  if w.owner ~= acc then return 'account' end
  if w.version == version then return '' end
  if edits == '1' then return 'edited' end
  return 'text'
end

local function counts(counted, cid)
  return string.find(' ' .. counted .. ' ', ' ' .. cid .. ' ', 1, true) ~= nil
end

-- an edit: the earlier text leaves the window; the clusters the post's texts were in
local function edit(p, pid, w)
  if w.bucket ~= '' then redis.call('HDEL', p .. ':e:' .. w.bucket, pid) end
  if w.cid == '' or counts(w.counted, w.cid) then return w.counted end
  if w.counted == '' then return w.cid end
  return w.counted .. ' ' .. w.cid
end

local function note(p, pid, cid, bucket, version, noted, counted, acc, ttl)
  redis.call('SET', p .. ':w:' .. pid, cid .. '\0' .. bucket .. '\0' .. version .. '\0' ..
    noted .. '\0' .. counted .. '\0' .. acc, 'EX', ttl)
end

-- a post with no fingerprint: what it was (judge), an edit when it was known with a text (an id
-- not known is not noted)
local function withdraw(p, pid, acc, clock_s, window, width, ttl, edits)
  local w = clock_s and known(p, pid, tonumber(clock_s), window, width)
  if not w then return '' end
  local seen = judge(w, NO_TEXT, acc, edits)
  if seen == 'edited' then note(p, pid, '', '', NO_TEXT, clock_s, edit(p, pid, w), acc, ttl) end
  return seen
end
"""
)

_ADD = (
    _POST
    + """
local p, pid, acc, at_s, target, newcid, seed_id, seed_acc, seed_at, bucket, index, packed =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10],
  ARGV[11], ARGV[12]
local K, T, maxm, maxa, ttl, maxf, week, window, width =
  tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]),
  tonumber(ARGV[17]), tonumber(ARGV[18]), tonumber(ARGV[19]), tonumber(ARGV[20]),
  tonumber(ARGV[21])
local version, editcid, blank, edits = ARGV[22], ARGV[23], tonumber(ARGV[24]), ARGV[25]
local FIRST_KEY = 26 + 2 * blank
local at = tonumber(at_s)

local function join(cid, mid, macc, mat_s)
  local ck = p .. ':c:' .. cid
  local mat = tonumber(mat_s)
  if redis.call('EXISTS', ck) == 0 then
    redis.call('HSET', ck, 'size', 0, 'first_at', mat_s, 'last_at', mat_s,
      'e_id', mid, 'e_acc', macc, 'e_at', mat_s, 'over', 0)
  end
  redis.call('HINCRBY', ck, 'size', 1)
  if redis.call('LLEN', ck .. ':m') < maxm then
    redis.call('RPUSH', ck .. ':m', mid .. '\0' .. macc .. '\0' .. mat_s)
  end
  if mat < tonumber(redis.call('HGET', ck, 'e_at')) then
    redis.call('HSET', ck, 'e_id', mid, 'e_acc', macc, 'e_at', mat_s)
  end
  if mat < tonumber(redis.call('HGET', ck, 'first_at')) then
    redis.call('HSET', ck, 'first_at', mat_s)
  end
  local last_s = redis.call('HGET', ck, 'last_at')
  if mat > tonumber(last_s) then redis.call('HSET', ck, 'last_at', mat_s); last_s = mat_s end
  if macc ~= '' then
    local ak, rk = ck .. ':a', ck .. ':r'
    if redis.call('SISMEMBER', ak, macc) == 0 then
      if redis.call('SCARD', ak) < maxa then redis.call('SADD', ak, macc)
      else redis.call('HINCRBY', ck, 'over', 1) end
    end
    local prev = redis.call('ZSCORE', rk, macc)
    if not prev or tonumber(prev) < mat then redis.call('ZADD', rk, mat_s, macc) end
    redis.call('ZREMRANGEBYSCORE', rk, '-inf', '(' .. tostring(tonumber(last_s) - T))
    local cap = math.max(4 * K, 64)
    local n = redis.call('ZCARD', rk)
    if n > cap then redis.call('ZREMRANGEBYRANK', rk, 0, n - cap - 1) end
  end
  if redis.call('HEXISTS', ck, 'batch_at') == 0 and redis.call('ZCARD', ck .. ':r') >= K then
    local accs = redis.call('ZRANGE', ck .. ':r', 0, -1)
    -- when its K-th account had posted, as in service.neardup.cluster; Redis's own form of the
    -- score reads back as the same float
    local done_s = redis.call('ZRANGE', ck .. ':r', -1, -1, 'WITHSCORES')[2]
    redis.call('HSET', ck, 'batch_at', done_s, 'batch_accounts', table.concat(accs, '\0'))
    for _, a in ipairs(accs) do
      redis.call('ZADD', p .. ':ab:' .. a, done_s, cid)
      redis.call('EXPIRE', p .. ':ab:' .. a, week)
    end
  end
  if redis.call('HEXISTS', ck, 'batch_at') == 1 then
    redis.call('ZADD', p .. ':flagged', redis.call('HGET', ck, 'batch_at'), cid)
    if redis.call('ZCARD', p .. ':flagged') > maxf then redis.call('ZPOPMIN', p .. ':flagged') end
    if macc ~= '' then
      redis.call('ZADD', p .. ':ab:' .. macc, mat_s, cid)
      redis.call('EXPIRE', p .. ':ab:' .. macc, week)
    end
  end
  for _, suffix in ipairs({'', ':m', ':a', ':r'}) do
    if redis.call('EXISTS', ck .. suffix) == 1 then redis.call('EXPIRE', ck .. suffix, ttl) end
  end
end

-- every post moves the clock, one seen before too, as the embedded window's; kept as given:
-- Lua would write it with 14 digits
local clock_s = redis.call('GET', p .. ':clock')
if not clock_s or at > tonumber(clock_s) then
  clock_s = at_s
  redis.call('SET', p .. ':clock', at_s)
end
local clock = tonumber(clock_s)

-- a post id known: the same post with the same text, an edit with another, or refused (the
-- rules of service.neardup.store), leaving the post the id names as it is
local w = known(p, pid, clock, window, width)
local cid, kept, seen, counted = newcid, 1, '', ''
if w then seen = judge(w, version, acc, edits) end
if seen == 'account' or seen == 'text' then
  cid = ''
elseif w and seen == '' then
  cid = w.cid
else
  if w then
    counted = edit(p, pid, w)
    cid = editcid
  end
  if target ~= '' then
    cid = target
    if not counts(counted, cid) then
      if redis.call('EXISTS', p .. ':c:' .. cid) == 0 then join(cid, seed_id, seed_acc, seed_at) end
      join(cid, pid, acc, at_s)
    end
  end
  if index == '1' and at < clock - window then kept = 0 end
  local noted = clock_s
  if kept == 1 and index == '1' then
    noted = ''
    redis.call('HSET', p .. ':e:' .. bucket, pid, acc .. '\0' .. cid .. '\0' .. packed)
    redis.call('EXPIRE', p .. ':e:' .. bucket, ttl)
    for j = FIRST_KEY, #ARGV do
      local bk = p .. ':b:' .. bucket .. ':' .. (j - FIRST_KEY + 1)
      local v = redis.call('HGET', bk, ARGV[j])
      if v then redis.call('HSET', bk, ARGV[j], v .. '\0' .. pid)
      else redis.call('HSET', bk, ARGV[j], pid) end
      redis.call('EXPIRE', bk, ttl)
    end
  end
  note(p, pid, cid, bucket, version, noted, counted, acc, ttl)
end
local withdrawn = {}
for j = 26, FIRST_KEY - 1, 2 do
  withdrawn[#withdrawn + 1] = withdraw(p, ARGV[j], ARGV[j + 1], clock_s, window, width, ttl, edits)
end
local batches = 0
if acc ~= '' then batches = redis.call('ZCOUNT', p .. ':ab:' .. acc, at - week, at) end
local ck = p .. ':c:' .. cid
if cid == '' or redis.call('EXISTS', ck) == 0 then return {'', kept, batches, seen, withdrawn} end
local h = redis.call('HMGET', ck,
  'size', 'first_at', 'last_at', 'e_id', 'e_acc', 'e_at', 'batch_at', 'over')
return {cid, kept, batches, seen, withdrawn, h[1], h[2], h[3], h[4], h[5], h[6], h[7] or '',
  h[8], redis.call('SCARD', ck .. ':a'), redis.call('ZCARD', ck .. ':r')}
"""
)

_WITHDRAW = (
    _POST
    + """
local p, window, width, ttl, edits = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4],
  ARGV[5]
local clock_s = redis.call('GET', p .. ':clock')
local out = {}
for j = 6, #ARGV, 2 do
  out[#out + 1] = withdraw(p, ARGV[j], ARGV[j + 1], clock_s, window, width, ttl, edits)
end
return out
"""
)

_GET = (
    _POST
    + """
local p, pid, window, width = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local clock_s = redis.call('GET', p .. ':clock')
local w = clock_s and known(p, pid, tonumber(clock_s), window, width)
if not w then return false end
return redis.call('HGET', p .. ':e:' .. w.bucket, pid)
"""
)


LAYOUT = "v3"
"""Written after the key prefix, and changed with any key's format, so that replicas of two
releases (a rolling deploy) never read each other's keys: those of an earlier layout are not read,
and expire within a window. v2 had ``P:w:<post>`` as cluster, bucket and digest alone (v3 adds
when it was noted, the clusters of earlier texts and the account); v1 band keys as the bands'
bytes and entries without the text excerpt."""


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _seen(value: bytes | str) -> Seen:
    return cast(Seen, _text(value))


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _posters(posts: Sequence[Poster]) -> list[str]:
    """Each post id followed by its account ("" for none), as the scripts read them."""
    return [v for post_id, account in posts for v in (post_id, account or "")]


def _pack(member: Member, signature: Signature, excerpt: str) -> bytes:
    """An entry as :func:`_unpack` reads it, less its account and cluster, which the add script
    puts first: the cluster is the script's to choose (an edit's, or the one known)."""
    text = excerpt.encode()
    return f"{member.created_at!r}\0{len(text)}\0".encode() + text + signature.tobytes()


def _unpack(post_id: str, packed: bytes) -> Entry:
    # the excerpt may hold any byte: its length says where the signature starts
    account, cid, at, length, rest = packed.split(b"\0", 4)
    cut = int(length)
    return Entry(
        post_id,
        account.decode() or None,
        float(at),
        cid.decode(),
        np.frombuffer(rest[cut:], dtype=np.uint32),
        rest[:cut].decode(),
    )


def connect(url: str, timeout_s: float) -> redis.Redis:
    """A client whose every wait ends within ``timeout_s``: the publish path must not hang on
    the index (it falls back to the local one)."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
    )


class RedisStore:
    """The :class:`~service.neardup.store.Store` in Redis; see the module's docstring."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        threshold: float,
        window_s: float,
        bucket_s: float,
        batch_accounts: int,
        batch_s: float,
        max_members: int = 100,
        max_accounts: int = 10_000,
        max_flagged: int = 1000,
    ) -> None:
        self.client, self.prefix = client, f"{prefix}:{LAYOUT}"
        self.threshold, self.window_s, self.bucket_s = threshold, window_s, bucket_s
        self.k, self.t = batch_accounts, batch_s
        self.max_members, self.max_accounts, self.max_flagged = (
            max_members,
            max_accounts,
            max_flagged,
        )
        self.ttl = math.ceil(window_s + bucket_s)
        self._match = client.register_script(_MATCH)
        self._add = client.register_script(_ADD)
        self._withdraw = client.register_script(_WITHDRAW)
        self._get = client.register_script(_GET)

    def _call(self, script: Any, args: list[Any]) -> Any:
        try:
            return script(args=args)
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc

    def _bucket(self, at: float) -> int:
        return math.floor(at / self.bucket_s)

    def match(
        self, signature: Signature, keys: Keys, at: float | None, exclude: str | None
    ) -> list[Match]:
        """The verified near-copies among every live post, as the embedded store matches: the
        buckets from the window before the clock (the newest ``created_at`` added, or ``at``
        when newer; ``P:clock`` alone when ``at`` is None) up to the clock's, read in the
        script. Not only the buckets around ``at``: a post that arrives late (a slow producer, a
        re-score out of order) then joins the cluster of its later copies, of which it is the
        earliest source, whichever store holds the window and however late it comes within
        it."""
        when = "" if at is None else repr(at)
        args = [self.prefix, exclude or "", when, self.window_s, self.bucket_s, *keys]
        flat = self._call(self._match, args)
        entries = [_unpack(_text(i), v) for i, v in zip(flat[::2], flat[1::2], strict=True)]
        if not entries:
            return []
        sims = similarity(signature, np.stack([e.signature for e in entries]))
        found = [
            Match(e, float(s)) for e, s in zip(entries, sims, strict=True) if s >= self.threshold
        ]
        if found:
            # an edited post's earlier band fields may still name it: a candidate the embedded
            # window, which holds the bands of the post's text alone, would not have, unless
            # one of those bands is the query's too
            wanted = set(keys)
            held = band_keys(np.stack([m.entry.signature for m in found]), self.threshold)
            found = [m for m, b in zip(found, held, strict=True) if not wanted.isdisjoint(b)]
        found.sort(key=lambda m: (-m.similarity, m.entry.created_at))
        return found

    def add(
        self,
        member: Member,
        signature: Signature,
        keys: Keys,
        target: Entry | None,
        index: bool,
        excerpt: str = "",
        then: Sequence[Poster] = (),
        edits: bool = True,
    ) -> Added:
        version = digest(signature)
        reply = self._call(
            self._add,
            [
                self.prefix,
                member.post_id,
                member.account_id or "",
                repr(member.created_at),
                target.cluster_id if target else "",
                cluster_id(member.post_id),
                target.post_id if target else "",
                (target.account_id or "") if target else "",
                repr(target.created_at) if target else "",
                self._bucket(member.created_at),
                _flag(index),
                _pack(member, signature, excerpt),
                self.k,
                self.t,
                self.max_members,
                self.max_accounts,
                self.ttl,
                self.max_flagged,
                7 * 24 * 3600,
                self.window_s,
                self.bucket_s,
                version,
                cluster_id(member.post_id, version),
                len(then),
                _flag(edits),
                *_posters(then),
                *keys,
            ],
        )
        got, kept, batches, seen = _text(reply[0]), int(reply[1]), int(reply[2]), _seen(reply[3])
        withdrawn = tuple(map(_seen, reply[4]))
        if not got:
            return Added(alone(member, batches), kept == 1, seen, withdrawn)
        size, first_at, last_at, e_id, e_acc, e_at, batch_at, over = (_text(v) for v in reply[5:13])
        accounts, recent = int(reply[13]), int(reply[14])
        state = ClusterState(
            id=got,
            size=int(size),
            distinct_accounts=accounts + int(over),
            recent_accounts=recent,
            first_at=float(first_at),
            last_at=float(last_at),
            earliest=Member(e_id, e_acc or None, float(e_at)),
            batch_at=float(batch_at) if batch_at else None,
            account_batches=batches,
        )
        return Added(state, kept == 1, seen, withdrawn)

    def withdraw(self, posts: Sequence[Poster], edits: bool = True) -> list[Seen]:
        if not posts:
            return []
        args = [self.prefix, self.window_s, self.bucket_s, self.ttl, _flag(edits), *_posters(posts)]
        return [_seen(v) for v in self._call(self._withdraw, args)]

    def get(self, post_id: str) -> Entry | None:
        """The post's entry while its bucket is in the window, by the clock, as the embedded
        store's: its keys outlive the window (they expire a window and a bucket after their
        last write, by the wall clock), and a post the window has passed is matched by
        nothing."""
        packed = self._call(self._get, [self.prefix, post_id, self.window_s, self.bucket_s])
        if packed is None:
            return None
        return _unpack(post_id, packed if isinstance(packed, bytes) else packed.encode())

    def cluster(self, cid: str) -> Cluster | None:
        if not CLUSTER_ID.fullmatch(cid):
            return None
        key = f"{self.prefix}:c:{cid}"
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(key)
                pipe.lrange(f"{key}:m", 0, -1)
                pipe.smembers(f"{key}:a")
                pipe.zrange(f"{key}:r", 0, -1, withscores=True)
                fields, members, accounts, recent = pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc
        if not fields:
            return None
        h = {_text(k): _text(v) for k, v in fields.items()}

        def member(raw: bytes) -> Member:
            post, account, at = _text(raw).split("\0")
            return Member(post, account or None, float(at))

        batch = h.get("batch_accounts")
        return Cluster(
            id=cid,
            earliest=Member(h["e_id"], h["e_acc"] or None, float(h["e_at"])),
            first_at=float(h["first_at"]),
            last_at=float(h["last_at"]),
            size=int(h["size"]),
            members=[member(m) for m in members],
            accounts={_text(a) for a in accounts},
            accounts_over=int(h["over"]),
            recent={_text(a): float(t) for a, t in recent},
            batch_at=float(h["batch_at"]) if "batch_at" in h else None,
            batch_accounts=batch.split("\0") if batch else [],
        )

    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc

    def flagged(self, limit: int) -> list[Cluster]:
        try:
            ids = self.client.zrevrange(f"{self.prefix}:flagged", 0, limit - 1)
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc
        found = [self.cluster(_text(i)) for i in ids]  # type: ignore[arg-type]
        return [c for c in found if c is not None]
