"""``qinglang selfcheck``: the built-in example posts, scored by the shipped model."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.batch.work import ScorerFactory

EXAMPLES: tuple[dict[str, object], ...] = (
    {"id": "selfcheck-plain", "text": "周末和家人去公园散步，天气很好，拍了几张荷花的照片。"},
    {"id": "selfcheck-offensive", "text": "这帮人都该死，大家明天一起去把他们的店砸了！"},
    {
        "id": "selfcheck-rumor",
        "text": "紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！",
    },
    {
        "id": "selfcheck-originality",
        "text": "原创声明：本文为作者原创，未经授权禁止转载，侵权必究。",
        "declared_original": True,
    },
)
"""Built-in posts for ``selfcheck``: one plain, one offensive, one rumour-like, one claim."""


def run(load: ScorerFactory) -> int:
    """Score the examples; an exception while scoring propagates with its traceback, which is
    the report. A model that cannot be loaded is one line, status 2, as ``serve`` says it."""
    from service.cli.serve import unloadable
    from service.record import Post
    from service.settings import get_settings

    settings = get_settings()
    try:
        scorer = load(settings)
    except Exception as exc:
        # status 1 is a model that scored out of range; this one never started
        raise unloadable(settings, exc) from None
    posts = [Post.model_validate(example) for example in EXAMPLES]
    records = scorer.score_many(posts)
    for record in records:
        print(record.model_dump_json(indent=2))
    problems = [
        f"{record.id}: {name} = {value}"
        for record in records
        for name, value in [*record.scores.items(), *record.signals.items()]
        if not 0.0 <= value <= 1.0
    ]
    if [record.id for record in records] != [post.id for post in posts]:
        problems.append("the records do not match the example posts in order")
    if problems:
        print("qinglang selfcheck: failed: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"qinglang selfcheck: ok, model {scorer.model_version}", file=sys.stderr)
    return 0
