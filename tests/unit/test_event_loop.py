"""The event loop runs get (uvloop's where installed, asyncio's on request) and how a
process readies itself for a run (transports imported, start-up frozen)."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import pytest
import uvloop

from hostbatch.engine import loop
from hostbatch.engine.executors import runs_here
from hostbatch.engine.limits import Limits
from hostbatch.engine.plan import Plan
from hostbatch.models import Command, Host
from hostbatch.transport.registry import get_transport


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


def _plan(hosts: int, **limits: Any) -> Plan:
    names = (Host(f"h{i}", "127.0.0.1", 2222) for i in range(hosts))
    return Plan(Command("true"), tuple(names), Limits(**limits))


def test_warm_up_freezes_start_up_and_leaves_the_collector_on() -> None:
    plan = _plan(3)
    try:
        loop.warm_up(plan)
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()
        assert "asyncssh" in sys.modules
    finally:
        gc.unfreeze()


def test_a_transport_import_leaves_a_paused_collector_paused() -> None:
    gc.disable()
    try:
        get_transport("asyncssh")
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("hosts", "limits", "here"),
    [
        (3, {}, True),
        (3, {"workers": 2}, False),
        (3, {"engine": "dask"}, False),
    ],
)
def test_runs_here_follows_the_layout(hosts: int, limits: dict[str, Any], here: bool) -> None:
    assert runs_here(_plan(hosts, **limits)) is here
