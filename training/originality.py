"""The labelled corpus of the ``originality_claim`` head, built from real Weibo16 texts.

The head scores whether a post's text *claims* its content as the poster's own or first
(原创, 首发, 独家, 转载请注明出处, 未经授权禁止转载, 自己拍的, 本号首发, 版权所有...). No
labelled set of such claims exists, and in the real posts genuine claims are rare while texts
that merely contain the words are common, so the corpus is built from real texts in four parts,
all deterministic for a given seed:

1. **Base texts.** One pass reads all Weibo16 source posts (``posts.jsonl``), then the reposts
   (``reposts.jsonl.gz``, or only the first ``max_reposts``). Every text that has no claim or
   attribution keyword at all (:func:`rule_label` is ``None``) and is at most ``MAX_BASE_CHARS``
   characters long is offered to a reservoir sample (Algorithm R, ``random.Random(f"{seed}:
   bases")``) of ``OVERSAMPLE·size`` texts; boilerplate (:func:`service.boilerplate.
   is_boilerplate`) and repeated texts are then dropped from it and the rest is shuffled
   (``random.Random(f"{seed}:compose")``): a uniform sample of the keyword-free, non-boilerplate
   texts. Texts are kept exactly as written (nothing stripped). A text's *group* is its event
   (``Repost.event``, or the source post's own id) and its split is
   ``split_of(f"originality:{event}")``, so all texts of one event land in one split.
2. **Real matches.** The same pass labels every non-boilerplate text that has a keyword with the
   rule labeller :func:`rule_label` and keeps it, once per distinct text, with its event's group
   and split: label 1 (*real-claim*) when a claim pattern matches after @mentions are removed and
   confusable phrases are blanked, else label 0 (*real-confusable*): keyword handles such as
   ``@我的独家记忆``, 独家播出/独家代理, 首发阵容 and sports line-ups, 原文作者..., 原创歌曲,
   这是谁原创的, 转自@x, 来源：x, via @x, 求转载, 版权费, 失独家庭. The rules are precise but not
   perfect; they are the only labels the real texts get.
3. **Composed examples.** The shuffled base texts are cut, in this order, into composed claims
   (label 1), composed confusables (label 0) and plain texts (label 0, the base text as is).
   A composed example wraps one base text in a template of :data:`TEMPLATES` as prefix, suffix
   or infix (``{a}``/``{b}``: the base split at a clause boundary), with varied
   punctuation and emoji. Claim families: 原创, 首发, 独家, 转载声明, 自己拍写. Confusable
   families: 提及 (@handles: real handles harvested from the texts by a regex, either ones whose
   name holds 独家/原创/首发 or ordinary ones with such an affix added), 播出代理 (platforms and
   brands with 独家播出, 独家代理...), 阵容发布 (line-ups and product launches), 他人原创 (someone
   else's text, questions about who wrote it), 流派 (原创歌曲 as a genre), 转载来源 (attribution
   and repost requests). Families are dealt round-robin over the shuffled base texts. The counts
   aim at ``POSITIVE_SHARE`` positives overall and ``HARD_SHARE`` of the negatives being
   confusables (real or composed), with all real matches counted in: composed claims =
   ``round(POSITIVE_SHARE·size)`` minus real claims, composed confusables =
   ``round(HARD_SHARE·negatives)`` minus real confusables (negatives = ``size`` minus that
   positive count), plain texts make up ``size``.
4. **Held-out templates.** In every family, every third template (index 2, 5, 8, ...) is
   *held out*: composed examples of the ``eval`` split use only held-out templates, those of
   ``train`` and ``calib`` only the others, so the eval figure measures generalisation to
   phrasings never seen in training. Real keyword handles are divided the same way (a third, by
   a keyed hash, for ``eval`` only). The ``eval`` split is then: the base texts of ``eval``
   events with held-out templates, plain texts of ``eval`` events, and real matches of ``eval``
   events.

:func:`build_corpus` returns the examples (a deterministic shuffle) and :func:`describe` their
counts per split, label and kind, for the model card.
"""

from __future__ import annotations

import itertools
import random
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar

from service.boilerplate import is_boilerplate
from service.heads import Head
from service.normalise import normalise
from training.data import Example, Split, reposts, split_of, weibo16

