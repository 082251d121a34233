"""The re-registration check: no name a closed account held (its last, and any it had before:
a rename just before the close frees none) may be taken again, nor a name near-equal to one
(art8, third paragraph), and a blacklisted subject may not register at all (art19: 列入黑名单,
禁止重新注册). A subject holds at most the policy's ``accounts_per_subject`` accounts (art10),
closed ones not counted, and a name that holds a protected name is its authorised subjects'
alone (art8, second paragraph).

Names are compared after :func:`fold_name`: the normalisation the classifier's text gets (NFKC,
lower case, traditional to simplified), with zero-width characters, white space and punctuation
removed, so ``清朗 日报``, ``清朗日報`` and ``清朗\u200b日报`` are one name.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from service.normalise import normalise
from service.policy.governance import RegistrationRules
from service.review.items import ConflictError
from service.review.refusals import words


def fold_name(name: str) -> str:
    folded = normalise(name).text
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


# dashes a form or a keyboard may put between an identifier's groups (NFKC makes the
# full-width hyphen-minus an ASCII one but leaves these)
_DASHES = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63")


def normalise_subject(subject_id: str) -> str:
    """One spelling per identifier: an ID card's check letter ``x`` is ``X``, full-width
    digits are digits, and spaces, hyphens and invisible characters that split its groups
    are not part of it. Every digest is taken of this, when stored and when checked."""
    folded = unicodedata.normalize("NFKC", subject_id).upper()
    return "".join(
        ch for ch in folded if ch not in _DASHES and unicodedata.category(ch)[0] not in "ZC"
    )


def identifies(subject_id: str) -> bool:
    """Whether ``subject_id`` names a subject: its normal form holds a letter or a digit. One
    that holds none (``-``, a space, a zero-width character) normalises to what every such
    placeholder does, and stored would make one subject of all their accounts: the cap per
    subject and a blacklisting would reach accounts that share nothing."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in normalise_subject(subject_id))


def _plain(form: str) -> str:
    """The unkeyed SHA-256 that was stored of a subject before migration
    ``0028_subject_keys``; never stored nor compared alone since, only keyed."""
    return hashlib.sha256(f"qinglang-subject:{form}".encode()).hexdigest()


def keyed(key: bytes, plain: str) -> str:
    """What is stored of a subject whose unkeyed SHA-256 is ``plain``: its HMAC-SHA256 under
    ``key``. An identity-card number has about 1e11 values, so an unkeyed digest of one is
    reversed by trying them all; keying the old digest (not the id) let migration
    ``0028_subject_keys`` convert the stored ones without the ids."""
    return hmac.new(key, plain.encode(), hashlib.sha256).hexdigest()


FINGERPRINT_LABEL = b"qinglang-subject-key-fingerprint"
"""What the key's fingerprint is the HMAC of: a fixed label, never a subject's digest."""


