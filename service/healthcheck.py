"""``python -m service.healthcheck``: status 0 when the server that the settings describe answers
``/healthz``, 1 when it does not, with one line saying why (the container image's HEALTHCHECK).

The host and port are those the server wrote to the state folder when it started listening
(``Settings.listening_file``), so that a ``--host`` or ``--port`` given to ``serve`` is probed
too; before a server has written one, those of the settings (``QINGLANG_*`` variables, the
``QINGLANG_CONFIG`` file), as ``qinglang serve`` reads them.
"""

from __future__ import annotations

import json
import sys
import urllib.request

from service.settings import Settings, SettingsError, address, get_settings

LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}
"""A server listening on every address answers on the loopback one."""

TIMEOUT_S = 2.0
"""Under the image's HEALTHCHECK --timeout, so that a slow answer is a line of ours."""


def main() -> int:
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    host, port = listening(settings)
    url = f"http://{address(LOOPBACK.get(host, host), port)}/healthz"
    # no proxy: HTTP_PROXY in a container's environment would send the probe elsewhere
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S):
            return 0
    except OSError as exc:  # refused, timed out, or an answer other than 2xx
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


def listening(settings: Settings) -> tuple[str, int]:
    """The host and port the server wrote, or those of the settings where it wrote none (it has
    not bound yet) or none that can be read."""
    try:
        told = json.loads(settings.listening_file.read_text())
        host, port = told["host"], told["port"]
    except (OSError, ValueError, TypeError, KeyError):
        return settings.host, settings.port
    if not isinstance(host, str) or not isinstance(port, int):
        return settings.host, settings.port
    return host, port


if __name__ == "__main__":
    raise SystemExit(main())