HEAD: Head = "originality_claim"
POSITIVE_SHARE = 0.4
"""Share of label-1 examples in the corpus."""
HARD_SHARE = 0.45
"""Share of the label-0 examples that are confusables (the rest are plain texts)."""
MAX_BASE_CHARS = 200
"""Longest base text: with a template around it, it stays inside the classifier's window."""
OVERSAMPLE = 4
"""Base-text reservoir size per example: about half the candidates are boilerplate."""
HANDLE_SAMPLE = 5000
"""Ordinary @handles kept (a uniform sample of their occurrences)."""

Kind = Literal["real-claim", "real-confusable", "composed-claim", "composed-confusable", "plain"]
KINDS: tuple[Kind, ...] = (
    "real-claim",
    "real-confusable",
    "composed-claim",
    "composed-confusable",
    "plain",
)

# --- the rule labeller ------------------------------------------------------------------------
# All patterns run on the text as the classifier sees it (service.normalise: NFKC, lower case,
# simplified characters), so full-width ：！（） have become :!() and 原創 has become 原创.

_BOUNDARY = r",。!?;:~、\s"
_QUESTION_AHEAD = r"(?![^,。!?;\n]*[吗么吧?])"
_VERB = "[拍写画剪录摄]"

_KEYWORD = re.compile(
    # claim vocabulary
    r"原创|首发|独家|转载|版权|©|(?:侵权|盗图|盗版|翻版|转载)必究"
    rf"|自己{_VERB}|亲[手自]{_VERB}|本人亲?(?:拍|摄|所)"
    r"|(?:禁止|严禁|谢绝|请勿|不得|拒绝|勿)\s*(?:私自|擅自|随意)?\s*(?:搬运|盗图|盗用)"
    r"|未经[^,。!?]{0,8}(?:授权|许可|允许|同意)"
    # attribution vocabulary: someone else's text or source
    r"|出处(?!理)|本号|原文|摘自|转自|(?<![a-z])via(?![a-z])"
    r"|来源\s*:|(?:图片|消息|新闻|文章|信息|数据|照片|视频|内容)来源"
)
_RAW_KEYWORD = re.compile(
    r"原[创創]|[独獨]家|首[发發]|[转轉][载載]|版[权權]|©|必究|搬[运運]|盗[图圖用]"
    r"|自己[拍写寫画畫剪录錄摄攝]|[亲親][手自]|本人|未[经經]|出[处處]|本[号號]|原文|摘自"
    r"|[转轉]自|[来來]源|[vｖＶ][iｉＩ][aａＡ]",
    re.IGNORECASE,
)
"""A cheap test on the raw text that every ``_KEYWORD`` text passes (traditional characters
included, exotic compatibility forms aside), so that only ~0.3% of the texts get normalised."""

_MENTION = re.compile(r"(?://)?@[^\s@:,。!?;、()【】\[\]#/]{1,30}:?")

_CONFUSABLE = re.compile(
    # rights, distribution, sponsorship, products, the song 独家记忆
    r"独家(?:代理|播出|播放|热播|首播|放送|上线|冠名|赞助|出资|承办|经销|销售|代言|合作|供应|定制"
    r"|授权|版权|垄断|经营|发明|秘方|配方|技术|记忆|的记忆|专属|限量|特色)"
    r"|独家庭"  # 失独家庭, 双独家庭
    r"|[“\"'‘「『]\s*(?:独家|原创|首发)\s*[”\"'’」』]"  # the word itself, quoted
    r"|接受[^,。!?]{0,12}独家(?:专访|采访)"  # someone else's interview
    r"|首发(?:阵容|名单|阵型|出场|登场|上场|出战|球员|门将|前锋|中锋|后卫|中场|十一人|11人"
    r"|式|价|日|车型|新品|机型)"
    # a genre, unless the poster says it is their own
    r"|(?<!本人)(?<!我)(?<!自己)(?<!本号)(?<!纯)原创(?:歌曲|音乐|歌手|单曲|专辑|弹唱|剧本|新药"
    r"|设计|动画|节目|电影|小说|文学|手作|作品)"
)
_SPORTS = re.compile(
    r"阵容|替补|球员|球队|主力|门将|前锋|后卫|中场|进球|比赛|联赛|中超|亚冠|英超|西甲|欧冠|世界杯"
    r"|主教练|球迷|国足|恒大|国安|申花|鲁能|上港|nba|cba"
)
"""In a sports text every 首发 is a starting line-up."""

