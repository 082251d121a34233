"""Originality claims found by rule: which texts claim their content as the poster's own or
first (原创, 首发于本号, 转载请注明出处, 版权所有...), and which only contain a claim word.

Three uses, one set of patterns:

- :func:`rule_label` labels the real texts of the originality corpus
  (:mod:`training.originality`), the only labels those texts get;
- :func:`has_claim_words` says where the originality head may score at all
  (:class:`service.classify.Classifier`): every claim of its corpus holds a claim word, so a
  text without one lies outside what the head learnt, and there its n-gram branch read hash
  collisions as claims ("就自己" shares a bucket with the "首发!" of a claim phrasing);
- :func:`without_notices` takes a post's rights notices out of the text the risk heads score
  (:class:`service.classify.Classifier`). A public account's post typically ends with one
  ("本文为原创，首发于本公众号，转载请联系授权"); it says who may copy the post, nothing about
  whether the post is true or abusive, yet words such as 联系, 公众号 and 转载 sit on the
  rumour side of the rumour corpus, and such a notice alone scored 0.64 to 0.88 as a rumour.
"""

from __future__ import annotations

import re

from service.boilerplate import content_of
from service.normalise import SEARCH_CHARS, search_text

# All patterns run on the text as the classifier sees it (service.normalise: NFKC, lower case,
# simplified characters), so full-width ：！（） have become :!() and 原創 has become 原创.

BOUNDARY = r",。!?;:~、\s"
_QUESTION_AHEAD = r"(?![^,。!?;\n]*[吗么吧?])"
_VERB = "[拍写画剪录摄]"

_CLAIM_WORDS = (
    r"原创|首发|独家|转载|版权|©|(?:侵权|盗图|盗版|翻版|转载)必究"
    rf"|自己{_VERB}|亲[手自]{_VERB}|本人亲?(?:拍|摄|所)"
    r"|(?:禁止|严禁|谢绝|请勿|不得|拒绝|勿)\s*(?:私自|擅自|随意)?\s*(?:搬运|盗图|盗用)"
    r"|未经[^,。!?]{0,8}(?:授权|许可|允许|同意)"
)
_CLAIM_WORD = re.compile(_CLAIM_WORDS)
_KEYWORD = re.compile(
    _CLAIM_WORDS
    # attribution vocabulary: someone else's text or source
    + r"|出处(?!理)|本号|原文|摘自|转自|(?<![a-z])via(?![a-z])"
    r"|来源\s*:|(?:图片|消息|新闻|文章|信息|数据|照片|视频|内容)来源"
)
_RAW_LETTER = "(?-i:[a-zA-Zａ-ｚＡ-Ｚ])"
"""The raw characters that normalising makes a letter a-z, whatever else it does."""
_RAW_VIA = "[vｖＶ][iｉＩ][aａＡ]"
RAW_KEYWORD = re.compile(
    r"原[创創]|[独獨]家|首[发發]|[转轉][载載]|版[权權]|©|必究|搬[运運]|盗[图圖用]"
    r"|自己[拍写寫画畫剪录錄摄攝]|[亲親][手自]|本人|未[经經]|出[处處]|本[号號]|原文|摘自"
    r"|[转轉]自|[来來]源"
    # via outside a word (not aviation, trivia), as _KEYWORD reads it: a letter beside it in
    # the raw text is one beside it in the normalised text, but where a link starts after it
    # ("viahttp://t.cn/x" reads "via url") and where search_text cuts a long text into its
    # two ends joined by 。 (a via that ends the head or starts the tail). Bounded once read:
    # a bound before it would be tried at every position of every text
    rf"|{_RAW_VIA}(?:(?<!{_RAW_LETTER}{_RAW_VIA})|(?=[\s\S]{{{SEARCH_CHARS - 3}}}\Z))"
    rf"(?:(?!{_RAW_LETTER})|(?=[hｈ])|(?<=\A[\s\S]{{{SEARCH_CHARS}}}))",
    re.IGNORECASE,
)
"""A cheap test on the raw text that every ``_KEYWORD`` text passes (traditional characters
included, exotic compatibility forms aside), so that only ~0.2% of the texts get normalised."""

_MENTION = re.compile(r"(?://)?@[^\s@:,。!?;、()【】\[\]#/|]{1,30}:?")

