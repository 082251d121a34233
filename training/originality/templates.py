"""The phrasings the originality corpus wraps around base texts: claim and confusable
families, their fill-ins, and the held-out third of each family (:data:`TEMPLATES`)."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.claims import BOUNDARY
from training.data import Split

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

FILLS: dict[str, tuple[str, ...]] = {
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
"""Fixed fill-ins; ``handle`` and ``khandle`` are harvested from the real texts
(:mod:`training.originality.corpus`)."""

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_CLAUSE_END = re.compile(rf"[{BOUNDARY}]+")


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


def halves(text: str, rng: random.Random) -> tuple[str, str]:
    """``text`` cut after a random inner clause boundary (the whole text if it has none)."""
    cuts = [m.end() for m in _CLAUSE_END.finditer(text) if 0 < m.end() < len(text)]
    cut = rng.choice(cuts) if cuts else len(text)
    return text[:cut], text[cut:]


def fill(
    template: Template, text: str, pools: Mapping[str, Sequence[str]], rng: random.Random
) -> str:
    a, b = halves(text, rng) if "{a}" in template.pattern else (text, "")
    values = {"t": text, "a": a, "b": b}

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        return values[name] if name in values else rng.choice(pools[name])

    return _PLACEHOLDER.sub(value, template.pattern)


def usable(label: int, split: Split, pools: Mapping[str, Sequence[str]]) -> list[list[Template]]:
    """The templates of each family of ``label`` that ``split`` may use and ``pools`` can fill."""
    held_out = split == "eval"
    by_family: dict[str, list[Template]] = {}
    for tpl in TEMPLATES:
        if tpl.label == label and tpl.held_out == held_out and all(pools[n] for n in tpl.fills):
            by_family.setdefault(tpl.family, []).append(tpl)
    return list(by_family.values())
