"""One post's way through: normalise → classify → decide → the score record.

The CLI, the API and batch jobs all score through :meth:`Pipeline.score_many`, so all three give
the same record for the same post. Fingerprinting and matching (coordination, fake
originality) join here when the near-duplicate index exists; until then their scores are 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from service.classify import Classifier
from service.decide import decide
from service.evidence import spans
from service.heads import HEADS, RISKS, Head, Risk
from service.normalise import WINDOW, Normalised, normalise
from service.policy import Policy, load_policy
from service.record import Post, Reason, ScoreRecord
from service.settings import Settings

CLASSIFIER_RISKS: dict[Risk, Head] = {"rumor": "rumor", "incitement": "incitement"}
"""Risks whose score is a classifier head's probability."""

EMPTY = "text is empty after normalisation: nothing to score, all scores 0"
TRUNCATED = f"text is longer than the model's window: scored on its first {WINDOW} characters"


class Pipeline:
    def __init__(self, classifier: Classifier, policy: Policy) -> None:
        self.classifier = classifier
        self.policy = policy

    @classmethod
    def load(cls, settings: Settings) -> Pipeline:
        return cls(
            Classifier(settings.model_dir, settings.intra_op_threads, settings.batch_size),
            load_policy(settings.policy_file),
        )

    @property
    def model_version(self) -> str:
        return self.classifier.version

    @property
    def policy_version(self) -> str:
        return self.policy.version

    def score_many(
        self, posts: Sequence[Post], levels: Mapping[str, str] | None = None
    ) -> list[ScoreRecord]:
        """Score records for ``posts``, in the same order; ``levels`` are the credit levels of
        accounts the policy treats more strictly (by account id)."""
        norms = [normalise(p.text) for p in posts]
        scored = [i for i, n in enumerate(norms) if n.text]
        probs = self.classifier.predict([norms[i].text for i in scored])
        head_probs: list[dict[Head, float]] = [dict.fromkeys(HEADS, 0.0) for _ in posts]
        for row, i in enumerate(scored):
            head_probs[i] = {h: float(probs[row, k]) for k, h in enumerate(HEADS)}
        known = levels or {}
        return [
            self._record(p, n, hp, known.get(p.account_id or ""))
            for p, n, hp in zip(posts, norms, head_probs, strict=True)
        ]

    def _record(
        self, post: Post, norm: Normalised, probs: dict[Head, float], level: str | None
    ) -> ScoreRecord:
        scores: dict[Risk, float] = {
            r: probs[CLASSIFIER_RISKS[r]] if r in CLASSIFIER_RISKS else 0.0 for r in RISKS
        }
        factor = self.policy.review_factor(level)
        verdict = decide(scores, self.policy, factor)
        heads = [CLASSIFIER_RISKS[r] for r in verdict.flagged if r in CLASSIFIER_RISKS]
        evidence = spans(self.classifier, norm, post.text, heads, [probs[h] for h in heads])
        reasons = []
        for risk in verdict.flagged:
            rule = self.policy.risks[risk].reason
            found: dict[str, object] = {"articles": rule.articles, "summary": rule.summary}
            if factor < 1:
                found["account_level"] = {"level": level, "review_factor": factor}
            if risk in CLASSIFIER_RISKS:
                found["spans"] = [s.model_dump() for s in evidence[CLASSIFIER_RISKS[risk]]]
            reasons.append(Reason(code=rule.code, score=round(scores[risk], 4), evidence=found))
        warnings = []
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
            model_version=self.model_version,
            policy_version=self.policy_version,
            truncated=norm.truncated,
            warnings=warnings,
        )