_CONFUSABLE = re.compile(
    # rights, distribution, sponsorship, products, the song 独家记忆
    r"独家(?:代理|播出|播放|热播|首播|放送|上线|冠名|赞助|出资|承办|经销|销售|代言|合作|供应|定制"
    r"|授权|版权|垄断|经营|发明|秘方|配方|技术|记忆|的记忆|专属|限量|特色)"
    r"|独家庭"  # 失独家庭, 双独家庭
    r"|版权归(?:原作者|原作|原创作者|原出处|原网站|原著|作者本人)[^,。!?]{0,6}所有"  # a credit
    r"|[“\"'‘「『]\s*(?:独家|原创|首发)\s*[”\"'’」』]"  # the word itself, quoted
    r"|接受[^,。!?]{0,12}独家(?:专访|采访)"  # someone else's interview
    r"|首发(?:阵容|名单|阵型|出场|登场|上场|出战|球员|门将|前锋|中锋|后卫|中场|十一人|11人"
    r"|式|价|日|车型|新品|机型)"
    # a genre, unless the poster says it is their own
    r"|(?<!本人)(?<!我)(?<!自己)(?<!本号)(?<!纯)原创(?:歌曲|音乐|歌手|单曲|专辑|弹唱|剧本|新药"
    r"|设计|动画|节目|电影|小说|文学|手作|作品)"
)
_SPORTS = re.compile(
    r"阵容|替补|球员|球队|主力(?!军)|门将|前锋|后卫|中场|进球|比赛|联赛|中超|亚冠|英超|西甲|欧冠"
    r"|世界杯|主教练|球迷|国足|恒大|(?<!联合)国安|申花|鲁能|上港|nba|cba"
)
"""In a sports text every 首发 is a starting line-up."""

_OWNERS = (
    r"(?:本|我|原|作者|公众号|微信|号|站|网|平台|官方|博主|账号|人|文章|书面|事先|的|所|有|"
    r"刊|报|台|和|及|任何|方)"
)
"""The words that fill a notice's gap for an owner or a manner (版权归本公众号所有, 未经作者本人
书面授权): any other word there is the post's own."""
_BARRING = (
    r"(?:[,\s]|禁止|严禁|不得|请勿|勿|谢绝|擅自|私自|随意|任何|人|单位|个人|均|一律|不|予|以|得)"
)
"""What goes between a notice's 授权 and its 转载 (未经授权，禁止转载)."""

_CLAIMS = tuple(
    re.compile(p)
    for p in (
        # a tag: 【原创】 (原创) #新浪独家# 【tvreport独家】 #原创首发#, or a leading [清新首发]
        r"[【(#]\s*(?P<free_a>[^【】()#\s]{0,12})(?:原创|首发|独家)(?P<free_b>[^【】()#\s]{0,6})\s*[】)#]",
        r"^\s*\[(?P<free_a>[^\[\]\s]{0,10})(?:原创|首发|独家)(?P<free_b>[^\[\]\s]{0,6})\]",
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
        # a notice's gaps: its own wording (本公众号, 作者本人书面), or words of the post's own
        # (its free groups, below)
        rf"未经(?:{_OWNERS}{{0,8}}|(?P<free_a>[^,。!?]{{0,8}}))(?:授权|许可|允许|同意)"
        rf"(?:{_BARRING}{{0,6}}|(?P<free_b>[^。!?]{{0,6}}))(?:转载|使用|搬运|复制|盗用|引用)",
        rf"版权(?:所有|归(?:{_OWNERS}{{0,12}}|(?P<free_a>[^,。!?]{{0,12}}))所有|声明)|©"
        r"|(?:侵权|盗图|盗版|翻版|转载)必究",
        # made it myself: 我自己拍的, 图是自己拍的, a clause starting 自己画的, 本人拍摄
        rf"(?<!不是)(?<![不没别])(?:我|本人)(?:自己|亲手|亲自){_VERB}{_QUESTION_AHEAD}",
        rf"(?<!不)(?:都是|全是|均为|均是|图是|图片是|照片是|视频是|字是)(?:自己|亲手|亲自){_VERB}"
        rf"{_QUESTION_AHEAD}",
        rf"(?:^|(?<=[{BOUNDARY}]))(?:自己|亲手){_VERB}的{_QUESTION_AHEAD}",
        r"本人亲?(?:拍摄|摄|所拍|所写|所画)",
    )
)


def _spaces(m: re.Match[str]) -> str:
    return " " * len(m.group())


def _blank(text: str, keep_offsets: bool = False) -> str:
    """``text`` with @mentions and confusable phrases blanked: each by one space, or by as many
    as it had characters (``keep_offsets``)."""
    blank = _spaces if keep_offsets else " "
    text = _MENTION.sub(blank, text)
    if _SPORTS.search(text):
        text = text.replace("首发", "  " if keep_offsets else " ")
    return _CONFUSABLE.sub(blank, text)


