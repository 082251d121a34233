"""Keys, roles and rate limits (``service.security``), with storage as a dictionary."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from argon2 import extract_parameters, profiles

from service import security
from service.policy import Policy
from service.record import ScoreRecord
from service.review import views
from service.security import AuthError, Guard, VerifiedKeys, create_key, password_digest
from service.storage import ApiKey, Pending, QueueItem, StorageError, StoredRumor
from service.storage.repository import Idempotency


class Keys:
    """A repository that only knows keys; ``down`` makes it fail like an unreachable database."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self.down = False
        self.lookups = 0

    def add_key(self, key: ApiKey) -> None:
        self.keys[key.key_id] = key

    def get_key(self, key_id: str) -> ApiKey | None:
        self.lookups += 1
        if self.down:
            raise StorageError("down")
        return self.keys.get(key_id)

    def ping(self) -> None: ...

    def find_records(
        self, post_ids: Sequence[str], model_version: str, policy_version: str
    ) -> dict[str, ScoreRecord]:
        return {}

    def save_records(
        self, items: Sequence[Pending], policy: Policy | None = None
    ) -> list[ScoreRecord]:
        return [item.record for item in items]

    def update_records(self, records: Sequence[ScoreRecord]) -> None:
        raise AssertionError("keys only")

    def queue(self) -> list[QueueItem]:
        return []

    def add_rumor(
        self,
        entry: Callable[[list[StoredRumor], datetime], StoredRumor],
        *,
        idem: Idempotency | None = None,
    ) -> views.Rumor:
        raise AssertionError("keys only")

    def rumors(self) -> list[StoredRumor]:
        return []

    def delete_rumor(
        self, rumor_id: str, by: str, *, idem: Idempotency | None = None
    ) -> views.Rumor:
        raise AssertionError("keys only")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(keys: Keys, clock: Clock, state: Path, rate: float = 10, burst: int = 2) -> Guard:
    """A guard whose verified keys file is in ``state``."""
    known = VerifiedKeys(state / "verified-keys.json")
    return Guard(keys, rate=rate, burst=burst, cache_s=60, known=known, clock=clock)


def status(g: Guard, header: str | None, *roles: str) -> int:
    try:
        g.check(header, roles)  # type: ignore[arg-type]
    except AuthError as e:
        return e.status
    return 200


def test_a_created_key_is_random_stored_hashed_and_verified(tmp_path: Path) -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    other = create_key(keys, "publisher")
    assert key != other
    (stored, _) = keys.keys.values()
    assert key.split("_", 2)[2] not in stored.digest and stored.digest not in key
    g = guard(keys, Clock(), tmp_path)
    assert g.check(f"Bearer {key}", ("publisher",)).role == "publisher"


def test_missing_malformed_unknown_and_tampered_keys_are_401(tmp_path: Path) -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    g = guard(keys, Clock(), tmp_path)
    assert status(g, None, "publisher") == 401
    assert status(g, "Basic abc", "publisher") == 401
    assert status(g, f"Bearer {key}x", "publisher") == 401
    assert status(g, "Bearer ql_000000000000_secret", "publisher") == 401
    assert status(g, f"Token {key}", "publisher") == 401


def test_a_key_of_the_wrong_role_is_403(tmp_path: Path) -> None:
    keys = Keys()
    reviewer = create_key(keys, "reviewer")
    assert status(guard(keys, Clock(), tmp_path), f"Bearer {reviewer}", "publisher", "admin") == 403


def test_a_key_over_its_rate_gets_429_with_the_wait_and_recovers(tmp_path: Path) -> None:
    keys, clock = Keys(), Clock()
    key = create_key(keys, "publisher")
    other = create_key(keys, "publisher")
    g = guard(keys, clock, tmp_path, rate=10, burst=2)
    assert [status(g, f"Bearer {key}", "publisher") for _ in range(3)] == [200, 200, 429]
    with pytest.raises(AuthError) as raised:
        g.check(f"Bearer {key}", ("publisher",))
    assert raised.value.retry_after == pytest.approx(0.1)
    assert status(g, f"Bearer {other}", "publisher") == 200  # limits are per key
    clock.now += 0.1
    assert status(g, f"Bearer {key}", "publisher") == 200


