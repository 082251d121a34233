"""JSON read the one way the API's bodies and ``qinglang rescore``'s lines are: an integer of
more digits than ``int()`` reads (``sys.get_int_max_str_digits()``, 4,300) is refused naming
the field it is in, where ``json.loads`` refused the whole text in words about Python itself
("use sys.set_int_max_str_digits() to increase the limit").
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

Path = tuple[str | int, ...]
"""Where a value is in a JSON value: object keys and array indexes, outermost first."""


class LongNumber:
    """An integer of more digits than ``int()`` reads, in the parsed value where the integer
    was, so that its refusal names the field."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


@dataclass(frozen=True)
class TooLong:
    """The first :class:`LongNumber` of a value: where it is, and how many digits it has of
    the ``limit``."""

    path: Path
    digits: int
    limit: int

    @property
    def message(self) -> str:
        return (
            f"an integer of {self.digits:,} digits, more than the {self.limit:,} an integer "
            "may have"
        )


def loads(text: str | bytes) -> tuple[object, TooLong | None]:
    """``text`` parsed as ``json.loads`` parses it (its errors raised as it raises them), with
    each integer too long to read a :class:`LongNumber`, and the first one left in the value,
    if any: a key given twice keeps its last value, so a long number it replaced is not in it."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError:
        raise
    except ValueError:
        # an integer too long for int(): the text is read again, each integer looked at, only
        # then; looking at every text's integers made reading a post's line a quarter slower
        pass
    limit = sys.get_int_max_str_digits()
    long = False

    def integer(written: str) -> int | LongNumber:
        nonlocal long
        digits = len(written.removeprefix("-"))
        if not limit or digits <= limit:
            return int(written)
        long = True
        return LongNumber(digits)

    value = json.loads(text, parse_int=integer)
    return value, (first_long(value) if long else None)


@dataclass(frozen=True)
class Unreadable:
    """An item of a list whose items are read one by one (a batch's posts) that holds a
    :class:`LongNumber`, in the list in place of the item: refused in its place, where the
    others are read (:func:`set_apart`)."""

    value: object
    long: TooLong
    """The item's first long integer, its path within the item."""


def set_apart(value: object, field: str) -> TooLong | None:
    """Each item of ``value[field]``, a list, that holds a :class:`LongNumber` replaced in place
    by an :class:`Unreadable`; the first long integer of ``value`` left outside those items, if
    any, which is the whole value's."""
    items = value.get(field) if isinstance(value, dict) else None
    if isinstance(items, list):
        for n, item in enumerate(items):
            if (long := first_long(item)) is not None:
                items[n] = Unreadable(item, long)
    return first_long(value)


def first_long(value: object) -> TooLong | None:
    """The first :class:`LongNumber` in ``value``, in document order. Walked without
    recursion: the value may nest as deep as json reads."""
    limit = sys.get_int_max_str_digits()
    stack: list[tuple[Path, object]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, LongNumber):
            return TooLong(path, item.digits, limit)
        if isinstance(item, dict):
            stack.extend([((*path, key), child) for key, child in item.items()][::-1])
        elif isinstance(item, list):
            stack.extend([((*path, n), child) for n, child in enumerate(item)][::-1])
    return None