@dataclass(frozen=True)
class SubjectKey:
    """The deployment's key for subject digests (the ``subject_key`` setting, or the key file
    of ``state_dir``), and every digest of a subject taken under it: the one implementation
    that stores and compares subjects."""

    key: bytes = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """Kept in the database (``subject_keys``), so that a server given another key is
        refused at start rather than silently missing every stored subject."""
        return hmac.new(self.key, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()

    def digest(self, subject_id: str) -> str:
        """What is stored of a subject identifier (an ID card or licence number)."""
        return keyed(self.key, _plain(normalise_subject(subject_id)))

    def stripped(self, subject_id: str) -> str:
        """The digest stored of ``subject_id`` before subject ids were normalised: of the id
        only stripped."""
        return keyed(self.key, _plain(subject_id.strip()))

    def digests(self, subject_id: str) -> set[str]:
        """The digests a stored subject may have for ``subject_id``: its digest, and the one
        stored before subject ids were normalised (:meth:`stripped`). An old row matches the
        spelling it was given in until its subject is given again, which stores it anew."""
        return {self.digest(subject_id), self.stripped(subject_id)}


def check_profile_change(
    account_id: str,
    refused_by: Collection[str],
    name_changes: bool,
    stored_subject: str | None,
    given: set[str] | None,
) -> None:
    """Raise :class:`ConflictError` for a profile change that would let a refused name or
    subject register again. The check reads the account's one stored subject, so a subject is
    never replaced (one holder's identity; a transfer, art11, is verified elsewhere), and the
    name of an account that ``refused_by`` dispositions (closed, blacklisted) stays as it was
    closed (art8, third paragraph). ``given`` are the digests of the subject given
    (:meth:`SubjectKey.digests`), None when none is."""
    if given is not None and stored_subject is not None and stored_subject not in given:
        raise ConflictError("subject_kept", account_id=account_id)
    if name_changes and refused_by:
        raise ConflictError("name_kept", account_id=account_id, kinds=", ".join(sorted(refused_by)))


def check_subject_blacklist(blacklisted_by: Sequence[str]) -> None:
    """Raise :class:`ConflictError` when the subject about to be given to an account is
    blacklisted: giving it is registering it again (art19). ``blacklisted_by`` are the subject's
    accounts that refuse it, as :func:`check` takes them; the first is named, in the check's
    words."""
    if blacklisted_by:
        raise ConflictError("subject_blacklisted", account=blacklisted_by[0])


def check_protected_name(protected: Sequence[tuple[int, str, str]]) -> None:
    """Raise :class:`ConflictError` for a name that holds protected names the subject is not
    authorised to use: ``protected`` are their (entry id, name, kind), as :func:`check` takes
    them; the first is named, in the check's words."""
    if protected:
        entry_id, name, kind = protected[0]
        raise ConflictError("name_protected", name=name, kind=kind, entry_id=entry_id)


def check_subject_cap(rules: RegistrationRules, held: int) -> None:
    """Raise :class:`ConflictError` when giving a subject that holds ``held`` accounts (other
    than the one it is given to) to one more takes it past the cap (art10), in the words of
    :func:`check`."""
    if held >= rules.accounts_per_subject:
        raise ConflictError("subject_at_cap", count=held, cap=rules.accounts_per_subject)


def distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, or ``limit + 1`` as soon as it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class Refusal:
    code: str
    detail: str


_NAME_DETAILS = {
    "name_taken": "equal to the closed account {account}'s name",
    "name_near": "near-equal to the closed account {account}'s name",
}


def check(
    rules: RegistrationRules,
    name: str,
    subject_blacklisted_by: Iterable[str],
    closed_names: Iterable[tuple[str, str]],
    subject_holds: int = 0,
    protected: Iterable[tuple[int, str, str]] = (),
) -> list[Refusal]:
    """Why ``name`` may not be registered: ``subject_blacklisted_by`` are the accounts of the
    subject that refuse it; ``closed_names`` the (account id, folded name) of every name each
    closed account held; ``subject_holds`` how many accounts the subject holds that count
    towards its cap; ``protected`` the (entry id, name, kind) of the protected names ``name``
    holds that the subject is not authorised to use. One reason per closed account (equal to
    any of its names, else near-equal to one), and one per protected name."""
    reasons = [
        Refusal("subject_blacklisted", words("subject_blacklisted", account=account))
        for account in subject_blacklisted_by
    ]
    if subject_holds >= rules.accounts_per_subject:
        cap = rules.accounts_per_subject
        reasons.append(
            Refusal("subject_at_cap", words("subject_at_cap", count=subject_holds, cap=cap))
        )
    wanted = fold_name(name)
    found: dict[str, str] = {}
    for account, closed in closed_names:
        if closed == wanted:
            found[account] = "name_taken"
        elif (
            account not in found
            and min(len(wanted), len(closed)) >= rules.near_min_chars
            and distance(wanted, closed, rules.near_distance) <= rules.near_distance
        ):
            found[account] = "name_near"
    reasons += [
        Refusal(code, _NAME_DETAILS[code].format(account=account))
        for account, code in found.items()
    ]
    reasons += [
        Refusal("name_protected", words("name_protected", name=held, kind=kind, entry_id=entry))
        for entry, held, kind in protected
    ]
    return reasons
