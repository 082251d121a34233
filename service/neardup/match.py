"""The near-duplicate step of the pipeline: fingerprint, match, cluster, and the rules on top.

For each post, in the order given (the order the live service receives them):

1. **fingerprint** (:mod:`~service.neardup.fingerprint`): canonical text; boilerplate stops here
   with every near-duplicate score 0 and no cluster.
2. **match** (:mod:`~service.neardup.index`): verified near-copies among the live window, and
   the best match in the confirmed-rumour bank (:mod:`~service.neardup.bank`).
3. **cluster** (:mod:`~service.neardup.cluster`): join the cluster its copies' similarities add
   up most for, or start one; coordinated-batch detection.

Then the scores:

- ``coordination``: 1 when the cluster is a coordinated batch, else the share of ``K`` distinct
  accounts it has within ``T`` (the policy flags it at 1).
- ``fake_originality``: for a post that claims originality (``declared_original``, or the
  ``originality_claim`` head at or above the policy's threshold) and gives no attribution
  (``source``, or 转自 / 来源: / via ... in the text, :data:`ATTRIBUTION`, outside its requests
  for credit: 转载请注明出处 credits no one, naming a source that can be traced: 网络 and 未知
  name none, :data:`UNTRACEABLE`), the similarity of the earliest verified
  near-copy posted before it by another account; 0 otherwise. A producer's copy of its own
  earlier post is not fake originality, nor is a post whose account is unknown, nor a post
  whose account had the text no later than that copy (a copy of its own, or the first post of
  its cluster): an author reposting its text after others copied it. The evidence
  carries the earlier post's text as the window keeps it (its first ``excerpt_chars``
  characters).
- ``rumor`` is raised to the similarity of a matched confirmed rumour.

Times: ``created_at``, or the arrival time when it is missing or more than ``max_future_s`` ahead
of the clock (the record says so); undated posts arrive in the order given, each
:data:`ARRIVAL_STEP` after the one before. The same post id seen again with the same text is
matched but not added twice; with another text it is an edit, matched on its new text, or taken
out of the window when the new text is boilerplate, unless the caller refuses edits; sent by
another account it is matched but not added (the stores' rules, :mod:`service.neardup.store`;
the record says so).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.heads import Risk
from service.neardup.bank import BankMatch, RumorBank, to_signature
from service.neardup.cluster import ACCOUNT_WINDOW_S, Cluster, ClusterBook, Member
from service.neardup.fingerprint import Fingerprinter, Signature, canonical
from service.neardup.index import INDEX_FORMAT, Entry, Keys, Match, WindowIndex
from service.neardup.queue import Members, QueueRequest, batch_cluster, requests
from service.neardup.store import (
    Added,
    ClusterState,
    LocalStore,
    Poster,
    Seen,
    Store,
    StoreUnavailableError,
)
from service.normalise import search_text
from service.policy import Policy
from service.record import ClusterPost, ClusterSummary, Post, RumorMatch, ScoreRecord
from service.settings import Settings
from service.storage.repository import StoredRumor

log = logging.getLogger(__name__)

NO_TIME = "no created_at: the arrival time was used for near-duplicate matching"
NO_TIME_REPLAY = (
    "no created_at: the newest created_at before it was used for near-duplicate matching"
)
FUTURE = "created_at is ahead of the clock: the arrival time was used for near-duplicate matching"
TOO_OLD = "created_at is older than the near-duplicate window: matched, but not kept in the index"
NO_ACCOUNT = "no account_id: the post counts toward no coordinated batch and no originality check"
EDITED = (
    "the post id was seen before with another text: matched as an edit, on its new text (the "
    "earlier text left the near-duplicate index)"
)
HELD = (
    "the post id is held in the near-duplicate window for another account: matched, but not "
    "added (that account's post is left as it was)"
)
TAKEN = (
    "the post id is held in the near-duplicate window with another text: matched, but not added "
    "(edits are refused here)"
)
SAID: dict[Seen, list[str]] = {"": [], "edited": [EDITED], "account": [HELD], "text": [TAKEN]}
"""The warnings of what a store made of a post id it knew (:data:`~service.neardup.store.Seen`)."""
UNSHARED = (
    "the shared near-duplicate index is unavailable: matched only against the posts this "
    "process saw since it went away"
)

ARRIVAL_STEP = 1e-6
"""Seconds between the arrival times of successive undated posts (:meth:`NearDuplicates._time`):
enough to order them (float seconds since 1970 tell a microsecond apart until the year 2242),
too little for any window or batch rule to notice."""

SATURATED = 0.9
CROWD = 100
"""A post with ``CROWD`` indexed copies at least ``SATURATED`` similar joins their cluster but is
not indexed itself: a flood of identical posts grows the cluster's count, not the index."""

