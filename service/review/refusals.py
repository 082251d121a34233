"""Why a rule refuses a write. Each refusal names its reason, one of :data:`REASONS`, and the
details that fill in the reason's words; those words, in English, are the JSON API's
``detail``. The console says the same reason in its reader's language, from the reason's name
and details (:func:`service.console.i18n.explain_refusal`), never in these words.
"""

from __future__ import annotations

import string
from typing import Any

REASONS: dict[str, str] = {
    "decided": "the item is decided already ({status}, by {decided_by} at {at:iso})",
    "escalated_by_you": "an escalated item goes to an admin other than the one who escalated it",
    "escalated_to_admin": "an escalated item is claimed and decided by an admin (role 'admin'), "
    "not by a reviewer",
    "claimed": "the item is claimed by another reviewer until {until:iso}",
    "escalated_already": "the item is escalated already",
    "record_changed": "item {item_id} shows score record {record_id} now, not the record_id "
    "the decision was sent with: the post was scored again since (or a flagged record of it "
    "joined the item), and the decision would be taken on a record its reviewer never saw; "
    "read the item again, which shows the record it holds now, and decide on that",
    "no_item": "no review item {item_id}",
    "no_account": "no account {account_id!r}",
    "no_report": "no report {report_id}",
    "no_appeal": "no appeal {appeal_id}",
    "not_a_violation_of": "item {item_id} is not a confirmed violation of account {account_id!r}",
    "charged_by_other": "item {item_id} did not charge account {account_id!r} (item "
    "{charged_by} did): the post is appealed there",
    "no_decision": "item {item_id} has no decision to appeal",
    "appeal_closed": "the window to appeal closed at {deadline:iso}",
    "appealed_already": "item {item_id} was appealed already (appeal {appeal_id})",
    "appeal_resolved": "appeal {appeal_id} is resolved already ({status})",
    "own_decision": "an appeal is resolved by a reviewer other than the one who decided",
    "own_escalated_decision": "the appealed decision was taken on an escalated item: an admin "
    "(role 'admin') other than the one who decided resolves its appeal",
    "own_escalation": "the appealed decision was taken on an item you escalated: an admin "
    "other than the one who escalated it resolves its appeal, as another decided the item",
    "escalated_appeal": "the appealed decision was taken on an escalated item: an admin (role "
    "'admin') resolves its appeal, not a reviewer",
    "own_filing": "an appeal is resolved by a reviewer other than the one who filed it",
    "subject_kept": "account {account_id!r} has a subject already; it is never replaced, since "
    "re-registration is checked against it (art10, art19)",
    "subject_blacklisted": "the subject's account {account} is blacklisted (art19)",
    "subject_at_cap": "the subject holds {count} accounts, the cap per subject (art10) is {cap}",
    "name_kept": "account {account_id!r} is under {kinds}: its name stays refused to "
    "re-registration (art8, third paragraph), so it is not changed",
    "name_protected": "the name holds {name!r}, a protected {kind} name (entry {entry_id}) "
    "that the subject is not authorised to use (art8)",
    "protected_length": "the name folds to {folded!r}, {chars} letters or digits: a protected "
    "name folds to {least} to {most}, so that an entry does not refuse every name holding a "
    "common character",
    "protected_already": "{name!r} is protected already (entry {entry_id}), as the same name "
    "once folded",
    "no_protected_name": "no protected name {entry_id}",
    "post_account": "post {post_id!r} belongs to account {account_id!r}, not to {given!r}",
    "dormant_category": "item {item_id} is of kind {item_kind!r}: a dormant account's item is "
    "confirmed as category 'dormant', and that category confirms no other item (a dormancy "
    "is no violation)",
    "impersonation_category": "item {item_id} is of kind {item_kind!r}: an impersonation (art8) "
    "is confirmed on the 'impersonation' item a protected name opens for the account, as "
    "category 'impersonation', and that category confirms no other item (the suspension it "
    "brings is lifted by a correction of the name, and settled at its end, against the "
    "protected names that item holds)",
    "post_not_live": "post {post_id!r} is not in the live window: give the rumour's text",
    "unmatchable": "the text is boilerplate or too short to match anything",
    "banked_already": "the bank has this rumour already: {rumor_id} (similarity {similarity:.2f})",
    "no_rumor": "no confirmed rumour {rumor_id!r}",
    "no_post": "no post {post_id!r}: the service neither scored it nor was given its "
    "engagement counts",
    "no_engagement": "post {post_id!r} has no engagement counts: none were reported for it",
}
"""Every refusal's English words, by reason."""


class _Words(string.Formatter):
    """``str.format``, and ``{moment:iso}`` for a moment's ISO 8601 form (the one the API's
    other fields give; ``{moment}`` writes a space, not a ``T``, between date and time)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "iso":
            return str(value.isoformat())
        return str(super().format_field(value, format_spec))


def words(reason: str, **details: Any) -> str:
    """The English words of ``reason`` with ``details`` filled in."""
    return _Words().format(REASONS[reason], **details)


class RefusedError(Exception):
    """A rule refused: ``reason`` names its words in :data:`REASONS`, ``details`` fill them in."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(words(reason, **details))
        self.reason = reason
        self.details = details