def has_claim_words(text: str) -> bool:
    """Whether normalised ``text`` holds a word that claims originality (原创, 首发, 独家, 转载,
    版权, 自己拍, 未经授权...; attribution words such as 来源 or 转自 are none) outside its
    @mentions and confusable phrases (``@我的独家记忆``, 独家播出, 首发阵容, 首发 in a sports text,
    原创歌曲...), which :func:`rule_label` blanks too: a claim of the rule and every claim of
    the originality corpus hold one."""
    return bool(
        RAW_KEYWORD.search(text) and _CLAIM_WORD.search(text) and _CLAIM_WORD.search(_blank(text))
    )


def rule_label(text: str) -> int | None:
    """1 if ``text`` claims its content as the poster's own or first, 0 if it only has a keyword.

    ``None`` when the text has no claim or attribution keyword at all. The claim test runs
    after @mentions are removed (a handle such as ``@我的独家记忆`` claims nothing) and confusable
    phrases (独家播出, 首发阵容, 原创歌曲...) are blanked.
    """
    folded = search_text(text)
    if not _KEYWORD.search(folded):
        return None
    return int(any(p.search(_blank(folded)) for p in _CLAIMS))


NOTICE_LEFTOVER = 3
"""Characters of a clause outside the claims in it that still leave the clause a notice
(公众号, 授权, 作者): a clause that says more is no notice and is kept whole, so that a
rumour cannot hide in one ("本号独家明天封城" keeps its four characters)."""

_CLAUSE = re.compile(rf"[^{BOUNDARY}]+[{BOUNDARY}]*")


def body_chars(text: str) -> int:
    """How many letters and digits of normalised ``text`` the risk heads score: its rights
    notices left out (:func:`without_notices`), and emoticon codes, @mentions, links and
    repost-chain markers (:func:`service.boilerplate.content_of`)."""
    body = without_notices(text)
    return len(content_of(text if body is None else body))


def without_notices(text: str) -> str | None:
    """Normalised ``text`` without its rights notices, or ``None`` when it has none: the
    characters of :func:`body_ranges`."""
    ranges = body_ranges(text)
    return None if ranges is None else "".join(text[s:e] for s, e in ranges)


def body_ranges(text: str) -> list[tuple[int, int]] | None:
    """The half-open ranges of normalised ``text`` that are no rights notice, in order, none
    touching the next, or ``None`` when it has no notice; empty when what the notices leave
    holds no letter or digit (what a notice leaves of itself, "|" or "——", is no post).

    A notice is a clause (up to a punctuation mark or a space, which goes with it) whose letters
    and characters a claim pattern covers all but at most :data:`NOTICE_LEFTOVER` of (a tag's
    brackets and claim word, not the rest of the tag: its ``free_*`` groups), once
    @mentions and confusable phrases are blanked as for :func:`rule_label`: "原创",
    "转载请注明出处", "首发于本公众号", "版权所有", "侵权必究". "独家消息明天全市封城" is a claim
    and more, and stays.
    """
    if not has_claim_words(text):
        return None
    # offsets kept, so that the matches fall on the text's own characters
    cleaned = _blank(text, keep_offsets=True)
    covered = [False] * len(text)
    for pattern in _CLAIMS:
        for m in pattern.finditer(cleaned):
            # what a tag holds beside its claim word is the post's own, not the notice's:
            # "#打死这帮狗东西原创#" is an insult in a tag; and so is what fills a notice's gaps:
            # "版权归明天上海全面封城所有" holds a rumour, which a notice covering it hid from
            # the heads and from the search for evidence. Another pattern's match may cover
            # them ("禁止转载" in "未经授权禁止转载")
            free = {i for name in pattern.groupindex for i in range(*m.span(name))}
            for i in range(m.start(), m.end()):
                covered[i] = covered[i] or i not in free
    if not any(covered):
        return None
    kept: list[tuple[int, int]] = []
    for clause in _CLAUSE.finditer(text):
        start, end = clause.span()
        # punctuation, brackets and emoji around a notice do not make it say more
        words = [i for i in range(start, end) if text[i].isalnum()]
        leftover = sum(not covered[i] for i in words)
        if any(covered[i] for i in words) and leftover <= NOTICE_LEFTOVER:
            continue
        if kept and kept[-1][1] == start:
            kept[-1] = (kept[-1][0], end)
        else:
            kept.append((start, end))
    return kept if any(text[i].isalnum() for s, e in kept for i in range(s, e)) else []