_CONTENT = "图片|消息|新闻|文章|信息|数据|照片|视频|内容|图文|素材|资料"
"""What a credit says it credits: 图片来源, 文章出处."""
_PHRASES = ("open", "power", "light", "energy", "heat", "water", "food", "income", "funding")
"""Words that make ``source:`` part of another phrase (open source:, power source:), where it
introduces no credit; after any other word (original source:, image source:) it does."""
_NOT_IN_PHRASE = "".join(rf"(?<!{word}\ssource)" for word in _PHRASES)
_PERSON = ("[我你您她咱人主]", "(?<!其)他", "[我你您咱她他]们")
"""A person who comes from somewhere, by the end of the word: 我, 本人, 她, 楼主, 博主, 他 (not
其他), 我们, 他们; not 它 or 它们, which is the content."""
_NOT_PERSON_FROM = "".join(rf"(?<!{who}来自)(?<!{who}\s来自)" for who in _PERSON)
ATTRIBUTION = re.compile(
    # copied from: 转自 / 摘自 / 转载自 / 搬运自 a source, not 旋转自如, 扭转自身, 转自己, 采摘自家
    r"(?<![旋扭运逆好回周反流翻轮])转自(?![己家身如动主然由信愿])"
    r"|(?:转载|转发|转引|节选|搬运|摘)自(?![己家身]|导自演)|转载于"
    # a reposting tag, not the emoticon [转发]; and 转载: naming the source, not 转载:请联系作者
    r"|(?P<tag>[(\[【]\s*转(?:载|帖)?\s*[)\]】]|[(【]\s*转发\s*[)】]"
    # a link to the original, a repost chain (each names its source in itself)
    r"|(?:阅读|查看)原文|//\s*@)"
    r"|转载\s*:\s*(?!请|需|须|务必|禁|勿|未经|谢绝|不得|严禁|拒绝|联系|私信|授权)(?=[\w@])"
    # where the content comes from, with a colon or a handle after it: not 我的收入来源, 来自北京,
    # 我来自:上海 (where a person comes from), 试图源源不断, 已做出处理, 作出处分, 消息来源不明;
    # source:, not ending another phrase (open source:, power source:). Here and below a bound
    # comes after its word, which the search then tries only where the word is
    rf"|(?:来源|图源|来自{_NOT_PERSON_FROM})\s*(?::|(?=@))"
    rf"|source(?<![a-z]source){_NOT_IN_PHRASE}\s*:"
    rf"|(?:{_CONTENT})(?:来源|来自|出处)(?!不明|不详|未知)|出处(?!理|分(?!别)|罚|置|不明|不详|未知)"
    # the original: not 还原文物
    r"|原文(?:链接|地址|作者|出处|来自)|原文\s*:|原作者"
    # the author named, not the poster itself (nor 工作者:); a byline 文/张三 or 图/张三, not
    # 中文/英文
    r"|作者(?<!工作者)\s*:\s*(?!本人|我|本号|自己)(?=[\w@])"
    r"|(?<!\w)(?:文|图|图文|文图|摄影)\s*/\s*(?=\w)"
    # via (with or without @), not in a handle (@via风景, @lee-via, @张-via): a hyphen or an
    # underscore joins it to a word before it, not to a space (图 -via 人民日报); cr: / credit:
    # (after a CJK character too)
    r"|via(?<![a-z@]via)(?<!\w[_-]via)(?![a-z_])|(?<![a-z])(?:cr|credits?)\s*[:@]"
)
"""Wording that credits a source (art17), on the text as the classifier sees it
(:func:`service.normalise.normalise`: simplified characters, full-width forms and upper case
folded, so 轉載自, ｖｉａ＠ and CR： read as 转载自, via@ and cr:). Each word is bounded where
everyday Chinese holds it (出处理, 还原文物, 旋转自如, 收入来源, 我来自：上海): a claim of
originality that such a sentence carries is no credit. 转自 is read as a credit unless a verb
ends in 转 before it (旋转, 扭转...) or a word such as 自己 or 自如 starts at 自: the source
after it is a name, which no pattern can list. A match ends where the source it introduces
starts, and that source must name something (:data:`UNTRACEABLE`); the ``tag`` group's credits
(a reposting tag, 阅读原文, a repost chain's ``//@``) are whole in themselves."""

