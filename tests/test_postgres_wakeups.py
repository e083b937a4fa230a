"""The PostgreSQL backend's notifications sent after the fact, with the database replaced
by a fake."""

from __future__ import annotations

import asyncio

import pytest

from jobqueue_postgres._wakeups import Notifier


class FakeSender:
    """Counts sends; each waits for ``gate`` and raises ``fail`` when set."""

    def __init__(self) -> None:
        self.sent = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def send(self) -> None:
        await self.gate.wait()
        self.sent += 1
        if self.fail is not None:
            raise self.fail


async def test_each_wake_after_the_last_send_makes_one_more_notification() -> None:
    sender = FakeSender()
    notifier = Notifier(sender.send, name="q")
    for expected in (1, 2, 3):
        notifier.wake()
        await notifier.close()
        assert sender.sent == expected


async def test_wakes_during_a_send_coalesce_into_one_more() -> None:
    """Many requests while one notification is on its way make exactly one more, sent
    after it: nothing asked for is skipped, nothing is sent twice at once."""
    sender = FakeSender()
    sender.gate.clear()
    notifier = Notifier(sender.send, name="q")
    notifier.wake()
    await asyncio.sleep(0)
    for _ in range(10):
        notifier.wake()
    sender.gate.set()
    await notifier.close()
    assert sender.sent == 2


async def test_a_failed_notification_is_logged_and_the_next_wake_still_sends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = FakeSender()
    sender.fail = OSError("connection lost")
    notifier = Notifier(sender.send, name="q")
    notifier.wake()
    await notifier.close()
    assert "q: a notification was not sent: connection lost" in caplog.text
    sender.fail = None
    notifier.wake()
    await notifier.close()
    assert sender.sent == 2


async def test_close_with_nothing_asked_returns_at_once() -> None:
    sender = FakeSender()
    await asyncio.wait_for(Notifier(sender.send, name="q").close(), 1)
    assert sender.sent == 0


async def test_close_waits_until_the_notifications_asked_for_are_sent() -> None:
    sender = FakeSender()
    sender.gate.clear()
    notifier = Notifier(sender.send, name="q")
    notifier.wake()
    await asyncio.sleep(0)
    notifier.wake()
    closing = asyncio.create_task(notifier.close())
    await asyncio.sleep(0.05)
    assert not closing.done()
    sender.gate.set()
    await asyncio.wait_for(closing, 1)
    assert sender.sent == 2
