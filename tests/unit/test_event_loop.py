"""The event loop runs get: uvloop's where installed, asyncio's on request."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from hostbatch.engine import loop


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_runs_on_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loop.ENV_VAR, raising=False)
    assert loop.loop_factory() is uvloop.new_event_loop
    assert issubclass(loop.run(_loop_type()), uvloop.Loop)


@pytest.mark.parametrize("value", ["asyncio", " AsyncIO "])
def test_environment_chooses_asyncio(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(loop.ENV_VAR, value)
    assert loop.loop_factory() is None
    chosen = loop.run(_loop_type())
    assert not issubclass(chosen, uvloop.Loop)
    assert issubclass(chosen, asyncio.BaseEventLoop)


def test_run_returns_the_value_and_raises_the_error() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    async def value() -> int:
        await asyncio.sleep(0)
        return 42

    assert loop.run(value()) == 42
    with pytest.raises(ValueError, match="boom"):
        loop.run(fails())