def test_known_keys_keep_working_while_storage_is_down_and_unknown_ones_get_503(
    tmp_path: Path,
) -> None:
    keys, clock = Keys(), Clock()
    key = create_key(keys, "publisher")
    late = create_key(keys, "publisher")
    g = guard(keys, clock, tmp_path, burst=100)
    g.check(f"Bearer {key}", ("publisher",))
    keys.down = True
    clock.now += 120  # past the cache time: it asks storage, which fails
    assert status(g, f"Bearer {key}", "publisher") == 200
    assert status(g, f"Bearer {late}", "publisher") == 503


def test_verified_keys_are_cached(tmp_path: Path) -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    g = guard(keys, Clock(), tmp_path, burst=100)
    for _ in range(5):
        g.check(f"Bearer {key}", ("publisher",))
    assert keys.lookups == 1


def test_a_revoked_key_is_refused_by_every_process_once_its_cache_has_run_out(
    tmp_path: Path,
) -> None:
    """The bound ``keys revoke`` promises (``key_cache_s``), in each of two server processes
    that verified the key at different moments: each refuses it ``key_cache_s`` after its own
    look-up, the fast path (:meth:`Guard.check_known`) too."""
    keys = Keys()
    key = create_key(keys, "publisher")
    clock = Clock()
    workers = [guard(keys, clock, tmp_path / str(n), burst=100) for n in range(2)]
    header = f"Bearer {key}"
    assert status(workers[0], header, "publisher") == 200
    clock.now += 30
    assert status(workers[1], header, "publisher") == 200
    key_id = next(iter(keys.keys))
    keys.keys[key_id] = replace(keys.keys[key_id], revoked=True)
    clock.now += 30  # the first process's cache has run out, the second's not yet
    assert workers[0].check_known(header, ("publisher",)) is None
    assert status(workers[0], header, "publisher") == 401
    assert status(workers[1], header, "publisher") == 200
    clock.now += 30
    assert workers[1].check_known(header, ("publisher",)) is None
    assert status(workers[1], header, "publisher") == 401


def test_check_known_answers_from_the_cache_only(tmp_path: Path) -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    g = guard(keys, Clock(), tmp_path, burst=100)
    assert g.check_known(f"Bearer {key}", ("publisher",)) is None
    assert keys.lookups == 0
    g.check(f"Bearer {key}", ("publisher",))
    known = g.check_known(f"Bearer {key}", ("publisher",))
    assert known is not None and known.role == "publisher"
    with pytest.raises(AuthError):
        g.check_known(f"Bearer {key}", ("admin",))
    assert keys.lookups == 1


def stat_of(path: Path) -> tuple[int, int, int]:
    found = path.stat()
    return found.st_ino, found.st_mtime_ns, found.st_size


def test_a_guard_started_while_storage_is_down_lets_in_the_keys_an_earlier_one_verified(
    tmp_path: Path,
) -> None:
    keys, clock = Keys(), Clock()
    key, reviewer, late = (create_key(keys, role) for role in ("publisher", "reviewer", "admin"))
    earlier = guard(keys, clock, tmp_path, burst=100)
    for verified, role in ((key, "publisher"), (reviewer, "reviewer")):
        assert status(earlier, f"Bearer {verified}", role) == 200
    file = tmp_path / "verified-keys.json"
    assert file.stat().st_mode & 0o777 == 0o600
    written = file.read_text()
    assert all(k.split("_", 2)[2] not in written for k in (key, reviewer))  # never a secret
    assert {entry["key_id"] for entry in json.loads(written)["keys"]} == {
        key.split("_")[1],
        reviewer.split("_")[1],
    }
    # storage saying the same again writes nothing
    before = stat_of(file)
    clock.now += 120
    assert status(earlier, f"Bearer {key}", "publisher") == 200
    assert stat_of(file) == before and keys.lookups == 3
    keys.down = True
    restarted = guard(keys, Clock(), tmp_path, burst=100)
    assert status(restarted, f"Bearer {key}", "publisher") == 200
    assert status(restarted, f"Bearer {key[:-1]}x", "publisher") == 401  # the secret checked
    assert status(restarted, f"Bearer {reviewer}", "publisher") == 403  # and the role
    assert status(restarted, f"Bearer {late}", "admin") == 503  # never verified: unknown
    assert not list(tmp_path.glob(".*partial"))


