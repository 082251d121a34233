"""What the routers reach through the app: the scoring service, the guard, settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.neardup import NearDuplicates
from service.scoring import ScoringService
from service.security import Guard
from service.settings import Settings
from service.storage import Repository
from service.storage.repository import ReviewRepository


@dataclass(frozen=True)
class Services:
    settings: Settings
    scoring: ScoringService
    guard: Guard
    neardup: NearDuplicates
    review: ReviewRepository
    """The review workflow's storage, each call given up at ``storage_deadline_s``
    (:func:`service.gate.deadlined`, on the gate's review lane)."""
    repository: Repository
    """The rest of storage the routers and the console reach (the rumour bank, console users
    and sessions), alike; ``scoring.repository`` is the publish path's, which gates its own
    calls."""


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def _found(request: Request) -> Services:
    # a coroutine: a plain function as a dependency is run on the thread pool, a hand-off to a
    # pool thread and back to the loop for every request
    return services(request)


Found = Annotated[Services, Depends(_found)]
"""A router argument of this type gets the app's services."""