_CLAIMS = tuple(
    re.compile(p)
    for p in (
        # a tag: 【原创】 (原创) #新浪独家# 【tvreport独家】 #原创首发#, or a leading [清新首发]
        r"[【(#]\s*[^【】()#\s]{0,12}(?:原创|首发|独家)[^【】()#\s]{0,6}\s*[】)#]",
        r"^\s*\[[^\[\]\s]{0,10}(?:原创|首发|独家)[^\[\]\s]{0,6}\]",
        r"^\s*(?:原创|首发|独家)\s*[:|丨!]",
        # own original
        rf"(?:本人|我|自己|本号|本站|本博|本文|此文|本帖|纯)(?:的|系|为|属|是)?原创{_QUESTION_AHEAD}",
        r"原创\s*[,!。]?\s*(?:勿|请勿|禁止|严禁|谢绝|未经|转载|盗|搬运|by)",
        # first release
        r"(?:本号|本站|本博|本文|此文|本台|本刊|本报)首发|首发于\s*(?:本|我|此)"
        r"|(?:原创|独家|全网|微博|网络)首发(?!的)",
        # media exclusive
        r"独家(?:最新|重磅|重大)?(?:专访|采访|对话|报道|爆料|消息|视频|图片|照片|写真|直击"
        r"|披露|揭秘|曝光|获悉|获得|解读|评论|策划|整理|调查|跟进|追踪|新闻|首发|发布|内容|稿"
        r"|猛料|探访)"
        r"|(?:本号|本站|本台|本报|本刊|本博)独家",
        # reposting notices and rights reserved
        r"转载\s*(?:请|需|须|务必|时请)\s*(?:注明|标明|联系|私信|经|获得|取得|征得|授权|告知)",
        r"(?:禁止|严禁|谢绝|请勿|不得|拒绝|勿)\s*(?:私自|擅自|随意)?\s*(?:转载|搬运|盗图|盗用)",
        r"未经[^,。!?]{0,8}(?:授权|许可|允许|同意)[^。!?]{0,6}(?:转载|使用|搬运|复制|盗用|引用)",
        r"版权(?:所有|归[^,。!?]{0,12}所有|声明)|©|(?:侵权|盗图|盗版|翻版|转载)必究",
        # made it myself: 我自己拍的, 图是自己拍的, a clause starting 自己画的, 本人拍摄
        rf"(?<!不是)(?<![不没别])(?:我|本人)(?:自己|亲手|亲自){_VERB}{_QUESTION_AHEAD}",
        rf"(?<!不)(?:都是|全是|均为|均是|图是|图片是|照片是|视频是|字是)(?:自己|亲手|亲自){_VERB}"
        rf"{_QUESTION_AHEAD}",
        rf"(?:^|(?<=[{_BOUNDARY}]))(?:自己|亲手){_VERB}的{_QUESTION_AHEAD}",
        r"本人亲?(?:拍摄|摄|所拍|所写|所画)",
    )
)


def _fold(text: str) -> str:
    return normalise(text, window=sys.maxsize).text


def _blank_confusables(text: str) -> str:
    if _SPORTS.search(text):
        text = text.replace("首发", " ")
    return _CONFUSABLE.sub(" ", text)


def rule_label(text: str) -> int | None:
    """1 if ``text`` claims its content as the poster's own or first, 0 if it only has a keyword.

    ``None`` when the text has no claim or attribution keyword at all. The claim test runs
    after @mentions are removed (a handle such as ``@我的独家记忆`` claims nothing) and confusable
    phrases (独家播出, 首发阵容, 原创歌曲...) are blanked.
    """
    folded = _fold(text)
    if not _KEYWORD.search(folded):
        return None
    cleaned = _blank_confusables(_MENTION.sub(" ", folded))
    return int(any(p.search(cleaned) for p in _CLAIMS))


# --- templates --------------------------------------------------------------------------------

