"""The server's evidence process: the pipeline's records, idle-scheduled, restarted after it is
killed without holding up the publish path, and never left behind by its server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import cast

import pytest
from servicekit import Troubled, open_api, wait_for, write_policy

from service import evidence_process
from service.evidence import Remembered
from service.evidence_process import EvidenceHungError, EvidenceLostError, EvidenceProcess
from service.explaining import NO_EVIDENCE, Explaining
from service.pipeline import Pipeline
from service.policy import load_policy
from service.record import Post
from service.settings import Settings

POSTS = [
    Post(id="a", text="紧急扩散！明天起全市停水三天，自来水厂已被污染，赶紧囤水，转给家人！"),
    Post(id="b", text="这帮人都是垃圾，滚出我们城市，恶心死了！！本文为原创，首发于本公众号。"),
    Post(id="c", text="周末和家人去公园散步，天气很好，拍了几张荷花的照片。"),
]
RUMOR = POSTS[0].text
POISON = "荷花"
"""Of the last post alone: its search ends the process (:class:`servicekit.Troubled`)."""
DEADLINE_S = Settings().evidence_deadline_s


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_process_gives_the_pipelines_records_and_runs_idle_scheduled(
    pipeline: Pipeline,
) -> None:
    fresh = Pipeline(pipeline.classifier, pipeline.policy, explainer=pipeline.explainer)
    fresh.remembered = Remembered()
    records = fresh.score_many(POSTS, evidence=False)
    assert any(r.evidence_pending for r in records), "no post to search"
    process = EvidenceProcess(fresh.explaining(), DEADLINE_S)
    try:
        assert process.explain(POSTS, records) == fresh.explain(POSTS, records)
        pid = process.pid
        assert pid is not None
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
        assert {os.sched_getscheduler(tid) for tid in threads} == {os.SCHED_IDLE}
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
    finally:
        process.close()
    assert not running(pid)
    with pytest.raises(EvidenceLostError):
        process.explain(POSTS, records)


def test_a_killed_process_fails_its_call_and_the_next_call_starts_another(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    # the review-all test policy: the post is flagged, and searched
    own = Pipeline(pipeline.classifier, load_policy(write_policy(tmp_path / "policy.toml")))
    records = own.score_many(POSTS[:1], evidence=False)
    assert records[0].evidence_pending
    process = EvidenceProcess(own.explaining(), DEADLINE_S)
    try:
        explained = process.explain(POSTS[:1], records)
        first = process.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with pytest.raises(EvidenceLostError, match="stopped"):
            process.explain(POSTS[:1], records)
        assert process.pid is None and not running(first)
        assert process.explain(POSTS[:1], records) == explained
        assert process.pid not in (None, first)
    finally:
        process.close()


def test_closing_ends_a_busy_process_at_once(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the process was doing when closed is dropped (its records stay
    ``evidence_pending``, for a sweep), so close does not give it time to end: idle-scheduled on
    a busy host, a search or even the start takes seconds, which every stopping server waited."""
    # a grace no close could sit out within the test's bound: one that waits for it fails
    monkeypatch.setattr(evidence_process, "STOP_S", 90.0)
    search = Troubled(pipeline.classifier, tmp_path)
    own = Pipeline(search, load_policy(write_policy(tmp_path / "policy.toml")))
    records = own.score_many(POSTS[:1], evidence=False)
    process = EvidenceProcess(own.explaining(), DEADLINE_S)
    search.hold.touch()  # never released: the call would wait for ever
    with ThreadPoolExecutor(max_workers=2) as threads:
        call = threads.submit(process.explain, POSTS[:1], records)
        wait_for(lambda: process.pid is not None)
        pid = process.pid
        assert pid is not None
        threads.submit(process.close).result(timeout=60)
        assert not running(pid)
        with pytest.raises(EvidenceLostError):
            call.result(timeout=60)


