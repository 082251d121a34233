"""The server's metric files on a full disk: their blocks reserved, so that no room is an error
the process survives (values wait in memory), never a SIGBUS.

prometheus_client picks its multiprocess mode when it is imported, so each case runs in a
process of its own, as a server process does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from service.settings import SHARED_METRICS_VARIABLE

ROOT = Path(__file__).parent.parent


def run(code: str, folder: Path) -> list[str]:
    """Run ``code`` in a server-like process whose metric values go to ``folder``; its
    stdout's lines."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={SHARED_METRICS_VARIABLE: str(folder), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_metric_files_have_every_block_reserved_when_created_and_grown(tmp_path: Path) -> None:
    # a sparse file's unallocated page is a SIGBUS when a full disk cannot back it
    code = """
from service.metrics import Metrics
metrics = Metrics("m", "p")
for i in range(600):  # past the first 64 KiB of the counters' and histograms' files
    metrics.request(f"/route/{i}", "POST", 200, 0.01)
"""
    run(code, tmp_path)
    files = sorted(tmp_path.glob("*.db"))
    assert {f.name.split("_")[0] for f in files} == {"counter", "histogram", "gauge"}
    assert max(f.stat().st_size for f in files) > 64 * 1024
    for f in files:
        assert f.stat().st_blocks * 512 >= f.stat().st_size, f.name


FULL_DISK = """
import errno, json, os
reserve = os.posix_fallocate
full = True
def fallocate(fd, offset, length):
    if full:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    reserve(fd, offset, length)
os.posix_fallocate = fallocate
from service.metrics import Metrics
metrics = Metrics("m", "p")
metrics.request("/v1/score", "POST", 200, 0.01)
metrics.storage(True)
print(json.dumps({"files": sorted(os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])),
                  "text": metrics.render().decode()}))
full = False
metrics.request("/v1/score", "POST", 200, 0.01)
print(json.dumps({"files": [], "text": metrics.render().decode()}))
"""


def test_values_without_room_wait_in_memory_and_reach_the_scrape_once_there_is_room(
    tmp_path: Path,
) -> None:
    full, freed = (json.loads(line) for line in run(FULL_DISK, tmp_path))
    # nothing half made: a scrape cannot read an empty file
    assert full["files"] == []
    assert "qinglang_requests_total{" not in full["text"]
    text = freed["text"]
    # counted while the disk was full too, and set once at start-up
    assert 'qinglang_requests_total{method="POST",route="/v1/score",status="200"} 2.0' in text
    assert 'qinglang_model_info{model_version="m",policy_version="p"} 1.0' in text
    assert "qinglang_storage_up 1.0" in text
    for f in tmp_path.glob("*.db"):
        assert f.stat().st_blocks * 512 >= f.stat().st_size, f.name


def test_a_value_already_in_its_process_file_goes_on_from_it(tmp_path: Path) -> None:
    # a process whose pid was another's, which died without its files being removed: as
    # prometheus_client does, its counters go on from what is there, the sum never going down
    count = """
from service.metrics import Metrics
metrics = Metrics("m", "p")
metrics.request("/v1/score", "POST", 200, 0.01)
metrics.request("/v1/score", "POST", 200, 0.01)
"""
    run(count, tmp_path)
    (earlier,) = tmp_path.glob("counter_*.db")
    reuse = f"""
import os, shutil
folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
shutil.move({str(earlier)!r}, os.path.join(folder, f"counter_{{os.getpid()}}.db"))
from service.metrics import Metrics
metrics = Metrics("m", "p")
metrics.request("/v1/score", "POST", 200, 0.01)
print(metrics.render().decode())
"""
    text = "\n".join(run(reuse, tmp_path))
    assert 'qinglang_requests_total{method="POST",route="/v1/score",status="200"} 3.0' in text
