"""``python -m service.healthcheck``: status 0 when the server that the settings describe answers
``/healthz``, 1 when it does not, with one line saying why (the container image's HEALTHCHECK).

The host and port are read as ``qinglang serve`` reads them (``QINGLANG_*`` variables, the
``QINGLANG_CONFIG`` file); a ``--port`` or ``--host`` given to ``serve`` itself is not seen.
"""

from __future__ import annotations

import sys
import urllib.request

from service.settings import SettingsError, address, get_settings

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
    url = f"http://{address(LOOPBACK.get(settings.host, settings.host), settings.port)}/healthz"
    # no proxy: HTTP_PROXY in a container's environment would send the probe elsewhere
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S):
            return 0
    except OSError as exc:  # refused, timed out, or an answer other than 2xx
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
