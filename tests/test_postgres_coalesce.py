"""The PostgreSQL backend's group commit of completions, with the database replaced by fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID, uuid4

import pytest

from jobqueue import BackendUnavailableError, InvalidRequestError
from jobqueue.backend import Fence
from jobqueue_postgres._coalesce import Coalescer, CompletionRow


class FakeDatabase:
    """Records each write; a row matches unless its id is in ``refused``. A batch write
    raises ``fail_many`` when set, an ``InvalidRequestError`` only for a batch holding
    stats other than ``{}``."""

    def __init__(self) -> None:
        self.writes: list[list[UUID]] = []
        self.refused: set[UUID] = set()
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_many: BaseException | None = None

    async def one(self, job_id: UUID, stats: str, fence: Fence) -> bool:
        self.writes.append([job_id])
        await self.gate.wait()
        return job_id not in self.refused

    async def many(self, batch: Sequence[CompletionRow]) -> set[int]:
        self.writes.append([row[0] for row in batch])
        await self.gate.wait()
        unstorable = any(row[1] != "{}" for row in batch)
        if self.fail_many is not None and (
            unstorable or not isinstance(self.fail_many, InvalidRequestError)
        ):
            raise self.fail_many
        return {i for i, row in enumerate(batch) if row[0] not in self.refused}


FENCE = Fence("w", 1)


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def coalescer(db: FakeDatabase) -> Coalescer:
    return Coalescer(db.one, db.many, limit=1)


async def test_completions_of_one_loop_turn_are_one_write(
    db: FakeDatabase, coalescer: Coalescer
) -> None:
    ids = [uuid4() for _ in range(50)]
    db.refused = {ids[7]}
    results = await asyncio.gather(*(coalescer.complete(i, "{}", FENCE) for i in ids))
    assert db.writes == [ids]
    assert results == [i != ids[7] for i in ids]


def complete_later(coalescer: Coalescer, job_id: UUID) -> asyncio.Future[bool]:
    return coalescer.complete(job_id, "{}", FENCE)


async def write_in_flight(db: FakeDatabase, coalescer: Coalescer) -> asyncio.Future[bool]:
    """A completion whose write has started and waits for ``db.gate``."""
    db.gate.clear()
    first = complete_later(coalescer, uuid4())
    await asyncio.sleep(0.01)
    return first


async def test_a_lone_completion_is_written_alone(db: FakeDatabase, coalescer: Coalescer) -> None:
    job = uuid4()
    assert await coalescer.complete(job, "{}", FENCE)
    assert db.writes == [[job]]


async def test_completions_arriving_during_a_write_go_together_next(
    db: FakeDatabase, coalescer: Coalescer
) -> None:
    first = await write_in_flight(db, coalescer)
    later_ids = [uuid4() for _ in range(5)]
    later = [complete_later(coalescer, i) for i in later_ids]
    await asyncio.sleep(0.01)
    assert len(db.writes) == 1  # the others wait for the write in flight
    db.gate.set()
    assert await first and all(await asyncio.gather(*later))
    assert db.writes[1] == later_ids


async def test_one_job_twice_in_a_turn_goes_in_two_writes(
    db: FakeDatabase, coalescer: Coalescer
) -> None:
    job, other = uuid4(), uuid4()
    await asyncio.gather(*(coalescer.complete(i, "{}", FENCE) for i in (job, other, job)))
    assert db.writes == [[job, other], [job]]


async def test_a_caller_that_gave_up_before_the_write_sends_nothing(
    db: FakeDatabase, coalescer: Coalescer
) -> None:
    first = await write_in_flight(db, coalescer)
    kept, dropped = uuid4(), uuid4()
    keep = complete_later(coalescer, kept)
    drop = complete_later(coalescer, dropped)
    await asyncio.sleep(0.01)
    drop.cancel()
    db.gate.set()
    assert await first and await keep
    assert db.writes[1] == [kept]


async def test_an_unstorable_value_fails_only_its_own_call(
    db: FakeDatabase, coalescer: Coalescer
) -> None:
    db.fail_many = InvalidRequestError("cannot store this")
    bad, good = uuid4(), uuid4()
    original_one = db.one

    async def one(job_id: UUID, stats: str, fence: Fence) -> bool:
        if job_id == bad:
            raise InvalidRequestError("cannot store this")
        return await original_one(job_id, stats, fence)

    coalescer = Coalescer(one, db.many, limit=1)
    results = await asyncio.gather(
        coalescer.complete(bad, "x", FENCE),
        coalescer.complete(good, "{}", FENCE),
        return_exceptions=True,
    )
    assert isinstance(results[0], InvalidRequestError)
    assert results[1] is True


async def test_a_failed_write_fails_each_of_its_callers(
    db: FakeDatabase, coalescer: Coalescer
) -> None:
    db.fail_many = BackendUnavailableError("server gone")
    results = await asyncio.gather(
        *(coalescer.complete(uuid4(), "{}", FENCE) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, BackendUnavailableError) for r in results)
    assert len({id(r) for r in results}) == 3  # each caller gets its own exception


async def test_close_waits_for_a_write_not_yet_started(
    db: FakeDatabase, coalescer: Coalescer
) -> None:
    job = uuid4()
    task = complete_later(coalescer, job)
    await asyncio.sleep(0)
    await coalescer.close()
    assert db.writes == [[job]]
    assert await task


def rows(ids: list[UUID], stats: str = "{}") -> list[CompletionRow]:
    return [(i, stats, FENCE) for i in ids]


async def test_calls_completing_many_share_a_write_with_single_completions(
    db: FakeDatabase, coalescer: Coalescer
) -> None:
    first, second = [uuid4() for _ in range(3)], [uuid4() for _ in range(2)]
    single = uuid4()
    db.refused = {first[1], second[0], single}
    results = await asyncio.gather(
        coalescer.complete_all(rows(first)),
        coalescer.complete(single, "{}", FENCE),
        coalescer.complete_all(rows(second)),
    )
    assert db.writes == [[*first, single, *second]]
    assert results == [{0, 2}, False, {1}]


async def test_a_call_naming_a_job_already_in_the_batch_waits_for_the_next(
    db: FakeDatabase, coalescer: Coalescer
) -> None:
    shared, other = uuid4(), uuid4()
    results = await asyncio.gather(
        coalescer.complete(shared, "{}", FENCE),
        coalescer.complete_all(rows([other, shared])),
    )
    assert db.writes == [[shared], [other, shared]]
    assert results == [True, {0, 1}]


async def test_an_unstorable_value_fails_the_whole_call_completing_many(
    db: FakeDatabase, coalescer: Coalescer
) -> None:
    db.fail_many = InvalidRequestError("cannot store this")
    good = [uuid4(), uuid4()]
    bad = [(uuid4(), "{}", FENCE), (uuid4(), "x", FENCE)]
    results = await asyncio.gather(
        coalescer.complete_all(rows(good)), coalescer.complete_all(bad), return_exceptions=True
    )
    assert results[0] == {0, 1}
    assert isinstance(results[1], InvalidRequestError)
    assert db.writes == [[*good, *(r[0] for r in bad)], good, [r[0] for r in bad]]
