"""The near-duplicate step: coordination, fake originality, the bank, times and accounts; and
through the shipped model's pipeline, the score record's scores, flags, reasons and cluster."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from servicekit import banked_rumour

from service.neardup import Finding, NearDuplicates, store
from service.neardup.match import (
    ARRIVAL_STEP,
    CROWD,
    EDITED,
    FUTURE,
    HELD,
    NO_ACCOUNT,
    NO_TIME,
    NO_TIME_REPLAY,
    TOO_OLD,
    attributed,
)
from service.normalise import SEARCH_CHARS
from service.pipeline import Pipeline
from service.policy import Policy, load_policy
from service.record import Post
from service.settings import Settings
from service.storage.repository import StoredRumor

TEMPLATE = "网传某地明天起全市停水三天，自来水厂已被污染，请大家赶紧囤水并转给家人朋友！"
NOW = 1_700_000_000.0


@pytest.fixture
def policy(settings: Settings) -> Policy:
    return load_policy(settings.policy_file)


@pytest.fixture
def near(settings: Settings, policy: Policy) -> NearDuplicates:
    built = NearDuplicates.from_settings(settings, policy)
    built.clock = lambda: NOW
    return built


def post(
    pid: str, account: str | None, at: float | None, text: str = TEMPLATE, **kw: object
) -> Post:
    return Post(id=pid, text=text, account_id=account, created_at=at, **kw)


def observe(near: NearDuplicates, posts: Sequence[Post], claim: float = 0.0) -> list[Finding]:
    return near.observe(posts, [claim] * len(posts))


def variant(i: int) -> str:
    return f"{'转发扩散！' if i % 2 else ''}{TEMPLATE.replace('三', str(i))} [怒]{'😡' * (i % 3)}"


def test_the_kth_account_within_t_completes_a_batch_and_later_posts_are_flagged(
    near: NearDuplicates, policy: Policy
) -> None:
    k = policy.near_duplicates.batch_accounts
    posts = [post(f"p{i}", f"acct{i}", NOW - 600 + 60 * i, variant(i)) for i in range(k + 2)]
    found = observe(near, posts)
    scores = [f.scores["coordination"] for f in found]
    assert scores[: k - 1] == [pytest.approx(i / k) for i in range(1, k)]
    assert scores[k - 1 :] == [1.0, 1.0, 1.0]
    last = found[-1]
    assert last.cluster is not None and last.cluster.batch
    assert last.cluster.size == k + 2 and last.cluster.accounts == k + 2
    assert last.cluster.earliest.id == "p0"
    assert last.evidence["coordination"]["batch_at"] == NOW - 600 + 60 * (k - 1)
    assert found[0].cluster is None  # alone when it arrived


def test_unrelated_posts_and_boilerplate_join_no_cluster(near: NearDuplicates) -> None:
    texts = ["转发微博", "[蜡烛][蜡烛]", "Repost", "哈哈哈"] * 5
    found = observe(near, [post(f"b{i}", f"a{i}", NOW, t) for i, t in enumerate(texts)])
    assert all(f.cluster is None and f.scores == {} for f in found)
    assert len(near.local.index) == 0


@pytest.mark.parametrize(
    ("fields", "text_prefix", "same_account", "claim", "flagged"),
    [
        ({"declared_original": True}, "原创：", False, 0.0, True),
        ({}, "原创：", False, 0.9, True),  # the classifier's claim over the policy threshold
        ({}, "", False, 0.0, False),  # no claim
        ({"declared_original": True, "source": "@原作者"}, "", False, 0.0, False),
        ({"declared_original": True}, "转自@原作者：", False, 0.0, False),
        ({"declared_original": True}, "", True, 0.0, False),  # the producer's own earlier post
        # a link with /@ in it is a link, not a repost chain that would empty the text
        ({"declared_original": True}, "https://www.youtube.com/@news1 ", False, 0.0, True),
        # a rights notice asks others to credit this post: it credits no one
        ({"declared_original": True}, "原创文章，转载请注明出处。", False, 0.0, True),
        (
            {"declared_original": True},
            "本文为原创，未经授权禁止转载，转载请注明来源。",
            False,
            0.0,
            True,
        ),
        ({"declared_original": True}, "来源：@原作者 ", False, 0.0, False),
        ({"declared_original": True}, "来源 @人民日报 ", False, 0.0, False),  # a handle, no colon
        ({"declared_original": True}, "原文链接 http://t.cn/abc ", False, 0.0, False),
        # where the poster is from, not where the content is
        ({"declared_original": True}, "我来自：上海。", False, 0.0, True),
    ],
)
def test_fake_originality_needs_a_claim_an_earlier_copy_by_another_account_and_no_credit(
    near: NearDuplicates,
    fields: dict[str, object],
    text_prefix: str,
    same_account: bool,
    claim: float,
    flagged: bool,
) -> None:
    observe(near, [post("orig", "author", NOW - 3600)])
    copier = "author" if same_account else "copier"
    (found,) = observe(near, [post("copy", copier, NOW, text_prefix + variant(1), **fields)], claim)
    assert (found.scores["fake_originality"] > 0) == flagged
    if flagged:
        evidence = found.evidence["fake_originality"]
        assert evidence["earlier_post"] == "orig" and evidence["earlier_account"] == "author"
        assert evidence["gap_s"] == 3600.0
        assert evidence["similarity"] == pytest.approx(found.scores["fake_originality"], abs=1e-4)
        assert evidence["earlier_text"] == TEMPLATE


@pytest.mark.parametrize(
    "text",
    [
        # ordinary words holding 出处, 原文, 转自, 来源
        "相关部门已做出处理",
        "专家还原文物",
        "舞者旋转自如",
        "我的收入来源",
        "[话筒][赞啊][转发]请动一下鼠标",  # an emoticon, no reposting tag
        # requests to credit this post name what others must credit
        "原创文章，转载请注明作者和出处",
        "转载请注明出处及原文链接",
        "请务必注明来源及作者",
        "保留原文链接",
        "试图源源不断地供水",
        "搬运自己的旧文",
        "相关部门已作出处分",
        # a self-introduction: where the poster comes from, not the content
        "我来自:上海",
        "我来自：上海",
        "我们来自：北京",
        "本人来自:湖南",
        "楼主来自：广州",
        "她 来自：成都",
        "他们来自：上海",
        # source: inside another phrase
        "open source: our own code",
        "power source: battery",
        # a question asks for a source and names none
        "数据来源是哪里？",
        "消息来源在哪？",
        "这新闻的出处在哪里？",
        "图片来自哪里 都说明了",
        "原图发表者出处是谁？",
        "信息来源何处？",
        "消息来自何人？",
        "消息来源是什么？",
        # a word that holds a credit's
        "还有一线的工作者：环卫工",
        "营销账号为转发自导自演",
        "@lee玉-via @via风景 @via_jessica",  # handles
    ],
)
def test_words_and_requests_for_credit_credit_no_source(text: str) -> None:
    assert not attributed(post("p", "a", NOW, f"{text}。{TEMPLATE}"))


@pytest.mark.parametrize(
    "text",
    [
        "摘自人民日报",
        "作者：张三",
        "via 人民日报",
        "转发自人民日报",
        "轉載自人民日報",  # traditional characters
        "ｖｉａ＠人民日报",  # full-width forms
        "图cr:张三",  # cr after a CJK character
        "转载：人民日报",
        "（转）",
        "文/张三",
        # the source a handle: no colon needed
        "来源@人民日报",
        "（来源 @人民日报）",
        "来自@张三",
        "来自：人民日报",
        "搬运自@张三",  # 搬运: reposting someone else's content
        "图源@张三",
        "图源：张三",
        "Source: Reuters",
        "Image source: Reuters",
        "（source: Reuters）",
        "它来自：新华社",  # the content itself
        "照片来自：新华社",
        "出处：人民日报",
        "原作出处 http://t.cn/abc",
        "来源：什么值得买",  # a name that starts with a question word
        "转自@via风景",
        "创作者：张三",
        # bounds that stop at what they are for
        "Original source: Reuters",  # source: after a word, not a phrase's
        "the source: Reuters",
        "摘自导演贾樟柯访谈",  # 自导, not 自导自演
        "它们来自：新华社",  # the content, and not 他们
        "其他来自：新华社",
        "出处分别为人民日报和新华社",  # not 出处分
        "图 -via 人民日报",  # not in a handle
    ],
)
def test_each_form_of_credit_is_read(text: str) -> None:
    assert attributed(post("p", "a", NOW, f"{TEMPLATE}{text}"))


@pytest.mark.parametrize(
    "source",
    [
        "网络",
        "来源网络",
        "来源:网络",
        "来源：网络",
        "转自网络",
        "来源于网络",
        "图片来自网络，侵删",
        "网络 如有侵权请联系删除",
        "网络转载",
        "网上",
        "互联网",
        "网友投稿",
        "未知",
        "不详",
        "佚名",  # the author unknown: no source to trace
        "暂无",
        "原创",  # the poster itself
        "source: internet",
        "Source: the Internet",
        "UNKNOWN",
        "N/A",
        "-",
        "……",
        "？",
        "【网络】",
        "来源：",
    ],
)
def test_a_source_that_names_nothing_traceable_is_no_credit(source: str) -> None:
    assert not attributed(post("p", "a", NOW, source=source))
    assert not attributed(post("p", "a", NOW, f"{TEMPLATE}\n{source}"))


@pytest.mark.parametrize(
    "source",
    [
        "新华网",
        "来源：新华网",
        "来源: 网络安全报",  # 网络 starts a name, it is not the net at large
        "网络安全报",
        "网易新闻",
        "无锡日报",  # nor 无 "none"
        "未知探索频道",
        "我们的太阳",
        "互联网周刊",
        "@网络",  # a handle names an account
        "网友@张三",
        "网络 @张三",
        "网络 https://www.example.com/a",
        "佚名/人民日报",
        "https://www.xinhuanet.com/politics/a.htm",
        "Internet Archive",
        "web of science",
        "nature",
        "（新华网）",
        "来源：自由时报",  # 自 is no linking word here
    ],
)
def test_a_source_that_names_a_name_a_handle_or_a_link_is_a_credit(source: str) -> None:
    assert attributed(post("p", "a", NOW, source=source))


@pytest.mark.parametrize(
    "credit",
    [
        "来源：新华网",
        "来源: 网络安全报",
        "转自网络安全报",
        "图片来自网友@张三",
        "作者：佚名 来源：人民日报",  # the unknown author beside a named source
        "via 网络安全报",
    ],
)
def test_a_credit_in_the_text_naming_a_source_is_read(credit: str) -> None:
    assert attributed(post("p", "a", NOW, f"{TEMPLATE}{credit}"))


@pytest.mark.parametrize(
    "credit",
    [
        "来源：网络",
        "来源：网络。",
        "转自网络",
        "转载自互联网",
        "摘自网络",
        "图片来自网络，侵删",
        "图片来源于网络 侵删",
        "图片来源网络",
        "作者：佚名",
        "原作者：未知",
        "via 网络",
        "来源：",
        "来源：。",  # nothing before the clause ends: the next sentence is no source
        "来自：网络",
        "图源网络",
        "图源：网络",
        "source: internet",
    ],
)
def test_a_credit_in_the_text_naming_nothing_traceable_is_no_credit(credit: str) -> None:
    assert not attributed(post("p", "a", NOW, f"{TEMPLATE}{credit}"))
    # a line break is white space to the classifier: the clause ends at a mark
    assert not attributed(post("p", "a", NOW, f"{credit}。{TEMPLATE}"))


@pytest.mark.parametrize(("source", "flagged"), [("网络", True), ("新华网", False)])
def test_a_claimed_copy_crediting_the_net_at_large_is_flagged(
    near: NearDuplicates, source: str, flagged: bool
) -> None:
    observe(near, [post("orig", "author", NOW - 3600)])
    copy = post("copy", "copier", NOW, variant(1), declared_original=True, source=source)
    (found,) = observe(near, [copy])
    assert (found.scores["fake_originality"] > 0) == flagged


@pytest.mark.parametrize(
    ("prefix", "flagged"), [("轉載自人民日報：", False), ("保留原文链接。", True)]
)
def test_a_claimed_copy_is_flagged_by_the_credit_its_normalised_text_gives(
    near: NearDuplicates, prefix: str, flagged: bool
) -> None:
    observe(near, [post("orig", "author", NOW - 3600)])
    (found,) = observe(near, [post("copy", "copier", NOW, prefix + variant(1))], claim=1.0)
    assert (found.scores["fake_originality"] > 0) == flagged


@pytest.mark.parametrize(
    ("at", "filler", "read"),
    [
        (0, SEARCH_CHARS, True),
        (1, SEARCH_CHARS, False),
        (2, SEARCH_CHARS, True),
        (1, SEARCH_CHARS // 2, True),  # a text of up to twice SEARCH_CHARS is read whole
    ],
)
def test_a_long_text_is_searched_for_a_credit_at_its_ends(
    near: NearDuplicates, at: int, filler: int, read: bool
) -> None:
    """A credit is written at a post's beginning or end; past twice SEARCH_CHARS characters the
    middle is not read, so that 100,000 characters that NFKC makes 18 each cost what 2,000 do."""
    parts = ["\ufdfa" * filler, "\ufdfa" * filler]
    parts.insert(at, "来源：人民日报")
    text = TEMPLATE + "".join(parts)
    assert attributed(post("p", "a", NOW, text)) == read
    observe(near, [post("orig", "author", NOW - 3600, text)])
    (found,) = observe(near, [post("copy", "copier", NOW, text)], claim=1.0)
    assert (found.scores["fake_originality"] == 0) == read


def test_the_window_keeps_only_the_beginning_of_each_text_and_none_when_set_to(
    settings: Settings, policy: Policy
) -> None:
    for chars, kept in ((12, TEMPLATE[:12]), (0, None)):
        near = NearDuplicates.from_settings(
            settings.model_copy(update={"neardup_excerpt_chars": chars}), policy
        )
        near.clock = lambda: NOW
        observe(near, [post("orig", "author", NOW - 60)])
        entry = near.local.index.get("orig")
        assert entry is not None and entry.excerpt == (kept or "")
        (found,) = observe(near, [post("copy", "copier", NOW, variant(1))], claim=1.0)
        assert found.evidence["fake_originality"].get("earlier_text") == kept


def test_a_later_copy_is_not_the_source_of_an_earlier_claim(near: NearDuplicates) -> None:
    observe(near, [post("later", "other", NOW)])
    (found,) = observe(near, [post("early", "me", NOW - 60, declared_original=True)])
    assert found.scores["fake_originality"] == 0.0


def test_the_author_reposting_its_own_text_with_a_claim_is_not_fake_originality(
    near: NearDuplicates,
) -> None:
    copied = post("copy", "copier", NOW - 1800, variant(1), declared_original=True)
    _, copy = observe(near, [post("orig", "author", NOW - 3600), copied])
    assert copy.scores["fake_originality"] > 0  # the copier's claim is flagged
    (own,) = observe(near, [post("again", "author", NOW, "【原创】" + variant(2))], claim=1.0)
    assert own.scores["fake_originality"] == 0.0 and "fake_originality" not in own.evidence


def test_the_earliest_source_of_its_cluster_is_not_flagged_for_its_own_text(
    near: NearDuplicates,
) -> None:
    observe(near, [post("copy", "copier", NOW)])
    # the author's original arrives too old to be indexed, yet is its cluster's earliest post
    (late,) = observe(near, [post("orig", "author", NOW - 100 * 3600, variant(1))])
    assert late.cluster is not None and late.cluster.earliest.id == "orig"
    assert near.local.index.get("orig") is None
    (own,) = observe(near, [post("again", "author", NOW + 60, variant(2))], claim=1.0)
    assert own.scores["fake_originality"] == 0.0


def test_missing_and_future_times_use_the_arrival_time_and_say_so(near: NearDuplicates) -> None:
    a, b, c = observe(
        near,
        [
            post("no-time", "a1", None),
            post("future", "a2", NOW + 86400, variant(2)),
            post("no-account", None, NOW, variant(3)),
        ],
    )
    assert NO_TIME in a.warnings and FUTURE in b.warnings and NO_ACCOUNT in c.warnings
    entry = near.local.index.get("future")
    assert entry is not None and entry.created_at == NOW


@pytest.mark.parametrize("replay", [False, True])
def test_undated_posts_of_one_call_arrive_in_the_order_given(
    near: NearDuplicates, replay: bool
) -> None:
    near.replay = replay
    _, orig, copy = observe(
        near,
        [
            post("dated", "other", NOW - 60, "今天天气很好适合出去散步拍照"),
            post("orig", "author", None),
            post("copy", "copier", None, variant(1), declared_original=True),
        ],
    )
    assert (NO_TIME_REPLAY if replay else NO_TIME) in orig.warnings
    assert copy.scores["fake_originality"] > 0
    assert copy.evidence["fake_originality"]["earlier_post"] == "orig"
    # live, the clock and a step per position; in a replay, a step after the newest post seen
    base = NOW - 60 if replay else NOW
    times = {p: e.created_at for p in ("dated", "orig", "copy") if (e := near.local.index.get(p))}
    assert times == {
        "dated": NOW - 60,
        "orig": base + ARRIVAL_STEP,
        "copy": base + 2 * ARRIVAL_STEP,
    }


def test_an_undated_copy_in_a_replay_comes_after_the_newest_post_seen(
    near: NearDuplicates,
) -> None:
    near.replay = True
    _, copy = observe(
        near,
        [
            post("orig", "author", NOW - 3600),
            post("copy", "copier", None, variant(1), declared_original=True),
        ],
    )
    assert copy.evidence["fake_originality"]["earlier_post"] == "orig"
    assert copy.evidence["fake_originality"]["gap_s"] == 0.0  # a step, rounded to 1 ms


def test_a_post_older_than_the_window_is_matched_but_not_kept(near: NearDuplicates) -> None:
    observe(near, [post("now", "a1", NOW)])
    (old,) = observe(near, [post("old", "a2", NOW - 200 * 3600, variant(4))])
    assert TOO_OLD in old.warnings
    assert old.cluster is not None and near.local.index.get("old") is None


def test_the_same_post_id_twice_is_counted_once(near: NearDuplicates) -> None:
    first = observe(near, [post("p", "a1", NOW), post("q", "a2", NOW)])
    again = observe(near, [post("p", "a1", NOW)])
    assert first[1].cluster is not None and again[0].cluster is not None
    assert again[0].cluster.size == first[1].cluster.size == 2


def test_a_post_not_indexed_is_one_member_however_often_it_comes(near: NearDuplicates) -> None:
    observe(near, [post("now", "a1", NOW)])
    for _ in range(3):
        (old,) = observe(near, [post("old", "a2", NOW - 200 * 3600, variant(4))])
        assert old.cluster is not None and old.cluster.size == 2
    flood = observe(near, [post(f"f{i}", f"s{i}", NOW + 1 + i) for i in range(CROWD)])
    size = flood[-1].cluster.size if flood[-1].cluster else 0
    assert len(near.local.index) == CROWD  # the last of the flood was not indexed
    (again,) = observe(near, [post(f"f{CROWD - 1}", f"s{CROWD - 1}", NOW + CROWD)])
    assert again.cluster is not None and again.cluster.size == size


def test_ids_of_posts_not_indexed_are_forgotten_with_the_window_or_past_a_bound(
    near: NearDuplicates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "MAX_UNINDEXED", 2)
    old = [post(f"old{i}", f"a{i}", NOW - 200 * 3600, variant(i)) for i in range(3)]
    observe(near, [post("now", "a1", NOW), *old])
    assert list(near.local.unindexed) == ["old1", "old2"]
    later = NOW + (72 + 12) * 3600 + 1  # the window and a bucket on, as Redis expires the key
    near.clock = lambda: later
    observe(near, [post("next", "a3", later, "另一件事：今天的天气很好，适合出门散步和拍照")])
    assert not near.local.unindexed


def test_a_copy_of_a_banked_rumour_gets_the_rumour_score_and_the_notice(
    near: NearDuplicates,
) -> None:
    banked = banked_rumour(near, TEMPLATE)
    stale = StoredRumor(**{**banked.__dict__, "rumor_id": "r0", "fingerprint": "other"})
    assert near.sync_bank([stale, banked]) == ["r0"]
    copy, unrelated = observe(
        near, [post("c", "a", NOW, variant(5)), post("u", "b", NOW, "今天天气很好适合出去散步拍照")]
    )
    assert copy.scores["rumor"] >= 0.4 and "rumor" not in unrelated.scores
    assert copy.evidence["rumor"]["confirmed_rumor"] == "r1"
    assert copy.evidence["rumor"]["notice"] == banked.notice
    assert [m.entry.post_id for m in near.copies(banked)] == ["c"]
    assert (
        near.sync_bank([]) == []
        and observe(near, [post("d", "x", NOW)])[0].scores.get("rumor") is None
    )


def test_records_carry_coordination_fake_originality_and_the_cluster(pipeline: Pipeline) -> None:
    fresh = Pipeline(pipeline.classifier, pipeline.policy)
    k = pipeline.policy.near_duplicates.batch_accounts
    posts = [post(f"p{i}", f"acct{i}", NOW - 900 + 60 * i, variant(i)) for i in range(k)]
    posts.append(post("claim", "thief", NOW, "原创首发：" + TEMPLATE, declared_original=True))
    records = fresh.score_many(posts)
    assert [r.flags["coordination"] for r in records] == [False] * (k - 1) + [True, True]
    last = records[-1]
    assert last.flags["fake_originality"] and last.decision in ("review", "block")
    codes = {r.code: r.evidence for r in last.reasons}
    assert codes["art18.4.coordinated_posting"]["earliest"]["id"] == "p0"
    assert codes["art18.6.forged_originality"]["earlier_post"] == "p0"
    assert last.cluster is not None and last.cluster.batch and last.cluster.size == k + 1
    assert records[0].cluster is None


def test_signatures_of_a_batch_do_not_depend_on_the_batch(near: NearDuplicates) -> None:
    one = near.signature_of(TEMPLATE, None)
    assert one is not None
    texts = [variant(i) for i in range(5)] + [TEMPLATE]
    batch = near.fingerprinter.signatures(
        [f.canonical for f in near.fingerprinter.fingerprints(texts)]
    )
    assert np.array_equal(batch[-1], one)


def test_a_flood_of_identical_posts_grows_the_cluster_not_the_index(near: NearDuplicates) -> None:
    flood = [post(f"f{i}", "spam", NOW + i) for i in range(CROWD + 150)]
    found = observe(near, flood)
    assert found[-1].cluster is not None and found[-1].cluster.size == len(flood)
    assert len(near.local.index) == CROWD


def test_a_snapshot_restores_the_window_and_one_of_another_layout_is_not_read(
    near: NearDuplicates, settings: Settings, policy: Policy, tmp_path: Path
) -> None:
    observe(near, [post(f"s{i}", f"a{i}", NOW + i, variant(i)) for i in range(3)])
    path = tmp_path / "neardup.pickle"
    near.snapshot(path)
    restarted = NearDuplicates.from_settings(settings, policy)
    restarted.clock = lambda: NOW
    assert restarted.restore(path)
    (again,) = observe(restarted, [post("s9", "a9", NOW + 9, variant(9))])
    assert again.cluster is not None and again.cluster.size == 4
    # a snapshot the band tables of an earlier release wrote: (version, window) in one pickle
    path.write_bytes(pickle.dumps((near.fingerprinter.version, {"buckets": "old"})))
    assert not NearDuplicates.from_settings(settings, policy).restore(path)


def test_a_post_not_indexed_is_edited_unless_a_snapshot_kept_no_digest_of_its_text(
    near: NearDuplicates, settings: Settings, policy: Policy
) -> None:
    other = "今天天气很好适合出去散步拍照"
    old = [post(f"old{i}", "a2", NOW - 200 * 3600, variant(4)) for i in range(2)]
    observe(near, [post("now", "a1", NOW), *old])
    (edited,) = observe(near, [old[0].model_copy(update={"text": other})])
    assert EDITED in edited.warnings and edited.cluster is None
    # a snapshot of the release before digests: (cluster id, when) per id not indexed
    near.local.unindexed = OrderedDict(
        (post_id, kept[:2])  # type: ignore[misc]
        for post_id, kept in near.local.unindexed.items()
    )
    restarted = NearDuplicates.from_settings(settings, policy)
    restarted.clock = lambda: NOW
    assert restarted.loads(near.dumps())
    (again,) = observe(restarted, [old[1].model_copy(update={"text": other})])
    assert EDITED not in again.warnings
    assert again.cluster is not None and again.cluster.size == 3


def test_a_post_not_indexed_is_refused_to_another_account_unless_a_snapshot_kept_none(
    near: NearDuplicates, settings: Settings, policy: Policy
) -> None:
    old = [post(f"old{i}", "a2", NOW - 200 * 3600, variant(4)) for i in range(2)]
    observe(near, [post("now", "a1", NOW), *old])
    (refused,) = observe(near, [old[0].model_copy(update={"account_id": "a3"})])
    assert HELD in refused.warnings and refused.cluster is None
    # a snapshot of the release before accounts: (cluster id, when, digest) per id not indexed
    near.local.unindexed = OrderedDict(
        (post_id, kept[:3])  # type: ignore[misc]
        for post_id, kept in near.local.unindexed.items()
    )
    restarted = NearDuplicates.from_settings(settings, policy)
    restarted.clock = lambda: NOW
    assert restarted.loads(near.dumps())
    (again,) = observe(restarted, [old[1].model_copy(update={"account_id": "a3"})])
    assert HELD not in again.warnings
    assert again.cluster is not None and again.cluster.size == 3


def test_the_frontier_holds_the_ids_of_posts_not_indexed(near: NearDuplicates) -> None:
    observe(near, [post("now", "a1", NOW)])
    before = near.frontier()
    # too old and with no copy: no index entry, no cluster, only its id is kept
    (old,) = observe(near, [post("old", "a2", NOW - 200 * 3600, "今天天气很好适合出去散步拍照")])
    assert old.cluster is None and near.frontier() != before


def test_a_snapshot_from_before_the_unindexed_ids_is_read(
    near: NearDuplicates, settings: Settings, policy: Policy
) -> None:
    observe(near, [post("now", "a1", NOW), post("old", "a2", NOW - 200 * 3600, variant(4))])
    del near.local.unindexed  # as a LocalStore of the release before pickled
    del near.local.earlier
    restarted = NearDuplicates.from_settings(settings, policy)
    assert restarted.loads(near.dumps()) and not restarted.local.unindexed
    assert not restarted.local.earlier
    assert restarted.local.index.get("now") is not None


def test_the_frontier_holds_the_clusters_an_edited_post_was_in(near: NearDuplicates) -> None:
    observe(near, [post(f"p{i}", f"a{i}", NOW + i, variant(i)) for i in range(3)])
    observe(near, [post("p1", "a1", NOW + 1, "今天天气很好适合出去散步拍照")])
    before = near.frontier()
    near.local.earlier.clear()  # as if p1 had been counted in no cluster
    assert near.frontier() != before


def test_the_frontier_tells_whether_later_posts_get_the_same_findings(
    settings: Settings, policy: Policy
) -> None:
    def fresh() -> NearDuplicates:
        built = NearDuplicates.from_settings(settings, policy)
        built.clock = lambda: NOW
        return built

    early = [post(f"e{i}", f"a{i}", NOW - 2 * 86400 + i, variant(i)) for i in range(3)]
    recent = [post(f"r{i}", f"b{i}", NOW + i, variant(i + 3)) for i in range(3)]
    later = [post(f"l{i}", f"c{i}", NOW + 600 + i, variant(i + 6)) for i in range(5)]
    full, copy, short = fresh(), fresh(), fresh()
    observe(full, early + recent)
    # the state passed on (a batch segment's end, a checkpoint) reads as the same frontier
    assert copy.loads(full.dumps()) and copy.frontier() == full.frontier()
    # a replay that starts after the chain did builds a cluster with other members
    observe(short, recent)
    assert short.frontier() != full.frontier()
    expected = observe(full, later)
    assert observe(copy, later) == expected
    assert observe(short, later) != expected
    assert copy.loads(None) and copy.frontier() == fresh().frontier()