UNTRACEABLE = (
    # the net at large: 网络, not the start of 网络安全报
    "网络",
    "网上",
    "互联网",
    "网路",
    "网友",
    "网传",
    "网图",
    "网摘",
    # no one known: 佚名 and 匿名 say the author is unknown, and name no source to trace
    "未知",
    "不详",
    "不明",
    "佚名",
    "匿名",
    "无",
    "暂无",
    # a question, which asks for a source: 来源是哪里, 出处在哪, 消息来自何人
    "哪",
    "哪里",
    "哪儿",
    "何处",
    "何人",
    "谁",
    "什么",
    # the poster itself, which is no other source
    "原创",
    "本人",
    "本站",
    "本号",
    "自己",
    "我",
    "小编",
    "internet",
    "the internet",
    "web",
    "the web",
    "net",
    "online",
    "unknown",
    "anonymous",
    "anon",
    "n/a",
    "na",
    "none",
)
"""Sources that name nothing to trace (art17 asks for 可追溯信息来源: the copyright holder and a
source that can be traced): a credit whose source is one of these, or nothing at all (来源: at
the end of a clause, a ``source`` of punctuation only), credits no one. On normalised text
(lower case, simplified). Each is such a source only as a whole word: followed by a letter,
digit or Chinese character it starts a name (网络安全报, 无锡日报, internet archive), and
followed by a handle, a link or a list mark it stands beside one (网络 @张三, 佚名/人民日报).
图片来源于网络, 来源是网络, 网络转载 and 网友投稿 read as 网络 and 网友
(:data:`_NAMES_NOTHING`). A question word names no source either: 来源是哪里, 出处在哪 and
消息来自何人 ask for one."""

_SEPARATORS = r"[^\w@#。.!?;,\n]*+"
# possessive: a source the separators lead to is read, never the place before it
_WORD_END = r"(?![\w@#])(?!\s*(?:[@#/|、&+]|url(?![a-z])))(?!\s+[a-z0-9])"
_UNTRACEABLE_WORDS = "|".join(sorted(map(re.escape, UNTRACEABLE), key=len, reverse=True))
_NAMES_NOTHING = re.compile(
    # a source field's own introducer: 来源网络, 图片来自网络, 转自网络, source: internet
    rf"{_SEPARATORS}(?:(?:{_CONTENT})?(?:来源|来自|源自|源于|出自|取自|选自|转自|摘自|转载自|出处|转载)"
    rf"|(?:source|from|via|credits?|cr)(?![a-z]))?{_SEPARATORS}(?:(?:于|自|是|为|在){_SEPARATORS})?"
    rf"(?:(?:{_UNTRACEABLE_WORDS})(?:来源|转载|整理|收集|图片|投稿|提供|分享|上传)?)?{_WORD_END}"
)
"""A source that names nothing, read from where it starts (the end of an :data:`ATTRIBUTION`
match, or the start of a ``source`` field): separators, a linking 于 / 自 / 是 / 为 / 在, then one
of :data:`UNTRACEABLE` or nothing, then no name, handle or link. Separators stop at the end of
a clause (。 . ! ? ; , or a line break), so that a credit with nothing after it names nothing
rather than the next sentence."""

CREDIT_REQUEST = re.compile(
    r"(?:(?:转载|转发|引用|使用|分享|搬运)\s*(?:时|前)?\s*:?\s*)?"
    r"(?:请务必|请|需|须|务必|必须)\s*(?:注明|标明|标注|保留|附上|附|带上)[^,。!?;\s]{0,16}"
    r"|(?<!已)(?:注明|标明|标注|保留|附上|附|带上)\s*(?:原文|出处|来源|作者|原作者|链接|原链接)"
    r"[^,。!?;\s]{0,16}"
)
"""A request to credit this post (转载请注明出处, 请务必注明来源及作者, 保留原文链接), on normalised
text: it names what others must credit, so its 出处, 来源 or 原文链接 credits no one. It runs to
the end of its clause (16 characters at most, up to a space: a credit can follow one)."""


def attributed(post: Post) -> bool:
    """Whether the post credits another source: a ``source`` that names one, or
    :data:`ATTRIBUTION` in its normalised text once the requests to credit it are blanked
    (:data:`CREDIT_REQUEST`), introducing a source that names one: 转载请注明出处 asks others to
    credit this post, and credits no one, nor do 来源:网络 and a ``source`` of 未知
    (:data:`UNTRACEABLE`). The other rights notices (原创, 版权所有, 未经授权禁止转载) hold none
    of the vocabulary; one that names an original author (版权归原作者所有, 未经原作者授权)
    says the text is someone else's. A long text is read at its beginning and its end
    (:func:`service.normalise.search_text`), where a credit goes. Normalising costs more than a
    search of the raw text, which would miss 轉載自 and ｖｉａ＠: it is only asked of a post that
    claims originality and has an earlier copy."""
    if post.source and not _NAMES_NOTHING.match(search_text(post.source)):
        return True
    folded = CREDIT_REQUEST.sub(" ", search_text(post.text))
    return any(
        m.group("tag") or not _NAMES_NOTHING.match(folded, m.end())
        for m in ATTRIBUTION.finditer(folded)
    )


