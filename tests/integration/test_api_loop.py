"""The sync API (run, put, get, ping) runs on the loop the CLI uses (engine/loop.py):
uvloop's by default, asyncio's with HOSTBATCH_LOOP=asyncio. Observed from inside, through
the API's own sinks, on real runs against the in-process fleet. Inside a running event
loop the sync API refuses as before (asyncio.run's error: use the async twins)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from hostbatch.api import RunOptions, get, ping, put, run
from hostbatch.engine import loop
from hostbatch.engine.limits import Limits
from hostbatch.models import Credentials, Host
from hostbatch.testing import Fleet, FleetThread
from hostbatch.transport.base import ConnectOptions


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with FleetThread(2) as started:
        yield started


def hosts_of(fleet: Fleet) -> list[Host]:
    creds = Credentials(fleet.username, key_file=str(fleet.client_key))
    return [Host(h.name, h.address, h.port, creds) for h in fleet.hosts]


def options_for(fleet: Fleet) -> RunOptions:
    return RunOptions(
        Limits(), ConnectOptions(connect_timeout=5, known_hosts=str(fleet.known_hosts))
    )


class LoopSeen:
    """A sink that notes the type of the loop it is called on."""

    def __init__(self) -> None:
        self.types: set[type[asyncio.AbstractEventLoop]] = set()

    def __call__(self, _: object) -> None:
        self.types.add(type(asyncio.get_running_loop()))


@pytest.mark.parametrize(("choice", "uv"), [(None, True), ("asyncio", False)])
def test_sync_api_runs_on_the_clis_loop(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, choice: str | None, uv: bool
) -> None:
    if choice is None:
        monkeypatch.delenv(loop.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(loop.ENV_VAR, choice)
    hosts, options = hosts_of(fleet), options_for(fleet)
    seen = LoopSeen()
    assert all(r.ok for r in run("true", hosts=hosts, options=options, on_event=seen).values())
    local = tmp_path / "sent.txt"
    local.write_text("x\n")
    sent = put(local, "sent.txt", hosts=hosts, options=options, on_event=seen)
    got = get("sent.txt", tmp_path / "got", hosts=hosts, options=options, on_event=seen)
    assert all(r.ok for r in [*sent.values(), *got.values()])
    probed = ping(hosts=hosts, options=options, on_result=seen)
    assert all(p.ok for p in probed.values())
    assert len(seen.types) == 1
    (kind,) = seen.types
    assert issubclass(kind, uvloop.Loop) is uv


async def test_inside_a_running_loop_the_sync_api_refuses_as_before(fleet: Fleet) -> None:
    def call() -> None:
        run("true", hosts=hosts_of(fleet), options=options_for(fleet))

    with pytest.warns(RuntimeWarning, match="never awaited"):
        with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
            call()
        gc.collect()