_CLAIM_FAMILIES: dict[str, tuple[str, ...]] = {
    "原创": (
        "【原创】{t}",
        "{t}（原创）{e}",
        "原创丨{t}",
        "{t} #原创#",
        "本人原创，{t}",
        "{a}（纯原创，勿盗）{b}",
        "[原创] {t}{e}",
        "{t}\n——原创作品，请勿搬运",
        "{t}｜本文系原创{e}",
        "我的原创{e}：{t}",
        "{t} 原创不易，禁止盗用",
        "原创 by 我自己 {t}",
    ),
    "首发": (
        "【首发】{t}",
        "本号首发：{t}",
        "{t}（全网首发）",
        "首发！{t}{e}",
        "{t} #独家首发#",
        "{a}【本站首发】{b}",
        "{t}\n首发于本公众号，转发请注明",
        "微博首发 | {t}",
        "{t}（此文首发于我的博客）",
        "[首发]{t}",
        "{t} 本博首发{e}",
        "网络首发：{t}",
    ),
    "独家": (
        "#新浪独家#{t}",
        "【独家】{t}",
        "独家爆料：{t}",
        "{t}（{outlet}独家报道）",
        "【{outlet}独家】{t}",
        "{outlet}独家视频：{t}",
        "独家专访 | {t}",
        "{t} ——本台独家消息{e}",
        "{a}，独家获悉，{b}",
        "#独家# {t}",
        "{t}【独家直击】",
        "本报独家：{t}",
    ),
    "转载声明": (
        "{t}\n转载请注明出处",
        "{t}（未经授权禁止转载）",
        "{t} 版权所有，侵权必究",
        "【禁止转载】{t}",
        "{t}。谢绝转载！{e}",
        "{a}（转载请私信授权）{b}",
        "{t} ©{outlet}",
        "{t}\n如需转载请联系作者",
        "{t} 未经许可不得转载使用",
        "严禁转载～{t}",
        "{t}【版权归作者所有】",
        "转载须经本人同意。{t}",
    ),
    "自己拍写": (
        "{t} 图是自己拍的",
        "自己拍的！{t}",
        "{t}（照片都是我自己拍的，勿盗）",
        "{t} 字是我自己写的{e}",
        "本人拍摄：{t}",
        "{a}——视频是我自己剪的——{b}",
        "{t} 自己画的，喜欢就点个赞",
        "亲手拍的～{t}",
        "{t}\n文字和图片都是本人原创",
        "{t} 这首诗是我自己写的",
        "我自己拍的{e} {t}",
        "{t}（图：本人亲摄）",
    ),
}

_CONFUSABLE_FAMILIES: dict[str, tuple[str, ...]] = {
    "提及": (
        "@{khandle} {t}",
        "{t} @{khandle}{e}",
        "{t} //@{khandle}:{e}",
        "@{handle}的独家记忆 {t}",
        "{t} 快看@原创{handle}",
        "{t} @独家{handle} 你看看",
        "回复@{handle}首发站:{t}",
        "{a} @{handle}原创音乐 {b}",
        "@{handle}独家 @{khandle} {t}",
    ),
    "播出代理": (
        "本剧由{platform}独家播出。{t}",
        "{t}（{platform}独家热播中）",
        "{t} {platform}独家首播{e}",
        "{brand}中国区独家代理 {t}",
        "{t}\n本节目由{brand}独家冠名",
        "{a}，{platform}拿下了独家版权，{b}",
        "#{platform}独家上线# {t}",
        "{t} 这下要交版权费了{e}",
        "{t}（{brand}独家赞助）",
    ),
    "阵容发布": (
        "今晚{team}首发阵容公布！{t}",
        "{t} {team}首发名单出炉",
        "{t}（{team}今天的首发十一人）",
        "{player}首发出场，{t}",
        "{t} 新机将于下月全球首发{e}",
        "{a}，{player}又首发了，{b}",
        "{t} 首发式在北京举行",
        "{team}首发阵型4-3-3 {t}",
        "{t} 替补还是首发？",
    ),
    "他人原创": (
        "原文作者写得真好，{t}",
        "{t} 求原文出处",
        "{t} 这是谁原创的？",
        "{t}（不是他自己写的吧）",
        "原创者是谁啊？{t}",
        "{a}，这真是她自己拍的吗？{b}",
        "{t} 看了原文才知道被断章取义了",
        "{t} 冒充原创，抄的别人的",
        "{t} 原作者另有其人，原文链接找不到了",
    ),
    "流派": (
        "推荐一首原创歌曲：{t}",
        "{t} #原创音乐#",
        "{t}（最佳原创剧本提名）",
        "原创歌手{singer}的新歌，{t}",
        "{t} 国产原创动画加油{e}",
        "{a}，支持原创设计，{b}",
        "{t} 听了一晚上原创音乐人的歌",
        "{t} 原创歌曲大赛开始报名了",
        "{t}\n#{singer}首献原创弹唱#",
    ),
    "转载来源": (
        "转自@{handle}：{t}",
        "{t}（来源：{outlet}）",
        "{t} via @{handle}",
        "【转载】{t}",
        "{t} 求转载扩散！{e}",
        "{a}（图片来源网络，侵删）{b}",
        "{t}\n摘自{outlet}",
        "必须转载！{t}",
        "{t} 被{outlet}转载过了",
    ),
}

