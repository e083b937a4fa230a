"""The PostgreSQL backend's admission of concurrent claims on one handle, without a database."""

from __future__ import annotations

import asyncio

import pytest

from jobqueue_postgres._gate import ClaimGate


class Claims:
    """Claims that hold the gate until released, recording what ran at once."""

    def __init__(self, gate: ClaimGate) -> None:
        self.gate = gate
        self.running: list[str] = []
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    def start(self, name: str, rows: int) -> asyncio.Task[None]:
        self.release[name] = asyncio.Event()
        return asyncio.create_task(self._claim(name, rows))

    async def _claim(self, name: str, rows: int) -> None:
        async with self.gate.admit(rows, asyncio.get_running_loop().time() + 60):
            self.started.append(name)
            self.running.append(name)
            try:
                await self.release[name].wait()
            finally:
                self.running.remove(name)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_claims_within_the_budget_run_at_once() -> None:
    claims = Claims(ClaimGate(200))
    tasks = [claims.start(name, rows) for name, rows in (("a", 100), ("b", 50), ("c", 50))]
    await settle()
    assert claims.running == ["a", "b", "c"]
    for event in claims.release.values():
        event.set()
    await asyncio.gather(*tasks)


async def test_a_claim_over_the_budget_waits_and_later_ones_queue_behind_it() -> None:
    """Claims are admitted in arrival order: a small claim does not overtake a waiting one."""
    claims = Claims(ClaimGate(200))
    tasks = [claims.start(name, 100) for name in ("a", "b", "c")]
    tasks.append(claims.start("d", 1))
    await settle()
    assert claims.running == ["a", "b"]
    claims.release["a"].set()
    await settle()
    assert claims.running == ["b", "c"]
    claims.release["b"].set()
    await settle()
    assert claims.running == ["c", "d"]
    for event in claims.release.values():
        event.set()
    await asyncio.gather(*tasks)
    assert claims.started == ["a", "b", "c", "d"]


async def test_a_claim_bigger_than_the_budget_runs_alone() -> None:
    claims = Claims(ClaimGate(200))
    big = claims.start("big", 500)
    await settle()
    small = claims.start("small", 1)
    await settle()
    assert claims.running == ["big"]
    claims.release["big"].set()
    await settle()
    assert claims.running == ["small"]
    claims.release["small"].set()
    await asyncio.gather(big, small)


@pytest.mark.parametrize("when", ["waiting", "just admitted"])
async def test_a_cancelled_claim_gives_its_place_and_rows_back(when: str) -> None:
    claims = Claims(ClaimGate(200))
    first = claims.start("a", 200)
    await settle()
    cancelled = claims.start("b", 100)
    behind = claims.start("c", 100)
    await settle()
    if when == "just admitted":
        claims.release["a"].set()
        await asyncio.sleep(0)  # "a" leaves and admits "b", which has not run yet
    cancelled.cancel()
    claims.release["a"].set()
    await settle()
    assert claims.running == ["c"]
    assert cancelled.cancelled()
    claims.release["c"].set()
    await asyncio.gather(first, behind)
    again = claims.start("d", 200)
    await settle()
    assert claims.running == ["d"]
    claims.release["d"].set()
    await again


async def test_a_claim_still_waiting_at_its_deadline_times_out_and_gives_its_place_back() -> None:
    gate = ClaimGate(200)
    claims = Claims(gate)
    first = claims.start("a", 200)
    await settle()
    with pytest.raises(TimeoutError):
        async with gate.admit(100, asyncio.get_running_loop().time() + 0.05):
            pytest.fail("admitted while the budget was taken")
    behind = claims.start("b", 100)
    await settle()
    claims.release["a"].set()
    await settle()
    assert claims.running == ["b"]
    claims.release["b"].set()
    await asyncio.gather(first, behind)
