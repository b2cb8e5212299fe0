"""A worker process given SIGTERM while it is still starting (interpreter start, imports of
hostbatch and of the SSH libraries, before its event loop can take a signal handler) is
not killed outright: it starts with SIGTERM blocked, takes the signal once its handler is
in place, and stops like any stopped worker (exit code 143, its hosts reported by the
parent). Real `hostbatch run --workers 2` against the test OpenSSH sshd; the signal is
sent as soon as the worker's pid exists, while /proc shows it has no SIGTERM handler yet."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.testing.sshd import OpenSSHServer
from tests.fixtures.cli import cli_argv, cli_env
from tests.fixtures.sshd import write_sshd_inventory

pytestmark = pytest.mark.sshd
HOSTS = 4
SEEN_WITHIN = 20.0  # seconds for the CLI to start its workers
DONE_WITHIN = 60.0  # seconds for the whole run
ATTEMPTS = 3  # runs tried until one signal lands before the worker's handler is in
SIGTERM_BIT = 1 << (15 - 1)  # SIGTERM's bit in /proc/PID/status signal masks


def spawned_workers(pid: int) -> list[int]:
    """Children of *pid* that are multiprocessing spawn workers (after their exec)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def signal_mask(pid: int, field: str) -> int:
    """A signal mask of /proc/PID/status (SigCgt: caught, SigBlk: blocked); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


@contextlib.contextmanager
def run_in_workers(
    sshd: OpenSSHServer, inventory: Path, *args: str
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`hostbatch run --workers 2 ARGS` on every host; yields the process and its first
    worker's pid as soon as that exists. Killed if still running at the end."""
    common = ["-i", str(inventory), "--ssh-config", "", "--known-hosts", str(sshd.known_hosts)]
    argv = cli_argv("run", *common, "-h", "all", "--workers", "2", *args)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env()
    ) as process:
        try:
            deadline = time.monotonic() + SEEN_WITHIN
            while not (workers := spawned_workers(process.pid)):
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.001)
            yield process, workers[0]
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


def run_and_signal_a_starting_worker(sshd: OpenSSHServer, inventory: Path) -> tuple[bool, str, str]:
    """(whether the SIGTERM reached a worker with no handler yet, stdout, stderr)."""
    with run_in_workers(sshd, inventory, "--json", "--", "echo ok") as (process, worker):
        early = not signal_mask(worker, "SigCgt") & SIGTERM_BIT
        subprocess.run(["kill", "-TERM", str(worker)], check=True)
        stdout, stderr = process.communicate(timeout=DONE_WITHIN)
    return early, stdout, stderr


def test_sigterm_while_a_worker_starts_stops_it_cleanly(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    inventory = write_sshd_inventory(sshd, tmp_path / "inventory.ini", HOSTS)
    for _ in range(ATTEMPTS):
        early, stdout, stderr = run_and_signal_a_starting_worker(sshd, inventory)
        if early:
            break
    else:
        pytest.skip(f"the worker had its handler before the signal, {ATTEMPTS} times")
    assert "Traceback" not in stderr
    results = [json.loads(line) for line in stdout.splitlines()]
    assert len(results) == HOSTS, stderr
    stopped = [r for r in results if r["status"] != "ok"]
    assert 0 < len(stopped) < HOSTS, results  # the other worker's hosts ran
    for result in stopped:
        # the worker stopped itself (its run cancelled: 143), not killed by the signal (-15)
        assert result["error"] == (
            "worker process died (exit code 143) before this host finished"
        ), result


def test_a_worker_starts_with_sigterm_blocked(sshd: OpenSSHServer, tmp_path: Path) -> None:
    """Seen from /proc while it starts: SIGTERM blocked until it has a handler."""
    inventory = write_sshd_inventory(sshd, tmp_path / "inventory.ini", HOSTS)
    masks: list[tuple[int, int]] = []
    with run_in_workers(sshd, inventory, "--", "sleep 1") as (process, worker):
        deadline = time.monotonic() + SEEN_WITHIN
        while process.poll() is None and time.monotonic() < deadline:
            caught = signal_mask(worker, "SigCgt") & SIGTERM_BIT
            masks.append((signal_mask(worker, "SigBlk") & SIGTERM_BIT, caught))
            if caught:
                break
            time.sleep(0.001)
        _, stderr = process.communicate(timeout=DONE_WITHIN)
    assert process.returncode == 0, stderr
    before_handler = [blocked for blocked, caught in masks if not caught]
    assert before_handler and all(before_handler), masks
    assert masks[-1] == (0, SIGTERM_BIT)  # then handled, and no longer blocked
