"""A run's progress where stderr is not a terminal (a log file, systemd, a scheduler): plain
lines on a timer, whether or not results come, and a last one; no bar's carriage returns."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from batchkit import SLOW_S_ENV, length_scorer, shuffled_posts

from service.batch.progress import PlainProgress
from service.cli import main

LINE = re.compile(
    r"qinglang rescore: (?P<done>[\d,]+) of (?P<total>[\d,]+) posts \(\d+%\), [\d,]+ posts/s, "
    r"\d+:\d\d elapsed(, ETA \d+:\d\d)?( \((?P<outcome>done|stopped)\))?"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines_of(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def wait_for(stream: io.StringIO, line: str, within_s: float = 30.0) -> bool:
    """Whether the timer writes ``line`` within ``within_s``."""
    deadline = time.monotonic() + within_s
    while line not in lines_of(stream) and time.monotonic() < deadline:
        time.sleep(0.01)
    return line in lines_of(stream)


def test_plain_lines_come_on_the_timer_with_rate_elapsed_and_eta() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = PlainProgress(1_000, 100, 0.05, out, clock)
    progress.start()
    # no update at all: the timer still says where the run is
    assert wait_for(out, "qinglang rescore: 100 of 1,000 posts (10%), 0 posts/s, 0:00 elapsed")
    clock.now += 90
    progress.update(300)
    # 300 posts in 90 s is 3.3 a second (the 100 of an earlier run not counted): 600 left, 3:00
    assert wait_for(
        out, "qinglang rescore: 400 of 1,000 posts (40%), 3 posts/s, 1:30 elapsed, ETA 3:00"
    )
    clock.now += 3600
    progress.update(600)
    progress.close("done")
    assert lines_of(out)[-1] == (
        "qinglang rescore: 1,000 of 1,000 posts (100%), 0 posts/s, 1:01:30 elapsed (done)"
    )
    count = len(lines_of(out))
    time.sleep(0.2)
    assert len(lines_of(out)) == count, "a line came after the last one"


def test_no_line_says_every_post_is_done_before_the_last_line() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = PlainProgress(1_000, 0, 60, out, clock)
    clock.now += 10
    progress.update(999)
    progress.tick()
    progress.update(1)
    # the run joins its parts into OUTPUT meanwhile
    clock.now += 5
    progress.tick()
    progress.tick()
    progress.close("done")
    assert lines_of(out) == [
        # not 100% yet, rounded
        "qinglang rescore: 999 of 1,000 posts (99%), 100 posts/s, 0:10 elapsed, ETA 0:00",
        "qinglang rescore: 1,000 of 1,000 posts (100%), 67 posts/s, 0:15 elapsed (done)",
    ]


def test_the_timer_falls_silent_once_every_post_is_done() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = PlainProgress(10, 0, 0.01, out, clock)
    progress.update(9)
    progress.start()
    assert wait_for(out, "qinglang rescore: 9 of 10 posts (90%), 0 posts/s, 0:00 elapsed")
    progress.update(1)
    # some dozen ticks of the timer
    time.sleep(0.2)
    progress.close("done")
    said = lines_of(out)
    assert said[-1] == "qinglang rescore: 10 of 10 posts (100%), 0 posts/s, 0:00 elapsed (done)"
    assert not any(line.startswith("qinglang rescore: 10 of 10 ") for line in said[:-1]), said


def test_an_unknown_total_gives_the_posts_done_and_no_eta() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = PlainProgress(None, 0, 60, out, clock)
    clock.now += 10
    progress.update(50)
    progress.close("stopped")
    assert lines_of(out) == ["qinglang rescore: 50 posts, 5 posts/s, 0:10 elapsed (stopped)"]


def test_a_run_logged_off_a_terminal_prints_progress_lines_while_a_segment_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(12)))
    # 4 tasks of 3 posts, 0.7 s each, all in one segment: no result comes for 2.8 s
    monkeypatch.setenv(SLOW_S_ENV, "0.7")
    argv = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    argv += ["--workers", "1", "--chunk-size", "3", "--segment-posts", "12"]
    assert main([*argv, "--progress-every", "1"], load_scorer=length_scorer) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    progress = [m for m in map(LINE.fullmatch, err.splitlines()) if m]
    assert len(progress) >= 3, err
    waiting = [m for m in progress if m["done"] == "0" and m["outcome"] is None]
    assert len(waiting) >= 2, err
    assert all(m["total"] == "12" for m in progress)
    last = progress[-1]
    assert (last["done"], last["outcome"]) == ("12", "done")
    # the progress ends before the summary
    assert err.index(last.group(0)) < err.index("rescored ")


def test_no_progress_prints_no_progress_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(shuffled_posts(6)))
    monkeypatch.setenv(SLOW_S_ENV, "0.6")
    argv = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    argv += ["--workers", "1", "--chunk-size", "3", "--progress-every", "1", "--no-progress"]
    assert main(argv, load_scorer=length_scorer) == 0
    assert not any(LINE.fullmatch(line) for line in capsys.readouterr().err.splitlines())


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("0", "must be at least 1, not 0"),
        ("-5", "must be at least 1, not -5"),
        ("0.5", "'0.5' is not a whole number"),
        ("soon", "'soon' is not a whole number"),
    ],
)
def test_a_progress_interval_under_a_second_is_refused_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str, said: str
) -> None:
    argv = ["rescore", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    with pytest.raises(SystemExit) as exited:
        main([*argv, f"--progress-every={given}"], load_scorer=length_scorer)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"qinglang rescore: error: argument --progress-every: {said}"
    )
