"""Placeholder subjects cleared: a subject digest stored of an id that holds no letter or digit
(``-``, a space, a zero-width character, ``/``, ``——``…), which the API has refused since this
release's predecessor but stored before, is removed from ``accounts`` (the account is left with
no subject, so the platform can give it its real one, where a stored subject is otherwise never
replaced) and from ``protected_name_subjects`` (an authorisation of every placeholder account).
Every such placeholder stored one digest, so unrelated accounts were one subject: the cap per
subject and a blacklisting reached accounts that shared nothing.

Digests are one-way, so the placeholders are found by the digests of likely ones: the empty
normal form (what every id of dashes, spaces and invisible characters alone normalises to) and
runs of one to eight of a common punctuation mark, dash or invisible character, in the form a
release normalising ids stored (NFKC, upper case, dashes and invisible characters dropped) and
in the stripped form stored before that. A placeholder outside these keeps its digest. The
normalisation and the keying are copies of the service's as they were written
(:func:`service.review.registration.normalise_subject`, :func:`~service.review.registration
.keyed`), as a migration keeps what it ran with. Nothing is written to the audit chain, whose
records of the placeholder stay as they are.

The downgrade has nothing to restore: a placeholder is refused at the API, so the rows it
cleared are not put back.

Revision ID: 0030_placeholder_subjects
Revises: 0029_kept_keys_and_use
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import string
import unicodedata

import sqlalchemy as sa
from alembic import context, op
from alembic.util import CommandError

revision = "0030_placeholder_subjects"
down_revision: str | None = "0029_kept_keys_and_use"
branch_labels: str | None = None
depends_on: str | None = None

DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63"
INVISIBLE = " \u3000\u00a0\u200b\u200c\u200d\u2060\ufeff"
MARKS = string.punctuation + "。，、；：？！…·《》（）【】「」／＊＿＃－～"
LONGEST_RUN = 8


def _normalised(subject_id: str) -> str:
    folded = unicodedata.normalize("NFKC", subject_id).upper()
    return "".join(
        ch for ch in folded if ch not in DASHES and unicodedata.category(ch)[0] not in "ZC"
    )


def placeholders() -> set[str]:
    """The forms of the placeholders looked for: each run normalised and only stripped."""
    runs = {ch * n for ch in DASHES + INVISIBLE + MARKS for n in range(1, LONGEST_RUN + 1)}
    return {_normalised(run) for run in runs} | {run.strip() for run in runs}


def _keyed(key: bytes, form: str) -> str:
    plain = hashlib.sha256(f"qinglang-subject:{form}".encode()).hexdigest()
    return hmac.new(key, plain.encode(), hashlib.sha256).hexdigest()


def upgrade() -> None:
    key = context.config.attributes.get("subject_key")
    if not isinstance(key, bytes):
        raise CommandError(
            "0030_placeholder_subjects finds placeholder subject digests under the subject key: "
            "migrate with qinglang migrate (or serve), which pass it"
        )
    digests = sorted(_keyed(key, form) for form in placeholders())
    accounts = sa.table("accounts", sa.column("subject_digest", sa.String()))
    subjects = sa.table("protected_name_subjects", sa.column("subject_digest", sa.String()))
    bind = op.get_bind()
    cleared = bind.execute(
        accounts.update().where(accounts.c.subject_digest.in_(digests)).values(subject_digest=None)
    ).rowcount
    removed = bind.execute(subjects.delete().where(subjects.c.subject_digest.in_(digests))).rowcount
    if cleared or removed:
        logging.getLogger("alembic.runtime.migration").warning(
            "0030_placeholder_subjects: %d accounts and %d protected name authorisations held a "
            "placeholder subject id (no letter or digit) and now hold none",
            cleared,
            removed,
        )


def downgrade() -> None:
    pass
