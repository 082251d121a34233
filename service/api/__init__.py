"""The HTTP API: thin routers over :class:`service.scoring.ScoringService`, and the app factory."""

from service.api.app import create_app

__all__ = ["create_app"]
