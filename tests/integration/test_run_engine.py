"""The run engine against the in-process fleet: statuses, isolation, bounds, workers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, Session, run, run_async, stream
from hostbatch.engine.limits import Limits
from hostbatch.errors import SinkError
from hostbatch.inventory import Inventory, load_inventory
from hostbatch.models import CommandSet, Event, Finished, OutputChunk, Started, Status
from hostbatch.testing import Fleet, FleetThread
from hostbatch.transport.base import ConnectOptions

BEHAVIOURS = {
    "node02": "refuse_auth",
    "node03": "hang_before_banner",
    "node04": "drop_mid_command",
    "node05": "refuse_connect",
    "node06": "slow_output",
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Inventory]]:
    with FleetThread(8, behaviours=BEHAVIOURS) as started:
        path = started.write_inventory(tmp_path_factory.mktemp("inv") / "inventory", auth="key")
        yield started, load_inventory([path], ssh_config=None)


def options(fleet: Fleet, **limits: object) -> RunOptions:
    connect = ConnectOptions(connect_timeout=1.5, known_hosts=str(fleet.known_hosts))
    return RunOptions(Limits(**limits), connect)  # type: ignore[arg-type]


def test_each_misbehaviour_is_its_own_status(fleet: tuple[Fleet, Inventory]) -> None:
    started, inventory = fleet
    command = "echo out-$HOSTBATCH_FLEET_HOST; echo err >&2; sleep 0.3; echo done"
    results = run(command, patterns="all", inventory=inventory, options=options(started))
    statuses = {name: r.status for name, r in results.items()}
    assert statuses == {
        "node01": Status.OK,
        "node02": Status.AUTH_FAILED,
        "node03": Status.UNREACHABLE,
        "node04": Status.DROPPED,
        "node05": Status.UNREACHABLE,
        "node06": Status.OK,
        "node07": Status.OK,
        "node08": Status.OK,
    }
    assert results["node01"].stdout == b"out-node01\ndone\n"
    assert results["node01"].stderr == b"err\n"
    assert results["node06"].stdout == b"out-node06\ndone\n"  # slow, but complete
    assert "handshake" in (results["node03"].error or "")
    assert "refused" in (results["node05"].error or "")
    assert "authentication failed" in (results["node02"].error or "")
    assert list(results) == [f"node{i:02d}" for i in range(1, 9)]


def test_a_hanging_host_does_not_slow_the_others(fleet: tuple[Fleet, Inventory]) -> None:
    started, inventory = fleet
    results = run("echo hi", patterns="all", inventory=inventory, options=options(started))
    hang = results["node03"]
    assert hang.status is Status.UNREACHABLE
    assert 1.2 < hang.elapsed < 3.5  # its own connect timeout, not more
    for name in ("node01", "node07", "node08"):
        assert results[name].ended < hang.ended - 0.5, name


def test_events_stream_live_before_finish(fleet: tuple[Fleet, Inventory]) -> None:
    started, inventory = fleet
    events: list[tuple[float, Event]] = []
    run(
        "for i in 1 2 3; do echo line$i; sleep 0.3; done",
        hosts="node01",
        inventory=inventory,
        options=options(started),
        on_event=lambda e: events.append((time.monotonic(), e)),
    )
    chunks = [(t, e) for t, e in events if isinstance(e, OutputChunk)]
    finished_at = next(t for t, e in events if isinstance(e, Finished))
    assert isinstance(events[0][1], Started)
    assert len(chunks) >= 2  # not one blob at the end
    assert finished_at - chunks[0][0] > 0.4


async def test_stream_yields_events_and_ends(fleet: tuple[Fleet, Inventory]) -> None:
    started, inventory = fleet
    kinds: list[str] = []
    async for event in stream(
        "echo x", hosts="node01,node07", inventory=inventory, options=options(started)
    ):
        kinds.append(type(event).__name__)
    assert kinds.count("Started") == 2 and kinds.count("Finished") == 2


async def test_fanout_bounds_hosts_in_flight(fleet: tuple[Fleet, Inventory]) -> None:
    started, inventory = fleet
    in_flight = peak = 0

    def track(event: Event) -> None:
        nonlocal in_flight, peak
        if isinstance(event, Started):
            in_flight += 1
            peak = max(peak, in_flight)
        elif isinstance(event, Finished):
            in_flight -= 1

    results = await run_async(
        "sleep 0.3",
        hosts="node0[1,6-8],node01",
        inventory=inventory,
        options=options(started, fanout=2),
        on_event=track,
    )
    assert all(r.ok for r in results.values())
    assert peak == 2


def test_output_is_bounded_and_binary_safe(fleet: tuple[Fleet, Inventory]) -> None:
    started, inventory = fleet
    command = "printf '\\377\\376\\000bin'; head -c 3000000 /dev/zero | tr '\\0' 'a'; echo END"
    results = run(
        command,
        hosts="node01,node07",
        inventory=inventory,
        options=options(started, output_limit=65536),
    )
    result = results["node01"]
    assert result.ok and result.truncated
    assert len(result.stdout) == 65536
    assert result.stdout.endswith(b"aaaEND\n")  # the tail is what is kept
    small = run(
        "printf '\\377\\376\\000bin'", hosts="node01", inventory=inventory, options=options(started)
    )["node01"]
    assert small.stdout == b"\xff\xfe\x00bin" and not small.truncated


def test_command_timeout_kills_the_remote_process(fleet: tuple[Fleet, Inventory]) -> None:
    started, inventory = fleet
    result = run(
        "echo $$; exec sleep 60",
        hosts="node01",
        inventory=inventory,
        options=options(started, command_timeout=1.0),
    )["node01"]
    assert result.status is Status.TIMEOUT
    pid = int(result.stdout.split()[0])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()


def test_a_command_set_keeps_the_outputs_before_a_timeout(
    fleet: tuple[Fleet, Inventory],
) -> None:
    started, inventory = fleet
    commands = CommandSet(("echo one", "echo two; exec sleep 60", "echo three"), timeout=1.0)
    result = run(commands, hosts="node01", inventory=inventory, options=options(started))["node01"]
    assert result.status is Status.TIMEOUT
    first, stuck = result.outputs  # the third command never ran
    assert (first.command, first.output, first.exit_status) == ("echo one", "one\n", 0)
    assert stuck.command == "echo two; exec sleep 60"
    assert stuck.output == "two\n" and stuck.error == result.error
    assert "three" not in result.stdout_text


def test_worker_processes_give_the_same_results(fleet: tuple[Fleet, Inventory]) -> None:
    started, inventory = fleet
    inline = run(
        "echo $HOSTBATCH_FLEET_HOST",
        patterns="all",
        inventory=inventory,
        options=options(started, workers=1),
    )
    sharded = run(
        "echo $HOSTBATCH_FLEET_HOST",
        patterns="all",
        inventory=inventory,
        options=options(started, workers=2),
    )
    assert {n: (r.status, r.stdout) for n, r in inline.items()} == {
        n: (r.status, r.stdout) for n, r in sharded.items()
    }


def test_a_dying_worker_fails_its_hosts_and_the_run_ends(fleet: tuple[Fleet, Inventory]) -> None:
    started, inventory = fleet
    killed: list[int] = []

    def kill_one_worker(event: Event) -> None:
        if isinstance(event, Started) and not killed:
            children = multiprocessing.active_children()
            if children and children[0].pid is not None:
                killed.append(children[0].pid)
                os.kill(children[0].pid, signal.SIGKILL)

    begin = time.monotonic()
    results = run(
        "sleep 2; echo ok",
        hosts="node01,node06,node07,node08",
        inventory=inventory,
        options=options(started, workers=2),
        on_event=kill_one_worker,
    )
    assert killed
    died = [r for r in results.values() if r.error and "worker process died" in r.error]
    assert died and all(r.status is Status.ERROR for r in died)
    assert len(results) == 4
    assert time.monotonic() - begin < 15


async def test_session_reuses_connections(fleet: tuple[Fleet, Inventory]) -> None:
    started, inventory = fleet
    hosts = [inventory.hosts[name] for name in ("node01", "node07", "node08")]
    async with Session(hosts, options(started)) as session:
        first = await session.run("echo one")
        assert session.pool.opened == 3
        second = await session.run("echo two")
        assert session.pool.opened == 3  # no new handshake for the second command
        assert all(r.ok for r in first.values()) and second["node07"].stdout == b"two\n"
        session.select([inventory.hosts["node04"]])  # drops mid-command: discarded, then retried
        assert (await session.run("echo x"))["node04"].status is Status.DROPPED
        await session.run("echo x")
        assert "node04" in session.pool.reconnected


def test_the_connect_timeout_is_the_one_set_in_connect_options(
    fleet: tuple[Fleet, Inventory],
) -> None:
    started, inventory = fleet
    connect = ConnectOptions(connect_timeout=0.4, known_hosts=str(started.known_hosts))
    result = run(
        "true", hosts="node03", inventory=inventory, options=RunOptions(Limits(), connect)
    )["node03"]
    assert result.status is Status.UNREACHABLE  # node03 accepts TCP, never sends a banner
    assert "0.4s" in (result.error or "")
    assert 0.3 < result.elapsed < 1.3  # its 0.4 s, not the 10 s default


class _ClosedPipeSink:
    """An output sink whose reader went away (``| head``) on its third OutputChunk."""

    def __init__(self) -> None:
        self.chunks: list[OutputChunk] = []
        self.finished: list[Finished] = []
        self.calls_after_failure = 0

    def __call__(self, event: Event) -> None:
        if len(self.chunks) >= 3:
            self.calls_after_failure += 1
        if isinstance(event, Finished):
            self.finished.append(event)
        if isinstance(event, OutputChunk):
            self.chunks.append(event)
            if len(self.chunks) == 3:
                raise BrokenPipeError(32, "Broken pipe")


def _gone(pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_sink_stops_the_run_and_is_no_hosts_failure(
    fleet: tuple[Fleet, Inventory], workers: int
) -> None:
    started, inventory = fleet
    sink = _ClosedPipeSink()
    begin = time.monotonic()
    with pytest.raises(SinkError) as raised:
        run(
            "echo $$; exec sleep 60",
            hosts="node01,node07,node08",
            inventory=inventory,
            options=options(started, workers=workers),
            on_event=sink,
        )
    assert isinstance(raised.value.cause, BrokenPipeError)
    assert time.monotonic() - begin < 20  # stopped, not waiting for the 60 s commands
    assert sink.calls_after_failure == 0
    assert not any(f.result.status is Status.DROPPED for f in sink.finished)
    assert not any("connection lost" in (f.result.error or "") for f in sink.finished)
    pids = [int(chunk.data.split()[0]) for chunk in sink.chunks]
    assert len(pids) == 3 and _gone(pids, within=10)  # remote commands were signalled
