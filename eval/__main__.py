"""``python -m eval [--card DIR]``: the quality table and the speed table, in one run.

With ``--card DIR`` the tables are also written into ``DIR/card.json`` and ``DIR/card.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from eval import quality, speed
from service.classify import CARD_FILE, Classifier, require_model
from service.policy import load_policy
from service.settings import settings_or_exit
from training import data
from training.card import render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__)
    parser.add_argument("--card", type=Path, default=None, help="model folder to describe")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true", help="speed table only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = settings_or_exit(parser.prog)
    data.require(settings.data_dir)
    model_dir = require_model(args.card or settings.model_dir)
    classifier = Classifier(model_dir, threads=2)
    policy = load_policy(settings.policy_file)
    sets = quality.datasets()
    tables: dict[str, str] = {}
    if not args.skip_quality:
        baselines = quality.Baselines()
        tables["quality"] = quality.table(quality.evaluate(classifier, policy, sets, baselines))
        print(tables["quality"], end="\n\n", flush=True)
        tables["proxies"] = quality.proxy_table(
            classifier, policy, sets, quality.proxies(sets), baselines
        )
        print(tables["proxies"], end="\n\n", flush=True)
    if not args.skip_speed:
        texts = [t for ds in sets[:3] for t in ds.split("eval")[0]]
        tables["speed"] = speed.table(
            speed.measure(classifier, texts), speed.mixed(classifier, texts)
        )
        print(tables["speed"])
    if args.card:
        card = json.loads((model_dir / CARD_FILE).read_text()) | tables
        (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
        (model_dir / "card.md").write_text(render(card))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
