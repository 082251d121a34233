"""The policy's rules for what follows a score: review, credit (art13), dispositions (art19),
appeals (art20) and re-registration (art8, art10, art19). Only their shape lives here; their
logic is :mod:`service.review`, and their values are the policy file's, read by trust and legal
teams."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.heads import Risk
from service.policy.provisions import Article

Violation = Literal[Risk, "fake_followers", "fake_engagement", "impersonation", "bulk_registration"]
"""What a confirmed violation is: a risk the model scores, faked followers (art12), which no
post shows and an abnormal jump in an account's follower count brings to review, faked
engagement with its posts (art12: reads, reposts, comments, likes), which the counts the
platform reports bring to review, an account name that uses a protected name without
authorisation (art8), which an entry of the protected names brings to review, or accounts
registered in bulk (art10: 恶意注册、虚假注册), which a batch of registrations under one name
brings to review (:mod:`service.review.signups`)."""
VIOLATIONS: tuple[Violation, ...] = get_args(Violation)

Category = Literal[Violation, "dormant"]
"""What a confirmation says an item is: a violation, or a dormant account (art10: not logged in
nor used for over six months since registration), which the trust team confirms to apply the
measure the service agreement provides and which is no violation: it charges no credit, counts
towards no repeat and is appealed by nobody (logging in again ends it)."""
CATEGORIES: tuple[Category, ...] = get_args(Category)

Count = Literal["reads", "reposts", "comments", "likes"]
"""A post's engagement count as the platform reports it (art12: 内容点击率、转发评论量)."""
COUNTS: tuple[Count, ...] = get_args(Count)

Severity = str
"""``review`` and ``block`` (a score record's decision) or ``report`` (a public complaint)."""


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReviewRules(_Rules):
    lease_s: float = Field(gt=0, description="how long a claim keeps an item to one reviewer")
    severity: dict[Severity, float] = Field(description="priority points by severity")
    reach_weight: float = Field(ge=0, description="points per decade of reach (log10(1+reach))")
    report_weight: float = Field(ge=0, description="points per report on the item")
    age_weight_per_hour: float = Field(ge=0, description="points an item gains per hour waiting")
    page_size: int = Field(ge=1, le=1000)
    report_within_days: float = Field(
        gt=0, description="the deadline to answer a reported item (art20), from its enqueueing"
    )


class Level(_Rules):
    name: str = Field(min_length=1)
    min_credit: int
    review_factor: float = Field(
        gt=0,
        le=1,
        description="review thresholds are multiplied by this for the account's posts (below "
        "1: a low-credit account's post goes to review at a lower score)",
    )


class CreditRules(_Rules):
    initial: int
    floor: int
    deductions: dict[Violation, int] = Field(
        description="points by category of violation, before multipliers"
    )
    severity: dict[Severity, float] = Field(description="multiplier by the item's severity")
    window_days: float = Field(gt=0)
    repeat_factor: float = Field(
        ge=0, description="each earlier confirmed violation in the window adds this share"
    )
    restore_points: int = Field(ge=0)
    restore_every_days: float = Field(gt=0, description="clean days per restoration")
    levels: list[Level] = Field(min_length=1, description="highest first")
    blacklist: str = Field(description="the level that blacklists the account's subject")

    @model_validator(mode="after")
    def _consistent(self) -> CreditRules:
        missing = set(VIOLATIONS) - set(self.deductions)
        if missing:
            raise ValueError(f"no credit deduction for {sorted(missing)}")
        mins = [level.min_credit for level in self.levels]
        if mins != sorted(mins, reverse=True) or mins[-1] > self.floor:
            raise ValueError("levels must go from the highest min_credit down to the floor")
        if self.blacklist not in {level.name for level in self.levels}:
            raise ValueError(f"blacklist level {self.blacklist!r} is not one of the levels")
        return self


class DispositionStep(_Rules):
    """Applied on a confirmed violation when the account's level is one of ``levels``, its
    confirmed violations in the credit window reach ``min_violations``, or the violation is of
    one of ``categories``."""

    kind: str = Field(min_length=1)
    basis: Article = Field(description="the article it rests on")
    levels: list[str] = Field(default_factory=list)
    min_violations: int | None = Field(default=None, ge=1)
    categories: list[Category] = Field(
        default_factory=list,
        description="a confirmation of one of these calls for it whatever the account's "
        "standing (the measure an article sets for that violation, or the one the service "
        "agreement provides for a dormant account)",
    )
    days: float | None = Field(default=None, gt=0, description="none: until lifted")
    stops_publishing: bool = Field(
        default=False,
        description="while it is active the account may not publish: the score record of each "
        "of its posts is block, with a reason naming it",
    )

    @model_validator(mode="after")
    def _has_a_condition(self) -> DispositionStep:
        if not self.levels and self.min_violations is None and not self.categories:
            raise ValueError(
                f"disposition {self.kind!r} has neither levels, min_violations nor categories"
            )
        return self


class AppealRules(_Rules):
    file_within_days: float = Field(
        gt=0,
        description="after the violation appealed was charged to the account: the decision's "
        "moment, or a registration batch member's own charge where that came later",
    )
    resolve_within_days: float = Field(gt=0, description="the platform's deadline to answer")