def test_a_keys_owner_is_kept_in_the_file_and_a_file_from_before_owners_reads_unowned(
    tmp_path: Path,
) -> None:
    """A server started in an outage acts for the key's owner as one that asked storage does.
    The file's format moved with the owners (an earlier release, which reads format 1 only,
    would have taken it and written it back without them); an earlier release's file is read,
    its keys nobody's, as they were, and written again in this format losing none of them."""
    keys, clock = Keys(), Clock()
    owned, plain = create_key(keys, "admin", owner="王审核"), create_key(keys, "admin")
    owned_id, plain_id = owned.split("_")[1], plain.split("_")[1]
    earlier = guard(keys, clock, tmp_path, burst=100)
    assert earlier.check(f"Bearer {owned}", ("admin",)).actor == "王审核"
    assert earlier.check(f"Bearer {plain}", ("admin",)).actor == plain_id
    file = tmp_path / "verified-keys.json"
    document = json.loads(file.read_text())
    assert document["format"] == 2
    owners = {entry["key_id"]: entry["owner"] for entry in document["keys"]}
    assert owners == {owned_id: "王审核", plain_id: None}
    keys.down = True
    restarted = guard(keys, Clock(), tmp_path, burst=100)
    who = restarted.check(f"Bearer {owned}", ("admin",))
    assert (who.owner, who.actor) == ("王审核", "王审核")
    # format 1 as this release wrote it before the number moved: with the owners
    document["format"] = 1
    file.write_text(json.dumps(document))
    who = guard(keys, Clock(), tmp_path, burst=100).check(f"Bearer {owned}", ("admin",))
    assert (who.owner, who.actor) == ("王审核", "王审核")
    # as an earlier release wrote it: format 1, its keys without owners
    document["keys"] = [
        {name: value for name, value in entry.items() if name != "owner"}
        for entry in document["keys"]
        if entry["key_id"] == plain_id
    ]
    file.write_text(json.dumps(document))
    before = guard(keys, Clock(), tmp_path, burst=100)
    who = before.check(f"Bearer {plain}", ("admin",))
    assert (who.owner, who.actor) == (None, plain_id)
    keys.down = False
    assert before.check(f"Bearer {owned}", ("admin",)).actor == "王审核"  # written again
    document = json.loads(file.read_text())
    assert document["format"] == 2
    assert {entry["key_id"]: entry["owner"] for entry in document["keys"]} == owners


def test_a_key_storage_revokes_or_forgets_leaves_the_file_and_is_refused_in_an_outage(
    tmp_path: Path,
) -> None:
    keys, clock = Keys(), Clock()
    kept, revoked, forgotten = (create_key(keys, "publisher") for _ in range(3))
    ids = [k.split("_")[1] for k in (kept, revoked, forgotten)]
    earlier = guard(keys, clock, tmp_path, burst=100)
    for verified in (kept, revoked, forgotten):
        assert status(earlier, f"Bearer {verified}", "publisher") == 200
    # another process (started before any was verified) still reads what storage said last
    other = guard(keys, clock, tmp_path, burst=100)
    keys.keys[ids[1]] = replace(keys.keys[ids[1]], revoked=True)
    del keys.keys[ids[2]]
    assert status(other, f"Bearer {revoked}", "publisher") == 401
    assert status(other, f"Bearer {forgotten}", "publisher") == 401
    file = json.loads((tmp_path / "verified-keys.json").read_text())
    assert [entry["key_id"] for entry in file["keys"]] == [ids[0]]
    keys.down = True
    restarted = guard(keys, Clock(), tmp_path, burst=100)
    assert status(restarted, f"Bearer {kept}", "publisher") == 200
    assert status(restarted, f"Bearer {revoked}", "publisher") == 503
    assert status(restarted, f"Bearer {forgotten}", "publisher") == 503


