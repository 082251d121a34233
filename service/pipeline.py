"""One post's way through: normalise → classify → near-duplicates → decide → the score record.

The CLI, the API and batch jobs all score through the same stages, so all three give the same
record for the same post:

1. :meth:`Pipeline.prepare` — the stateless, costly part: normalise, classify, the near-duplicate
   signature (MinHash), and the evidence spans of the risks the classifier alone flags. Each
   post's result depends on that post only, so a batch run computes it in its worker processes.
2. :meth:`Pipeline.ordered` — the stateful part, post after post in the order given: match
   against the near-duplicate window, cluster, the coordination and fake-originality rules and
   the confirmed-rumour bank (:mod:`service.neardup`), then the decision and the record. It runs
   in one place (the serving process, or a batch run's parent) so that the window sees every
   post in order.
3. :meth:`Pipeline.explain` — evidence spans of flagged risks that stage 1 did not cover (a risk
   flagged only by a bank match or a stricter account level): :mod:`service.explaining`, which
   the server's evidence process runs without the rest of the pipeline.

The publish path hands the ordered stage the standing of the accounts it treats apart (a
stricter credit level, a disposition that stops them publishing); a re-score does not: it
judges the text as it would be judged today, not the account as it stood when the post came.

:meth:`Pipeline.score_many` runs the three. Evidence spans cost one more model call per flagged
post, so the publish path asks for records without them (``evidence=False``: the record says
``evidence_pending``) and adds them with :meth:`Pipeline.explain` after answering.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC

from service.claims import body_chars, has_claim_words
from service.classify import Classifier
from service.decide import decide
from service.evidence import Remembered
from service.explaining import Explaining, explain, search_spans, with_spans
from service.heads import CLASSIFIER_RISKS, HEADS, RISKS, Head, Risk
from service.neardup import Finding, NearDuplicates
from service.neardup.fingerprint import Signature
from service.normalise import WINDOW, Normalised, normalise
from service.policy import Policy, load_policy
from service.record import TEXT_DECISION, Decision, Post, Reason, ScoreRecord, Span, text_digest
from service.review.dispositions import Standing, Stop
from service.review.items import QueueRequest
from service.settings import Settings
from service.storage.repository import StoredRumor

log = logging.getLogger(__name__)

EMPTY = "text is empty after normalisation: nothing to score, all scores 0"
TRUNCATED = (
    f"text is longer than the model's window: scored on its first {WINDOW} characters (an "
    f"originality claim on its last {WINDOW} too)"
)


@dataclass
class Prepared:
    """What the stateless stage found for one post; picklable, so that a batch run's workers
    hand it to the process that runs the ordered stage."""

    norm: Normalised
    probs: dict[Head, float]
    signature: Signature | None
    """The near-duplicate signature; None for boilerplate."""
    chars: int
    """Letters and digits the risk heads score (:func:`service.claims.body_chars`)."""
    spans: dict[Head, list[Span]] = field(default_factory=dict)
    """Evidence spans found so far, by head."""


class Pipeline:
    def __init__(
        self,
        classifier: Classifier,
        policy: Policy,
        neardup: NearDuplicates | None = None,
        explainer: Classifier | None = None,
        *,
        evidence: bool = True,
    ) -> None:
        self.classifier = classifier
        self.policy = policy
        self.neardup = neardup or NearDuplicates.from_settings(Settings(), policy)
        self.explainer = explainer or classifier
        """The model :meth:`explain` runs: the service gives it a session of its own, so that
        spans found after the answer never take the scoring session's threads."""
        self.remembered = Remembered()
        """The evidence of recent texts, for both models: they are one model in two sessions."""
        self.evidence = evidence
        """Whether evidence spans are found at all (:attr:`Settings.evidence`)."""

    @classmethod
    def load(cls, settings: Settings) -> Pipeline:
        policy = load_policy(settings.policy_file)
        classifier = Classifier(settings.model_dir, settings.intra_op_threads, settings.batch_size)
        return cls(
            classifier,
            policy,
            NearDuplicates.from_settings(settings, policy),
            # its session opens on first use: a run that never explains after the fact pays nothing
            classifier.with_threads(settings.evidence_threads),
            evidence=settings.evidence,
        )

    @property
    def model_version(self) -> str:
        return self.classifier.version

    @property
    def policy_version(self) -> str:
        return self.policy.version

    @property
    def policy_digest(self) -> str:
        return self.policy.digest

    def use_bank(self, rumors: Sequence[StoredRumor]) -> None:
        """Hold the confirmed-rumour bank ``rumors`` (a re-score's: the service reloads its own)."""
        stale = self.neardup.sync_bank(rumors)
        if stale:
            log.warning("bank entries of other fingerprint parameters", extra={"ids": stale})

    def state(self) -> bytes:
        """The ordered stage's state, for :meth:`use_state` in another process."""
        return self.neardup.dumps()

    def use_state(self, state: bytes | None) -> bool:
        """Continue from ``state`` (:meth:`state`), or from an empty window for None."""
        return self.neardup.loads(state)

    @property
    def memory_s(self) -> float:
        """How far back the ordered stage's state reaches (:attr:`NearDuplicates.memory_s`)."""
        return self.neardup.memory_s

    def warm(self, posts: Sequence[Post]) -> None:
        """Let the ordered stage see ``posts`` without making their records: the state they
        leave is what :meth:`ordered` would have left (the claims that only findings read are
        not needed)."""
        self.neardup.observe(posts, [0.0] * len(posts))

    def frontier(self) -> str:
        """A digest of the ordered stage's state as later posts read it
        (:meth:`NearDuplicates.frontier`)."""
        return self.neardup.frontier()

    def score_many(
        self,
        posts: Sequence[Post],
        accounts: Mapping[str, Standing] | None = None,
        *,
        evidence: bool = True,
        edits: bool = True,
    ) -> list[ScoreRecord]:
        """Score records for ``posts``, in the same order; ``accounts`` is the standing of the
        accounts the policy treats apart (by account id; the others: content alone); without
        evidence spans unless ``evidence``; ``edits``: see :meth:`ordered`."""
        prepared = self.prepare(posts, evidence=evidence)
        records = self.ordered(posts, prepared, accounts, edits=edits)
        return self.explain(posts, records) if evidence else records

    def prepare(self, posts: Sequence[Post], *, evidence: bool = True) -> list[Prepared]:
        """Stage 1, stateless: see the module's docstring. With ``evidence`` (and
        :attr:`evidence`), the spans of the classifier risks the policy flags on the classifier's
        scores alone (flags that every later stage can only add to: a bank match raises a score,
        a level lowers a threshold)."""
        norms = [normalise(p.text) for p in posts]
        scored = [i for i, n in enumerate(norms) if n.text]
        tails = claim_tails(posts, norms)
        probs = self.classifier.predict([*(norms[i].text for i in scored), *tails.values()])
        head_probs: list[dict[Head, float]] = [dict.fromkeys(HEADS, 0.0) for _ in posts]
        for row, i in enumerate(scored):
            head_probs[i] = {h: float(probs[row, k]) for k, h in enumerate(HEADS)}
        claim = HEADS.index("originality_claim")
        for row, i in enumerate(tails, start=len(scored)):
            tail = float(probs[row, claim])
            head_probs[i]["originality_claim"] = max(head_probs[i]["originality_claim"], tail)
        signatures = self.neardup.sign(posts)
        prepared = [
            Prepared(n, hp, sig, body_chars(n.text))
            for n, hp, sig in zip(norms, head_probs, signatures, strict=True)
        ]
        if evidence and self.evidence:
            for post, ready in zip(posts, prepared, strict=True):
                scores = {r: ready.probs[CLASSIFIER_RISKS[r]] for r in CLASSIFIER_RISKS}
                verdict = decide(dict.fromkeys(RISKS, 0.0) | scores, self.policy, chars=ready.chars)
                heads = [CLASSIFIER_RISKS[r] for r in CLASSIFIER_RISKS if verdict.flags[r]]
                found = (
                    search_spans(self.classifier, post, ready.norm, heads, self.remembered)
                    if heads
                    else None
                )
                # a failed search leaves the spans to stage 3, which tries once more
                if found is not None:
                    ready.spans = found
        return prepared

    def ordered(
        self,
        posts: Sequence[Post],
        prepared: Sequence[Prepared],
        accounts: Mapping[str, Standing] | None = None,
        *,
        edits: bool = True,
    ) -> list[ScoreRecord]:
        """Stage 2, stateful: near-duplicates in the order given, the decision, the record.
        Unless ``edits``, a post whose id the window holds with another text is refused, as one
        held for another account always is: its record says so
        (:data:`~service.neardup.match.HELD`, :data:`~service.neardup.match.TAKEN`) and the
        window is left as it was."""
        claims = [p.probs["originality_claim"] for p in prepared]
        found = self.neardup.match(posts, [p.signature for p in prepared], claims, edits=edits)
        known = accounts or {}
        return [
            self._record(post, ready, f, known.get(post.account_id or ""))
            for post, ready, f in zip(posts, prepared, found, strict=True)
        ]

    def explain(self, posts: Sequence[Post], records: Sequence[ScoreRecord]) -> list[ScoreRecord]:
        """Stage 3: ``records`` (of ``posts``, in the same order) with the evidence spans of their
        flagged classifier risks added; records that wait for none come back unchanged, and
        one whose search failed comes back without spans and with :data:`NO_EVIDENCE`. Without
        :attr:`evidence`, every record comes back unchanged."""
        if not self.evidence:
            return list(records)
        return explain(self.explainer, self.policy, self.remembered, posts, records)

    def explaining(self) -> Explaining:
        """Stage 3 alone, for a process of its own (the service's evidence process): what
        :meth:`explain` reads, picklable, the model without its session (it opens there)."""
        return Explaining(self.explainer.with_threads(self.explainer.threads), self.policy)

    def review_requests(
        self, posts: Sequence[Post], records: Sequence[ScoreRecord]
    ) -> list[QueueRequest]:
        """The review items the near-duplicate step gives ``records`` (coordinated batches,
        bank matches)."""
        return self.neardup.review_requests(records, [p.text for p in posts])

    def _record(
        self, post: Post, prepared: Prepared, near: Finding, account: Standing | None
    ) -> ScoreRecord:
        norm, probs = prepared.norm, prepared.probs
        scores: dict[Risk, float] = {
            r: probs[CLASSIFIER_RISKS[r]] if r in CLASSIFIER_RISKS else 0.0 for r in RISKS
        }
        scores.update({r: max(scores[r], s) for r, s in near.scores.items()})
        verdict = decide(scores, self.policy, account, chars=prepared.chars)
        factor = verdict.review_factor
        # the account may not publish now: that is the decision's first reason
        reasons = [_stop_reason(stop, verdict.text_decision) for stop in verdict.stopped]
        for risk in verdict.flagged:
            rule = self.policy.risks[risk].reason
            found: dict[str, object] = {"articles": rule.articles, "summary": rule.summary}
            found.update(near.evidence.get(risk, {}))
            if factor < 1 and account is not None:
                found["account_level"] = {"level": account.level, "review_factor": factor}
            if risk in verdict.too_short:
                minimum = self.policy.block_min_chars[risk]
                found["not_blocked"] = {"chars": prepared.chars, "block_min_chars": minimum}
            reasons.append(Reason(code=rule.code, score=round(scores[risk], 4), evidence=found))
        warnings = list(near.warnings)
        if not norm.text:
            warnings.append(EMPTY)
        if norm.truncated:
            warnings.append(TRUNCATED)
        record = ScoreRecord(
            id=post.id,
            account_id=post.account_id,
            scores={r: round(s, 4) for r, s in scores.items()},
            flags=verdict.flags,
            signals={"originality_claim": round(probs["originality_claim"], 4)},
            decision=verdict.decision,
            reasons=reasons,
            cluster=near.cluster,
            confirmed_rumor=near.rumor,
            text_digest=text_digest(post.text),
            degraded=near.degraded,
            model_version=self.model_version,
            policy_version=self.policy_version,
            truncated=norm.truncated,
            warnings=warnings,
            evidence_pending=any(verdict.flags[r] for r in CLASSIFIER_RISKS),
        )
        return (
            with_spans(self.policy, record, prepared.spans) if record.evidence_pending else record
        )


