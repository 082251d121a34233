"""The pipeline's third stage: the evidence spans of a record's flagged classifier risks.

:meth:`service.pipeline.Pipeline.explain` runs it in process (the CLI, batch jobs, a re-score),
and the server's evidence process (:mod:`service.evidence_process`) runs it in a process of its
own. It needs the model and the policy only: this module imports neither the near-duplicate
window nor storage, so that the evidence process, which imports it, starts without them (their
imports were about half of its start's CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.classify import Classifier
from service.evidence import Remembered, spans
from service.heads import CLASSIFIER_RISKS, Head
from service.normalise import Normalised, normalise
from service.policy import Policy
from service.record import Post, ScoreRecord, Span

log = logging.getLogger(__name__)

NO_EVIDENCE = "the evidence search failed: the reasons carry no spans (the log says why)"


@dataclass(frozen=True)
class Explaining:
    """:meth:`~service.pipeline.Pipeline.explain` without the rest of the pipeline (the
    near-duplicate window, the scoring session): picklable, so that the service runs it in a
    process of its own."""

    model: Classifier
    policy: Policy

    def explain(
        self, posts: Sequence[Post], records: Sequence[ScoreRecord], remembered: Remembered
    ) -> list[ScoreRecord]:
        """:meth:`~service.pipeline.Pipeline.explain` of a pipeline with evidence on."""
        return explain(self.model, self.policy, remembered, posts, records)


def explain(
    model: Classifier,
    policy: Policy,
    remembered: Remembered,
    posts: Sequence[Post],
    records: Sequence[ScoreRecord],
) -> list[ScoreRecord]:
    """:meth:`~service.pipeline.Pipeline.explain` with evidence on, searched on ``model``."""
    out = list(records)
    for i, (post, record) in enumerate(zip(posts, records, strict=True)):
        if record.evidence_pending:
            heads = [CLASSIFIER_RISKS[r] for r in CLASSIFIER_RISKS if record.flags[r]]
            found = search_spans(model, post, normalise(post.text), heads, remembered)
            if found is None:
                out[i] = search_failed(record)
            else:
                out[i] = with_spans(policy, record, found)
    return out


def search_spans(
    model: Classifier, post: Post, norm: Normalised, heads: list[Head], remembered: Remembered
) -> dict[Head, list[Span]] | None:
    """The spans of ``heads`` in ``post``; None where the search failed. The scores were
    made without it, so a failure costs the spans only: raised, it would cost the record
    (a batch rejects the post) or keep it ``evidence_pending`` for every sweep to claim."""
    try:
        return spans(model, norm, post.text, heads, remembered)
    except Exception:
        log.exception("evidence search failed", extra={"post_id": post.id})
        return None


def with_spans(
    policy: Policy, record: ScoreRecord, found: Mapping[Head, list[Span]]
) -> ScoreRecord:
    """``record`` with the spans of its flagged classifier risks, when ``found`` has them
    all; else unchanged (still ``evidence_pending``)."""
    risks = [r for r in CLASSIFIER_RISKS if record.flags[r]]
    if any(CLASSIFIER_RISKS[r] not in found for r in risks):
        return record
    codes = {policy.risks[r].reason.code: CLASSIFIER_RISKS[r] for r in risks}
    reasons = [
        reason.model_copy(
            update={
                "evidence": reason.evidence
                | {"spans": [s.model_dump() for s in found[codes[reason.code]]]}
            }
        )
        if reason.code in codes
        else reason
        for reason in record.reasons
    ]
    return record.model_copy(update={"reasons": reasons, "evidence_pending": False})


def search_failed(record: ScoreRecord) -> ScoreRecord:
    """``record`` after its evidence search failed, or was given up: no longer waiting, and
    saying why."""
    return record.model_copy(
        update={"warnings": [*record.warnings, NO_EVIDENCE], "evidence_pending": False}
    )