def summary(cluster: Cluster | ClusterState) -> ClusterSummary:
    first = cluster.earliest
    return ClusterSummary(
        id=cluster.id,
        size=cluster.size,
        accounts=cluster.distinct_accounts,
        first_at=cluster.first_at,
        last_at=cluster.last_at,
        earliest=ClusterPost(
            id=first.post_id, account_id=first.account_id, created_at=first.created_at
        ),
        batch=cluster.batch_at is not None,
    )


def _target(matches: list[Match]) -> Entry | None:
    """The copy whose cluster a post joins: of the cluster its copies' similarities add up most
    for (most often the most similar copy's), so that variants of one template gather in one
    cluster; its earliest copy there. Ties go by similarity, time and post id, never by the order
    the index found the copies in, so that any process replaying the same posts chooses alike."""
    if not matches:
        return None
    ranked = sorted(matches, key=lambda m: (-m.similarity, m.entry.created_at, m.entry.post_id))
    weight: dict[str, float] = {}
    for m in ranked:
        weight[m.entry.cluster_id] = weight.get(m.entry.cluster_id, 0.0) + m.similarity
    best = max(weight, key=weight.__getitem__)
    return min(
        (m.entry for m in ranked if m.entry.cluster_id == best),
        key=lambda e: (e.created_at, e.post_id),
    )


def _source(matches: list[Match], account: str, at: float, earliest: Member) -> Match | None:
    """The copy a claim by ``account`` at ``at`` takes its text from: the earliest earlier one by
    another account, unless ``account`` had the text no later, in a copy of its own or as the
    first post of the cluster (``earliest``): an author reposting its own text after others
    copied it is their source, not their copy."""
    earlier = [
        m for m in matches if m.entry.created_at < at and m.entry.account_id not in (None, account)
    ]
    if not earlier:
        return None
    source = min(earlier, key=lambda m: (m.entry.created_at, -m.similarity, m.entry.post_id))
    own = [m.entry.created_at for m in matches if m.entry.account_id == account]
    if earliest.account_id == account:
        own.append(earliest.created_at)
    return None if own and min(own) <= source.entry.created_at else source


def _cluster_key(cluster: Cluster | None) -> tuple[object, ...] | None:
    """Every field of ``cluster`` that a later post can read, in a fixed order."""
    if cluster is None:
        return None
    return (
        cluster.id,
        cluster.earliest,
        cluster.first_at,
        cluster.last_at,
        cluster.size,
        cluster.members,
        sorted(cluster.accounts),
        cluster.accounts_over,
        list(cluster.recent.items()),
        cluster.batch_at,
        cluster.batch_accounts,
    )


@dataclass
class Finding:
    """What the near-duplicate step found for one post."""

    scores: dict[Risk, float] = field(default_factory=dict)
    """``coordination`` and ``fake_originality``; ``rumor`` when the bank matched."""
    evidence: dict[Risk, dict[str, Any]] = field(default_factory=dict)
    cluster: ClusterSummary | None = None
    rumor: RumorMatch | None = None
    """The best match in the confirmed-rumour bank, at or above the index threshold."""
    warnings: list[str] = field(default_factory=list)
    degraded: bool = False
    """The shared index was unavailable and this process's local one answered."""


NOTHING = Finding()
"""The finding of a boilerplate post, bar an edit (shared: never changed)."""


