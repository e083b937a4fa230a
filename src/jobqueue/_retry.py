"""Retry rules for the worker: backoff, what is retried, and the error text stored."""

from __future__ import annotations

import math
import random
import traceback
from dataclasses import dataclass, field

from ._errors import InvalidRequestError

__all__ = ["DEFAULT_MAX_ERROR_CHARS", "Permanent", "RetryPolicy", "format_error"]

DEFAULT_MAX_ERROR_CHARS = 8192


class Permanent(Exception):
    """Raise from a handler to fail the job for good, whatever attempts remain.

    ``raise jobqueue.Permanent("unknown customer") from exc`` keeps the cause in
    the stored traceback.
    """


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed attempt runs again.

    The delay after attempt ``n`` (1 for the first claim) is
    ``min(max_delay, base_delay * factor ** (n - 1))``, shortened by a random
    fraction of up to ``jitter`` of itself, so it always lies within
    ``[nominal * (1 - jitter), nominal]`` and never exceeds ``max_delay``.
    Whether a job runs again at all is decided by its own ``max_attempts``:
    after the attempt with ``attempts >= max_attempts`` the job is ``failed``.

    An exception that is an instance of a type in ``non_retryable`` (or of
    :class:`Permanent`) fails the job at once.
    """

    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.1
    non_retryable: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("base_delay", "factor", "max_delay", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidRequestError(f"{name} must be a number, not {type(value).__name__}")
            if not math.isfinite(value) or value < 0:
                raise InvalidRequestError(f"{name} must be finite and >= 0, got {value}")
        if self.factor < 1:
            raise InvalidRequestError(f"factor must be >= 1, got {self.factor}")
        if self.jitter > 1:
            raise InvalidRequestError(f"jitter must be between 0 and 1, got {self.jitter}")
        if not isinstance(self.non_retryable, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.non_retryable
        ):
            raise InvalidRequestError("non_retryable must be a tuple of exception types")

    def nominal_delay(self, attempt: int) -> float:
        """The delay in seconds after attempt ``attempt`` before jitter."""
        if attempt < 1:
            raise InvalidRequestError(f"attempt must be >= 1, got {attempt}")
        # Exponent clamp: factor ** huge overflows a float long before it matters.
        exponent = min(attempt - 1, 1024)
        try:
            delay = self.base_delay * self.factor**exponent
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, delay)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay in seconds after attempt ``attempt``, jitter applied."""
        nominal = self.nominal_delay(attempt)
        draw = (rng or random).random()
        return nominal * (1.0 - self.jitter * draw)

    def retryable(self, exc: BaseException) -> bool:
        """False when ``exc`` must fail the job at once."""
        return not isinstance(exc, Permanent) and not isinstance(exc, self.non_retryable)


def format_error(exc: BaseException, limit: int = DEFAULT_MAX_ERROR_CHARS) -> str:
    """``exc`` with its traceback (and chained causes), at most ``limit`` characters.

    A longer text keeps its head and its tail (where the exception's own
    message is) around a marker saying how much was cut.
    """
    text = "".join(traceback.format_exception(exc)).rstrip("\n")
    return truncate(text, limit)


def truncate(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and tail around a marker."""
    if len(text) <= limit:
        return text
    room = len(f"\n... [{len(text)} characters omitted] ...\n")
    keep = max(0, limit - room)
    head = keep // 3
    tail = keep - head
    marker = f"\n... [{len(text) - keep} characters omitted] ...\n"
    return text[:head] + marker + text[len(text) - tail :]