def test_processes_sharing_the_file_keep_each_others_keys(tmp_path: Path) -> None:
    keys = Keys()
    first, second = create_key(keys, "publisher"), create_key(keys, "reviewer")
    # both read the (missing) file before either wrote
    one, two = guard(keys, Clock(), tmp_path), guard(keys, Clock(), tmp_path)
    assert status(one, f"Bearer {first}", "publisher") == 200
    assert status(two, f"Bearer {second}", "reviewer") == 200
    keys.down = True
    assert status(two, f"Bearer {first}", "publisher") == 200  # written since it read the file
    restarted = guard(keys, Clock(), tmp_path)
    assert status(restarted, f"Bearer {first}", "publisher") == 200
    assert status(restarted, f"Bearer {second}", "reviewer") == 200


NOTE_KEYS = """
import sys
from datetime import UTC, datetime
from pathlib import Path

from service.security import VerifiedKeys
from service.storage import ApiKey

known = VerifiedKeys(Path(sys.argv[1]))
sys.stdin.read()  # started together: each waits for the test to close its input
for n in range(int(sys.argv[2])):
    key_id = f"{sys.argv[3]}{n:06x}"
    known.note(key_id, ApiKey(key_id, "0" * 64, "publisher", datetime.now(UTC)))
"""


def test_server_processes_writing_the_file_at_once_lose_no_key(tmp_path: Path) -> None:
    file, each = tmp_path / "verified-keys.json", 40
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", NOTE_KEYS, str(file), str(each), f"{n:06x}"],
            stdin=subprocess.PIPE,
        )
        for n in range(4)
    ]
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.close()
    assert [writer.wait() for writer in writers] == [0] * 4
    kept = json.loads(file.read_text())["keys"]
    assert len({entry["key_id"] for entry in kept}) == 4 * each


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe",
        b'{"format": 1, "keys": [',
        b"[]",
        b'{"format": 3, "keys": []}',
        # this format names every key's owner, if only as null
        b'{"format": 2, "keys": [{"key_id": "0123456789ab", "digest": "' + b"0" * 64 + b'",'
        b' "role": "admin", "created_at": "2026-12-06T00:00:00+00:00"}]}',
        b'{"format": 1, "keys": [{"key_id": "0123456789ab"}]}',
        b'{"format": 1, "keys": [{"key_id": "0123456789ab", "digest": "x", "role": "publisher",'
        b' "created_at": "2026-12-06T00:00:00+00:00"}]}',
        b'{"format": 1, "keys": [{"key_id": "0123456789ab", "digest": "' + b"0" * 64 + b'",'
        b' "role": "root", "created_at": "2026-12-06T00:00:00+00:00"}]}',
        b'{"format": 1, "keys": [{"key_id": "0123456789ab", "digest": "' + b"0" * 64 + b'",'
        b' "role": "admin", "created_at": "2026-12-06T00:00:00+00:00", "owner": 7}]}',
    ],
)
def test_a_verified_keys_file_that_cannot_be_used_is_a_warning_and_written_anew(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    file = tmp_path / "verified-keys.json"
    file.write_bytes(content)
    keys.down = True
    with caplog.at_level(logging.WARNING, logger="service.security"):
        started = guard(keys, Clock(), tmp_path)
    (warning,) = caplog.records
    assert warning.getMessage().startswith("the verified keys file cannot be used")
    assert warning.__dict__["file"] == str(file)
    assert status(started, f"Bearer {key}", "publisher") == 503
    keys.down = False
    assert status(started, f"Bearer {key}", "publisher") == 200
    keys.down = True
    assert status(guard(keys, Clock(), tmp_path), f"Bearer {key}", "publisher") == 200
    assert len(caplog.records) == 1  # warned once, not at each look


@pytest.mark.parametrize("blocked", ["a folder in its place", "a file in its folder's place"])
def test_a_verified_keys_file_that_cannot_be_read_or_written_costs_no_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, blocked: str
) -> None:
    keys, clock = Keys(), Clock()
    key, other = create_key(keys, "publisher"), create_key(keys, "publisher")
    state = tmp_path / "state"
    if blocked == "a folder in its place":
        (state / "verified-keys.json").mkdir(parents=True)  # stat answers, reading does not
    else:
        state.write_bytes(b"")  # neither stat nor reading answers
    with caplog.at_level(logging.WARNING, logger="service.security"):
        g = guard(keys, clock, state, burst=100)
        assert status(g, f"Bearer {key}", "publisher") == 200
        keys.down = True
        clock.now += 120
        assert [status(g, f"Bearer {other}", "publisher") for _ in range(3)] == [503] * 3
        assert status(g, f"Bearer {key}", "publisher") == 200  # from memory
    warned = [r.getMessage() for r in caplog.records]
    assert warned[0].startswith("the verified keys file cannot be used")
    assert warned[1:] == ["cannot write the verified keys file"]  # each once
    assert not list(tmp_path.glob("**/.*partial"))


