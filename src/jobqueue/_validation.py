"""Argument checks shared by the models and ``JobQueue``.

Each function either returns the normalised value or raises
:class:`InvalidRequestError` naming the argument; none has side effects.
"""

from __future__ import annotations

import json
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


def json_object(value: object, argument: str) -> dict[str, Any]:
    """A JSON object, returned as a fresh dict exactly as it will be read back."""
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"{argument} must be a JSON object (a mapping), not {type(value).__name__}"
        )
    for key in value:
        if not isinstance(key, str):
            raise InvalidRequestError(f"{argument} keys must be str, got {key!r}")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"{argument} is not JSON-serialisable: {exc}") from None
    result: dict[str, Any] = json.loads(text)
    return result


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


def lease(value: object) -> timedelta:
    if not isinstance(value, timedelta):
        raise InvalidRequestError(f"lease must be a timedelta, not {type(value).__name__}")
    if value <= timedelta(0):
        raise InvalidRequestError(f"lease must be positive, got {value}")
    return value
