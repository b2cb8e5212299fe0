"""The agent's :class:`Turns`: runs of one context at once, others in order of arrival."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from hostbatch.engine.executors.agent import Context, Turns


def _context(path: Path) -> Context:
    return (str(path), (("HOME", str(path)),))


def test_same_context_joins_other_waits_and_nobody_overtakes(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a, b = _context(a_dir), _context(b_dir)
    before = os.getcwd()

    async def scenario() -> list[str]:
        turns = Turns()
        log: list[str] = []
        gates = {name: asyncio.Event() for name in ("a1", "a2", "b1", "a3")}

        async def run(name: str, context: Context) -> None:
            async with turns.turn(context):
                log.append(f"{name} in {Path(os.getcwd()).name}")
                await gates[name].wait()
            log.append(f"{name} out")

        async def settle() -> None:
            for _ in range(5):
                await asyncio.sleep(0)

        first = asyncio.ensure_future(run("a1", a))
        await settle()
        assert turns.must_wait(a) is False and turns.must_wait(b) is True
        second = asyncio.ensure_future(run("a2", a))  # same context: joins
        await settle()
        third = asyncio.ensure_future(run("b1", b))  # waits
        await settle()
        assert turns.must_wait(a) is True  # b1 is waiting: a3 may not overtake it
        fourth = asyncio.ensure_future(run("a3", a))
        await settle()
        assert log == ["a1 in a", "a2 in a"]
        gates["a1"].set()
        gates["a2"].set()
        await settle()
        assert log[-2:] == ["a2 out", "b1 in b"]
        gates["b1"].set()
        await settle()
        gates["a3"].set()
        await asyncio.gather(first, second, third, fourth)
        return log

    log = asyncio.run(scenario())
    assert log == [
        "a1 in a",
        "a2 in a",
        "a1 out",
        "a2 out",
        "b1 in b",
        "b1 out",
        "a3 in a",
        "a3 out",
    ]
    assert os.getcwd() == before  # the process's directory is back


def test_a_waiter_cancelled_leaves_the_queue(tmp_path: Path) -> None:
    a, b = _context(tmp_path), _context(tmp_path.parent)

    async def scenario() -> bool:
        turns = Turns()
        hold = asyncio.Event()

        async def run(context: Context, until: asyncio.Event | None) -> None:
            async with turns.turn(context):
                if until is not None:
                    await until.wait()

        first = asyncio.ensure_future(run(a, hold))
        await asyncio.sleep(0)
        waiter = asyncio.ensure_future(run(b, None))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        joined = not turns.must_wait(a)  # nobody waits any more: a may join again
        hold.set()
        await first
        return joined

    assert asyncio.run(scenario())
