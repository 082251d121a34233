"""Web console benchmark: ``python -m eval.console [--records N]``.

Fills a fresh SQLite file with N flagged records and their review items (default one million,
as ``eval.review`` does), starts the app with a signed-in admin, and measures through HTTP the
console's pages side by side with the JSON listing they share their query with: the queue's first
page, the same filtered by head, the tenth page through the cursor, an item page, and the
dashboard (whose aggregates run over the whole queue).

Prints hardware, date and one markdown table.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from fastapi.testclient import TestClient

from eval.review import _ms, fill
from eval.speed import hardware
from service.api.app import create_app
from service.cli.parser import positive_int
from service.console.i18n import translator, worded
from service.console.present import dashboard, tallies
from service.policy import load_policy
from service.security import create_key, create_user
from service.settings import settings_or_exit
from service.storage import open_repository, upgrade
from service.storage.console_sql import ConsoleReads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.console", description=__doc__)
    parser.add_argument("--records", type=positive_int, default=1_000_000)
    parser.add_argument("--times", type=positive_int, default=20)
    args = parser.parse_args(argv)
    configured = settings_or_exit(parser.prog)
    with tempfile.TemporaryDirectory() as work:
        url = f"sqlite:///{Path(work) / 'console.db'}"
        upgrade(url)
        settings = configured.model_copy(update={"state_dir": Path(work), "database_url": url})
        policy = load_policy(settings.policy_file)
        repo = open_repository(url, 30.0, policy.review)
        filled = fill(repo, policy, args.records)
        password = create_user(repo, "bench", "admin")
        key = create_key(repo, "reviewer")
        repo.close()
        # the deadline of a whole call is at least db_timeout_s (model_copy checks nothing)
        waits = {"db_timeout_s": 30.0, "storage_deadline_s": 30.0}
        with TestClient(create_app(settings.model_copy(update=waits))) as client:
            token = re.findall(r'name="csrf" value="(\w+)"', client.get("/console/login").text)
            client.post(
                "/console/login", data={"csrf": token[0], "name": "bench", "password": password}
            )
            api = {"Authorization": f"Bearer {key}"}
            listing = client.get("/v1/review/items?limit=50", headers=api).json()
            cursor = None
            for _ in range(9):
                query = "/v1/review/items?limit=50" + (f"&cursor={cursor}" if cursor else "")
                cursor = client.get(query, headers=api).json()["next"]
            item = listing["items"][0]["id"]

            def page(path: str, headers: dict[str, str] | None = None) -> Callable[[], object]:
                def run() -> None:
                    answer = client.get(path, headers=headers)
                    assert answer.status_code == 200, (path, answer.status_code)

                return run

            rows = [
                ("queue, first page", "/console/queue", "/v1/review/items?limit=50"),
                (
                    "queue, first page, head=rumor",
                    "/console/queue?head=rumor",
                    "/v1/review/items?limit=50&head=rumor",
                ),
                (
                    "queue, tenth page (cursor)",
                    f"/console/queue?cursor={cursor}",
                    f"/v1/review/items?limit=50&cursor={cursor}",
                ),
                ("item page", f"/console/items/{item}", f"/v1/review/items/{item}"),
                ("dashboard page (cached for a minute)", "/console/dashboard", None),
            ]
            table = []
            reads = ConsoleReads(open_repository(url, 30.0).engine)
            now = datetime.now(UTC)
            zone = settings.console_zone
            t = translator("zh")
            parts: list[tuple[str, Callable[[], object]]] = [
                ("flagged per head per day", lambda: reads.flagged_per_day(now, 14, zone)),
                ("open items by age", lambda: reads.open_by_age(now)),
                ("decisions per reviewer", lambda: reads.decisions_per_reviewer(now, 7)),
                ("appeal outcomes", reads.appeal_outcomes),
                ("last day's scores", lambda: reads.recent_scores(now, policy.version)),
                (
                    "all, drawn (a load past the cache)",
                    lambda: dashboard(
                        tallies(reads, now, zone, policy), policy, t, partial(worded, t)
                    ),
                ),
            ]
            for name, run in parts:
                p50, p95 = _ms(run, max(3, args.times // 4))
                table.append(f"| dashboard part: {name} | {p50:.1f} ms | {p95:.1f} ms | - | - |")
            for name, console_path, api_path in rows:
                c50, c95 = _ms(page(console_path), args.times)
                a = _ms(page(api_path, api), args.times) if api_path else None
                table.append(
                    f"| {name} | {c50:.1f} ms | {c95:.1f} ms | "
                    + (f"{a[0]:.1f} ms | {a[1]:.1f} ms |" if a else "- | - |")
                )
    print(f"{hardware()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"SQLite, {args.records:,} open items (filled in {filled:.0f} s)\n")
    print("| page | console p50 | console p95 | JSON API p50 | JSON API p95 |")
    print("|---|---|---|---|---|")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
