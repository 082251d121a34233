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
counts per split, label and kind, for the model card. The package is in two modules,
:mod:`~training.originality.templates`
(the phrasings and their fill-ins) and :mod:`~training.originality.corpus` (the pass over the
real texts and the composition).
"""

from training.originality.corpus import (
    HARD_SHARE,
    HEAD,
    POSITIVE_SHARE,
    OriginalityExample,
    bare_notices,
    build_corpus,
    describe,
    ordinary_claims,
    with_claims,
)
from training.originality.templates import TEMPLATES, Template

__all__ = [
    "HARD_SHARE",
    "HEAD",
    "POSITIVE_SHARE",
    "TEMPLATES",
    "OriginalityExample",
    "Template",
    "bare_notices",
    "build_corpus",
    "describe",
    "ordinary_claims",
    "with_claims",
]
