"""Batch registration (art10, its third paragraph: "防范和处置互联网用户超限量注册、恶意注册、
虚假注册等违规注册行为"). The cap per subject
(:func:`~service.review.registration.check_subject_cap`) stops one subject registering too
many accounts; a batch is the other classic pattern: many
accounts registered within a short time under one name with a serial number, ``清朗日报01``,
``清朗日报02`` ... whatever subjects they are given.

An account's name is reduced to its :func:`skeleton`, and an account registered here (its row
made by a profile, ``PUT /v1/accounts/{id}``) that is given a name within ``batch_hours`` of its
registration is weighed with the others of its skeleton registered within ``batch_hours``:
``batch_accounts`` of them open one ``signup_batch`` review item for the batch, which every
later account registered under the skeleton joins while it is open. The registrations are not
refused: whether a batch is a franchise's branches or a script's accounts is the trust team's
call, and a confirmation (category ``bulk_registration``) charges each account of the batch,
the ones past the item's listing (:data:`LISTED`) too, as a cluster's confirmation charges
each member.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.policy.governance import RegistrationRules, Violation
from service.review.items import Kind
from service.review.registration import fold_name

KIND: Kind = "signup_batch"
"""The kind of a batch's review item (the queue's kinds are 16 characters at most)."""

CATEGORY: Violation = "bulk_registration"
"""The head of the item a batch opens, and the category its confirmation charges."""

LISTED = 100
"""The most accounts an item lists, the first registered: as many as a cluster's item lists of
its members. Its reach counts every account of the batch, and its confirmation charges every
one."""

UNLISTED = "unlisted"
"""The evidence key under which a batch's item says how many of its accounts it does not list
(past :data:`LISTED`): members all the same, each charged by its confirmation."""

SIGNUP_BATCHES = "signup_batches"
"""The evidence key under which a coordinated batch's item names the registration batches two
or more of its members were registered in (their items, skeletons and the members'
accounts): accounts registered in bulk that post in concert are one operation."""

SERIAL_NUMERALS = frozenset("〇零一二三四五六七八九十百千两")
"""Chinese numerals a serial written out in words is made of (``清朗日报十二``), besides the
characters Unicode counts as numbers (digits of every script, circled and full-width ones)."""

SERIAL_BEFORE = "第"
SERIAL_AFTER = "号"
"""What may stand before and after a trailing serial number (``第3号``; ``號`` folds to ``号``)."""


def _number(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "N"


def skeleton(name: str) -> str:
    """What is left of ``name`` once serial numbers are taken out: its folding
    (:func:`~service.review.registration.fold_name`: NFKC, lower case, simplified, letters and
    numbers only) without a trailing serial (a run of numbers and Chinese numerals at its end,
    with a ``第`` before it and a ``号`` after it where they are), and then without any
    character Unicode counts as a number wherever it stands. ``清朗日报01``, ``清朗日報 02``,
    ``清朗日报第十二号`` and ``清朗3日报`` are all ``清朗日报``. Chinese numerals are only taken
    from the end, where a serial stands: inside a name they are words (``一线``, ``三亚``)."""
    folded = fold_name(name)
    end = len(folded) - folded.endswith(SERIAL_AFTER)
    start = end
    while start and (_number(folded[start - 1]) or folded[start - 1] in SERIAL_NUMERALS):
        start -= 1
    if start < end:
        start -= folded[:start].endswith(SERIAL_BEFORE)
        folded = folded[:start]
    return "".join(ch for ch in folded if not _number(ch))


@dataclass(frozen=True)
class Batch:
    """The batch a name's account would belong to: its skeleton and the skeleton's digest,
    which the account's row keeps (a name may be as long as a free text, past what an index
    entry holds) and the batch's merge key names."""

    skeleton: str
    digest: str

    @property
    def merge_key(self) -> str:
        """One open item per skeleton."""
        return f"{KIND}:{self.digest}"


def batch_of(rules: RegistrationRules, name: str | None) -> Batch | None:
    """The batch of an account named ``name``; None for no name, or a skeleton too short to
    tell a batch from names that share it by chance (``batch_min_chars``) or one the policy
    exempts (``batch_exempt``: a platform's default names, ``用户12345678``)."""
    if name is None:
        return None
    found = skeleton(name)
    exempt = {skeleton(e) for e in rules.batch_exempt}
    if len(found) < rules.batch_min_chars or found in exempt:
        return None
    return Batch(found, hashlib.sha256(found.encode()).hexdigest())


def is_batch(rules: RegistrationRules, registered: int) -> bool:
    """Whether ``registered`` accounts of one skeleton within ``batch_hours`` are a batch."""
    return registered >= rules.batch_accounts


def entry(account_id: str, name: str | None, registered_at: datetime) -> dict[str, Any]:
    """An account as a batch's item lists it: its id, the name it had when listed and when it
    was registered."""
    return {"account_id": account_id, "name": name, "registered_at": registered_at.isoformat()}
