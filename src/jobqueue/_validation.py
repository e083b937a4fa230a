"""Argument checks shared by the models and ``JobQueue``.

Each function either returns the normalised value or raises
:class:`InvalidRequestError` naming the argument; none has side effects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from ._errors import InvalidRequestError

MAX_NAME_LENGTH = 200
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def name(value: object, argument: str) -> str:
    """A string of 1 to 200 characters (kind, queue, worker id)."""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{argument} must be a str, not {type(value).__name__}")
    if not 1 <= len(value) <= MAX_NAME_LENGTH:
        raise InvalidRequestError(
            f"{argument} must be 1 to {MAX_NAME_LENGTH} characters long, got {len(value)}"
        )
    return value


# Values a JSON round trip returns unchanged (floats too, when finite; ints within 64 bits).
_PLAIN_SCALARS = frozenset({str, bool, type(None)})
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


def _is_flat_json(value: dict[Any, Any]) -> bool:
    """True when a JSON round trip of ``value`` gives an equal dict of the same types."""
    for key, item in value.items():
        if type(key) is not str:
            return False
        kind = type(item)
        if kind in _PLAIN_SCALARS:
            continue
        if kind is int:
            if not _INT64_MIN <= item <= _UINT64_MAX:
                return False
        elif kind is not float or not math.isfinite(item):
            return False
    return True


def json_object(value: object, argument: str) -> dict[str, Any]:
    """A JSON object, returned as a fresh dict exactly as it will be read back.

    Any ``Mapping`` with ``str`` keys is accepted; nested values must be JSON too
    (mappings with ``str`` keys, lists or tuples, ``str``, ``int``, finite
    ``float``, ``bool``, ``None``). Tuples come back as lists, ``str``/``int``/
    ``float`` subclasses (enums) as the plain type.
    """
    if type(value) is dict and _is_flat_json(value):
        return dict(value)
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"{argument} must be a JSON object (a mapping), not {type(value).__name__}"
        )
    try:
        return _json_dict(value, argument)
    except RecursionError:
        raise InvalidRequestError(
            f"{argument} is nested too deeply (or refers to itself)"
        ) from None


def _json_dict(value: Mapping[Any, Any], where: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidRequestError(f"{where} keys must be str, got {key!r}")
        result[str.__str__(key)] = _json_value(item, f"{where}[{key!r}]")
    return result


def _json_value(value: object, where: str) -> Any:
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequestError(f"{where} is {value!r}; JSON has no NaN or infinity")
        return float.__float__(value)
    if isinstance(value, Mapping):
        return _json_dict(value, where)
    if isinstance(value, (list, tuple)):
        return [_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise InvalidRequestError(f"{where} is a {type(value).__name__}, which is not a JSON value")


def optional_json_object(value: object, argument: str) -> dict[str, Any] | None:
    return None if value is None else json_object(value, argument)


def integer(
    value: object, argument: str, *, minimum: int = INT32_MIN, maximum: int = INT32_MAX
) -> int:
    """An int (not a bool) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{argument} must be an int, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise InvalidRequestError(
            f"{argument} must be between {minimum} and {maximum}, got {value}"
        )
    return value


def aware_datetime(value: object, argument: str) -> datetime:
    """A timezone-aware datetime, converted to UTC."""
    if not isinstance(value, datetime):
        raise InvalidRequestError(f"{argument} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidRequestError(
            f"{argument} must be timezone-aware, got naive {value.isoformat()}"
        )
    return value.astimezone(UTC)


def optional_aware_datetime(value: object, argument: str) -> datetime | None:
    return None if value is None else aware_datetime(value, argument)


def job_id(value: object) -> UUID:
    """A UUID, or a string holding one."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidRequestError(f"job_id must be a UUID or a UUID string, got {value!r}")


def limit(value: object) -> int:
    return integer(value, "limit", minimum=1, maximum=2**63 - 1)


def queues(value: object) -> tuple[str, ...] | None:
    """None, or a non-empty collection of queue names (not a bare string)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise InvalidRequestError("queues must be a collection of queue names, not a single string")
    if not isinstance(value, Iterable):
        raise InvalidRequestError(
            f"queues must be a collection of queue names, not {type(value).__name__}"
        )
    names = tuple(dict.fromkeys(name(q, "queue name") for q in value))
    if not names:
        raise InvalidRequestError("queues must not be empty; pass None to claim from every queue")
    return names


def timeout(value: object) -> float:
    """A number of seconds (int or float, not NaN); a negative one counts as zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidRequestError(f"timeout must be a number of seconds, got {value!r}")
    return max(0.0, float(value))


def lease(value: object) -> timedelta:
    if not isinstance(value, timedelta):
        raise InvalidRequestError(f"lease must be a timedelta, not {type(value).__name__}")
    if value <= timedelta(0):
        raise InvalidRequestError(f"lease must be positive, got {value}")
    return value
