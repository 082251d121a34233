"""One post's way through: normalise → classify → near-duplicates → decide → the score record.

The CLI, the API and batch jobs all score through :meth:`Pipeline.score_many`, so all three give
the same record for the same post. The near-duplicate step (:mod:`service.neardup`: fingerprint,
match, cluster) gives the coordination and fake-originality scores, raises the rumour score of
copies of confirmed rumours, and the record's ``cluster``. Evidence spans cost one more model call
per flagged post, so the publish path asks for records without them (``evidence=False``: the
record says ``evidence_pending``) and adds them with :meth:`Pipeline.explain` after answering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from service.classify import Classifier
from service.decide import decide
from service.evidence import spans
from service.heads import HEADS, RISKS, Head, Risk
from service.neardup import Finding, NearDuplicates
from service.normalise import WINDOW, Normalised, normalise
from service.policy import Policy, load_policy
from service.record import Post, Reason, ScoreRecord
from service.settings import Settings

CLASSIFIER_RISKS: dict[Risk, Head] = {"rumor": "rumor", "incitement": "incitement"}
"""Risks whose score is a classifier head's probability."""

EMPTY = "text is empty after normalisation: nothing to score, all scores 0"
TRUNCATED = f"text is longer than the model's window: scored on its first {WINDOW} characters"


class Pipeline:
    def __init__(
        self, classifier: Classifier, policy: Policy, neardup: NearDuplicates | None = None
    ) -> None:
        self.classifier = classifier
        self.policy = policy
        self.neardup = neardup or NearDuplicates.from_settings(Settings(), policy)

    @classmethod
    def load(cls, settings: Settings) -> Pipeline:
        policy = load_policy(settings.policy_file)
        return cls(
            Classifier(settings.model_dir, settings.intra_op_threads, settings.batch_size),
            policy,
            NearDuplicates.from_settings(settings, policy),
        )

    @property
    def model_version(self) -> str:
        return self.classifier.version

    @property
    def policy_version(self) -> str:
        return self.policy.version

    def score_many(
        self,
        posts: Sequence[Post],
        levels: Mapping[str, str] | None = None,
        *,
        evidence: bool = True,
    ) -> list[ScoreRecord]:
        """Score records for ``posts``, in the same order; ``levels`` are the credit levels of
        accounts the policy treats more strictly (by account id); without evidence spans
        unless ``evidence``."""
        norms = [normalise(p.text) for p in posts]
        scored = [i for i, n in enumerate(norms) if n.text]
        probs = self.classifier.predict([norms[i].text for i in scored])
        head_probs: list[dict[Head, float]] = [dict.fromkeys(HEADS, 0.0) for _ in posts]
        for row, i in enumerate(scored):
            head_probs[i] = {h: float(probs[row, k]) for k, h in enumerate(HEADS)}
        # near-duplicates: one step, after the classifier (it needs the originality claim)
        found = self.neardup.observe(posts, [hp["originality_claim"] for hp in head_probs])
        known = levels or {}
        records = [
            self._record(p, n, hp, f, known.get(p.account_id or ""))
            for p, n, hp, f in zip(posts, norms, head_probs, found, strict=True)
        ]
        return self.explain(posts, records) if evidence else records

    def explain(self, posts: Sequence[Post], records: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        """``records`` (of ``posts``, in the same order) with the evidence spans of their
        flagged classifier risks added; records that wait for none come back unchanged."""
        out = list(records)
        for i, (post, record) in enumerate(zip(posts, records, strict=True)):
            if not record.evidence_pending:
                continue
            risks = [r for r in CLASSIFIER_RISKS if record.flags[r]]
            heads = [CLASSIFIER_RISKS[r] for r in risks]
            found = spans(self.classifier, normalise(post.text), post.text, heads)
            codes = {self.policy.risks[r].reason.code: CLASSIFIER_RISKS[r] for r in risks}
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
            out[i] = record.model_copy(update={"reasons": reasons, "evidence_pending": False})
        return out

    def _record(
        self,
        post: Post,
        norm: Normalised,
        probs: dict[Head, float],
        near: Finding,
        level: str | None,
    ) -> ScoreRecord:
        scores: dict[Risk, float] = {
            r: probs[CLASSIFIER_RISKS[r]] if r in CLASSIFIER_RISKS else 0.0 for r in RISKS
        }
        scores.update({r: max(scores[r], s) for r, s in near.scores.items()})
        factor = self.policy.review_factor(level)
        verdict = decide(scores, self.policy, factor)
        reasons = []
        for risk in verdict.flagged:
            rule = self.policy.risks[risk].reason
            found: dict[str, object] = {"articles": rule.articles, "summary": rule.summary}
            found.update(near.evidence.get(risk, {}))
            if factor < 1:
                found["account_level"] = {"level": level, "review_factor": factor}
            reasons.append(Reason(code=rule.code, score=round(scores[risk], 4), evidence=found))
        warnings = list(near.warnings)
        if not norm.text:
            warnings.append(EMPTY)
        if norm.truncated:
            warnings.append(TRUNCATED)
        return ScoreRecord(
            id=post.id,
            account_id=post.account_id,
            scores={r: round(s, 4) for r, s in scores.items()},
            flags=verdict.flags,
            signals={"originality_claim": round(probs["originality_claim"], 4)},
            decision=verdict.decision,
            reasons=reasons,
            cluster=near.cluster,
            degraded=near.degraded,
            model_version=self.model_version,
            policy_version=self.policy_version,
            truncated=norm.truncated,
            warnings=warnings,
            evidence_pending=any(verdict.flags[r] for r in CLASSIFIER_RISKS),
        )