_FILLS: dict[str, tuple[str, ...]] = {
    "outlet": (
        "新浪", "澎湃新闻", "新京报", "财新", "凤凰网", "央视", "环球时报", "南方周末", "界面新闻",
        "腾讯新闻", "人民网", "新华社", "网易新闻", "搜狐娱乐", "三联生活周刊", "北京青年报",
        "红星新闻", "华商报",
    ),
    "platform": (
        "爱奇艺", "腾讯视频", "优酷", "芒果TV", "PPTV", "搜狐视频", "乐视视频", "哔哩哔哩",
        "湖南卫视", "CCTV5", "咪咕视频", "西瓜视频", "浙江卫视", "东方卫视",
    ),
    "brand": (
        "安利", "伊利", "蒙牛", "农夫山泉", "加多宝", "雪花啤酒", "华为", "小米", "欧莱雅", "耐克",
        "宝马", "卡地亚",
    ),
    "team": (
        "恒大", "国安", "申花", "鲁能", "上港", "国足", "皇马", "巴萨", "曼联", "湖人", "勇士",
        "辽宁男篮", "广东宏远",
    ),
    "player": ("郑智", "武磊", "梅西", "C罗", "郜林", "詹姆斯", "易建联", "孙兴慜", "内马尔"),
    "singer": ("王源", "李宇春", "毛不易", "周杰伦", "张靓颖", "许嵩", "陈粒", "华晨宇"),
    "e": ("", "", "", " [赞]", "👍", "🔥", "[哈哈]", "✨", "！", " [心]", "~"),
}  # fmt: skip
"""Fixed fill-ins; ``handle`` and ``khandle`` come from the data (:class:`_Scan`)."""

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_CLAUSE_END = re.compile(rf"[{_BOUNDARY}]+")


@dataclass(frozen=True, slots=True)
class Template:
    """One phrasing: ``{t}`` is the base text, ``{a}``/``{b}`` its two halves (an infix)."""

    id: str
    family: str
    pattern: str
    label: int
    held_out: bool
    """Used only for the ``eval`` split."""

    @property
    def fills(self) -> frozenset[str]:
        return frozenset(_PLACEHOLDER.findall(self.pattern)) - {"t", "a", "b"}

    @property
    def fixed(self) -> str:
        """The longest literal part of the pattern: the phrasing a model could memorise."""
        return max((s.strip() for s in _PLACEHOLDER.split(self.pattern)[::2]), key=len)


def _templates() -> tuple[Template, ...]:
    out = []
    for families, label in ((_CLAIM_FAMILIES, 1), (_CONFUSABLE_FAMILIES, 0)):
        for family, patterns in families.items():
            out += [
                Template(f"{family}.{i}", family, p, label, held_out=i % 3 == 2)
                for i, p in enumerate(patterns)
            ]
    return tuple(out)


TEMPLATES = _templates()
"""Every template; in each family every third one is held out for ``eval``."""


# --- one pass over the real texts -------------------------------------------------------------

T = TypeVar("T")