def claim_tails(posts: Sequence[Post], norms: Sequence[Normalised]) -> dict[int, str]:
    """The last :data:`WINDOW` characters, normalised, of each post longer than the window
    whose end holds a claim word (:func:`service.claims.has_claim_words`), by position: a public
    account's article ends with its rights notice ("本文为原创，首发于本公众号"), which the first
    window never reaches, so the originality head also scores the end of such a post."""
    tails = {}
    for i, (post, norm) in enumerate(zip(posts, norms, strict=True)):
        if norm.truncated:
            tail = normalise(post.text[-WINDOW:]).text
            if has_claim_words(tail):
                tails[i] = tail
    return tails


STOPPED = "账号处置期间不得发布 / the account may not publish while this disposition is active"


def _stop_reason(stop: Stop, text: Decision) -> Reason:
    """The reason of a post blocked because its account may not publish: the disposition, the
    article it rests on and its end (null: until lifted), and ``text``, the decision on the text
    alone (:func:`service.record.text_decision`). Its score is 1: the account's state is known,
    not estimated."""
    ends = None if stop.ends_at is None else stop.ends_at.astimezone(UTC).isoformat()
    return Reason(
        code=f"{stop.basis}.{stop.kind}",
        score=1.0,
        evidence={
            "articles": [stop.basis],
            "summary": STOPPED,
            "disposition": {"kind": stop.kind, "basis": stop.basis, "ends_at": ends},
            TEXT_DECISION: text,
        },
    )
