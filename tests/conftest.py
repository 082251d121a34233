"""Shared fixtures: the shipped model's pipeline, loaded once per session."""

from __future__ import annotations

import pytest

from service.pipeline import Pipeline
from service.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> Pipeline:
    return Pipeline.load(settings)
