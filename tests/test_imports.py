"""Every module of the packages imports on its own, whatever was imported before it.

An import cycle shows only when the modules in it are imported in one order, which the entry
points (all starting from :mod:`service.api.app` or :mod:`service.cli`) may never exercise; a
script or a test that starts elsewhere meets it. Each module here is imported in a fresh state of
the packages, in one child process, so that this suite's own imports do not hide a cycle.
"""

from __future__ import annotations

import subprocess
import sys

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
