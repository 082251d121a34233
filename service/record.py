"""What goes in and what comes out: the input post and the score record.

The same :class:`ScoreRecord` is returned by the API, by each element of the batch endpoint and
as each output line of ``qinglang rescore`` (``../shared/DESIGN.md``, "The score record").
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from service.heads import Risk
from service.normalise import shows_nothing

Decision = Literal["pass", "review", "block"]
DECISIONS: tuple[Decision, ...] = get_args(Decision)
"""The decisions, the least strict first."""

MAX_ID_CHARS = 256
MAX_SOURCE_CHARS = 2048
"""A post's ``source``, the attribution its producer gave: a name, a handle or a link (2,048
characters, the length of URL that browsers and servers commonly take)."""
ACCEPTED = "accepted"
"""Validation context key: the post was accepted before (stored or spooled), so that a limit
added since (``source``'s) does not refuse what the service already holds."""
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
"""The latest ``created_at`` a date can show; later values are an error, not a time."""
SHOWN_CHARS = 1000
"""The most characters of a value given that a refusal shows: a value refused can be as long as
the body or the line it came in (megabytes), and a refusal that names it needs only its start."""


def cut(value: str) -> tuple[str, int | None]:
    """``value`` as a refusal shows it: whole, or its first :data:`SHOWN_CHARS` characters and
    its length."""
    if len(value) <= SHOWN_CHARS:
        return value, None
    return value[:SHOWN_CHARS], len(value)


def quoted(value: str) -> str:
    """``value`` quoted in an error message, cut by :func:`cut` (its length said)."""
    shown, chars = cut(value)
    return repr(shown) if chars is None else f"{shown!r}… ({chars:,} characters)"


def text_digest(text: str) -> str:
    """BLAKE2b-128 of ``text`` as UTF-8, in hex: names the text a record scored (128 bits, so
    that two texts sent under one id are told apart with certainty in practice)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def unix_seconds(text: str) -> float:
    """A time written as text: unix seconds, or ISO 8601 with a zone (without one it could be
    UTC or the platform's local time, eight hours apart in China). A :class:`ValueError` says
    what is wrong with ``text``."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # nan compares false with every time, and infinities are no time
        if not math.isfinite(seconds):
            raise ValueError(f"{quoted(text)} is not a time: give finite unix seconds or ISO 8601")
        return in_time_range(seconds)
    try:
        # RFC 3339 lets the zone's Z be written lower case, which Python reads upper case only
        when = datetime.fromisoformat(text[:-1] + "Z" if text.endswith("z") else text)
    except ValueError:
        raise ValueError(f"{quoted(text)} is neither unix seconds nor ISO 8601") from None
    if when.tzinfo is None:
        raise ValueError(f"{quoted(text)} has no time zone; give an offset or Z")
    try:
        return in_time_range(when.timestamp())
    except ValueError:
        # named as given: the seconds it makes are not what the caller sent, and a date is no
        # value in milliseconds, which the range's own words would suggest past 9999
        raise ValueError(f"{quoted(text)} is not a time from 1970 to 9999 (UTC)") from None


def in_time_range(seconds: float) -> float:
    """``seconds`` if it is a time from 1970 to 9999, the times a stored date can show (beyond
    them a date cannot even be made); otherwise a :class:`ValueError` that says so."""
    if not 0 <= seconds <= LATEST_TIME:
        # compared, not divided: an integer of hundreds of digits makes no float
        hint = "; milliseconds? give seconds" if 0 < seconds <= LATEST_TIME * 1000 else ""
        shown, chars = cut(repr(seconds))  # an integer may have thousands of digits
        said = shown if chars is None else f"{shown}… ({chars:,} characters)"
        raise ValueError(f"{said} is not a time from 1970 to 9999{hint}")
    return seconds


def unix_time(value: object) -> object:
    """For a field read as a datetime that takes unix seconds too: a number, or one written as
    text, as the UTC moment it names once :func:`in_time_range` (or :func:`unix_seconds`)
    takes it, where pydantic would read a number past 2e10 as milliseconds (1e12 as 2001, 1e11
    as 1973); anything else (ISO 8601, a wrong type) as it is, for the field's own parsing."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = in_time_range(value)
    elif isinstance(value, str) and _numeric(value):
        seconds = unix_seconds(value)
    else:
        return value
    return datetime.fromtimestamp(seconds, UTC)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_text(value: str, field: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL character at index {value.index(chr(0))}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        # only lone surrogates fail to encode; name the first one and where it is
        raise ValueError(
            f"{field} contains a lone surrogate (U+{ord(value[e.start]):04X}) at index {e.start}"
        ) from None
    return value


NOT_AN_ID = "Input should be a valid string, or an integer written without a fraction or exponent"
"""Why a number with a fraction or an exponent is no id (``7.0``, ``7e0``, ``7.5``): JSON reads
it as a float, which rounds the 16-19 digits of a Weibo id past 2**53, so no such number is
taken, a whole one included (a Parquet float column's, a decimal's with a fraction)."""

# What the input may be, for the published schema (validation mode: a record's fields are what
# the service made of it, a string and a number). The validators below read an integer id as
# its text and a time written as text as unix seconds; pydantic's schema shows only the type
# they make. JSON Schema's "integer" takes 7.0 too, as the same number as 7: its description
# says what the schema cannot.
PostId = Annotated[
    str,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
                {
                    "type": "integer",
                    "description": f"kept as its decimal text ({MAX_ID_CHARS} digits at most); "
                    "written without a fraction or exponent: 7.0 and 7e0 are refused",
                },
            ]
        },
        mode="validation",
    ),
]
UnixSeconds = Annotated[
    float,
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "number",
                    "minimum": 0,
                    "maximum": LATEST_TIME,
                    "description": "unix seconds",
                },
                {
                    "type": "string",
                    "description": "ISO 8601 with a time zone (an offset or Z), or unix seconds "
                    "written as text",
                    "examples": ["2021-03-01T09:30:00+08:00", "1614562200"],
                },
            ]
        },
        mode="validation",
    ),
]
NotGiven = Annotated[
    StrictBool,
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "null"}]}, mode="validation"),
]


class Post(BaseModel):
    """One post to score. Unknown fields are ignored; ids given as numbers are kept as text."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: PostId = Field(
        min_length=1, max_length=MAX_ID_CHARS, description="the post's id on the platform"
    )
    text: str
    account_id: PostId | None = Field(
        default=None, max_length=MAX_ID_CHARS, description="the id of the account that posted it"
    )
    created_at: UnixSeconds | None = Field(
        default=None,
        description="when it was posted, from 1970 to 9999: unix seconds, or ISO 8601 with a "
        "time zone",
        allow_inf_nan=False,
    )
    declared_original: NotGiven = Field(
        default=False, description="true or false; null is the same as leaving it out"
    )
    source: str | None = Field(
        default=None,
        description="the attribution the producer gave (a name, a handle or a link)",
        json_schema_extra={"maxLength": MAX_SOURCE_CHARS},
    )

    @classmethod
    def accepted(cls, data: Mapping[str, object]) -> Post:
        """A post the service accepted earlier (a stored row, a spooled entry), validated as
        it was then."""
        return cls.model_validate(data, context={ACCEPTED: True})

    @field_validator("id", "account_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # Weibo ids are 16-19 digit numbers that producers often send unquoted
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, float):
            raise PydanticCustomError("string_type", NOT_AN_ID)
        return value

    @field_validator("declared_original", mode="before")
    @classmethod
    def _null_is_not_declared(cls, value: object) -> object:
        # null means "not given", as for the other optional fields; "yes", "no" and 1 are no
        # answer to "does the poster declare this original", which accuses them when true
        return False if value is None else value

    @field_validator("created_at", mode="before")
    @classmethod
    def _unix_seconds(cls, value: object) -> object:
        if isinstance(value, bool):  # a float to pydantic, and to Python
            raise ValueError(f"created_at is {str(value).lower()}; give unix seconds or ISO 8601")
        try:
            if isinstance(value, str):
                return unix_seconds(value)
            if isinstance(value, int):
                # before pydantic makes it a float: past about 1.8e308 it makes none, and
                # said only "Input should be a valid number"
                return in_time_range(value)
        except ValueError as exc:
            raise ValueError(f"created_at {exc}") from None
        return value

    @field_validator("created_at")
    @classmethod
    def _in_range(cls, value: float | None) -> float | None:
        # the stored time is shown as a date and orders the near-duplicate window
        try:
            return None if value is None else in_time_range(value)
        except ValueError as exc:
            raise ValueError(f"created_at {exc}") from None

    @field_validator("id", "text", "account_id", "source", mode="before")
    @classmethod
    def _encodable(cls, value: object, info: Any) -> object:
        # before pydantic's own checks: a length constraint (id, account_id) refuses a lone
        # surrogate as "unable to parse raw data", which names neither the character nor where
        return check_text(value, info.field_name) if isinstance(value, str) else value

    @field_validator("source")
    @classmethod
    def _source_length(cls, value: str | None, info: ValidationInfo) -> str | None:
        # a validator, not max_length, so that posts held from before the limit still read
        accepted = bool(info.context and info.context.get(ACCEPTED))
        if value is not None and len(value) > MAX_SOURCE_CHARS and not accepted:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": MAX_SOURCE_CHARS},
            )
        return value

    @field_validator("id", "account_id")
    @classmethod
    def _not_blank(cls, value: str | None, info: ValidationInfo) -> str | None:
        # a blank id names nothing: every blank post would be one post to idempotency, every
        # blank account one account to credit and coordination (no account is null); one of
        # invisible characters is as blank, and reads as another id or as none where shown
        if value is None or (problem := blank(value)) is None:
            return value
        if value.strip() and info.context and info.context.get(ACCEPTED):
            return value  # held from before invisible ids were refused: it still reads
        raise PydanticCustomError("blank", f"{info.field_name} {problem}")


