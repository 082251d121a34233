"""The scoring policy file (``default.toml`` beside this module, or ``Settings.policy_file``)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.heads import RISKS, Risk
from service.record import Decision


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    articles: list[str]
    summary: str


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
    near_duplicates: NearDuplicateRules

    @model_validator(mode="after")
    def _complete(self) -> Policy:
        missing = set(RISKS) - set(self.risks)
        if missing:
            raise ValueError(f"no rule for {sorted(missing)}")
        return self


class PolicyError(ValueError):
    pass


def load_policy(path: Path) -> Policy:
    try:
        with open(path, "rb") as f:
            return Policy.model_validate(tomllib.load(f))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as e:
        raise PolicyError(f"policy {path}: {e}") from e
