"""The scoring policy file (``default.toml`` beside this module, or ``Settings.policy_file``)."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.heads import RISKS, Risk
from service.policy.governance import (
    AppealRules,
    CreditRules,
    DispositionStep,
    DormancyRules,
    EngagementRules,
    FollowerRules,
    RegistrationRules,
    ReviewRules,
)
from service.policy.provisions import Article
from service.record import Decision

_CODE = re.compile(r"(?P<article>.+)\.[a-z][a-z0-9_]*")
"""A reason code: the article or item it rests on, a dot and a name, as
``art18.6.false_information``."""


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    articles: list[Article] = Field(min_length=1)
    summary: str

    @model_validator(mode="after")
    def _code_names_an_article(self) -> Reason:
        # the code is the legal basis a reviewer, an appeal and an audit read, and its article
        # the basis the console offers a confirmation: one the reason does not rest on would
        # be confirmed on an article the record never named, or refused as no article at all
        found = _CODE.fullmatch(self.code)
        if found is None or found["article"] not in self.articles:
            raise ValueError(
                f"reason code {self.code!r} does not begin with one of its articles "
                f"{self.articles} (as art18.6.false_information does)"
            )
        return self


class RiskRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    review: float = Field(ge=0.0, le=1.0)
    block: float = Field(ge=0.0, description="above 1: never blocked on the score alone")
    reason: Reason

    @model_validator(mode="after")
    def _ordered(self) -> RiskRule:
        if self.block < self.review:
            raise ValueError(f"block threshold {self.block} is below review {self.review}")
        return self


class NearDuplicateRules(BaseModel):
    """What the near-duplicate stage counts as coordination and as a claim of originality."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_accounts: int = Field(ge=2, description="K: distinct accounts that make a batch")
    batch_minutes: float = Field(gt=0, description="T: within this many minutes")
    originality_claim: float = Field(
        ge=0.0, le=1.0, description="the originality_claim head's threshold for a claim"
    )


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    persist: list[Decision]
    enqueue: list[Decision]
    risks: dict[Risk, RiskRule]
    block_min_chars: dict[Risk, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    """A post with fewer letters and digits than this (:func:`service.claims.body_chars`) is not
    blocked on the risk's score: it goes to review."""
    near_duplicates: NearDuplicateRules
    followers: FollowerRules
    engagement: EngagementRules
    review: ReviewRules
    credit: CreditRules
    dispositions: list[DispositionStep]
    appeals: AppealRules
    registration: RegistrationRules
    dormancy: DormancyRules

    @model_validator(mode="after")
    def _complete(self) -> Policy:
        missing = set(RISKS) - set(self.risks)
        if missing:
            raise ValueError(f"no rule for {sorted(missing)}")
        codes = [rule.reason.code for rule in self.risks.values()]
        if len(set(codes)) < len(codes):
            # a record's reasons are told apart by their codes (their spans, their heads)
            raise ValueError(f"two risks give one reason code: {sorted(codes)}")
        levels = {level.name for level in self.credit.levels}
        kinds = {step.kind for step in self.dispositions}
        for step in self.dispositions:
            if set(step.levels) - levels:
                raise ValueError(f"disposition {step.kind!r}: unknown levels {step.levels}")
        rules = self.registration
        named = rules.names_refused_by + rules.subjects_refused_by + rules.uncounted_by
        unknown = {*named, rules.protected_uncorrected} - kinds
        if unknown:
            raise ValueError(f"registration refers to unknown dispositions {sorted(unknown)}")
        dormant = [step for step in self.dispositions if "dormant" in step.categories]
        if self.dormancy.action != "none" and not dormant:
            raise ValueError(
                f"dormancy.action {self.dormancy.action!r} needs a disposition whose categories "
                "name 'dormant' (the measure it applies)"
            )
        for step in dormant:
            if step.levels or step.min_violations is not None or step.categories != ["dormant"]:
                # a dormancy's measure is lifted by the account's return: one a violation
                # could also call for would be lifted with it
                raise ValueError(
                    f"disposition {step.kind!r}: a dormancy's measure names 'dormant' alone"
                )
        return self

    def blocks(self, risk: Risk, score: float, chars: int) -> bool:
        """Whether ``score`` blocks a post of ``chars`` letters and digits on ``risk``."""
        return score >= self.risks[risk].block and chars >= self.block_min_chars.get(risk, 0)

    def review_factor(self, level: str | None) -> float:
        """How much the review thresholds are lowered for an account at ``level``."""
        found = next((lv for lv in self.credit.levels if lv.name == level), None)
        return 1.0 if found is None else found.review_factor

    @property
    def digest(self) -> str:
        """A hash of every value of the policy, for a run that must not mix two policies: an
        edited threshold changes it under an unchanged :attr:`version`, comments, spacing and
        the order of tables do not."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def publishing_stops(self) -> list[str]:
        """Dispositions whose accounts may not publish while they are active."""
        return [step.kind for step in self.dispositions if step.stops_publishing]

    @property
    def stricter_levels(self) -> list[str]:
        """Levels whose accounts' posts go to review sooner."""
        return [lv.name for lv in self.credit.levels if lv.review_factor < 1]


class PolicyError(ValueError):
    pass


def load_policy(path: Path) -> Policy:
    try:
        with open(path, "rb") as f:
            return Policy.model_validate(tomllib.load(f))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, ValidationError) as e:
        raise PolicyError(f"policy {path}: {e}") from e
