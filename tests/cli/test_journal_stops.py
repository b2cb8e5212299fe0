"""A CLI run that does not finish is still recorded: kill -9 mid-run (the next journal
open marks it interrupted, with every host that had finished), SIGTERM (interrupted, exit
143) and a closed stdout (interrupted, exit 141: the journal is written on regardless)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from hostbatch.testing import Fleet, FleetThread
from tests.fixtures.cli import cli_argv, cli_env, run_cli

# Each host sleeps 0.0-7.9 s by its number, then prints: hosts finish steadily for ~8 s.
STAGGERED = (
    "n=${HOSTBATCH_FLEET_HOST#node}; n=${n#0}; n=${n#0}; "
    "sleep $((n % 80 / 10)).$((n % 10)); echo done"
)
KILL_AFTER = 60  # hosts printed before the kill
MARGIN = 1.0  # seconds: a host printed this long before the kill must be in the journal


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds}s"
        time.sleep(0.05)


def start(argv: list[str], stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cli_argv(*argv), stdout=subprocess.PIPE, stderr=stderr, env=cli_env())


def journal_runs(journal: Path) -> list[dict[str, Any]]:
    listed = run_cli("history", "--journal", str(journal), "--json")
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def running_runs(journal: Path) -> int:
    """Runs recorded as running, read without writing (0 before the file exists)."""
    if not journal.exists():
        return 0
    connection = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        row = connection.execute("SELECT count(*) FROM runs WHERE outcome = 'running'")
        return int(row.fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        connection.close()


class LineReader(threading.Thread):
    """Reads a process's stdout as it comes: (monotonic time, host) per live line."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[tuple[float, str]] = []

    def run(self) -> None:
        for line in self.stream:
            self.lines.append((time.monotonic(), line.decode().split(" | ")[0].strip()))


def printed_before(reader: LineReader, seconds: float, now: float | None = None) -> set[str]:
    """Hosts whose line was read at least *seconds* before *now*."""
    moment = (time.monotonic() if now is None else now) - seconds
    return {host for at, host in list(reader.lines) if at < moment}


@pytest.fixture(scope="module")
def big_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    with FleetThread(300) as started:
        yield started, started.write_inventory(tmp_path_factory.mktemp("k") / "inv")


def test_kill_9_mid_run_is_interrupted_with_every_finished_host(
    big_fleet: tuple[Fleet, Path], tmp_path: Path
) -> None:
    fleet, inventory = big_fleet
    journal = tmp_path / "journal.sqlite"
    argv = ["run", "-i", str(inventory), "--known-hosts", str(fleet.known_hosts)]
    argv += ["--connect-timeout", "60", "--journal", str(journal), "-g", "fleet", STAGGERED]
    with (tmp_path / "stderr").open("wb") as stderr:
        process = start(argv, stderr)
        assert process.stdout is not None
        reader = LineReader(process.stdout)
        reader.start()
        try:
            # kill once KILL_AFTER hosts printed at least MARGIN ago (hosts go on finishing)
            wait_for(lambda: len(printed_before(reader, MARGIN)) >= KILL_AFTER, 120, "lines")
            assert process.poll() is None, "the run ended before the kill"
            killed_at = time.monotonic()
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        reader.join(timeout=30)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "stderr").read_text()
    printed = {host for _, host in reader.lines}
    settled = printed_before(reader, MARGIN, killed_at)
    [run] = journal_runs(journal)  # this open marks the killed run interrupted
    assert run["outcome"] == "interrupted" and run["exit_code"] is None
    shown = json.loads(run_cli("show", "last", "--journal", str(journal), "--json").stdout)
    recorded = {host["host"] for host in shown["hosts"]}
    assert (
        len(settled) >= KILL_AFTER and settled <= recorded
    )  # every host finished well before the kill
    assert recorded <= printed  # and none that had not finished
    assert run["counts"] == {"ok": len(recorded)}
    assert len(recorded) + len(shown["unfinished"]) == 300 and shown["unfinished"]


def test_sigterm_and_closed_stdout_end_the_run_interrupted(
    big_fleet: tuple[Fleet, Path], tmp_path: Path
) -> None:
    fleet, inventory = big_fleet
    journal = tmp_path / "journal.sqlite"
    argv = ["run", "-i", str(inventory), "--known-hosts", str(fleet.known_hosts)]
    argv += ["--journal", str(journal), "-h", "node00[1-3]"]
    with (tmp_path / "stderr").open("wb") as stderr:
        term = start([*argv, "echo started; exec sleep 60"], stderr)
        try:
            assert term.stdout is not None
            assert term.stdout.readline().endswith(b"| started\n")  # a host's command runs
            wait_for(lambda: running_runs(journal) == 1, 30, "running run")
            term.send_signal(signal.SIGTERM)
            assert term.wait(timeout=30) == 143
        finally:
            if term.poll() is None:
                term.kill()
                term.wait()
            if term.stdout:
                term.stdout.close()
        piped = start([*argv, "echo first; sleep 0.5; seq 1 200000"], stderr)
        assert piped.stdout is not None
        piped.stdout.readline()
        piped.stdout.close()  # the reader goes away, like `| head -1`
        assert piped.wait(timeout=60) == 141
    closed, terminated = journal_runs(journal)
    assert (terminated["outcome"], terminated["exit_code"]) == ("interrupted", 143)
    assert (closed["outcome"], closed["exit_code"]) == ("interrupted", 141)