class NearDuplicates:
    """The window, the clusters and the bank of one process. Thread-safe."""

    def __init__(
        self,
        fingerprinter: Fingerprinter,
        policy: Policy,
        *,
        threshold: float,
        window_s: float,
        bucket_s: float,
        max_future_s: float,
        shared: Store | None = None,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        replay: bool = False,
        excerpt_chars: int = 500,
    ) -> None:
        rules = policy.near_duplicates
        self.fingerprinter = fingerprinter
        self.rules = rules
        self._window = {"threshold": threshold, "window_s": window_s, "bucket_s": bucket_s}
        self.local = self._empty()
        self.shared = shared
        self.retry_s = retry_s
        self.problem: str | None = None
        """Why the shared index is not used now; None while it answers (or there is none)."""
        self._outage_since = 0.0
        self._retry_at = 0.0
        self._gap_posts = 0
        self.bank = RumorBank(fingerprinter, threshold)
        self.max_future_s = max_future_s
        self.excerpt_chars = excerpt_chars
        """Characters of each indexed post's text kept with it in the window."""
        self.clock = clock
        self.replay = replay
        """Undated posts arrive just after the window's newest ``created_at`` (0 before any),
        not at the clock."""
        self.lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, policy: Policy) -> NearDuplicates:
        fingerprinter = Fingerprinter(
            settings.neardup_shingle, settings.neardup_num_perm, 1, settings.neardup_min_shingles
        )
        shared: Store | None = None
        if settings.redis_url:
            from service.neardup.shared import RedisStore, connect

            rules = policy.near_duplicates
            shared = RedisStore(
                connect(settings.redis_url, settings.redis_timeout_s),
                settings.neardup_redis_prefix,
                threshold=settings.neardup_threshold,
                window_s=settings.neardup_window_hours * 3600,
                bucket_s=settings.neardup_bucket_hours * 3600,
                batch_accounts=rules.batch_accounts,
                batch_s=rules.batch_minutes * 60,
            )
        return cls(
            fingerprinter,
            policy,
            threshold=settings.neardup_threshold,
            window_s=settings.neardup_window_hours * 3600,
            bucket_s=settings.neardup_bucket_hours * 3600,
            max_future_s=settings.neardup_max_future_s,
            shared=shared,
            retry_s=settings.neardup_redis_retry_s,
            replay=settings.neardup_replay,
            excerpt_chars=settings.neardup_excerpt_chars,
        )

    def _empty(self) -> LocalStore:
        return LocalStore(
            WindowIndex(self.fingerprinter, **self._window),
            ClusterBook(
                batch_accounts=self.rules.batch_accounts, batch_s=self.rules.batch_minutes * 60
            ),
        )

    @property
    def memory_s(self) -> float:
        """How far back the state reaches: a post can be matched while its bucket is in the
        window, and a flagged cluster counts for its accounts for a week after (from a post up
        to a window late). A replay started this long before a point, over the same posts, can
        reach the state a replay from the beginning has there (:meth:`frontier` tells)."""
        return self._window["window_s"] + self._window["bucket_s"] + ACCOUNT_WINDOW_S

    @property
    def store(self) -> Store:
        """The shared store unless it failed less than ``retry_s`` ago; else the local one."""
        if self.shared is None or (self.problem and self.clock() < self._retry_at):
            return self.local
        return self.shared

    def check(self) -> str | None:
        """Why the shared index is not used now (None while it answers, or when there is none),
        asking it (within the Redis timeout): a process that has matched no post yet knows too.
        Its answer counts as a call's would: scoring skips it for ``retry_s``, or uses it
        again."""
        if self.shared is None:
            return None
        # not under the lock: scoring does not wait for a probe's round trip
        try:
            self.shared.ping()
        except StoreUnavailableError as exc:
            with self.lock:
                self._unavailable(str(exc))
                return self.problem
        with self.lock:
            self._available()
        return None

    def _unavailable(self, problem: str) -> None:
        if self.problem is None:
            self._outage_since = self.clock()
            self._gap_posts = 0
            log.warning("shared near-duplicate index unavailable", extra={"problem": problem})
        self.problem = problem
        self._retry_at = self.clock() + self.retry_s

    def _available(self) -> None:
        if self.problem is not None:
            log.warning(
                "shared near-duplicate index back",
                extra={
                    "gap_s": round(self.clock() - self._outage_since, 1),
                    "posts_matched_locally": self._gap_posts,
                },
            )
        self.problem = None

    @property
    def _snapshot_header(self) -> str:
        """What a snapshot must have been written with to be read: the index's layout and the
        signatures' parameters."""
        return f"{INDEX_FORMAT}/{self.fingerprinter.version}"

    def snapshot(self, path: Path) -> None:
        """Write this process's window and clusters to ``path`` (atomically), so that a restart
        of the embedded default keeps its window."""
        data = self.dumps()
        path.parent.mkdir(parents=True, exist_ok=True)
        # one temporary file per process: server workers snapshot at the same moments
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def restore(self, path: Path) -> bool:
        """Take the window and clusters from a snapshot this service wrote (a pickle: only ever
        read from the service's own state folder); False when there is none, or it was made by
        another layout of the index or with other fingerprint parameters (its header says so;
        a snapshot older than the header cannot even be read)."""
        if not path.is_file():
            return False
        if not self.loads(path.read_bytes()):
            log.warning("near-duplicate snapshot not used", extra={"snapshot": str(path)})
            return False
        return True

    def dumps(self) -> bytes:
        """This process's window and clusters, for :meth:`loads` (a snapshot's content): a
        header pickle naming the index's layout and the signatures' parameters, then the
        window's."""
        with self.lock:
            window = pickle.dumps(self.local, pickle.HIGHEST_PROTOCOL)
        return pickle.dumps(self._snapshot_header, pickle.HIGHEST_PROTOCOL) + window

    def loads(self, data: bytes | None) -> bool:
        """Take the window and clusters :meth:`dumps` gave (a pickle: only ever one this service
        or its own batch run wrote), or an empty window for None; False when they were made by
        another layout of the index or with other fingerprint parameters (the header says so;
        one written before there was a header cannot even be read)."""
        if data is None:
            with self.lock:
                self.local = self._empty()
            return True
        local: object = None
        stream = io.BytesIO(data)
        try:
            if pickle.load(stream) == self._snapshot_header:
                local = pickle.load(stream)
        except (pickle.UnpicklingError, AttributeError, TypeError, ValueError, EOFError):
            local = None
        if not isinstance(local, LocalStore):
            return False
        local.book.k = self.rules.batch_accounts
        local.book.t = self.rules.batch_minutes * 60
        with self.lock:
            self.local = local
        return True

    def frontier(self) -> str:
        """A digest of all that a later post can read of this process's window: the clock, the
        indexed posts (with their clusters and signatures), the ids of those added but not
        indexed (with their clusters, when, and their texts' digests), the clusters edited posts'
        earlier texts were in, the clusters all these belong to, and the accounts' flagged
        clusters a post up to a window late still counts. Two windows
        with the same frontier give every later post the same finding (a post older than the
        window, or one whose id names a cluster of an earlier post, reads further: its record
        says so, see :mod:`service.batch.segments`)."""
        with self.lock:
            index, book = self.local.index, self.local.book
            digest = hashlib.sha256(repr(index.clock).encode())
            cids: set[str] = set()
            for entry in sorted(index.entries(), key=lambda e: e.post_id):
                key = (
                    entry.post_id,
                    entry.account_id,
                    entry.created_at,
                    entry.cluster_id,
                    entry.excerpt,
                )
                digest.update(repr(key).encode())
                digest.update(entry.signature.tobytes())
                cids.add(entry.cluster_id)
            # in the order they are forgotten in, which is part of the state
            for post_id, (cid, noted, version, owner) in self.local.unindexed.items():
                digest.update(repr((post_id, cid, noted, version, owner)).encode())
                cids.add(cid)
            for post_id, (counted, edited) in self.local.earlier.items():
                digest.update(repr((post_id, counted, edited)).encode())
                cids.update(counted)
            for cid in sorted(cids):
                live = book.live(cid)
                kept = live or book.get(cid)
                digest.update(repr((cid, live is not None, _cluster_key(kept))).encode())
            since = index.clock - index.window_s - ACCOUNT_WINDOW_S
            digest.update(repr(book.account_history(since)).encode())
            return digest.hexdigest()

    def _reads(self) -> Store:
        """The store a read of the clusters goes to. While the shared index is away the local
        window holds only this process's posts since, not the clusters asked about: the read
        fails as the shared index does (:class:`StoreUnavailableError`), where scoring falls
        back."""
        store = self.store
        if self.shared is not None and store is not self.shared:
            raise StoreUnavailableError(self.problem)
        return store

    def cluster(self, cid: str) -> Cluster | None:
        with self.lock:
            return self._reads().cluster(cid)

    def flagged(self, limit: int) -> list[Cluster]:
        with self.lock:
            return self._reads().flagged(limit)

    def review_requests(
        self, records: Sequence[ScoreRecord], texts: Sequence[str | None]
    ) -> list[QueueRequest]:
        """The review items of ``records`` (:mod:`service.neardup.queue`), each batch listing
        the members this window holds (its first ``max_members``)."""
        members: dict[str, Members] = {}
        for record in records:
            cid = batch_cluster(record)
            if cid is not None and cid not in members:
                # the window the records were scored against: the local one while the shared
                # index is away, as on the publish path
                with self.lock:
                    found = self.store.cluster(cid)
                kept = found.members if found is not None else []
                members[cid] = [{"post_id": m.post_id, "account_id": m.account_id} for m in kept]
        return [r for rec, t in zip(records, texts, strict=True) for r in requests(rec, t, members)]

    def signature_of(self, text: str | None, post_id: str | None) -> Signature | None:
        """The signature a bank entry gets: of ``text``, or of the live post ``post_id``; None
        when the text is boilerplate or the post is not in the window."""
        if post_id is not None:
            with self.lock:
                entry = self.store.get(post_id)
            return None if entry is None else entry.signature
        (found,) = self.fingerprinter.fingerprints([text or ""])
        return None if found.boilerplate else self.fingerprinter.signatures([found.canonical])[0]

    def sync_bank(self, rumors: Sequence[StoredRumor]) -> list[str]:
        """Hold the stored bank ``rumors`` (reloaded only when the set changed); the ids whose
        signatures were made with other fingerprint parameters."""
        with self.lock:
            if {r.rumor_id for r in rumors} == self.bank.ids():
                return []
            return self.bank.load(rumors)

    def banked(self, signature: Signature) -> BankMatch | None:
        """The entry of this process's bank that ``signature`` matches, if any."""
        with self.lock:
            return self.bank.match(signature)

    def copies(self, rumor: StoredRumor) -> list[Match]:
        """Every live near-copy of a banked rumour, earliest first: the window before its own
        clock (the newest post time), in either store; the wall clock would expire a backfill's
        posts, or a replay's."""
        signature = to_signature(rumor)
        with self.lock:
            found = self.store.match(signature, self.local.index.keys(signature), None, None)
        return sorted(found, key=lambda m: (m.entry.created_at, m.entry.post_id))

    def observe(self, posts: Sequence[Post], claims: Sequence[float]) -> list[Finding]:
        """Findings for ``posts`` (with their ``originality_claim`` probabilities), in order; each
        post is matched against the ones before it, those of this call included."""
        return self.match(posts, self.sign(posts), claims)

    def sign(self, posts: Sequence[Post]) -> list[Signature | None]:
        """The stateless part: each post's signature, None for boilerplate. Costly (MinHash) and
        independent of every other post, so a batch run computes it in its workers."""
        fp = self.fingerprinter
        canons = canonical([p.text for p in posts])
        usable = [i for i, c in enumerate(canons) if not fp.boilerplate(c)]
        signatures = fp.signatures([canons[i] for i in usable])
        found: list[Signature | None] = [None] * len(posts)
        for row, i in enumerate(usable):
            found[i] = signatures[row]
        return found

    def match(
        self,
        posts: Sequence[Post],
        signatures: Sequence[Signature | None],
        claims: Sequence[float],
        *,
        edits: bool = True,
    ) -> list[Finding]:
        """The stateful part: match, cluster and the rules, post after post in the order given
        (the window's state depends on every post before). Unless ``edits``, a post id known
        with another text is refused rather than edited (:mod:`service.neardup.store`)."""
        findings = [NOTHING] * len(posts)
        usable = [i for i, s in enumerate(signatures) if s is not None]
        # every post's band keys in one numpy pass (they depend on its signature alone)
        rows = [s for s in signatures if s is not None]
        signed = np.stack(rows) if rows else np.empty((0, 0), np.uint32)
        keys = self.local.index.batch_keys(signed) if rows else []
        # the posts with no fingerprint that follow each one that has one go to the store in its
        # add (no round trip of their own; an edit among them leaves the window before the next
        # post is matched), those before the first in a call of their own
        ends = [*usable[1:], len(posts)]
        now = self.clock()
        with self.lock:
            first = usable[0] if usable else len(posts)
            if first:
                self._withdraw(posts, range(first), findings, edits)
            for row, i in enumerate(usable):
                after = range(i + 1, ends[row])
                then = [(posts[j].id, posts[j].account_id) for j in after]
                findings[i], withdrawn = self._observe(
                    posts[i], signed[row], keys[row], claims[i], now, i, then, edits
                )
                self._blank(findings, after, withdrawn, findings[i].degraded)
        return findings

    def _withdraw(
        self, posts: Sequence[Post], run: range, findings: list[Finding], edits: bool
    ) -> None:
        """Findings for the posts at ``run``, which have no fingerprint (see :meth:`_blank`)."""
        sent = [(posts[i].id, posts[i].account_id) for i in run]
        store = self.store
        try:
            seen = store.withdraw(sent, edits)
            if store is self.shared:
                self._available()
        except StoreUnavailableError as exc:
            self._unavailable(str(exc))
            store = self.local
            seen = store.withdraw(sent, edits)
        self._blank(findings, run, seen, store is not self.shared and self.shared is not None)

    def _blank(
        self, findings: list[Finding], run: range, seen: Sequence[Seen], degraded: bool
    ) -> None:
        """The findings of the posts at ``run``, which have no fingerprint: none, bar a post id
        the window knew (``seen``: the stores' rules; an edit of a post known with a text, whose
        earlier text left the window, or a refusal), and bar a post the shared index did not
        answer for (``degraded``)."""
        if degraded:
            self._gap_posts += len(run)
        for i, was in zip(run, seen, strict=True):
            if was or degraded:
                warnings = [UNSHARED] if degraded else []
                findings[i] = Finding(warnings=warnings + SAID[was], degraded=degraded)

    def _time(self, post: Post, now: float, position: int) -> tuple[float, list[str]]:
        """The time the post at ``position`` of a call read at clock ``now`` is matched at, and
        the warnings that go with it. An undated post arrives :data:`ARRIVAL_STEP` after the
        post before it: live, after the posts before it in the call (``now`` plus ``position``
        steps), in a replay after the newest post seen; so the order a call gives is the order
        of arrival, and an undated copy comes after the undated original it copied (a claim
        needs an earlier copy). A post dated ahead of the clock takes the arrival time unstepped:
        its time is its date, clamped."""
        # a replay's arrival: the newest post seen so far, not the wall clock of the re-run
        arrival = max(self.local.index.clock, 0.0) if self.replay else now
        if post.created_at is None:
            # in a replay the newest post seen moves on with each post, so one step puts it
            # after all of them, however the posts are split into calls
            steps = 1 if self.replay else position
            return arrival + steps * ARRIVAL_STEP, [NO_TIME_REPLAY if self.replay else NO_TIME]
        if post.created_at > now + self.max_future_s:
            return arrival, [FUTURE]
        return post.created_at, []

    def _observe(
        self,
        post: Post,
        signature: Signature,
        keys: Keys,
        claim: float,
        now: float,
        position: int,
        then: Sequence[Poster],
        edits: bool,
    ) -> tuple[Finding, tuple[Seen, ...]]:
        """The post's finding, and what each of the posts with no fingerprint withdrawn after it
        (``then``, :meth:`Store.add`) was."""
        at, warnings = self._time(post, now, position)
        if post.account_id is None:
            warnings.append(NO_ACCOUNT)
        member = Member(post.id, post.account_id, at)
        excerpt = post.text[: self.excerpt_chars]
        store = self.store
        try:
            matches, added = self._match(store, member, signature, keys, excerpt, then, edits)
            if store is self.shared:
                self._available()
        except StoreUnavailableError as exc:
            self._unavailable(str(exc))
            store = self.local
            matches, added = self._match(store, member, signature, keys, excerpt, then, edits)
        degraded = store is not self.shared and self.shared is not None
        if degraded:
            self._gap_posts += 1
            warnings.append(UNSHARED)
        cluster = added.cluster
        warnings.extend(SAID[added.seen])
        if not added.kept:
            warnings.append(TOO_OLD)
        finding = Finding(warnings=warnings, degraded=degraded)
        finding.cluster = summary(cluster) if cluster.size > 1 else None
        self._coordination(finding, cluster)
        self._originality(finding, matches, post, claim, at, cluster.earliest)
        bank = self.bank.match(signature)
        if bank is not None:
            finding.scores["rumor"] = bank.similarity
            finding.rumor = RumorMatch(
                rumor_id=bank.rumor.rumor_id, similarity=round(bank.similarity, 4), at=at
            )
            finding.evidence["rumor"] = {
                "confirmed_rumor": bank.rumor.rumor_id,
                "similarity": round(bank.similarity, 4),
                "notice": bank.rumor.notice,
                "match": f"matches confirmed rumour {bank.rumor.rumor_id} "
                f"(similarity {bank.similarity:.2f})",
            }
        return finding, added.withdrawn

    @staticmethod
    def _match(
        store: Store,
        member: Member,
        signature: Signature,
        keys: Keys,
        excerpt: str,
        then: Sequence[Poster],
        edits: bool,
    ) -> tuple[list[Match], Added]:
        matches = store.match(signature, keys, member.created_at, member.post_id)
        crowded = len(matches) >= CROWD and sum(m.similarity >= SATURATED for m in matches) >= CROWD
        target = _target(matches)
        return matches, store.add(
            member, signature, keys, target, not crowded, excerpt, then, edits
        )

    def _coordination(self, finding: Finding, cluster: ClusterState) -> None:
        k = self.rules.batch_accounts
        batch = cluster.batch_at is not None
        finding.scores["coordination"] = 1.0 if batch else min(1.0, cluster.recent_accounts / k)
        finding.evidence["coordination"] = {
            "cluster": cluster.id,
            "size": cluster.size,
            "accounts": cluster.distinct_accounts,
            "accounts_within_window": cluster.recent_accounts,
            "batch_accounts": k,
            "batch_minutes": self.rules.batch_minutes,
            "batch_at": cluster.batch_at,
            "earliest": {"id": cluster.earliest.post_id, "account_id": cluster.earliest.account_id},
            "account_batches_7d": cluster.account_batches,
        }

    def _originality(
        self,
        finding: Finding,
        matches: list[Match],
        post: Post,
        claim: float,
        at: float,
        earliest: Member,
    ) -> None:
        """``earliest``: the first post of the cluster the post joined."""
        claimed = post.declared_original or claim >= self.rules.originality_claim
        if not claimed or post.account_id is None:
            finding.scores["fake_originality"] = 0.0
            return
        source = _source(matches, post.account_id, at, earliest)
        # the credit last: reading it normalises the ends of the text
        if source is None or attributed(post):
            finding.scores["fake_originality"] = 0.0
            return
        finding.scores["fake_originality"] = source.similarity
        finding.evidence["fake_originality"] = {
            "earlier_post": source.entry.post_id,
            "earlier_account": source.entry.account_id,
            "similarity": round(source.similarity, 4),
            "gap_s": round(at - source.entry.created_at, 3),
            "claim": "declared_original"
            if post.declared_original
            else f"originality_claim {claim:.2f}",
        }
        if source.entry.excerpt:
            # the window's copy of the earlier text: the console shows it beside this post's
            # when the earlier post itself was never stored
            finding.evidence["fake_originality"]["earlier_text"] = source.entry.excerpt