def test_the_process_is_killed_at_the_normal_priority(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed thread still has to be given a core to end: idle-scheduled on a busy host, it
    waits for one to fall idle, and so does whatever waits for it to end (the evidence thread
    after a missed deadline, a stopping server). The kill finds every thread of it scheduled as
    any other."""
    search = Troubled(pipeline.classifier, tmp_path)
    own = Pipeline(search, load_policy(write_policy(tmp_path / "policy.toml")))
    records = own.score_many(POSTS[:1], evidence=False)
    process = EvidenceProcess(own.explaining(), DEADLINE_S)
    at_kill: list[set[int]] = []
    kill = BaseProcess.kill

    def watched(killed: BaseProcess) -> None:
        threads = os.listdir(f"/proc/{killed.pid}/task")
        at_kill.append({os.sched_getscheduler(int(tid)) for tid in threads})
        kill(killed)

    monkeypatch.setattr(BaseProcess, "kill", watched)
    search.hold.touch()  # busy searching: it reads no end of its pipe, and is killed
    with ThreadPoolExecutor(max_workers=1) as threads:
        call = threads.submit(process.explain, POSTS[:1], records)
        wait_for(lambda: process.pid is not None)
        pid = process.pid
        assert pid is not None
        process.close()
        with pytest.raises(EvidenceLostError):
            call.result(timeout=60)
    assert at_kill == [{os.SCHED_OTHER}]
    assert not running(pid)


def test_a_call_whose_process_is_closed_under_it_fails_as_one_whose_process_stopped(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopping server closes the process from another thread, at any point of a call: once
    the model is handed over and before the call looks at the process again, the call finds the
    process object closed, and fails as any call whose process stopped."""
    own = Pipeline(pipeline.classifier, load_policy(write_policy(tmp_path / "policy.toml")))
    records = own.score_many(POSTS[:1], evidence=False)
    process = EvidenceProcess(own.explaining(), DEADLINE_S)
    hand = evidence_process._hand

    def hand_then_close(connection: Connection, explaining: Explaining) -> None:
        hand(connection, explaining)
        process.close()

    monkeypatch.setattr(evidence_process, "_hand", hand_then_close)
    with pytest.raises(EvidenceLostError) as lost:
        process.explain(POSTS[:1], records)
    assert lost.value.blamed is None


def test_a_killed_evidence_process_holds_up_no_answer_and_loses_no_record(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    with open_api(tmp_path, f"sqlite:///{tmp_path / 'api.db'}", pipeline.classifier) as api:
        scoring = api.services.scoring
        api.score({"id": "first", "text": RUMOR})
        api.settle()
        pid = scoring.evidence_process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not running(pid))
        start = time.monotonic()
        answer = api.score({"id": "lost", "text": f"{RUMOR}（一）"})
        api.settle()
        assert answer.status_code == 200 and time.monotonic() - start < 10
        versions = answer.json()["model_version"], answer.json()["policy_version"]
        # stored as answered, for a sweep to find its spans
        lost = scoring.repository.find_records(["lost"], *versions)["lost"]
        assert lost.evidence_pending and lost.decision == answer.json()["decision"]
        # the next search starts another process
        api.score({"id": "after", "text": f"{RUMOR}（二）"})
        api.settle()
        assert not scoring.repository.find_records(["after"], *versions)["after"].evidence_pending
        assert scoring.evidence_process.pid not in (None, pid)


def test_a_process_that_answers_no_search_is_killed_at_its_deadline(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    search = Troubled(pipeline.classifier, tmp_path)
    search.hold.touch()  # alive, and never answering
    own = Pipeline(search, load_policy(write_policy(tmp_path / "policy.toml")))
    records = own.score_many(POSTS[:1], evidence=False)
    process = EvidenceProcess(own.explaining(), 10.0)
    calls = ThreadPoolExecutor(1)
    try:
        call = calls.submit(process.explain, POSTS[:1], records)
        wait_for(lambda: process.pid is not None)
        hung = process.pid
        assert hung is not None
        # a bound of the test's own: a call that waited for an answer fails here, not hangs
        with pytest.raises(EvidenceHungError, match="no search in 10 s"):
            call.result(timeout=120)
        assert process.pid is None and not running(hung)
        # starved, not hung, a process gets longer the next time
        assert process.deadline_s == 20.0
        search.hold.unlink()
        assert process.explain(POSTS[:1], records) == own.explain(POSTS[:1], records)
        assert process.pid not in (None, hung)
        assert process.deadline_s == 10.0
    finally:
        process.close()
        calls.shutdown()


def test_a_hung_evidence_process_frees_the_evidence_thread_and_its_records_stay_pending(
    tmp_path: Path, pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    search = Troubled(pipeline.classifier, tmp_path)
    search.hold.touch()
    url = f"sqlite:///{tmp_path / 'hung.db'}"
    with open_api(tmp_path, url, search, evidence_deadline_s=5.0) as api:
        answer = api.score({"id": "hung", "text": RUMOR}).json()

        def freed() -> bool:
            metrics = api.client.get("/metrics").text
            return (
                "qinglang_evidence_hung_processes_total 1.0" in metrics
                and "qinglang_evidence_waiting 0.0" in metrics
            )

        wait_for(freed, 120)
        repository = api.services.scoring.repository
        versions = answer["model_version"], answer["policy_version"]
        stored = repository.find_records(["hung"], *versions)["hung"]
        assert stored.evidence_pending and stored.decision == answer["decision"]
        # a sweep takes it up once a lease has passed since its process last renewed its claim
        past = datetime.now(UTC) + timedelta(seconds=api.services.settings.evidence_lease_s + 1)
        claimed = repository.claim_pending_evidence(
            answer["model_version"], 10, lease_s=0.0, now=past
        )
        assert [record.id for _, record in claimed] == ["hung"]
    (said,) = [r for r in caplog.records if r.getMessage() == "evidence not found"]
    assert "no search in 5 s" in said.problem  # type: ignore[attr-defined]


def test_a_call_that_fails_part_way_keeps_what_it_found_and_blames_the_post_it_was_on(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    search = Troubled(pipeline.classifier, tmp_path)
    search.poison.write_text(POISON)
    policy = load_policy(write_policy(tmp_path / "policy.toml"))
    plain = Pipeline(pipeline.classifier, policy)
    records = plain.score_many(POSTS, evidence=False)
    process = EvidenceProcess(Pipeline(search, policy).explaining(), DEADLINE_S)
    try:
        with pytest.raises(EvidenceLostError, match="stopped") as lost:
            process.explain(POSTS, records)
        # the posts before the one that ended the process keep their spans; the one after it
        # is the caller's to hand to the next process (the service does so at once)
        assert lost.value.explained == plain.explain(POSTS[:2], records[:2])
        assert not any(r.evidence_pending for r in lost.value.explained)
        assert lost.value.blamed == records[2]
    finally:
        process.close()


def test_a_process_that_ended_before_the_post_reached_it_blames_no_post(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    own = Pipeline(pipeline.classifier, load_policy(write_policy(tmp_path / "policy.toml")))
    records = own.score_many(POSTS[:1], evidence=False)
    process = EvidenceProcess(own.explaining(), DEADLINE_S)
    try:
        process.explain(POSTS[:1], records)
        pid = process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        # ended, every thread of it (its leader is a zombie before its idle-scheduled threads
        # are), and left for the call to reap
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with pytest.raises(EvidenceLostError) as lost:
            process.explain(POSTS[:1], records)
        assert lost.value.blamed is None and lost.value.explained == []
    finally:
        process.close()


@pytest.mark.parametrize("starved", [True, False])
def test_a_missed_deadline_blames_the_post_only_when_the_process_could_have_run(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, starved: bool
) -> None:
    """A process that had no core (the host busy throughout) is not taken to have hung on its
    post; one that had or could have had a core for most of the deadline is."""
    search = Troubled(pipeline.classifier, tmp_path)
    own = Pipeline(search, load_policy(write_policy(tmp_path / "policy.toml")))
    records = own.score_many(POSTS[:2], evidence=False)
    process = EvidenceProcess(own.explaining(), DEADLINE_S)
    try:
        # started and answering first: the deadline below is the search's alone
        process.explain(POSTS[:1], records[:1])
        process.base_deadline_s = process.deadline_s = 3.0
        # a core the whole time, or none at all (the host's idle time and the process's use)
        monkeypatch.setattr(
            evidence_process, "core_seconds", lambda pid: 0.0 if starved else time.monotonic()
        )
        search.hold.touch()
        # another post: the process remembers the first's search
        with pytest.raises(EvidenceHungError) as hung:
            process.explain(POSTS[1:2], records[1:])
        assert hung.value.blamed == (None if starved else records[1])
    finally:
        process.close()


def test_the_core_seconds_of_a_process_count_its_cpu_time() -> None:
    before, used = evidence_process.core_seconds(os.getpid()), time.process_time()
    while time.process_time() - used < 0.5:
        pass
    after, used = evidence_process.core_seconds(os.getpid()), time.process_time() - used
    assert before is not None and after is not None
    # its own CPU time and the idle time of its cores: at least the former (ticks of 10 ms)
    assert after - before >= used - 0.05


def test_a_stopped_server_leaves_no_evidence_process(tmp_path: Path, pipeline: Pipeline) -> None:
    with open_api(tmp_path, f"sqlite:///{tmp_path / 'api.db'}", pipeline.classifier) as api:
        api.score({"id": "p", "text": RUMOR})
        api.settle()
        pid = api.services.scoring.evidence_process.pid
        assert pid is not None and running(pid)
    assert not running(pid)


def test_a_killed_server_leaves_no_evidence_process(tmp_path: Path) -> None:
    # a server killed outright runs no close: its process finds the pipe closed
    script = textwrap.dedent(
        f"""
        import time
        from service.evidence_process import EvidenceProcess
        from service.pipeline import Pipeline
        from service.record import Post
        from service.settings import Settings

        pipeline = Pipeline.load(Settings())
        # flagged under the shipped policy: searched, so that the process starts
        posts = [Post(id="b", text={POSTS[1].text!r})]
        process = EvidenceProcess(pipeline.explaining(), Settings().evidence_deadline_s)
        process.explain(posts, pipeline.score_many(posts, evidence=False))
        print(process.pid, flush=True)
        time.sleep(600)
        """
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        pid = int(server.stdout.readline())
        assert running(pid)
    finally:
        server.kill()
        server.wait()
    wait_for(lambda: not running(pid))


def test_what_the_process_logs_is_logged_by_the_server(
    tmp_path: Path, pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    search = Troubled(pipeline.classifier, tmp_path)
    search.fail.touch()
    # the review-all test policy: the post is flagged, and searched
    own = Pipeline(search, load_policy(write_policy(tmp_path / "policy.toml")))
    records = own.score_many(POSTS[:1], evidence=False)
    process = EvidenceProcess(own.explaining(), DEADLINE_S)
    try:
        (failed,) = process.explain(POSTS[:1], records)
    finally:
        process.close()
    assert NO_EVIDENCE in failed.warnings
    (said,) = [r for r in caplog.records if r.getMessage().startswith("evidence search failed")]
    assert said.name == "service.explaining" and said.post_id == POSTS[0].id  # type: ignore[attr-defined]
    assert "the session failed" in said.getMessage()


@dataclass(frozen=True)
class Larger:
    """A model whose tokenizer outgrows the socket's buffer too (a larger vocabulary's)."""

    explaining: Explaining
    vocabulary: bytes = bytes(8 << 20)


def test_closing_while_the_process_has_not_read_its_model_ends_it(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle-scheduled process on a host whose cores stay busy gets no CPU to read the model
    sent to it (larger than the pipe holds): stopping the server ends it after its grace, as it
    ends one mid-search, instead of waiting for an idle core, and the call under way fails as
    one whose process was killed."""
    frozen: list[int] = []

    def no_idle_core(pid: int = 0) -> None:
        os.kill(pid, signal.SIGSTOP)
        frozen.append(pid)

    monkeypatch.setattr(evidence_process, "idle_priority", no_idle_core)
    monkeypatch.setattr(evidence_process, "STOP_S", 0.5)
    # the review-all test policy: the post is flagged, and searched
    own = Pipeline(pipeline.classifier, load_policy(write_policy(tmp_path / "policy.toml")))
    records = own.score_many(POSTS[:1], evidence=False)
    assert records[0].evidence_pending
    process = EvidenceProcess(cast(Explaining, Larger(own.explaining())), DEADLINE_S)
    raised: list[BaseException] = []

    def call() -> None:
        try:
            process.explain(POSTS[:1], records)
        except BaseException as exc:  # anything, to report it from the test's thread
            raised.append(exc)

    calling = threading.Thread(target=call)
    calling.start()
    try:
        wait_for(lambda: bool(frozen))
        closing = threading.Thread(target=process.close)
        closing.start()
        closing.join(30)
        assert not closing.is_alive(), "close waited for the process to read its model"
        calling.join(30)
        assert not calling.is_alive()
        assert [type(exc) for exc in raised] == [EvidenceLostError]
        assert not running(frozen[0])
    finally:
        for pid in frozen:  # let the threads end, failed or not
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
