"""The HTTP API: thin routers over :class:`service.scoring.ScoringService`, and the app factory
in :mod:`service.api.app`.

The package itself imports nothing: the console imports the API's request models, and the app
mounts the console, so an ``__init__`` that imported the app would make ``service.console``
importable only after ``service.api``.
"""
