"""The ``qinglang`` command: ``serve`` the API, ``keys create``, ``revoke`` and ``list`` API keys,
``migrate`` the database, ``rescore`` JSONL or Parquet files, ``selfcheck`` the shipped model;
``audit verify`` and ``audit export`` the hash-chained records, ``labels export`` reviewers'
decisions, ``credit restore`` the points of clean periods.

This module holds :func:`main` and the dispatch to the commands: the arguments are in
:mod:`service.cli.parser`, the commands in :mod:`service.cli.rescore`,
:mod:`service.cli.selfcheck`, :mod:`service.cli.serve` and :mod:`service.cli.admin`
(``migrate``, ``keys``, ``users``), and the review commands in :mod:`service.review.commands`.

Heavy modules (pydantic, tqdm, the pipeline and ONNX Runtime) are imported inside the commands,
so that ``qinglang --help`` and usage errors answer at once.

Exit status: 0 when every line was scored (or ``--skip-bad`` was given); 1 when some lines
were rejected, the selfcheck failed, or ``audit verify`` or ``credit restore`` found a problem
(:mod:`service.review.commands`); 2 when the command could not start or finish (missing
input, unwritable output, a scorer error, a usage error), with OUTPUT left untouched.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from service.cli import admin, rescore, selfcheck, serve
from service.cli.parser import build_parser
from service.cli.selfcheck import EXAMPLES

if TYPE_CHECKING:
    from service.batch.work import Scorer, ScorerFactory
    from service.settings import Settings

__all__ = ["EXAMPLES", "main"]

REVIEW_COMMANDS = ("audit", "labels", "credit")


def main(argv: list[str] | None = None, *, load_scorer: ScorerFactory | None = None) -> int:
    """Run the command line; ``load_scorer`` replaces the pipeline (tests pass a stand-in)."""
    args = build_parser().parse_args(argv)
    from service.settings import SettingsError

    try:
        return _run(args, load_scorer or _load_pipeline)
    except SettingsError as exc:
        print(f"qinglang {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, load: ScorerFactory) -> int:
    if args.command == "rescore":
        return rescore.run(args, load)
    if args.command == "serve":
        return serve.run(args)
    if args.command in ("keys", "users"):
        manage = admin.keys if args.command == "keys" else admin.users
        creates = getattr(args, f"{args.command}_command") == "create"
        return admin.create_secret(args) if creates else manage(args)
    if args.command == "migrate":
        return admin.migrate()
    if args.command in REVIEW_COMMANDS:
        from service.review.commands import run

        return run(args)
    return selfcheck.run(load)


def _load_pipeline(settings: Settings) -> Scorer:
    from service.pipeline import Pipeline

    pipeline: Scorer = Pipeline.load(settings)
    return pipeline
