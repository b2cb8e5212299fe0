"""The dask engine when a part of the run dies under it, with real processes: the
scheduler (SIGKILL, or SIGSTOP: silent) and the CLI itself (SIGKILL). Each test has a
cluster of its own (one worker ``w`` with 2 threads: 2 shards) and holds its hosts with
a command that waits for a ``release`` file the test never creates for them.

With ``--fanout 2`` each shard runs one host at a time, in order: shard 0 runs node01,
node03, node05; shard 1 node02, node04, node06. The test releases node01 and node02 (they
finish), node03 and node04 hold, node05 and node06 wait their turn."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.engine.executors.dask_ import CLOSE_WAIT, SCHEDULER_TIMEOUT
from hostbatch.testing import Fleet, FleetThread
from tests.cli.test_signals import wait_until
from tests.dask.conftest import Cluster
from tests.dask.test_dask_engine import _alive
from tests.fixtures.cli import cli_argv, cli_env, run_cli

NAMES = [f"node0{i}" for i in range(1, 7)]
EARLY, HELD, QUEUED = NAMES[:2], NAMES[2:4], NAMES[4:]
HOLD = "echo $$ > pid; echo started; while [ ! -e release ]; do sleep 0.1; done; echo released"
START_DEADLINE = 60.0
# A shard notices a lost scheduler or client within ~CLIENT_POLL (1 s), a silent scheduler
# within SCHEDULER_TIMEOUT; then its hosts' commands get TERM (the fleet kills the group).
# Well under the 30 s a closing dask worker waits for its task threads before it exits
# (which would also end the commands, by dropping their connections).
STOP_DEADLINE = 15.0


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with FleetThread(len(NAMES)) as fleet:
        yield fleet


@pytest.fixture
def roots(fleet: Fleet) -> Iterator[dict[str, Path]]:
    """Each host's directory, without files of an earlier test; afterwards every host is
    released, so nothing is left waiting whatever the test's outcome."""
    paths = {h.name: h.root for h in fleet.hosts}
    for root in paths.values():
        for name in ("release", "pid"):
            (root / name).unlink(missing_ok=True)
    yield paths
    for root in paths.values():
        (root / "release").touch()


def _start_held_run(
    cluster: Cluster, fleet: Fleet, roots: dict[str, Path], tmp_path: Path
) -> subprocess.Popen[str]:
    """The CLI running HOLD on the six hosts (journal: tmp_path/journal.sqlite); returns
    once the early hosts finished and the held ones run."""
    inventory = fleet.write_inventory(tmp_path / "inventory")
    journal = tmp_path / "journal.sqlite"
    for name in EARLY:
        (roots[name] / "release").touch()
    process = subprocess.Popen(
        cli_argv("run", "-i", str(inventory), "--known-hosts", str(fleet.known_hosts),
                 "-h", ",".join(NAMES), "--engine", "dask", "--scheduler", cluster.address,
                 "--fanout", "2", "--journal", str(journal), "--", HOLD),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    assert process.stdout is not None
    waiting = {f"{n} | released" for n in EARLY} | {f"{n} | started" for n in HELD}
    deadline = time.monotonic() + START_DEADLINE
    while waiting and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        waiting.discard(line.strip())
    if waiting:
        process.kill()
        pytest.fail(f"the run did not get going: {sorted(waiting)}; {process.communicate()}")
    return process


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSTOP])
def test_scheduler_lost_mid_run_fails_the_rest_and_shards_stop(
    own_cluster: Cluster, fleet: Fleet, roots: dict[str, Path], tmp_path: Path, signum: int
) -> None:
    journal = tmp_path / "journal.sqlite"
    process = _start_held_run(own_cluster, fleet, roots, tmp_path)
    pids = [int((roots[n] / "pid").read_text()) for n in HELD]
    own_cluster.scheduler.send_signal(signum)
    try:
        # a closed connection is noticed at once, a silent scheduler after SCHEDULER_TIMEOUT
        bound = CLOSE_WAIT + 5 + (SCHEDULER_TIMEOUT if signum == signal.SIGSTOP else 0)
        try:
            out, err = process.communicate(timeout=bound)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"the CLI did not end within {bound:g}s: {process.communicate()}")
        lost = f"dask scheduler {own_cluster.address} lost before this host finished"
        assert process.returncode == 1, err
        assert "released" not in out  # no held host ran to its end
        assert "Traceback" not in err and "distributed" not in err, err
        assert "6 hosts in" in err and "2 ok, 4 error" in err
        assert all(f"{n} ✗ error: {lost}" in err for n in HELD + QUEUED), err
        # the shards stopped their hosts' commands themselves (the worker process, when
        # it exits, is too late for the deadline)
        assert wait_until(lambda: not any(_alive(pid) for pid in pids), STOP_DEADLINE), (
            "remote commands still running"
        )
        # the worker, without its scheduler, exits once its shards have returned (it
        # would wait 30 s for a shard still running): then no queued host ever started
        own_cluster.scheduler.kill()
        worker = own_cluster.workers["w"]
        assert wait_until(lambda: worker.poll() is not None, STOP_DEADLINE)
        assert not any((roots[n] / "pid").exists() for n in QUEUED)
        shown = run_cli("show", "last", "--journal", str(journal), "--json")
        assert shown.returncode == 0, shown.stderr
        recorded = {h["host"]: h for h in json.loads(shown.stdout)["hosts"]}
        assert sorted(recorded) == NAMES
        assert all(recorded[n]["status"] == "ok" for n in EARLY)
        assert all(recorded[n]["stdout"] == "started\nreleased\n" for n in EARLY)
        assert all(recorded[n]["status"] == "error" for n in HELD + QUEUED)
        assert all(recorded[n]["error"] == lost for n in HELD + QUEUED)
    finally:
        own_cluster.scheduler.kill()  # a stopped scheduler ignores SIGTERM until continued


def test_cli_killed_mid_run_shards_stop_their_commands(
    own_cluster: Cluster, fleet: Fleet, roots: dict[str, Path], tmp_path: Path
) -> None:
    from distributed import Client

    process = _start_held_run(own_cluster, fleet, roots, tmp_path)
    pids = [int((roots[n] / "pid").read_text()) for n in HELD]
    process.send_signal(signal.SIGKILL)  # nothing to catch: the shards are on their own
    process.communicate(timeout=START_DEADLINE)
    assert wait_until(lambda: not any(_alive(pid) for pid in pids), STOP_DEADLINE), (
        "remote commands still running after their CLI was killed"
    )
    # the shards returned: no task runs on the worker any more (Client.call_stack asks
    # the workers what their threads execute), and they started no queued host
    with Client(own_cluster.address, timeout=START_DEADLINE) as client:  # type: ignore[no-untyped-call]
        assert wait_until(lambda: not any(client.call_stack().values()), STOP_DEADLINE)
    assert not any((roots[n] / "pid").exists() for n in QUEUED)
