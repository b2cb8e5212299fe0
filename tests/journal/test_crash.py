"""Crash safety and concurrency of the journal, with real processes: a run killed with
SIGKILL keeps every host that had finished and is marked interrupted at the next open;
two runs writing at once both land whole."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from hostbatch.journal import INTERRUPTED, Journal, show
from hostbatch.journal.sink import FLUSH_ROWS

RUNNER = Path(__file__).with_name("runner.py")
# Each host sleeps 0.0-7.9 s, by its number: the run finishes hosts steadily for ~8 s.
STAGGERED_SLEEP = (
    "n=${HOSTBATCH_FLEET_HOST#node}; n=${n#0}; n=${n#0}; sleep $((n % 80 / 10)).$((n % 10))"
)


def _start(
    journal: Path, side: Path, hosts: int, command: str, *extra: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(journal), str(side), str(hosts), command, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finished_hosts(journal: Path) -> int:
    """Host rows in the journal, read without writing (0 before the schema exists)."""
    if not journal.exists():
        return 0
    connection = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return int(connection.execute("SELECT count(*) FROM hosts").fetchone()[0])
    except sqlite3.OperationalError:  # the first run has not created the tables yet
        return 0
    finally:
        connection.close()


def _names(path: Path) -> set[str]:
    """Host names written whole (a line cut by the kill is left out)."""
    return {line for line in path.read_text().split("\n")[:-1] if line}


def _wait(condition: object, seconds: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if process.poll() is not None:
            raise AssertionError(
                f"runner exited ({process.returncode}) before {what}: "
                f"{process.stderr.read().decode() if process.stderr else ''}"
            )
        assert time.monotonic() < deadline, f"no {what} within {seconds}s"
        time.sleep(0.05)


def test_kill_9_mid_run_keeps_every_finished_host(tmp_path: Path) -> None:
    journal, side = tmp_path / "journal.sqlite", tmp_path / "finished.txt"
    runner = _start(journal, side, 300, STAGGERED_SLEEP)
    try:
        _wait(lambda: _finished_hosts(journal) >= 60, 240, "60 finished hosts", runner)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if runner.stderr:
            runner.stderr.close()
    assert runner.returncode == -signal.SIGKILL
    committed, finished = _names(side), _names(Path(f"{side}.finished"))
    with Journal.open(journal) as reopened:
        detail = show(reopened, "last")
    assert detail.run.outcome == INTERRUPTED
    recorded = {record.host for record in detail.hosts}
    assert len(committed) >= 60
    assert committed <= recorded  # every host reported committed survived the kill
    assert len(recorded - committed) <= FLUSH_ROWS  # at most the batch being reported
    # only the last instant's hosts are lost: at most one batch (FLUSH_SECONDS' worth)
    assert recorded <= finished and len(finished - recorded) < FLUSH_ROWS
    assert len(recorded) + len(detail.unfinished) == 300 and detail.unfinished
    assert all(record.status == "ok" for record in detail.hosts)
    assert detail.run.counts == {"ok": len(recorded)}
    assert detail.run.ended is not None and detail.run.ended >= max(h.ended for h in detail.hosts)


def test_two_runs_at_once_both_land_whole(tmp_path: Path) -> None:
    journal, go = tmp_path / "journal.sqlite", tmp_path / "go"
    command = "n=${HOSTBATCH_FLEET_HOST##*[a-z]}; n=${n#0}; echo $n; sleep 0.$((n % 10))"
    sides = [tmp_path / "a.txt", tmp_path / "b.txt"]
    runners = [
        _start(journal, side, 80, command, "--prefix", prefix, "--go", str(go))
        for side, prefix in zip(sides, ("alpha", "beta"), strict=True)
    ]
    try:
        for side, runner in zip(sides, runners, strict=True):
            ready = Path(f"{side}.ready")
            _wait(ready.exists, 240, "a started fleet", runner)
        go.write_text("go")
        for runner in runners:
            assert runner.wait(timeout=240) == 0, runner.stderr.read() if runner.stderr else ""
    finally:
        for runner in runners:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
            if runner.stderr:
                runner.stderr.close()
    with Journal.open(journal) as reopened:
        runs = [show(reopened, "last"), show(reopened, "last~1")]
    assert {detail.hosts[0].host[:4] for detail in runs} == {"alph", "beta"}
    for detail in runs:
        assert detail.run.outcome == "finished" and detail.run.counts == {"ok": 80}
        assert len(detail.hosts) == 80 and not detail.unfinished
        assert all(h.stdout_tail == f"{int(h.host[-2:])}\n".encode() for h in detail.hosts)
    first, second = sorted((d.run for d in runs), key=lambda run: run.started)
    assert first.ended is not None and second.started < first.ended  # they overlapped
