"""Rolling runs (--batch, --max-fail, --canary) against the in-process fleet, through the
Python API (Limits) and the command line."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, Session, run
from hostbatch.engine.limits import Limits
from hostbatch.engine.rollout import waves
from hostbatch.errors import UsageError
from hostbatch.inventory import Inventory, load_inventory
from hostbatch.models import Event, Host, HostResult, Started, Status
from hostbatch.testing import Fleet, FleetThread
from hostbatch.transport.base import ConnectOptions
from tests.fixtures.cli import run_cli

FAIL_ON_NODE02 = 'sleep 0.2; test "$HOSTBATCH_FLEET_HOST" != node02'


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Inventory, Path]]:
    with FleetThread(8) as started:
        path = started.write_inventory(tmp_path_factory.mktemp("inv") / "inventory", auth="key")
        yield started, load_inventory([path], ssh_config=None), path


def options(fleet: Fleet, **limits: object) -> RunOptions:
    connect = ConnectOptions(connect_timeout=5, known_hosts=str(fleet.known_hosts))
    return RunOptions(Limits(**limits), connect)  # type: ignore[arg-type]


def run_timing_starts(
    fleet: tuple[Fleet, Inventory, Path], command: str, **limits: object
) -> tuple[dict[str, HostResult], dict[str, float]]:
    """Run *command* on every host with *limits*; the results and when each host started."""
    started_fleet, inventory, _ = fleet
    starts: dict[str, float] = {}

    def record(event: Event) -> None:
        if isinstance(event, Started):
            starts[event.host] = event.at

    results = run(
        command,
        patterns="all",
        inventory=inventory,
        options=options(started_fleet, **limits),
        on_event=record,
    )
    return results, starts


def test_batches_run_one_after_another(fleet: tuple[Fleet, Inventory, Path]) -> None:
    results, starts = run_timing_starts(fleet, "sleep 0.2", batch=3)
    assert all(r.ok for r in results.values())
    names = list(results)
    batches = [names[0:3], names[3:6], names[6:8]]
    for earlier, later in itertools.pairwise(batches):
        assert max(results[n].ended for n in earlier) <= min(starts[n] for n in later)
    # within a batch the hosts overlap (they are not run one by one)
    assert min(results[n].ended for n in batches[0]) > max(starts[n] for n in batches[0])


def test_max_fail_stops_starting_hosts(fleet: tuple[Fleet, Inventory, Path]) -> None:
    started_fleet, inventory, _ = fleet
    results = run(
        FAIL_ON_NODE02,
        patterns="all",
        inventory=inventory,
        options=options(started_fleet, fanout=1, max_fail=1),
    )
    statuses = [r.status for r in results.values()]
    assert statuses == [Status.OK, Status.FAILED] + [Status.NOT_STARTED] * 6
    assert results["node08"].error == "not started: 1 host(s) failed (--max-fail 1)"


def test_max_fail_across_worker_processes(fleet: tuple[Fleet, Inventory, Path]) -> None:
    started_fleet, inventory, _ = fleet
    results = run(
        "sleep 0.3; exit 3",
        patterns="all",
        inventory=inventory,
        options=options(started_fleet, fanout=2, workers=2, max_fail=2),
    )
    not_started = [r for r in results.values() if r.status is Status.NOT_STARTED]
    failed = [r for r in results.values() if r.status is Status.FAILED]
    assert len(failed) >= 2
    assert len(not_started) >= 2
    assert len(failed) + len(not_started) == 8
    assert {r.error for r in not_started} == {"not started: 2 host(s) failed (--max-fail 2)"}


def test_failed_canary_stops_everything_else(fleet: tuple[Fleet, Inventory, Path]) -> None:
    started_fleet, inventory, _ = fleet
    results = run(
        FAIL_ON_NODE02,
        patterns="all",
        inventory=inventory,
        options=options(started_fleet, canary=2),
    )
    assert results["node01"].status is Status.OK
    assert results["node02"].status is Status.FAILED
    rest = [results[f"node{i:02d}"] for i in range(3, 9)]
    assert {r.status for r in rest} == {Status.NOT_STARTED}
    assert {r.error for r in rest} == {"not started: canary host(s) failed: node02"}


def test_good_canary_lets_the_rest_run_in_batches(fleet: tuple[Fleet, Inventory, Path]) -> None:
    results, starts = run_timing_starts(fleet, "true", canary=1, batch="50%")
    assert all(r.ok for r in results.values())
    assert results["node01"].ended <= min(t for n, t in starts.items() if n != "node01")


def test_waves_and_counts() -> None:
    hosts = [Host(f"h{i}", "127.0.0.1") for i in range(10)]
    sizes = [len(w) for w in waves(hosts, Limits(canary=1, batch="25%"))]
    assert sizes == [1, 3, 3, 3]
    assert [len(w) for w in waves(hosts, Limits(max_fail=1))] == [10]
    for bad in ("0", "x", "150%", "-2"):
        with pytest.raises(UsageError):
            Limits(batch=bad)


def test_cli_not_started_in_summary_and_exit_code(fleet: tuple[Fleet, Inventory, Path]) -> None:
    started_fleet, _, path = fleet
    common = ("-i", str(path), "--ssh-config", "", "--known-hosts", str(started_fleet.known_hosts))
    done = run_cli("run", *common, "-h", "all", "-f", "1", "--max-fail", "1", "--", FAIL_ON_NODE02)
    assert done.returncode == 1, done.stderr
    assert "6 not started" in done.stderr
    assert "not started       node[03-08]" in done.stderr
    bad = run_cli("run", *common, "-h", "all", "--batch", "0", "--", "true")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "hostbatch: error: --batch must be a positive number of hosts or 1%-100% (got '0')"
    ]


def test_a_session_keeps_the_failure_budget(fleet: tuple[Fleet, Inventory, Path]) -> None:
    started_fleet, inventory, _ = fleet
    hosts = inventory.select(patterns=["all"])

    async def twice() -> list[dict[str, HostResult]]:
        async with Session(hosts, options(started_fleet, fanout=1, max_fail=1)) as session:
            return [await session.run(FAIL_ON_NODE02) for _ in range(2)]

    for results in asyncio.run(twice()):
        statuses = [r.status for r in results.values()]
        assert statuses == [Status.OK, Status.FAILED] + [Status.NOT_STARTED] * 6