UNMARKED = ("Mn", "Me")
"""The categories of the combining marks that take no room of their own (an acute accent, an
enclosing circle): with no character before them in the value, they mark nothing of it, and
show as nothing, or on whatever precedes the value where it is shown."""


def blank(value: str) -> str | None:
    """Why ``value`` shows nothing (white space, invisible characters: see
    :func:`~service.normalise.shows_nothing`, and combining marks of :data:`UNMARKED`), as the
    end of a sentence naming it; None when it shows something."""
    if not all(shows_nothing(ch) or unicodedata.category(ch) in UNMARKED for ch in value):
        return None
    if not value.strip():
        return "is blank"
    index, first = next((i, ch) for i, ch in enumerate(value) if not ch.isspace())
    return (
        "is blank: it holds only white space, invisible characters and combining marks "
        f"(U+{ord(first):04X} at index {index})"
    )


class Span(BaseModel):
    """Characters ``[start, end)`` of the post's text that drove a score, and how much."""

    start: int
    end: int
    text: str
    weight: float = Field(description="drop in the head's log-odds when the span is hidden")


class Reason(BaseModel):
    code: str = Field(description="reason code naming the article and item, e.g. art18.6...")
    score: float
    evidence: dict[str, Any] = Field(default_factory=dict)


class ClusterPost(BaseModel):
    """A post of a near-duplicate cluster."""

    id: str
    account_id: str | None
    created_at: float


