"""Dormant accounts (art10, its second paragraph: "公众账号信息服务平台对互联网用户注册后超过六个
月不登录、不使用的公众账号,可以根据服务协议暂停或者终止提供服务").

An account's clock (``accounts.active_at``) is the latest of its registration (the service's
first row for it: a profile, or a charge), its last login the platform reported and its last post
scored on the publish path (to the day: a server process writes an account's use at most once a
day, off the answer, and the first post written of an account known by its posts alone makes its
row). ``warn_days`` before its clock is ``after_days`` old the sweep tells the platform, once per
clock, with a warning that ends when the dormancy takes effect (:func:`takes_effect`: never
sooner than ``warn_days`` after the warning, nor before the date it gave, whatever the policy
says since), so that it can warn the holder. A warning that no longer says what the policy does
(:func:`outdated`: the dormancy comes later now, or not at all) is lifted, cause
``policy_changed``, and given again with the later date where there is one; one that ran out
with no dormancy found lapses a day on (:data:`LAPSE`), and the holder is warned again before
any dormancy takes effect. One whose
dormancy has taken effect is dormant: the sweep finds it once per dormancy and applies the
policy's ``[dormancy]``: a notice for the platform to pass on (``notify``), and nothing more, a
``dormant`` review item, or the ladder's steps whose ``categories`` name ``dormant``
(:func:`measures`). A login or a post after the clock ends the warning and the dormancy: what
they brought is lifted (cause ``returned``) and the open item dismissed, whoever applied it,
since the regulation's ground, six months without use, is gone.

A dormancy is no violation: confirming a ``dormant`` item (category ``dormant``, and no other
category for it) applies the measures without charging credit or counting towards a repeat,
and is not appealed (the account holder logs in instead).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from service.policy.governance import Category, DispositionStep, DormancyRules
from service.review.items import Kind

KIND: Kind = "dormant"
"""The kind of the review item a dormant account gets under ``action = "review"``."""

CATEGORY: Category = "dormant"
"""The category that confirms a ``dormant`` item, and only it
(:data:`~service.review.items.OWN_CATEGORY`)."""

NOTICE = "dormancy_notice"
"""The kind of the disposition that tells the platform to notify the holder (``notify``)."""

WARNING = "dormancy_warning"
"""The kind of the disposition that tells the platform, ``warn_days`` ahead, when the account
will be found dormant unless it is used (its ``ends_at``), to warn the holder."""

SERVICE = "service"
"""Who decided what the sweep applies and who lifted what a post lifted: the service itself,
on the policy, where no person or key did."""

LAPSE = timedelta(days=1)
"""How long after the date a warning gave its dormancy may still take effect on it: a sweep
behind, or a server down for a while, finds it that late. Past this (a policy that gave no
dormancy when the warning ran out, a service down for long), the warning has lapsed: the holder
is warned again, ``warn_days`` ahead, as an account never warned is, so that the notice they
had ends no longer than this before their dormancy."""

MOVED = timedelta(seconds=1)
"""How much later than the date a warning gave its dormancy must now take effect for the sweep
to give the warning again with the new date: less is not worth telling the holder, and SQLite's
arithmetic on times (floating-point days) cannot tell it."""

LOGIN_SKEW = timedelta(minutes=5)
"""How far ahead of the server's clock a reported login may be: clock skew between the
platform's hosts and the service's, not a login that has not happened yet."""

Via = Literal["login", "post"]
"""What ended a dormancy: a login the platform reported, or a post scored."""

Use = Literal["registration", "login", "post"]
"""What set an account's clock: its registration (the service's first row for it, made by a
profile or a charge), a login reported or a post scored."""


def merge_key(account_id: str) -> str:
    """The merge key of an account's ``dormant`` item: one open item per account."""
    return f"{KIND}:{account_id}"


def measures(ladder: list[DispositionStep]) -> list[DispositionStep]:
    """The ladder's steps a dormancy calls for (their ``categories`` name ``dormant``)."""
    return [step for step in ladder if CATEGORY in step.categories]


def kinds(ladder: list[DispositionStep]) -> list[str]:
    """The kinds of the dispositions a dormancy brings (the notice and the warning whether or
    not the policy gives them now: it may have when they were applied), which its return
    lifts."""
    return [step.kind for step in measures(ladder)] + [NOTICE, WARNING]


def follows(rules: DormancyRules) -> bool:
    """Whether a dormancy brings anything under ``rules``: nothing is warned of, nor found,
    under ``action = "none"`` without ``notify``."""
    return rules.action != "none" or rules.notify


def dormant_before(rules: DormancyRules, now: datetime) -> datetime:
    """An account whose clock is at or before this moment is dormant at ``now`` once warned
    (:func:`takes_effect`)."""
    return now - timedelta(days=rules.after_days)


def warned_before(rules: DormancyRules, now: datetime) -> datetime | None:
    """An account whose clock is at or before this moment is due its warning at ``now``; None
    where the policy gives none (``warn_days`` 0)."""
    if not rules.warn_days:
        return None
    return now - timedelta(days=rules.after_days - rules.warn_days)


def takes_effect(
    rules: DormancyRules, clock: datetime, warned: datetime | None, told: datetime | None = None
) -> datetime | None:
    """When the dormancy of an account unused since ``clock`` and warned at ``warned`` takes
    effect: ``after_days`` after the clock, and ``warn_days`` after the warning at the earliest,
    so that the platform has them to warn the holder whenever the warning came (a sweep behind,
    a policy that lowered ``after_days`` or started giving warnings); None while a warning the
    policy gives was not given. Never before ``told``, the ``ends_at`` the warning gave: the
    holder was told that date, and a policy that lowered ``after_days`` or ``warn_days`` (or
    stopped giving warnings) since moves no dormancy ahead of it."""
    due = clock + timedelta(days=rules.after_days)
    if rules.warn_days:
        if warned is None:
            return None
        due = max(due, warned + timedelta(days=rules.warn_days))
    return due if told is None else max(due, told)


def lapsed_before(now: datetime) -> datetime:
    """A warning that gave a date before this moment has lapsed at ``now`` (:data:`LAPSE`): no
    dormancy takes effect on it."""
    return now - LAPSE


def outdated(rules: DormancyRules, clock: datetime, warned: datetime, told: datetime) -> bool:
    """Whether the warning given at ``warned`` on ``clock``, which gave ``told``, no longer
    says what ``rules`` do: they give no dormancy now, or one that takes effect later (a policy
    that raised ``after_days`` or ``warn_days`` since). One that lowered them keeps ``told``
    (:func:`takes_effect`)."""
    if not follows(rules):
        return True
    effect = takes_effect(rules, clock, warned)
    return effect is not None and effect > told


def returned(clock: datetime | None, at: datetime) -> bool:
    """Whether use ``at`` is later than the account's ``clock``: what ends a dormancy measured
    from it (a login reported late, from before the clock, ends nothing)."""
    return clock is None or at > clock
