"""The asyncssh transport's pipelined SFTP copy: bytes in flight bounded per file and
per process, whatever block size the server advertises; cancelling it cancels all."""

from __future__ import annotations

import asyncio

import pytest

from hostbatch.transport import asyncssh_
from hostbatch.transport.asyncssh_ import BLOCK_SIZE, IN_FLIGHT_PER_FILE, _pipelined


class Gauge:
    """Counts steps running at once; each step waits for the test to let it finish."""

    def __init__(self) -> None:
        self.running = self.peak = 0
        self.covered: list[tuple[int, int]] = []

    async def step(self, offset: int, length: int) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            self.covered.append((offset, length))
        finally:
            self.running -= 1


def test_one_file_keeps_at_most_its_share_in_flight() -> None:
    gauge, reports = Gauge(), []
    size = 10 * 1024 * 1024 + 5
    asyncio.run(_pipelined(size, BLOCK_SIZE, gauge.step, lambda d, t: reports.append((d, t))))
    assert gauge.peak * BLOCK_SIZE <= IN_FLIGHT_PER_FILE
    assert sum(length for _, length in gauge.covered) == size
    assert sorted(gauge.covered)[-1] == (size - 5, 5) and reports[-1] == (size, size)


def test_the_process_keeps_at_most_total_requests_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(asyncssh_, "TOTAL_REQUESTS", 12)
    gauge = Gauge()

    async def many() -> None:
        copies = [
            _pipelined(4 * 1024 * 1024, 16384, gauge.step, lambda d, t: None) for _ in range(6)
        ]
        await asyncio.gather(*copies)

    asyncio.run(many())
    assert gauge.peak == 12  # 6 files of 16 KiB blocks would run 6 x 128 at once


def test_cancelling_a_copy_cancels_every_request() -> None:
    started: list[int] = []

    async def forever(offset: int, _length: int) -> None:
        started.append(offset)
        await asyncio.Event().wait()  # a server that never answers

    async def scenario() -> None:
        copy = asyncio.ensure_future(_pipelined(1 << 30, BLOCK_SIZE, forever, lambda d, t: None))
        while len(started) < IN_FLIGHT_PER_FILE // BLOCK_SIZE:
            await asyncio.sleep(0)
        copy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await copy
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert asyncssh_._budget()._value == asyncssh_.TOTAL_REQUESTS  # all slots returned

    asyncio.run(scenario())
