"""The wheel built from pyproject.toml: it carries every file of the ``service`` package (the
model, the policy, the console's templates and static files, the migrations), and installed, it
serves with its defaults, as ``pip install qinglang`` and the container image use it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx2 as httpx
import pytest
from servicekit import free_port, serve

from service.settings import PACKAGE, PREFIX, ROOT

SOURCES = ("pyproject.toml", "README.md", "service", "models", "training", "eval")
"""What the build reads: the project's metadata, the packages it finds and the model that
``service/models`` links to."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources, so that the build's own folders (build/,
    *.egg-info) are left out of the checkout."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            # links kept, as a checkout and the image's build stage have them
            shutil.copytree(ROOT / name, source / name, ignore=ignore, symlinks=True)
        else:
            shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"]
    subprocess.run([*build, "--no-build-isolation", "-w", str(out), str(source)], check=True)
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_holds_every_file_of_the_service_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    files = {
        (Path(folder) / name).relative_to(ROOT).as_posix()
        # through the link to the model, as the build goes
        for folder, _, found in os.walk(PACKAGE, followlinks=True)
        if "__pycache__" not in Path(folder).parts
        for name in found
    }
    assert "service/models/model.onnx" in files
    assert sorted(files - names) == []


def test_the_installed_wheel_serves_with_its_defaults(
    wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(installed)
    env = {name: value for name, value in os.environ.items() if not name.startswith(PREFIX)}
    # the installed copy ahead of the checkout (python -m puts the working folder first, so not
    # the checkout's); its dependencies are this interpreter's
    env["PYTHONPATH"] = str(installed)
    monkeypatch.chdir(tmp_path)
    port = free_port()
    server = serve(env, port, tmp_path / "server")
    try:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
    finally:
        server.terminate()
        server.wait()
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready", ready.text
    # its state is the installed copy's: the checkout's package was not the one that served
    assert (installed / "data" / "qinglang.db").is_file()
