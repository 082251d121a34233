"""Protected names (art8, its second paragraph): the names of party and government organs, of
enterprises and institutions and of well-known people, kept by admins, each with the subjects
authorised to use it.

A name holds an entry when its folding (:func:`~service.review.registration.fold_name`, the
re-registration check's) contains the entry's: ``新华社北京分社`` and ``新華社 官方`` hold
``新华社``. The re-registration check and a profile's rename refuse a name that holds an entry
the subject is not authorised for (reason ``name_protected``), and an entry added sends every
account whose name holds it, and whose subject it does not authorise, to review: one
``impersonation`` item per account while it is open, its evidence the account's ``name`` and
each entry it holds under ``protected`` (``id``, ``name``, ``kind``), and ``basis``, the
article a confirmation rests on. Confirming the item is the trust team's act; the policy's
ladder gives the measure art8 sets (suspended, to correct the name by the step's end:
:func:`suspensions`). A profile change that leaves the name holding no entry the subject is not
authorised for lifts the suspension as corrected; a name that still holds one when the
suspension ends has not been corrected, and the service is terminated (:func:`at_deadline`).

An entry folds to at least the policy's ``protected_min_chars`` letters or digits, so that an
entry of one common character does not refuse every name holding it, and to at most
:data:`MOST_CHARS`.
"""

from __future__ import annotations

from typing import Literal, get_args

from service.policy import Policy
from service.policy.governance import DispositionStep, RegistrationRules
from service.review.items import Kind
from service.review.refusals import RefusedError
from service.review.registration import fold_name

ProtectedKind = Literal["organ", "organisation", "person"]
"""What a protected name names: a party or government organ, an enterprise, institution or
other organisation, or a well-known person."""
PROTECTED_KINDS: tuple[ProtectedKind, ...] = get_args(ProtectedKind)

MOST_CHARS = 100
"""The most characters a protected name is given in, and folds to: the longest organ's or
organisation's full name is a few dozen."""

KIND: Kind = "impersonation"
"""The kind of the review item an account holding a protected name gets, and the category its
confirmation charges."""


class EntryNameError(RefusedError):
    """A protected name that folds to too few or too many letters and digits to be an entry."""


def entry_name(rules: RegistrationRules, name: str) -> str:
    """``name`` folded, as an entry keeps it; :class:`EntryNameError` unless it folds to
    ``protected_min_chars`` to :data:`MOST_CHARS` letters and digits."""
    folded = fold_name(name)
    if not rules.protected_min_chars <= len(folded) <= MOST_CHARS:
        raise EntryNameError(
            "protected_length",
            folded=folded,
            chars=len(folded),
            least=rules.protected_min_chars,
            most=MOST_CHARS,
        )
    return folded


def merge_key(account_id: str) -> str:
    """The merge key of an account's ``impersonation`` item: one open item per account, which
    each further entry its name holds joins."""
    return f"{KIND}:{account_id}"


def suspensions(ladder: list[DispositionStep]) -> list[str]:
    """The kinds of the ladder's steps a confirmed impersonation calls for: art8's suspension
    until the name is corrected, which a correction lifts and whose end settles the rest."""
    return [step.kind for step in ladder if KIND in step.categories]


def termination(policy: Policy) -> DispositionStep:
    """The ladder's step that terminates the service (``registration.protected_uncorrected``;
    the policy refuses a name its ladder lacks)."""
    kind = policy.registration.protected_uncorrected
    return next(step for step in policy.dispositions if step.kind == kind)


Outcome = Literal["terminated", "closed_already", "cleared"]
"""What the end of an art8 suspension settled."""


def at_deadline(held: bool, terminated_already: bool) -> Outcome:
    """What an art8 suspension's end settles. A name that still ``held`` an entry the subject
    is not authorised for was not corrected, and art8 leaves nothing to weigh then ("拒不改正
    的,应当终止提供服务"): the service is terminated, unless the termination's step is active
    already. A name that holds none by then (renamed since the end, the entry removed, the
    subject given) is cleared and the suspension simply ends."""
    if not held:
        return "cleared"
    return "closed_already" if terminated_already else "terminated"
