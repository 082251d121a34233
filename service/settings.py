"""The one settings object: environment variables ``QINGLANG_*`` and an optional TOML file.

The TOML file is named by ``QINGLANG_CONFIG`` (default ``qinglang.toml`` in the working folder,
read only when it exists). Environment variables win over the file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QINGLANG_", extra="forbid")

    data_dir: Path = ROOT.parent / "shared" / "data"
    """The labelled corpora (read by training and evaluation only)."""
    model_dir: Path = ROOT / "models"
    """The shipped classifier: ``model.onnx``, ``tokenizer.json``, ``card.json``."""
    policy_file: Path = ROOT / "service" / "policy" / "default.toml"
    """Thresholds, reason codes and actions; versioned, readable by trust and legal teams."""
    intra_op_threads: int = 1
    """ONNX Runtime threads per session: one, so that every core serves its own batch."""
    batch_size: int = 64
    """Posts per model call in batch scoring (posts are sorted by length within a chunk)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("QINGLANG_CONFIG", "qinglang.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