class FollowerRules(_Rules):
    """When a profile update's follower count is an abnormal jump (art12): at least ``factor``
    times the count stored before it and at least ``min_gain`` more, both."""

    factor: float = Field(gt=1, description="the new count is at least this times the old")
    min_gain: int = Field(ge=1, description="and at least this many followers more")
    basis: Article = Field(description="the article a confirmation rests on")


class EngagementRules(_Rules):
    """When the engagement counts the platform reports for a post are abnormal (art12,
    :mod:`service.review.engagement`): a jump in one count since the post's previous report,
    or a ratio between its counts that ordinary reading and reposting do not make."""

    factor: float = Field(gt=1, description="a jump's count is at least this times the one before")
    min_gain: dict[Count, Annotated[int, Field(ge=1)]] = Field(
        description="and at least this many more, by count; a count not named is not watched "
        "for jumps"
    )
    reach_share: float = Field(
        ge=0,
        description="and a gain of at least this share of the account's followers, for an "
        "account with fewer than others_min other posts reported",
    )
    others_factor: float = Field(
        ge=0,
        description="or, for one with others_min or more, at least this times the median of "
        "the same count over its other posts",
    )
    others_min: int = Field(ge=1, description="other posts that make a median to weigh by")
    per_reposter: float = Field(
        gt=1, description="reposts at least this times the distinct accounts that made them"
    )
    per_reposter_min: int = Field(ge=1, description="the fewest reposts weighed so")
    per_read: float = Field(
        gt=0, description="reposts, comments and likes above this times the reads"
    )
    per_read_min: int = Field(ge=1, description="the fewest of them weighed so")
    basis: Article = Field(description="the article a confirmation rests on")


class RegistrationRules(_Rules):
    near_distance: int = Field(ge=0, description="edit distance that counts as near-equal")
    near_min_chars: int = Field(ge=1, description="shorter names must be equal to be refused")
    names_refused_by: list[str] = Field(
        min_length=1, description="active dispositions whose account's name may not be taken"
    )
    subjects_refused_by: list[str] = Field(
        min_length=1, description="active dispositions whose account's subject may not register"
    )
    accounts_per_subject: int = Field(
        ge=1, description="the most accounts one subject holds (art10); one more is refused"
    )
    uncounted_by: list[str] = Field(
        description="active dispositions whose account no longer counts towards its subject's"
    )
    protected_min_chars: int = Field(
        ge=1,
        description="the fewest letters and digits a protected name folds to (art8): a shorter "
        "entry is refused, as every name holding its characters would hold it",
    )
    protected_basis: Article = Field(
        description="the article an impersonation item's confirmation rests on"
    )
    protected_uncorrected: str = Field(
        min_length=1,
        description="the ladder step that terminates the service of an account whose name "
        "still holds a protected name it is not authorised for when the suspension its "
        "impersonation called for ends (art8)",
    )
    batch_accounts: int = Field(
        ge=2,
        description="this many accounts registered under one name's skeleton within "
        "batch_hours are a batch registration (art10), which opens a review item",
    )
    batch_hours: float = Field(
        gt=0, description="the time within which a batch's accounts were registered"
    )
    batch_min_chars: int = Field(
        ge=1,
        description="the fewest letters a skeleton has for its accounts to make a batch: "
        "shorter ones are shared by chance",
    )
    batch_exempt: list[str] = Field(
        default_factory=list,
        description="names whose skeleton makes no batch (a platform's default names)",
    )
    batch_basis: Article = Field(
        description="the article a batch registration item's confirmation rests on"
    )


class DormancyRules(_Rules):
    """What follows an account's dormancy (art10, its second paragraph: "注册后超过六个月不登
    录、不使用的公众账号,可以根据服务协议暂停或者终止提供服务"): the account neither logged in nor
    posted for ``after_days`` since it was registered, last logged in or last posted."""

    after_days: float = Field(
        gt=0, description="days without a login or a post after which an account is dormant"
    )
    action: Literal["none", "review", "suspend"] = Field(
        description="none: nothing; review: a `dormant` item for the trust team, whose "
        "confirmation applies the ladder's steps whose categories name `dormant`; suspend: "
        "those steps applied by the service itself"
    )
    notify: bool = Field(
        description="whether a dormancy notice (a disposition in the feed, for the platform to "
        "pass on to the account holder) is applied when the account is found dormant"
    )
    warn_days: float = Field(
        ge=0,
        description="days before a dormancy takes effect that the platform is told of it, to "
        "warn the holder (a `dormancy_warning` disposition in the feed, until then); a dormancy "
        "takes effect no sooner than this long after its warning; 0: no warning",
    )
    basis: Article = Field(description="the article the measures rest on")

    @model_validator(mode="after")
    def _warned_while_unused(self) -> DormancyRules:
        if self.warn_days >= self.after_days:
            raise ValueError(
                f"dormancy.warn_days {self.warn_days:g} is not less than after_days "
                f"{self.after_days:g}: the warning would be due at the account's last use or before"
            )
        return self
