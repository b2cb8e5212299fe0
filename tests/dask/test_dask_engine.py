"""The dask engine against a real local cluster (tests/dask/conftest.py) and the
in-process fleet: shards run in the worker processes, events stream back, a lost worker's
hosts fail without running twice, Ctrl-C, an unreachable scheduler, the missing extra."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, make_plan
from hostbatch.engine.executors.dask_ import LOST, ShardInfo, _run_shard, run_on_dask
from hostbatch.engine.limits import Limits
from hostbatch.errors import UsageError
from hostbatch.inventory import load_inventory
from hostbatch.models import Event, Finished, Host, OutputChunk, Started, Status
from hostbatch.testing import Fleet, FleetThread
from hostbatch.transport.base import ConnectOptions
from tests.dask.conftest import Cluster, worker_pids
from tests.fixtures.cli import cli_argv, cli_env, run_cli

FLEET_SIZE = 300
DEADLINE = 30.0


@pytest.fixture(scope="module")
def big_fleet() -> Iterator[Fleet]:
    with FleetThread(FLEET_SIZE) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def inventory(big_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return big_fleet.write_inventory(tmp_path_factory.mktemp("inv") / "inventory")


@pytest.fixture(scope="module")
def fleet_hosts(inventory: Path) -> list[Host]:
    return load_inventory([inventory]).select(patterns="all")


def options(cluster: Cluster, fleet: Fleet, **limits: object) -> RunOptions:
    return RunOptions(
        Limits(engine="dask", scheduler=cluster.address, **limits),  # type: ignore[arg-type]
        ConnectOptions(known_hosts=str(fleet.known_hosts)),
    )


def run(command: str, hosts: list[Host], opts: RunOptions) -> tuple[list[Event], list[ShardInfo]]:
    events: list[Event] = []
    shards: list[ShardInfo] = []
    plan = make_plan(command, hosts, opts)
    asyncio.run(run_on_dask(plan, events.append, on_shard=shards.append))
    return events, shards


def finished(events: list[Event]) -> dict[str, list[Finished]]:
    by_host: dict[str, list[Finished]] = {}
    for event in events:
        if isinstance(event, Finished):
            by_host.setdefault(event.host, []).append(event)
    return by_host


def test_300_hosts_each_once_in_the_worker_processes(
    dask_cluster: Cluster, big_fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    events, shards = run("echo out; echo err >&2", fleet_hosts, options(dask_cluster, big_fleet))
    results = finished(events)
    assert sorted(results) == sorted(h.name for h in fleet_hosts)
    assert all(len(r) == 1 and r[0].result.status is Status.OK for r in results.values())
    assert all(r[0].result.stdout == b"out\n" for r in results.values())
    # one shard per worker thread (2 workers x 2), each reported from inside its worker
    assert len(shards) == 4
    assert {s.worker for s in shards} == {"a", "b"}
    pids = worker_pids(dask_cluster)
    assert all(s.pid == pids[s.worker] != os.getpid() for s in shards)
    placed = [name for s in shards for name in s.hosts]
    assert sorted(placed) == sorted(results)
    # live events per host in order: Started, its output, then Finished
    kinds: dict[str, list[str]] = {}
    for event in events:
        host = getattr(event, "host", None)  # events without a host are not per host
        if host is not None:
            kinds.setdefault(host, []).append(type(event).__name__)
    for host, seen in kinds.items():
        assert seen[0] == "Started" and seen[-1] == "Finished", host
        assert seen.count("Started") == 1 and seen.count("OutputChunk") >= 2, host
    streams = {e.stream for e in events if isinstance(e, OutputChunk)}
    assert streams == {"stdout", "stderr"}


def with_site(hosts: list[Host], sites: list[str]) -> list[Host]:
    return [
        replace(host, groups=(*host.groups, f"site_{sites[i % len(sites)]}"))
        for i, host in enumerate(hosts)
    ]


def test_shard_by_runs_each_site_on_its_workers(
    dask_cluster: Cluster, big_fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    hosts = with_site(fleet_hosts[:40], ["a", "b"])
    events, shards = run("true", hosts, options(dask_cluster, big_fleet, shard_by="site"))
    site = {h.name: g[5:] for h in hosts for g in h.groups if g.startswith("site_")}
    for shard in shards:
        assert {site[name] for name in shard.hosts} == {shard.worker}
    assert len(finished(events)) == 40
    with pytest.raises(UsageError, match="no dask worker serves site=x"):
        run(
            "true",
            with_site(fleet_hosts[:2], ["x"]),
            options(dask_cluster, big_fleet, shard_by="site"),
        )


def test_killed_worker_fails_its_hosts_and_none_runs_twice(
    dask_cluster: Cluster, big_fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    victim = dask_cluster.start_worker("victim")
    try:
        dask_cluster.wait_for_workers(3)
        hosts = fleet_hosts[:60]
        events: list[Event] = []
        shards: list[ShardInfo] = []

        def on_event(event: Event) -> None:
            events.append(event)
            on_victim = {n for s in shards if s.worker == "victim" for n in s.hosts}
            if isinstance(event, Started) and event.host in on_victim and victim.poll() is None:
                victim.send_signal(signal.SIGKILL)

        opts = options(dask_cluster, big_fleet, shards=12)
        plan = make_plan("echo run >> runs; sleep 2", hosts, opts)
        began = time.monotonic()
        asyncio.run(run_on_dask(plan, on_event, on_shard=shards.append))
        assert time.monotonic() - began < DEADLINE
        assert victim.poll() == -signal.SIGKILL, "the victim worker ran no shard"
        results = finished(events)
        assert all(len(r) == 1 for r in results.values()) and len(results) == 60
        lost = {n for n, r in results.items() if r[0].result.status is Status.ERROR}
        # every host the victim reported is lost; so may be the hosts of a shard it had
        # claimed when it died, before its first batch left: none of them ran elsewhere
        assert lost >= {n for s in shards if s.worker == "victim" for n in s.hosts}
        assert not lost & {n for s in shards if s.worker != "victim" for n in s.hosts}
        assert all(results[n][0].result.error == LOST for n in lost)
        ok = set(results) - lost
        assert all(results[n][0].result.ok for n in ok)
        roots = {h.name: h.root for h in big_fleet.hosts}
        runs = {
            n: (roots[n] / "runs").read_text().count("run") if (roots[n] / "runs").exists() else 0
            for n in results
        }
        assert all(runs[n] == 1 for n in ok)
        assert all(runs[n] <= 1 for n in lost)  # a retry of the lost shard ran nothing
        for host in hosts:
            (roots[host.name] / "runs").unlink(missing_ok=True)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
        del dask_cluster.workers["victim"]


STOPS = {
    signal.SIGINT: (130, "interrupted"),
    signal.SIGTERM: (143, "terminated (SIGTERM)"),
}


@pytest.mark.parametrize("signum", list(STOPS))
def test_cli_json_then_a_stop_signal(
    dask_cluster: Cluster, big_fleet: Fleet, inventory: Path, signum: signal.Signals
) -> None:
    code, words = STOPS[signum]
    common = [
        "-i", str(inventory), "--known-hosts", str(big_fleet.known_hosts),
        "--engine", "dask",
    ]  # fmt: skip
    done = run_cli(
        "run", *common, "-h", "node00[1-5]", "--json", "--", "echo hi",
        env={"HOSTBATCH_SCHEDULER": dask_cluster.address},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 5 and '"exit_status": 0' in done.stdout
    assert "5 ok" in done.stderr or "ok" in done.stderr
    roots = {h.name: h.root for h in big_fleet.hosts}
    names = [f"node00{i}" for i in range(1, 5)]
    process = subprocess.Popen(
        cli_argv("run", *common, "--scheduler", dask_cluster.address, "-h", ",".join(names),
                 "--", "echo $$ > pid; echo started; exec sleep 60"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    assert process.stdout is not None
    started = 0
    deadline = time.monotonic() + DEADLINE
    while started < len(names) and time.monotonic() < deadline:
        line = process.stdout.readline()
        started += "started" in line
    assert started == len(names)
    pids = [int((roots[n] / "pid").read_text()) for n in names]
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == code, stderr
    assert words in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids), "remote commands still running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_scheduler_down_is_one_error_before_any_host(big_fleet: Fleet, inventory: Path) -> None:
    root = big_fleet.hosts[0].root
    done = run_cli(
        "run", "-i", str(inventory), "--known-hosts", str(big_fleet.known_hosts),
        "-h", big_fleet.hosts[0].name, "--engine", "dask", "--connect-timeout", "1",
        "--scheduler", f"tcp://127.0.0.1:{_free_port()}", "--", "touch touched",
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stderr.startswith("hostbatch: error: cannot reach the dask scheduler")
    assert len(done.stderr.splitlines()) == 1
    assert not (root / "touched").exists()


def test_passwords_not_sent_over_plain_tcp_to_another_machine(
    big_fleet: Fleet, inventory: Path
) -> None:
    done = run_cli(
        "run", "-i", str(inventory), "-h", big_fleet.hosts[0].name, "--engine", "dask",
        "--scheduler", "tcp://192.0.2.1:8786", "--", "true",
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        "refusing to send passwords" in done.stderr and "--allow-insecure-scheduler" in done.stderr
    )
    assert big_fleet.password not in done.stderr + done.stdout


def test_missing_extra_names_it(inventory: Path) -> None:
    code = (
        "import sys; sys.modules['distributed'] = None; from hostbatch.cli.app import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "run", "-i", str(inventory), "-h", "node001",
         "--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--", "true"],
        capture_output=True, text=True, env=cli_env(), timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "hostbatch: error: the dask engine needs the 'distributed' package: "
        "pip install 'hostbatch[dask]'"
    )


def test_a_second_attempt_of_a_shard_runs_nothing(
    dask_cluster: Cluster, big_fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    """What a Dask retry after a lost worker would do: the same shard task again."""
    from distributed import Client

    hosts = fleet_hosts[-3:]
    plan = make_plan("echo run >> claimed", hosts, options(dask_cluster, big_fleet))
    run_id = "hostbatch-test-second-attempt"
    with Client(dask_cluster.address, timeout=DEADLINE) as client:  # type: ignore[no-untyped-call]
        first = client.submit(_run_shard, plan, run_id, 0, pure=False).result()
        second = client.submit(_run_shard, plan, run_id, 0, pure=False).result()
        client.unpublish_dataset(f"{run_id}-shard-0")
    assert first["batches"] >= 1 and "retried" not in first
    assert second == {"batches": 0, "retried": True}
    roots = {h.name: h.root for h in big_fleet.hosts}
    assert [(roots[h.name] / "claimed").read_text() for h in hosts] == ["run\n"] * 3


def test_rolling_runs_wave_by_wave_on_the_cluster(
    dask_cluster: Cluster, big_fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    hosts = fleet_hosts[:6]
    events, _ = run("exit 1", hosts, options(dask_cluster, big_fleet, canary=1))
    results = {e.host: e.result for e in events if isinstance(e, Finished)}
    assert results[hosts[0].name].status is Status.FAILED
    assert all(results[h.name].status is Status.NOT_STARTED for h in hosts[1:])
    events, _ = run("true", hosts, options(dask_cluster, big_fleet, batch=2))
    assert sorted(finished(events)) == sorted(h.name for h in hosts)
    assert all(r[0].result.ok for r in finished(events).values())


def test_put_and_get_through_the_cluster(
    dask_cluster: Cluster, big_fleet: Fleet, inventory: Path, tmp_path: Path
) -> None:
    local = tmp_path / "payload.txt"
    local.write_text("from the cluster\n")
    names = [h.name for h in big_fleet.hosts[:3]]
    common = [
        "-i", str(inventory), "--known-hosts", str(big_fleet.known_hosts), "-h", ",".join(names),
        "--engine", "dask", "--scheduler", dask_cluster.address,
    ]  # fmt: skip
    sent = run_cli("put", *common, str(local), "payload.txt")
    assert sent.returncode == 0, sent.stderr
    roots = {h.name: h.root for h in big_fleet.hosts}
    assert all((roots[n] / "payload.txt").read_text() == "from the cluster\n" for n in names)
    got = run_cli("get", *common, "payload.txt", str(tmp_path / "back"))
    assert got.returncode == 0, got.stderr
    assert sorted(p.parent.name for p in (tmp_path / "back").glob("*/payload.txt")) == names


def test_placed_shard_whose_only_worker_dies_fails_its_hosts(
    dask_cluster: Cluster, big_fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    """No other worker may take the task (--shard-by): the client notices the worker
    leaving the cluster and reports the hosts, rather than waiting forever."""
    site = dask_cluster.start_worker("lonely")
    try:
        dask_cluster.wait_for_workers(3)
        hosts = with_site(fleet_hosts[100:110], ["lonely"]) + with_site(fleet_hosts[110:114], ["a"])
        events: list[Event] = []

        def on_event(event: Event) -> None:
            events.append(event)
            if isinstance(event, Started) and event.host in placed and site.poll() is None:
                site.send_signal(signal.SIGKILL)

        placed = {h.name for h in hosts[:10]}
        opts = options(dask_cluster, big_fleet, shard_by="site")
        began = time.monotonic()
        asyncio.run(run_on_dask(make_plan("sleep 3", hosts, opts), on_event))
        assert time.monotonic() - began < DEADLINE
        results = finished(events)
        assert all(len(r) == 1 for r in results.values()) and len(results) == 14
        assert {n for n, r in results.items() if r[0].result.error == LOST} == placed
        assert all(results[h.name][0].result.ok for h in hosts[10:])
    finally:
        if site.poll() is None:
            site.kill()
        site.wait()
        del dask_cluster.workers["lonely"]
