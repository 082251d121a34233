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

from service import settings
from service.settings import PACKAGE, PREFIX, ROOT, Settings

SOURCES = ("pyproject.toml", "README.md", "Makefile", "service", "models", "training", "eval")
"""What the build reads: the project's metadata, the packages it finds (and those it leaves out)
and the model that ``service/models`` links to; and the Makefile, whose ``clean`` removes what
the build leaves."""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sources, so that the build's own folders (build/, *.egg-info) are left out
    of the checkout."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            # links kept, as a checkout and the image's build stage have them
            shutil.copytree(ROOT / name, source / name, ignore=ignore, symlinks=True)
        else:
            shutil.copy(ROOT / name, source / name)
    return source


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from :func:`source`, as ``pip install .`` builds it."""
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


def test_the_wheel_holds_no_training_or_evaluation(wheel: Path) -> None:
    # nothing installed imports them: they run from a checkout (make train, make eval)
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"service"}


def test_make_clean_removes_what_the_build_left(source: Path, wheel: Path) -> None:
    # made by the build of the wheel fixture, as by pip install . or -e . in a checkout
    left = ["build", "qinglang.egg-info"]
    assert all((source / name).is_dir() for name in left)
    (source / "data").mkdir()  # the service's state: not the build's, and kept
    subprocess.run(["make", "--silent", "-C", str(source), "clean"], check=True)
    assert not any((source / name).exists() for name in left)
    assert sorted(p.name for p in source.iterdir()) == sorted([*SOURCES, "data"])


def test_the_installed_wheel_serves_with_its_defaults(
    wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(installed)
    env = {name: value for name, value in os.environ.items() if not name.startswith(PREFIX)}
    # the installed copy ahead of the checkout (python -m puts the working folder first, so not
    # the checkout's); its dependencies are this interpreter's
    env["PYTHONPATH"] = str(installed)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
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
    # its state is the user's, not beside the installed copy (nor the checkout's ./data: the
    # checkout's package was not the one that served)
    assert (tmp_path / "state" / "qinglang" / "qinglang.db").is_file()
    assert not (installed / "data").exists()
    assert not (tmp_path / "data").exists()  # nor in the working folder


def test_a_checkouts_state_is_its_own_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(f"{PREFIX}STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "/elsewhere")
    assert Settings().state_dir == ROOT / "data"


@pytest.mark.parametrize(
    ("xdg", "home", "expected"),
    [
        ("/srv/state", "/home/op", "/srv/state/qinglang"),
        # the XDG specification has a relative or empty value ignored
        ("state", "/home/op", "/home/op/.local/state/qinglang"),
        ("", "/home/op", "/home/op/.local/state/qinglang"),
        (None, "/home/op", "/home/op/.local/state/qinglang"),
        (None, None, "data"),
    ],
)
def test_an_installed_packages_state_is_the_users(
    xdg: str | None, home: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "CHECKOUT", False)
    monkeypatch.delenv(f"{PREFIX}STATE_DIR", raising=False)
    for name, value in (("XDG_STATE_HOME", xdg), ("HOME", home)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if home is None:
        # a user id the system has no entry for
        monkeypatch.setattr(os.path, "expanduser", lambda path: path)
    assert Settings().state_dir == Path(expected)
