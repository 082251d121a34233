"""The key of subject digests (:class:`~service.review.registration.SubjectKey`): the
``subject_key`` setting, or, where none is set, a key file in ``state_dir`` drawn once, so that a
development install and the tests work without one. Every process of a deployment must use the
same key (a digest under another would match nothing): the file is created whole or not at all,
and of two processes drawing one at once both keep the one that was linked first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from service.review.registration import SubjectKey
from service.settings import MIN_SECRET_BYTES, Settings, SettingsError, get_settings

KEY_FILE = "subject.key"
"""The key file's name in ``state_dir``."""


def key_file(settings: Settings) -> Path:
    return settings.state_dir / KEY_FILE


def load(settings: Settings) -> SubjectKey:
    """The key of ``settings``: the setting, else the key file (created, mode 0600, when
    missing). :class:`SettingsError` names a file that cannot be read or made."""
    if settings.subject_key is not None:
        return SubjectKey(settings.subject_key.get_secret_value().encode())
    path = key_file(settings)
    try:
        key = _read_or_draw(path)
    except OSError as exc:
        raise SettingsError(
            f"cannot read or make the subject key file {path} (or set subject_key): {exc}"
        ) from None
    if len(key) < MIN_SECRET_BYTES:
        raise SettingsError(
            f"the subject key file {path} holds {len(key)} bytes, not at least "
            f"{MIN_SECRET_BYTES}: restore it from a backup (a new key matches no stored subject)"
        )
    return SubjectKey(key)


def installed() -> SubjectKey:
    """The key of this installation's settings (:func:`~service.settings.get_settings`)."""
    return load(get_settings())


def _read_or_draw(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # written under a name of its own, then linked: a reader never sees half a key, and of two
    # processes drawing at once the second's link fails and it reads the first's
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(secrets.token_bytes(MIN_SECRET_BYTES))
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(partial, path)
    finally:
        partial.unlink()
    return path.read_bytes()