class _Reservoir(Generic[T]):
    """A uniform sample of ``size`` items from a stream of unknown length (Algorithm R)."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.items: list[T] = []
        self._seen = 0
        self._rng = rng

    def offer(self, item: T) -> None:
        self._seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        elif (j := self._rng.randrange(self._seen)) < self.size:
            self.items[j] = item


@dataclass(frozen=True, slots=True)
class _Text:
    text: str
    event: str

    @property
    def split(self) -> Split:
        return split_of(f"originality:{self.event}")


_HANDLE = re.compile(r"@([^\s@:：,，。.!！?？;；、()（）【】\[\]#/\\'\"“”<>《》]{2,20})")
_KEYWORD_HANDLE = re.compile(r"原[创創]|[独獨]家|首[发發]")


@dataclass
class _Scan:
    """What one pass over the real texts keeps."""

    bases: _Reservoir[_Text]
    handles: _Reservoir[str]
    matches: dict[str, tuple[_Text, int]] = field(default_factory=dict)
    """Distinct keyword texts with their rule label, first occurrence kept."""
    keyword_handles: set[str] = field(default_factory=set)

    def add(self, item: _Text) -> None:
        if "@" in item.text:
            self._harvest(item.text)
        label = rule_label(item.text) if _RAW_KEYWORD.search(item.text) else None
        if label is None:
            if len(item.text) <= MAX_BASE_CHARS:
                self.bases.offer(item)
        elif item.text not in self.matches and not is_boilerplate(item.text):
            self.matches[item.text] = (item, label)

    def _harvest(self, text: str) -> None:
        for handle in _HANDLE.findall(text):
            if _KEYWORD_HANDLE.search(handle):
                self.keyword_handles.add(handle)
            elif not handle.isdigit() and not _RAW_KEYWORD.search(handle):
                self.handles.offer(handle)

    def base_texts(self, n: int, rng: random.Random) -> list[_Text]:
        """``n`` distinct, non-boilerplate base texts in random order."""
        seen: set[str] = set()
        out = []
        for item in self.bases.items:
            if item.text not in seen and not is_boilerplate(item.text):
                seen.add(item.text)
                out.append(item)
        if len(out) < n:
            raise ValueError(f"{len(out)} base texts found, {n} needed: read more reposts")
        rng.shuffle(out)
        return out[:n]

    def pools(self, split: Split) -> dict[str, tuple[str, ...]]:
        """Fill-ins for ``split``: real keyword handles of eval are never used elsewhere."""
        held = split == "eval"
        khandles = tuple(h for h in sorted(self.keyword_handles) if _held_handle(h) == held)
        handles = tuple(sorted(set(self.handles.items)))
        return {**_FILLS, "handle": handles, "khandle": khandles}


def _held_handle(handle: str) -> bool:
    return split_of(f"originality-handle:{handle}", calib=0.0, evaluation=1 / 3) == "eval"


def _real_texts(data_dir: Path, max_reposts: int | None) -> Iterator[_Text]:
    for post in weibo16(data_dir):
        yield _Text(post.text, post.group)
    for repost in itertools.islice(reposts(data_dir), max_reposts):
        yield _Text(repost.text, repost.event)


def _scan(data_dir: Path, max_reposts: int | None, seed: int, size: int) -> _Scan:
    scan = _Scan(
        bases=_Reservoir(OVERSAMPLE * size, random.Random(f"{seed}:bases")),
        handles=_Reservoir(HANDLE_SAMPLE, random.Random(f"{seed}:handles")),
    )
    for item in _real_texts(data_dir, max_reposts):
        scan.add(item)
    return scan


# --- composing the corpus ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OriginalityExample(Example):
    """An :class:`Example` that also says how it was made, for :func:`describe` and the tests."""

    kind: Kind
    template: str
    """The :class:`Template` id of a composed example, else empty."""


@dataclass(frozen=True, slots=True)
class _Plan:
    claims: int
    confusables: int
    plain: int


def _plan(size: int, real_claims: int, real_confusables: int) -> _Plan:
    positives = round(POSITIVE_SHARE * size)
    claims = max(0, positives - real_claims)
    confusables = max(0, round(HARD_SHARE * (size - positives)) - real_confusables)
    plain = size - real_claims - real_confusables - claims - confusables
    if plain < 0:
        raise ValueError(f"size {size} is smaller than the real matches and their complement")
    return _Plan(claims, confusables, plain)


def _halves(text: str, rng: random.Random) -> tuple[str, str]:
    """``text`` cut after a random inner clause boundary (the whole text if it has none)."""
    cuts = [m.end() for m in _CLAUSE_END.finditer(text) if 0 < m.end() < len(text)]
    cut = rng.choice(cuts) if cuts else len(text)
    return text[:cut], text[cut:]


def _fill(
    template: Template, text: str, pools: Mapping[str, Sequence[str]], rng: random.Random
) -> str:
    a, b = _halves(text, rng) if "{a}" in template.pattern else (text, "")
    values = {"t": text, "a": a, "b": b}

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        return values[name] if name in values else rng.choice(pools[name])

    return _PLACEHOLDER.sub(value, template.pattern)


def _usable(label: int, split: Split, pools: Mapping[str, Sequence[str]]) -> list[list[Template]]:
    """The templates of each family of ``label`` that ``split`` may use and ``pools`` can fill."""
    held_out = split == "eval"
    by_family: dict[str, list[Template]] = {}
    for tpl in TEMPLATES:
        if tpl.label == label and tpl.held_out == held_out and all(pools[n] for n in tpl.fills):
            by_family.setdefault(tpl.family, []).append(tpl)
    return list(by_family.values())


def _compose(
    bases: Sequence[_Text],
    label: int,
    pools: Mapping[Split, Mapping[str, Sequence[str]]],
    rng: random.Random,
) -> list[OriginalityExample]:
    """One composed example per base text, families dealt round-robin within each split."""
    kind: Kind = "composed-claim" if label else "composed-confusable"
    families = {split: _usable(label, split, p) for split, p in pools.items()}
    dealt: Counter[Split] = Counter()
    out = []
    for base in bases:
        split = base.split
        usable = families[split]
        template = rng.choice(usable[dealt[split] % len(usable)])
        dealt[split] += 1
        text = _fill(template, base.text, pools[split], rng)
        out.append(OriginalityExample(text, HEAD, label, split, base.event, kind, template.id))
    return out


def _real(scan: _Scan) -> list[OriginalityExample]:
    kinds: dict[int, Kind] = {1: "real-claim", 0: "real-confusable"}
    return [
        OriginalityExample(item.text, HEAD, label, item.split, item.event, kinds[label], "")
        for item, label in scan.matches.values()
    ]


def build_corpus(
    data_dir: Path, seed: int = 13, size: int = 12000, max_reposts: int | None = None
) -> list[Example]:
    """``size`` labelled examples for ``originality_claim`` (see the module docstring).

    The examples are :class:`OriginalityExample` objects; the same arguments give the same
    list. ``max_reposts`` reads only the first reposts (the tests use it to stay fast).
    """
    scan = _scan(data_dir, max_reposts, seed, size)
    real = _real(scan)
    real_claims = sum(e.label for e in real)
    plan = _plan(size, real_claims, len(real) - real_claims)
    rng = random.Random(f"{seed}:compose")
    bases = scan.base_texts(plan.claims + plan.confusables + plan.plain, rng)
    claim_bases = bases[: plan.claims]
    confusable_bases = bases[plan.claims : plan.claims + plan.confusables]
    plain = [
        OriginalityExample(b.text, HEAD, 0, b.split, b.event, "plain", "")
        for b in bases[plan.claims + plan.confusables :]
    ]
    pools: dict[Split, dict[str, tuple[str, ...]]] = {
        split: scan.pools(split) for split in ("train", "calib", "eval")
    }
    corpus: list[Example] = [
        *real,
        *_compose(claim_bases, 1, pools, rng),
        *_compose(confusable_bases, 0, pools, rng),
        *plain,
    ]
    rng.shuffle(corpus)
    return corpus


def _kind(example: Example) -> Kind:
    if not isinstance(example, OriginalityExample):
        raise TypeError("describe() counts build_corpus() output, whose examples carry a kind")
    return example.kind


def describe(corpus: Iterable[Example]) -> dict[str, dict[str, int]]:
    """Counts for the model card: per split and ``all``, examples, labels and kinds."""
    counts: dict[str, Counter[str]] = {s: Counter() for s in ("all", "train", "calib", "eval")}
    for example in corpus:
        for key in ("all", example.split):
            counts[key].update(("n", f"label_{example.label}", _kind(example)))
    return {
        split: {k: c[k] for k in ("n", "label_1", "label_0", *KINDS)} for split, c in counts.items()
    }


def ordinary_claims(
    corpus: Iterable[Example], rumour_event: Mapping[str, bool], split: Split
) -> list[str]:
    """The composed claims of ``corpus`` whose base text comes from a Weibo16 event of
    ``split`` (Weibo16's own split, not the corpus's) that is no rumour: ordinary posts with an
    originality notice, which give the rumor head no reason to flag them."""
    return [
        e.text
        for e in corpus
        if isinstance(e, OriginalityExample)
        and e.kind == "composed-claim"
        and rumour_event.get(e.group) is False
        and split_of(f"weibo16:{e.group}") == split
    ]


def with_claims(texts: Sequence[str], rng: random.Random) -> list[str]:
    """Each of ``texts`` with an originality notice: one of the train split's claim phrasings
    that need no account handle, families dealt in turn."""
    pools: dict[str, Sequence[str]] = {**_FILLS, "handle": (), "khandle": ()}
    families = _usable(1, "train", pools)
    return [
        _fill(rng.choice(families[i % len(families)]), text, pools, rng)
        for i, text in enumerate(texts)
    ]
