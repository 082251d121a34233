"""Keys, roles and rate limits (``service.security``), with storage as a dictionary."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import pytest

from service.record import ScoreRecord
from service.review import views
from service.security import AuthError, Guard, create_key
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

    def save_records(self, items: Sequence[Pending]) -> list[ScoreRecord]:
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


def guard(keys: Keys, clock: Clock, rate: float = 10, burst: int = 2) -> Guard:
    return Guard(keys, rate=rate, burst=burst, cache_s=60, clock=clock)


def status(g: Guard, header: str | None, *roles: str) -> int:
    try:
        g.check(header, roles)  # type: ignore[arg-type]
    except AuthError as e:
        return e.status
    return 200


def test_a_created_key_is_random_stored_hashed_and_verified() -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    other = create_key(keys, "publisher")
    assert key != other
    (stored, _) = keys.keys.values()
    assert key.split("_", 2)[2] not in stored.digest and stored.digest not in key
    g = guard(keys, Clock())
    assert g.check(f"Bearer {key}", ("publisher",)).role == "publisher"


def test_missing_malformed_unknown_and_tampered_keys_are_401() -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    g = guard(keys, Clock())
    assert status(g, None, "publisher") == 401
    assert status(g, "Basic abc", "publisher") == 401
    assert status(g, f"Bearer {key}x", "publisher") == 401
    assert status(g, "Bearer ql_000000000000_secret", "publisher") == 401
    assert status(g, f"Token {key}", "publisher") == 401


def test_a_key_of_the_wrong_role_is_403() -> None:
    keys = Keys()
    reviewer = create_key(keys, "reviewer")
    assert status(guard(keys, Clock()), f"Bearer {reviewer}", "publisher", "admin") == 403


def test_a_key_over_its_rate_gets_429_with_the_wait_and_recovers() -> None:
    keys, clock = Keys(), Clock()
    key = create_key(keys, "publisher")
    other = create_key(keys, "publisher")
    g = guard(keys, clock, rate=10, burst=2)
    assert [status(g, f"Bearer {key}", "publisher") for _ in range(3)] == [200, 200, 429]
    with pytest.raises(AuthError) as raised:
        g.check(f"Bearer {key}", ("publisher",))
    assert raised.value.retry_after == pytest.approx(0.1)
    assert status(g, f"Bearer {other}", "publisher") == 200  # limits are per key
    clock.now += 0.1
    assert status(g, f"Bearer {key}", "publisher") == 200


def test_known_keys_keep_working_while_storage_is_down_and_unknown_ones_get_503() -> None:
    keys, clock = Keys(), Clock()
    key = create_key(keys, "publisher")
    late = create_key(keys, "publisher")
    g = guard(keys, clock, burst=100)
    g.check(f"Bearer {key}", ("publisher",))
    keys.down = True
    clock.now += 120  # past the cache time: it asks storage, which fails
    assert status(g, f"Bearer {key}", "publisher") == 200
    assert status(g, f"Bearer {late}", "publisher") == 503


def test_verified_keys_are_cached() -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    g = guard(keys, Clock(), burst=100)
    for _ in range(5):
        g.check(f"Bearer {key}", ("publisher",))
    assert keys.lookups == 1


def test_check_known_answers_from_the_cache_only() -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    g = guard(keys, Clock(), burst=100)
    assert g.check_known(f"Bearer {key}", ("publisher",)) is None
    assert keys.lookups == 0
    g.check(f"Bearer {key}", ("publisher",))
    known = g.check_known(f"Bearer {key}", ("publisher",))
    assert known is not None and known.role == "publisher"
    with pytest.raises(AuthError):
        g.check_known(f"Bearer {key}", ("admin",))
    assert keys.lookups == 1


def test_anything_but_a_key_as_issued_is_401_before_storage_or_the_cache() -> None:
    keys = Keys()
    key = create_key(keys, "publisher")
    _, key_id, secret = key.split("_", 2)
    g = guard(keys, Clock())
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


def test_unknown_ids_never_push_a_known_key_out_of_memory() -> None:
    keys, clock = Keys(), Clock()
    key = create_key(keys, "publisher")
    g = guard(keys, clock, burst=100)
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
