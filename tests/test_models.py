"""The models: ``JobStatus``, ``CreateJobRequest`` validation and normalisation, ``Job``."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest

from jobqueue import CreateJobRequest, InvalidRequestError, Job, JobStatus
from jobqueue.backend import STATUS_BY_VALUE, new_job, set_created_at

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class Colour(enum.StrEnum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


# ------------------------------------------------------------------ JobStatus


@pytest.mark.parametrize("status", list(JobStatus))
def test_status_parse_accepts_member_and_its_string(status: JobStatus) -> None:
    """``JobStatus.parse`` returns the member for the member itself and for its string value."""
    assert JobStatus.parse(status) is status
    assert JobStatus.parse(status.value) is status
    assert JobStatus.parse(str(status)) is status


@pytest.mark.parametrize("value", ["PENDING", " pending", "", "done", None, 1, b"pending"])
def test_status_parse_rejects_other_values(value: object) -> None:
    """Anything but a member or its exact string value is an ``InvalidRequestError``
    (also a ``ValueError``) whose message lists the valid statuses."""
    with pytest.raises(InvalidRequestError, match="pending, running, completed") as info:
        JobStatus.parse(value)
    assert isinstance(info.value, ValueError)


def test_status_values_and_terminality() -> None:
    """The five statuses have their SPEC values; exactly completed, failed, cancelled are
    terminal; a status is a ``str``."""
    assert [s.value for s in JobStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
    ]
    assert {s for s in JobStatus if s.is_terminal} == {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }
    assert JobStatus.RUNNING == "running"  # type: ignore[comparison-overlap]
    assert isinstance(JobStatus.PENDING, str)


# ------------------------------------------------------- CreateJobRequest


def test_request_defaults() -> None:
    """A request needs only ``kind``; the defaults are those of the SPEC."""
    request = CreateJobRequest("send")
    assert request.payload == {}
    assert request.queue == "default"
    assert request.priority == 0
    assert request.run_at is None
    assert request.max_attempts == 5


@pytest.mark.parametrize("field", ["kind", "queue"])
@pytest.mark.parametrize("length", [1, 200])
def test_names_of_1_to_200_characters_are_accepted(field: str, length: int) -> None:
    """``kind`` and ``queue`` may be 1 to 200 characters (characters, not bytes)."""
    value = "é" * length
    arguments: dict[str, Any] = {"kind": "k", field: value}
    request = CreateJobRequest(**arguments)
    assert getattr(request, field) == value


@pytest.mark.parametrize("field", ["kind", "queue"])
@pytest.mark.parametrize("value", ["", "x" * 201, None, 7, b"kind"])
def test_bad_names_are_rejected(field: str, value: object) -> None:
    """An empty, over-long or non-str ``kind``/``queue`` is an ``InvalidRequestError``
    naming the field."""
    arguments: dict[str, Any] = {"kind": "k", field: value}
    with pytest.raises(InvalidRequestError, match=field):
        CreateJobRequest(**arguments)


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2],
        "text",
        None,
        {1: "int key"},
        {("a",): "tuple key"},
        {"nan": math.nan},
        {"inf": math.inf},
        {"ninf": -math.inf},
        {"set": {1, 2}},
        {"bytes": b"x"},
        {"when": NOW},
        {"id": uuid.uuid4()},
        {"obj": object()},
        {"nested": {"deep": [1, {"x": math.nan}]}},
        {"nested": {2: "non-str key below the top"}},
        {"nested": [{"1": "a", 1: "b"}]},
        {"nested": [1, {3, 4}]},
    ],
    ids=repr,
)
def test_payload_must_be_a_json_object(payload: Any) -> None:
    """A payload that is not a JSON object, at any depth, is rejected: non-str keys,
    NaN and infinities, sets, bytes, datetimes and other non-JSON values."""
    with pytest.raises(InvalidRequestError, match="payload"):
        CreateJobRequest("k", payload)


def test_self_referencing_payload_is_rejected() -> None:
    """A payload that contains itself is an ``InvalidRequestError``, not a crash."""
    payload: dict[str, Any] = {}
    payload["me"] = payload
    with pytest.raises(InvalidRequestError, match="payload"):
        CreateJobRequest("k", payload)


def test_payload_is_normalised_to_what_every_backend_returns() -> None:
    """Any Mapping is accepted and becomes a plain dict; tuples become lists and enum
    members their plain value, exactly as a JSON round trip returns them."""
    request = CreateJobRequest(
        "k",
        MappingProxyType(
            {
                "t": (1, (2, 3)),
                "m": MappingProxyType({"c": Colour.RED}),
                "n": Size.BIG,
                "f": 1.5,
                "b": True,
                "z": None,
                "big": 2**70,
            }
        ),
    )
    assert request.payload == {
        "t": [1, [2, 3]],
        "m": {"c": "red"},
        "n": 3,
        "f": 1.5,
        "b": True,
        "z": None,
        "big": 2**70,
    }
    assert type(request.payload) is dict
    assert type(request.payload["m"]) is dict
    assert type(request.payload["m"]["c"]) is str
    assert type(request.payload["n"]) is int
    assert request.payload["b"] is True


def test_payload_is_copied_deeply() -> None:
    """Mutating the caller's payload (nested parts included) after construction does
    not change the request."""
    original: dict[str, Any] = {"list": [1], "dict": {"a": 1}, "flat": 1}
    request = CreateJobRequest("k", original)
    original["list"].append(2)
    original["dict"]["b"] = 2
    original["flat"] = 99
    original["new"] = True
    assert request.payload == {"list": [1], "dict": {"a": 1}, "flat": 1}


def test_naive_run_at_is_rejected() -> None:
    """A naive ``run_at`` is an ``InvalidRequestError``."""
    with pytest.raises(InvalidRequestError, match="run_at"):
        CreateJobRequest("k", run_at=datetime(2030, 1, 1))


def test_aware_run_at_is_converted_to_utc() -> None:
    """An aware ``run_at`` in any zone becomes the same instant in UTC."""
    local = datetime(2030, 1, 1, 12, 30, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    request = CreateJobRequest("k", run_at=local)
    assert request.run_at == local
    assert request.run_at is not None and request.run_at.utcoffset() == timedelta(0)
    assert request.run_at == datetime(2030, 1, 1, 7, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2030-01-01T00:00:00Z", 0, NOW.date()])
def test_run_at_must_be_a_datetime(value: object) -> None:
    """A ``run_at`` that is not a datetime is an ``InvalidRequestError``."""
    with pytest.raises(InvalidRequestError, match="run_at"):
        CreateJobRequest("k", run_at=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("priority", [-(2**31), 0, 2**31 - 1])
def test_priority_within_32_bits_is_accepted(priority: int) -> None:
    """``priority`` takes every 32-bit signed integer, bounds included."""
    assert CreateJobRequest("k", priority=priority).priority == priority


@pytest.mark.parametrize("priority", [-(2**31) - 1, 2**31, True, False, 1.0, "1", None])
def test_bad_priority_is_rejected(priority: object) -> None:
    """A priority outside the 32-bit range, a bool, or a non-int is rejected."""
    with pytest.raises(InvalidRequestError, match="priority"):
        CreateJobRequest("k", priority=priority)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_attempts", [0, -1, True, 2.0, None])
def test_bad_max_attempts_is_rejected(max_attempts: object) -> None:
    """``max_attempts`` must be an int ≥ 1 (not a bool)."""
    with pytest.raises(InvalidRequestError, match="max_attempts"):
        CreateJobRequest("k", max_attempts=max_attempts)  # type: ignore[arg-type]


def test_max_attempts_of_one_is_accepted() -> None:
    """``max_attempts == 1`` is the smallest accepted value."""
    assert CreateJobRequest("k", max_attempts=1).max_attempts == 1


def test_request_is_frozen() -> None:
    """A request cannot be changed after validation."""
    request = CreateJobRequest("k")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.kind = ""  # type: ignore[misc]


# ---------------------------------------------------------------------- Job


def test_job_is_frozen() -> None:
    """A ``Job`` snapshot cannot be reassigned field by field."""
    job = Job(
        id=uuid.uuid4(),
        kind="k",
        payload={},
        queue="default",
        priority=0,
        status=JobStatus.PENDING,
        attempts=0,
        max_attempts=5,
        worker_id=None,
        error=None,
        stats=None,
        run_at=None,
        next_retry_at=None,
        lease_expires_at=None,
        created_at=NOW,
        updated_at=NOW,
        started_at=None,
        finished_at=None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = JobStatus.RUNNING  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(Job)] == [
        "id",
        "kind",
        "payload",
        "queue",
        "priority",
        "status",
        "attempts",
        "max_attempts",
        "worker_id",
        "error",
        "stats",
        "run_at",
        "next_retry_at",
        "lease_expires_at",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
    ]


def test_job_is_built_like_the_dataclass_it_declares() -> None:
    """Positional and keyword construction agree, every field is required, unknown
    keywords are refused, and ``dataclasses.replace`` works."""
    values: list[Any] = [
        uuid.uuid4(),
        "k",
        {"a": 1},
        "q",
        3,
        JobStatus.PENDING,
        0,
        5,
        None,
        None,
        None,
    ]
    values += [None, None, None, NOW, NOW, None, None]
    names = [f.name for f in dataclasses.fields(Job)]
    by_position = Job(*values)
    assert by_position == Job(**dict(zip(names, values, strict=True)))
    assert [getattr(by_position, name) for name in names] == values
    with pytest.raises(TypeError, match="finished_at"):
        Job(*values[:-1])
    with pytest.raises(TypeError, match="bogus"):
        Job(*values, bogus=1)  # type: ignore[call-arg]
    assert dataclasses.replace(by_position, kind="other").kind == "other"
    assert list(inspect.signature(Job).parameters) == names


def test_new_job_then_set_created_at_gives_the_created_job() -> None:
    """A backend may build jobs before it learns their creation time; setting it
    afterwards yields exactly the job ``new_job`` would have built with it."""
    request = CreateJobRequest(kind="k", payload={"a": 1}, queue="q", priority=2)
    job_id = uuid.uuid4()
    early = new_job(job_id, request, datetime(1970, 1, 1, tzinfo=UTC), {"a": 1})
    set_created_at([early], NOW)
    assert early == new_job(job_id, request, NOW, {"a": 1})
    assert early.created_at == early.updated_at == NOW


def test_status_by_value_names_every_status_and_is_read_only() -> None:
    assert dict(STATUS_BY_VALUE) == {s.value: s for s in JobStatus}
    with pytest.raises(TypeError):
        STATUS_BY_VALUE["x"] = JobStatus.PENDING  # type: ignore[index]
