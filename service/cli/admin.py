"""``qinglang migrate``, ``keys`` and ``users``: the database schema, API keys and console
users, and the opening of the storage these commands share."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.settings import Settings
    from service.storage import SqlRepository


def migrate() -> int:
    from service.logs import configure
    from service.settings import get_settings
    from service.storage import StorageError, upgrade

    settings = get_settings()
    configure(settings.log_level, migrating=True)
    try:
        upgrade(settings.database)
    except StorageError as exc:
        print(f"qinglang migrate: error: {exc}", file=sys.stderr)
        return 2
    return 0


def create_secret(args: argparse.Namespace) -> int:
    """``keys create`` or ``users create``: store the new key or user, print its secret last."""
    from service.security import ROLES, create_key, create_user, owner_refusal
    from service.settings import get_settings
    from service.storage import StorageError

    settings = get_settings()
    role = next(r for r in ROLES if r == args.role)
    user = getattr(args, "name", None)
    owner = getattr(args, "user", None)
    try:
        repository = _storage(settings, writes=True)
        try:
            holder = None if user is None else repository.get_user(user)
            if holder is not None:
                by = " by a disabled user" if holder.disabled else ""
                print(f"qinglang users: error: the name {user!r} is taken{by}", file=sys.stderr)
                return 2
            refused = (
                None if owner is None else owner_refusal(repository.get_user(owner), owner, role)
            )
            if refused is not None:
                print(f"qinglang keys: error: --user: {refused}", file=sys.stderr)
                return 2
            secret = (
                create_key(repository, role, owner)
                if user is None
                else create_user(repository, user, role)
            )
        finally:
            repository.close()
    except StorageError as exc:
        print(f"qinglang {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if user is not None:
        what = f"console user {user!r}; the password"
    else:
        what = "key" if owner is None else f"key of console user {owner!r}"
    print(f"a new {args.role} {what} is stored hashed and shown only now:")
    print(secret)
    return 0


def keys(args: argparse.Namespace) -> int:
    """``keys revoke`` and ``keys list``."""
    from service.settings import get_settings
    from service.storage import StorageError

    settings = get_settings()
    try:
        repository = _storage(settings, writes=args.keys_command != "list")
        try:
            if args.keys_command == "list":
                for key in repository.list_keys():
                    state = "revoked" if key.revoked else "active"
                    # last, where a name with spaces in it is the rest of the line
                    owner = "" if key.owner is None else f"  {key.owner}"
                    print(
                        f"{key.key_id}  {key.role:<9}  {key.created_at:%Y-%m-%d %H:%M}Z  "
                        f"{state}{owner}"
                    )
                return 0
            key_id = args.key
            before = repository.revoke_key(key_id)
        finally:
            repository.close()
    except StorageError as exc:
        print(f"qinglang keys: error: {exc}", file=sys.stderr)
        return 2
    if before is None:
        print(f"qinglang keys: error: no key {key_id!r} (see: qinglang keys list)", file=sys.stderr)
        return 2
    was = "was already revoked" if before.revoked else "is revoked"
    print(f"{before.role} key {key_id} {was}; servers refuse it within {settings.key_cache_s:g} s")
    return 0


def _storage(settings: Settings, *, writes: bool) -> SqlRepository:
    """The repository for a command that writes (the database migrated first), or for one that
    only reads (an existing database at the newest migration, created and migrated by nothing)."""
    from service.storage import open_existing, open_migrated

    opened = open_migrated if writes else open_existing
    return opened(settings.database, settings.db_timeout_s)


def users(args: argparse.Namespace) -> int:
    """``users disable`` and ``users list``."""
    from service.settings import get_settings
    from service.storage import StorageError

    settings = get_settings()
    try:
        repository = _storage(settings, writes=args.users_command != "list")
        try:
            if args.users_command == "list":
                for user in repository.list_users():
                    state = "disabled" if user.disabled else "active"
                    print(
                        f"{user.name}  {user.role:<8}  {user.created_at:%Y-%m-%d %H:%M}Z  {state}"
                    )
                return 0
            before = repository.disable_user(args.name)
            keys = [k.key_id for k in repository.list_keys() if k.owner == args.name]
        finally:
            repository.close()
    except StorageError as exc:
        print(f"qinglang users: error: {exc}", file=sys.stderr)
        return 2
    if before is None:
        print(
            f"qinglang users: error: no user {args.name!r} (see: qinglang users list)",
            file=sys.stderr,
        )
        return 2
    was = "was already disabled" if before.disabled else "is disabled"
    revoked = f", and its keys are revoked ({', '.join(keys)})" if keys else ""
    print(f"{before.role} {args.name!r} {was}: it cannot sign in, its sessions have ended{revoked}")
    return 0