class ClusterSummary(BaseModel):
    """The near-duplicate cluster a post joined (``service.neardup``)."""

    id: str
    size: int = Field(description="posts in the cluster, this one included")
    accounts: int = Field(description="distinct accounts among them")
    first_at: float
    last_at: float
    earliest: ClusterPost = Field(description="the traced source: the earliest post")
    batch: bool = Field(description="the cluster is a coordinated batch (art18.4)")


class RumorMatch(BaseModel):
    """The confirmed rumour a post matched (art13), whether or not the match flagged it: every
    match is a copy the bank's listing traces."""

    rumor_id: str
    similarity: float
    at: float = Field(description="the post's time as the near-duplicate step used it")


class ScoreRecord(BaseModel):
    id: str
    account_id: str | None
    scores: dict[Risk, float]
    flags: dict[Risk, bool]
    signals: dict[str, float] = Field(
        description="classifier outputs that are not risks alone (originality_claim)"
    )
    decision: Decision
    reasons: list[Reason]
    cluster: ClusterSummary | None = None
    confirmed_rumor: RumorMatch | None = Field(
        default=None, description="the banked rumour this post is a copy of, flagged or not"
    )
    text_digest: str | None = Field(
        default=None,
        description="BLAKE2b-128 of the text scored (UTF-8, hex): a post id names one text, "
        "and the same id sent with another text is refused (records stored before it was "
        "kept have none)",
    )
    model_version: str
    policy_version: str
    degraded: bool = False
    truncated: bool = Field(
        default=False, description="the text was longer than the model's window and was cut"
    )
    warnings: list[str] = Field(default_factory=list)
    evidence_pending: bool = Field(
        default=False,
        description="the reasons' evidence spans are still being computed: the publish path "
        "answers before them, and the stored record gets them",
    )


TEXT_DECISION = "text_decision"
"""The evidence key under which the reason of an account's disposition that stops it publishing
keeps the decision on the post's text alone."""


def text_decision(record: ScoreRecord) -> Decision:
    """The decision on ``record``'s text alone: a disposition that stops the account publishing
    makes the record ``block`` whatever its text, and its reason keeps the text's. Whether the
    post is queued for review, and its item's severity (priority, credit deduction), are the
    text's: the account's state is no finding on the post."""
    for reason in record.reasons:
        if TEXT_DECISION in reason.evidence:
            return cast(Decision, reason.evidence[TEXT_DECISION])
    return record.decision
