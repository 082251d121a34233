"""The re-registration check (art8): a closed account's name may not be taken again, nor a name
near-equal to it, and a blacklisted subject may not register at all.

Names are compared after :func:`fold_name`: the normalisation the classifier's text gets (NFKC,
lower case, traditional to simplified), with zero-width characters, white space and punctuation
removed, so ``清朗 日报``, ``清朗日報`` and ``清朗\u200b日报`` are one name.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from service.normalise import normalise
from service.policy.governance import RegistrationRules


def fold_name(name: str) -> str:
    folded = normalise(name).text
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


def subject_digest(subject_id: str) -> str:
    """What is stored of a subject identifier (an ID card or licence number): its SHA-256."""
    return hashlib.sha256(f"qinglang-subject:{subject_id.strip()}".encode()).hexdigest()


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


def check(
    rules: RegistrationRules,
    name: str,
    subject_blacklisted_by: Iterable[str],
    closed_names: Iterable[tuple[str, str]],
) -> list[Refusal]:
    """Why ``name`` may not be registered: ``subject_blacklisted_by`` are the accounts of the
    subject that refuse it; ``closed_names`` the (account id, folded name) of closed accounts."""
    reasons = [
        Refusal("subject_blacklisted", f"the subject's account {account} is blacklisted")
        for account in subject_blacklisted_by
    ]
    wanted = fold_name(name)
    for account, closed in closed_names:
        if closed == wanted:
            reasons.append(Refusal("name_taken", f"equal to the closed account {account}'s name"))
        elif (
            min(len(wanted), len(closed)) >= rules.near_min_chars
            and distance(wanted, closed, rules.near_distance) <= rules.near_distance
        ):
            reasons.append(
                Refusal("name_near", f"near-equal to the closed account {account}'s name")
            )
    return reasons
