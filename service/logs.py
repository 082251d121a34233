"""Structured logs: one JSON object a line, each with the request id of the request it serves.

Post text is never logged (personal information protection, Provisions Article 6): log records
carry ids, counts and timings only.
"""

from __future__ import annotations

import json
import logging
import logging.config
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# attributes every LogRecord has; anything else was passed in ``extra`` and is logged as a field
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "taskName",
    "color_message",  # uvicorn's message with terminal colours
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            # stamped at the call (the access log) or taken from the request being served
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def config(level: str, *, migrating: bool = False) -> dict[str, Any]:
    """A ``logging.config`` dictionary: JSON on stderr for ours and uvicorn's loggers; alembic's
    lines from warnings up, and its INFO lines too when ``migrating`` (``qinglang migrate``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's own handlers would print plain text; its access log is replaced by ours
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            # every check of the schema (each /readyz, each storage_retry_s) made two lines of
            # its INFO ("Context impl SQLiteImpl."); a migration's steps are worth reading
            "alembic": {"level": "INFO" if migrating else "WARNING"},
        },
    }


def configure(level: str, *, migrating: bool = False) -> None:
    logging.config.dictConfig(config(level, migrating=migrating))
