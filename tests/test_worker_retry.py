"""RetryPolicy and the stored error text, without a queue."""

from __future__ import annotations

import random

import pytest

import jobqueue
from jobqueue._retry import format_error, truncate


def test_nominal_delay_grows_exponentially_up_to_the_cap() -> None:
    """Attempt n waits base * factor**(n-1) seconds, never more than max_delay."""
    policy = jobqueue.RetryPolicy(base_delay=2.0, factor=3.0, max_delay=100.0, jitter=0.0)
    assert [policy.nominal_delay(n) for n in range(1, 6)] == [2.0, 6.0, 18.0, 54.0, 100.0]
    assert policy.nominal_delay(10_000) == 100.0


def test_jittered_delay_stays_within_its_bounds() -> None:
    """With jitter j the delay lies in [nominal * (1 - j), nominal] and actually varies."""
    policy = jobqueue.RetryPolicy(base_delay=10.0, factor=2.0, max_delay=50.0, jitter=0.5)
    rng = random.Random(7)
    for attempt in (1, 2, 3, 4, 12):
        nominal = policy.nominal_delay(attempt)
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(nominal * 0.5 <= d <= nominal for d in delays)
        assert max(delays) - min(delays) > nominal * 0.3


def test_zero_jitter_gives_the_nominal_delay() -> None:
    """jitter=0 makes delays deterministic."""
    policy = jobqueue.RetryPolicy(base_delay=1.5, jitter=0.0)
    assert policy.delay(3) == 6.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_delay": -1},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"max_delay": float("inf")},
        {"base_delay": "1"},
        {"non_retryable": [ValueError]},
        {"non_retryable": (ValueError, 3)},
    ],
)
def test_bad_policy_arguments_are_rejected(kwargs: dict[str, object]) -> None:
    """A policy that cannot produce sensible delays is an InvalidRequestError."""
    with pytest.raises(jobqueue.InvalidRequestError):
        jobqueue.RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_attempt_numbers_start_at_one() -> None:
    """There is no delay before the first claim: attempt 0 is refused."""
    with pytest.raises(jobqueue.InvalidRequestError):
        jobqueue.RetryPolicy().nominal_delay(0)


def test_retryable_honours_non_retryable_types_and_permanent() -> None:
    """Instances of non_retryable types (and their subclasses) and Permanent are not retried."""
    policy = jobqueue.RetryPolicy(non_retryable=(LookupError,))
    assert policy.retryable(RuntimeError("x"))
    assert not policy.retryable(KeyError("x"))
    assert not policy.retryable(jobqueue.Permanent("x"))
    assert not jobqueue.RetryPolicy().retryable(jobqueue.Permanent("x"))


def test_policy_is_frozen() -> None:
    """A RetryPolicy is an immutable value shared safely between workers."""
    policy = jobqueue.RetryPolicy()
    with pytest.raises(AttributeError):
        policy.base_delay = 3.0  # type: ignore[misc]


def _raise_chained() -> None:
    try:
        dict[str, int]()["missing"]
    except KeyError as exc:
        raise RuntimeError("lookup failed") from exc


def test_error_text_carries_the_traceback_and_its_cause() -> None:
    """The stored error shows the traceback, the cause, and the message."""
    try:
        _raise_chained()
    except RuntimeError as exc:
        text = format_error(exc)
    assert text.startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in text
    assert "_raise_chained" in text
    assert text.endswith("RuntimeError: lookup failed")


def test_long_error_text_keeps_head_and_tail_within_the_limit() -> None:
    """A huge error is cut to the limit, keeping its start and its final message."""
    try:
        raise ValueError("x" * 50_000 + " THE END")
    except ValueError as exc:
        text = format_error(exc, 1000)
    assert len(text) <= 1000
    assert text.startswith("Traceback")
    assert text.endswith(" THE END")
    assert "characters omitted" in text


def test_truncate_leaves_short_text_alone_and_accounts_for_what_it_cut() -> None:
    """Text within the limit is unchanged; the marker states exactly how much was cut."""
    assert truncate("short", 10) == "short"
    text = "".join(chr(ord("a") + i % 26) for i in range(5000))
    cut = truncate(text, 300)
    head, _, rest = cut.partition("\n... [")
    omitted = int(rest.split(" ", 1)[0])
    tail = rest.split("] ...\n", 1)[1]
    assert len(head) + omitted + len(tail) == len(text)
    assert text.startswith(head) and text.endswith(tail)
    assert len(cut) <= 300