def test_anything_but_a_key_as_issued_is_401_before_storage_or_the_cache(tmp_path: Path) -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    _, key_id, secret = key.split("_", 2)
    g = guard(keys, Clock(), tmp_path)
    for header in (
        f"Bearer ql_{key_id}{'a' * 1_000_000}_x",  # a megabyte of id: once kept in the cache
        f"Bearer ql_{key_id}_{secret}{'a' * 1_000_000}",
        f"Bearer ql_{key_id.upper()}_{secret}",
        f"Bearer ql_{key_id}0_{secret}",
        f"Bearer ql_{key_id}_{secret[:-1]}",
        f"Bearer ql_{key_id}_{secret[:-1]}=",
        f"Bearer qx_{key_id}_{secret}",
    ):
        assert status(g, header, "publisher") == 401
        with pytest.raises(AuthError):
            g.check_known(header, ("publisher",))
    assert keys.lookups == 0
    assert status(g, f"Bearer {key}", "publisher") == 200


def test_unknown_ids_never_push_a_known_key_out_of_memory(tmp_path: Path) -> None:
    keys, clock = Keys(), Clock()
    key = create_key(keys, "publisher")
    g = guard(keys, clock, tmp_path, burst=100)
    g.check(f"Bearer {key}", ("publisher",))
    secret = key.split("_", 2)[2]
    for n in range(10_001):
        assert status(g, f"Bearer ql_{n:012x}_{secret}", "publisher") == 401
    unknown = f"Bearer ql_{'f' * 12}_{secret}"
    asked = keys.lookups
    assert [status(g, unknown, "publisher") for _ in range(2)] == [401, 401]
    assert keys.lookups == asked + 1  # remembered: storage is asked once within key_cache_s
    keys.down = True
    clock.now += 120
    assert status(g, f"Bearer {key}", "publisher") == 200
    assert status(g, unknown, "publisher") == 503


def test_passwords_are_hashed_at_the_cost_rfc_9106_recommends_and_checked_at_their_own() -> None:
    """argon2id at RFC 9106's low-memory parameters, whatever a test may hash with (the console
    tests' ``quick_passwords``): a digest is checked at the cost it was made with."""
    digest = password_digest("青蛙")
    assert extract_parameters(digest) == profiles.RFC_9106_LOW_MEMORY
    assert security.check_password("青蛙", digest) and not security.check_password("青", digest)
