"""Every module of the packages imports on its own, whatever was imported before it.

An import cycle shows only when the modules in it are imported in one order, which the entry
points (all starting from :mod:`service.api.app` or :mod:`service.cli`) may never exercise; a
script or a test that starts elsewhere meets it. Each module here is imported in a fresh state of
the packages, in one child process, so that this suite's own imports do not hide a cycle.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from service.pipeline import Pipeline

CHECK = """
import importlib, pkgutil, sys, traceback
packages = ("service", "training", "eval")
names = list(packages)
for p in packages:
    module = importlib.import_module(p)
    names += [m.name for m in pkgutil.walk_packages(module.__path__, p + ".")]
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ":\\n" + traceback.format_exc(limit=-2))
print(len(names))
print("\\n".join(failed), file=sys.stderr)
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_first() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 50


EVIDENCE_PROCESS = """
import pickle, sys
from service.evidence_process import serve
with open(sys.argv[1], "rb") as explaining:
    pickle.load(explaining)
print("\\n".join(sorted(sys.modules)))
"""


def test_the_evidence_process_starts_without_storage_or_the_near_duplicate_window(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    """What the evidence process loads before its first search: the module of its target, and
    its :class:`~service.explaining.Explaining` read from the pipe. Each process the server
    starts pays their imports' CPU, and the search needs neither storage nor the window."""
    explaining = tmp_path / "explaining.pickle"
    explaining.write_bytes(pickle.dumps(pipeline.explaining()))
    done = subprocess.run(
        [sys.executable, "-c", EVIDENCE_PROCESS, str(explaining)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    loaded = done.stdout.split()
    unwanted = ("service.storage", "service.neardup", "service.pipeline", "sqlalchemy", "redis")
    assert [m for m in loaded if m.startswith(unwanted)] == []
    assert "service.explaining" in loaded
