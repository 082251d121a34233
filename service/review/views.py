"""What the review machinery answers with: the API's response bodies, and what an idempotent
write stores to answer a retry with."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.review.appeals import AppealStatus
from service.review.dormancy import Use
from service.review.items import Action, Category, Kind, Status, Violation
from service.review.protected import ProtectedKind

ReportStatus = Literal[Status, "overturned"]


class Item(BaseModel):
    id: int
    kind: Kind
    head: str | None = Field(description="the category the item is about (the top flagged risk)")
    post_id: str | None
    account_id: str | None
    priority: float
    severity: str
    reach: int
    reports: int
    status: Status
    assignee: str | None
    lease_until: datetime | None
    deadline: datetime | None = Field(
        description="when a reported item must be answered (art20): its first report's "
        "deadline, report_within_days after that report's filing; null without reports"
    )
    enqueued_at: datetime
    model_version: str | None
    policy_version: str
    record_id: int | None = Field(
        description="the id of the score record the item shows (evidence 'record'), null for "
        "none: sent back with a decision, it refuses the decision (409) once a re-score has "
        "moved the item to another record",
    )
    evidence: dict[str, Any] | None = Field(
        description="the score record, the cluster's members, the bank match or the reports; "
        "for a batch that grew after a decision, the item decided before under 'earlier'"
    )
    text: str | None = Field(
        default=None, description="the post's text: with a single item only, not in listings"
    )
    post_unknown: bool = Field(
        default=False,
        description="reported about a post the service never stored: no text to read, and no "
        "account unless the report named one",
    )


class ItemPage(BaseModel):
    items: list[Item]
    next: str | None = Field(description="cursor for the next page, or null at the end")


class Lease(BaseModel):
    item_id: int
    assignee: str
    lease_until: datetime


class CreditChange(BaseModel):
    id: int
    account_id: str
    delta: int
    credit: int = Field(description="the account's credit after the change")
    level: str
    reason: str
    item_id: int | None
    appeal_id: int | None
    policy_version: str
    at: datetime


class Disposition(BaseModel):
    id: int
    account_id: str
    kind: str
    basis: str
    item_id: int | None
    starts_at: datetime
    ends_at: datetime | None
    decided_by: str | None = Field(
        description="the reviewer who decided it (a console user's name or a key id); null "
        "for a publisher key"
    )
    policy_version: str
    lifted_at: datetime | None
    lifted_by: str | None = Field(description="the reviewer who lifted it; null as decided_by")
    active: bool

    def unsigned(self) -> Disposition:
        """The disposition without the reviewers who decided and lifted it."""
        return self.model_copy(update={"decided_by": None, "lifted_by": None})


class DispositionChange(BaseModel):
    seq: int = Field(
        description="the change's record in the audit chain: passed as `after`, the feed goes on "
        "after it"
    )
    change: Literal["applied", "lifted"]
    at: datetime = Field(
        description="when the change was made (its transaction's time: the order of the feed is "
        "`seq`'s, the order of commits, which two changes made at once may take the other way)"
    )
    appeal_id: int | None = Field(description="the upheld appeal that lifted it (art20)")
    cause: Literal["appeal", "corrected", "entry_removed", "returned", "policy_changed"] | None = (
        Field(
            description="why it was lifted: an upheld appeal (`appeal_id`, art20), the account's "
            "name corrected while art8's suspension ran, the protected name it was suspended for "
            "removed, the dormant account's return (a login or a post, art10), or, for a "
            "`dormancy_warning`, a policy that no longer gives the dormancy it announced on its "
            "`ends_at` (a warning with the later date applied in the same transaction, or none "
            "where the policy gives no dormancy now); null for one applied"
        )
    )
    disposition: Disposition = Field(
        description="the disposition as the change left it, `active` at `at`: one applied shows "
        "no lift, even when a later change lifts it"
    )

    def unsigned(self) -> DispositionChange:
        """The change without the reviewers who decided and lifted the disposition."""
        return self.model_copy(update={"disposition": self.disposition.unsigned()})


class DispositionPage(BaseModel):
    dispositions: list[Disposition] = Field(
        description="active dispositions, in the order they were applied (`starts_at`, then id)"
    )
    next: str | None = Field(
        default=None, description="cursor for the next page, or null at its end"
    )

    def unsigned(self) -> DispositionPage:
        """The page as a publisher key reads it (see :meth:`Account.unsigned`)."""
        return self.model_copy(update={"dispositions": [d.unsigned() for d in self.dispositions]})


class DispositionFeed(BaseModel):
    changes: list[DispositionChange] = Field(description="in the order they were committed")
    next: int = Field(
        description="the `after` of the next poll: the last change's `seq` on a full page, else "
        "the chain's last record, every record up to it read"
    )

    def unsigned(self) -> DispositionFeed:
        """The feed as a publisher key reads it (see :meth:`Account.unsigned`)."""
        return self.model_copy(update={"changes": [c.unsigned() for c in self.changes]})


def _unsigned(
    entries: list[CreditChange | Disposition],
) -> list[CreditChange | Disposition]:
    return [e.unsigned() if isinstance(e, Disposition) else e for e in entries]


class Uncharged(BaseModel):
    account_id: str | None = Field(description="null: the item names no account")
    reason: str
    charged_by: int | None = Field(
        default=None, description="the item whose confirmation charged the post already"
    )


class Decision(BaseModel):
    id: int
    item_id: int
    action: Action
    category: Category | None
    basis: str | None
    note: str | None
    reviewer: str
    decided_at: datetime
    status: Status
    credits: list[CreditChange] = Field(
        description="the deductions a confirmation made: the item's account, or each member "
        "account of a cluster"
    )
    dispositions: list[Disposition] = Field(description="dispositions the decision applied")
    uncharged: list[Uncharged] = Field(
        default_factory=list,
        description="why a confirmation charged an account of the item nothing, or nobody",
    )
    charged_unlisted: int = Field(
        default=0,
        description="the accounts of a registration batch past the ones its item lists that "
        "the confirmation charges too, a chunk a transaction after the decision's, by the "
        "server in the background once it has answered (a process stopped midway leaves the "
        "rest to the retry with the key, or to the maintenance): their credit changes and "
        "dispositions are in each account's history and the disposition feed, not in this "
        "answer",
    )
    charges_pending: bool = Field(
        default=False,
        description="true while some of those accounts are still to be charged when the "
        "answer is given: the decision stands, and the server charges them in the background "
        "at once (a retry with the key, or its maintenance every storage_retry_s, finishes "
        "what a stopped process or a storage failure left)",
    )


class Account(BaseModel):
    account_id: str
    credit: int
    level: str
    name: str | None
    followers: int
    registered_at: datetime | None = Field(
        default=None,
        description="when the profile that made its row registered it (art10); null for an "
        "account whose row a charge or a post made, or that was registered before migration "
        "0038_signup_batches",
    )
    last_login_at: datetime | None = Field(
        default=None, description="the last login the platform reported"
    )
    active_at: datetime | None = Field(
        default=None,
        description="the dormancy clock (art10): the latest of its registration here, its last "
        "login and its last post scored (to the day); null for an account the service holds "
        "no row for (never charged, given a profile nor seen posting)",
    )
    active_by: Use | None = Field(
        default=None,
        description="which use set the clock: its registration here (its first profile or "
        "charge), a login or a post; null for an account whose clock migration "
        "0029_kept_keys_and_use found set by a use it cannot tell",
    )
    warned_at: datetime | None = Field(
        default=None,
        description="when the platform was warned of its dormancy (dormancy.warn_days ahead); "
        "null while it was not, since its clock",
    )
    dormant_at: datetime | None = Field(
        default=None,
        description="when it was found dormant (unused for the policy's dormancy.after_days); "
        "null while it is not",
    )
    dispositions: list[Disposition] = Field(
        description="active dispositions, in the order they were applied: the first page of "
        "`GET /v1/accounts/{id}/dispositions` (all of them while there are 100 or fewer)"
    )
    dispositions_next: str | None = Field(
        default=None,
        description="the `cursor` of `GET /v1/accounts/{id}/dispositions` for the active "
        "dispositions after these, or null where these are all",
    )
    history: list[CreditChange | Disposition] = Field(
        description="its credit changes and dispositions, oldest first (a moment's credit "
        "changes before its dispositions), or newest first with `order=newest` (that order "
        "reversed), a page of them: the first `limit`, or those after `cursor`"
    )
    # a default: a retry may be answered with an account stored before its history was paged
    next: str | None = Field(
        default=None, description="cursor for the history's next page, or null at its end"
    )

    def unsigned(self) -> Account:
        """The account as a publisher key sees it: without reviewers' names (those of console
        users are people's), which are the trust team's alone."""
        return self.model_copy(
            update={
                "dispositions": [d.unsigned() for d in self.dispositions],
                "history": _unsigned(self.history),
            }
        )


class Report(BaseModel):
    id: int
    post_id: str | None
    account_id: str | None
    category: Violation
    text: str
    # a default: a retry may be answered with a report stored before reports had reporter ids
    reporter_id: str | None = Field(
        default=None, description="the platform's id of the user who reported, when given"
    )
    item_id: int
    item_reports: int = Field(
        description="reporters of the item so far, each counted once towards its priority: "
        "each key, and each reporter_id a key gave"
    )
    status: ReportStatus = Field(
        description="the report's outcome: its review item's status, or overturned where an "
        "upheld appeal of the post's account overturned the item's confirmation"
    )
    created_at: datetime
    # defaults: a retry may be answered with a report stored before reports had deadlines
    deadline: datetime | None = Field(
        default=None, description="when the report must be answered (art20), from its filing"
    )
    overdue: bool = Field(default=False, description="past its deadline, its item undecided")


class Appeal(BaseModel):
    id: int
    account_id: str
    item_id: int
    reason: str
    status: AppealStatus
    on_behalf: bool = Field(
        default=False,
        description="filed in the console by the trust team on the holder's behalf; rejected, "
        "it leaves the holder their own appeal",
    )
    filed_at: datetime
    deadline: datetime
    overdue: bool
    resolved_by: str | None = Field(
        description="the reviewer who resolved it; null while pending, and for a publisher key"
    )
    resolved_at: datetime | None
    note: str | None
    reversed: list[CreditChange | Disposition] = Field(
        default_factory=list, description="what an upheld appeal reversed"
    )

    def unsigned(self) -> Appeal:
        """The appeal as a publisher key sees it: without reviewers' names (see
        :meth:`Account.unsigned`)."""
        return self.model_copy(update={"resolved_by": None, "reversed": _unsigned(self.reversed)})


class AppealPage(BaseModel):
    appeals: list[Appeal]
    pending: int = Field(description="pending appeals, in all pages")
    overdue: int = Field(description="pending appeals past their deadline, in all pages")
    next: str | None = Field(description="cursor for the next page, or null at the end")


class Registration(BaseModel):
    allowed: bool
    reasons: list[dict[str, str]]


class ProtectedName(BaseModel):
    id: int
    name: str = Field(description="as given; names are compared folded")
    kind: ProtectedKind
    subjects: list[str] = Field(
        description="the digests of the subjects authorised to use it (as accounts' subjects "
        "are stored), sorted"
    )
    created_at: datetime
    created_by: str = Field(
        description="who added it: the console user the admin key belongs to, else the key's id"
    )


class Rumor(BaseModel):
    """An entry of the confirmed-rumour bank, as the API shows it (its signature left out)."""

    id: str
    text: str | None
    post_id: str | None
    notice: str
    created_at: datetime
    created_by: str = Field(
        description="who added it: a console user's name (signed in to the console, or the "
        "owner of the admin key used), else the admin key's id"
    )


class Holder(BaseModel):
    account_id: str
    item_id: int = Field(description="its impersonation item, opened or joined")


class ProtectedNameAdded(ProtectedName):
    holders: list[Holder] = Field(
        description="the accounts whose names held it when it was added, their subjects not "
        "authorised, each sent to review"
    )


class EngagementCounts(BaseModel):
    """A post's engagement counts as stored: as the platform last reported them."""

    post_id: str
    account_id: str
    reads: int | None = Field(description="null until a report gives it; so every count")
    reposts: int | None
    comments: int | None
    likes: int | None
    reposters: int | None = Field(description="the distinct accounts that made the reposts")
    reported_at: datetime = Field(description="when the last report came")


class Engagement(EngagementCounts):
    """A post's engagement counts as stored after a report, and what the report found."""

    findings: list[dict[str, Any]] = Field(
        description="what this report found abnormal (art12): each count that jumped, each "
        "ratio it crossed; empty for none"
    )
    item_id: int | None = Field(
        description="the account's engagement item the findings opened or joined; null for none"
    )
