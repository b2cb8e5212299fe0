"""--events ends with its summary object after a signal too: the same record as a finished
run's, with ``"interrupted": true``, the signal's exit code, the hosts that finished
counted and those that did not as ``unfinished``. A real `hostbatch run` process against
the test OpenSSH sshd, stopped by a real signal once one host has finished and the others
are running their commands."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostbatch.testing.sshd import OpenSSHServer
from tests.fixtures.cli import cli_argv, cli_env, run_cli
from tests.fixtures.sshd import write_sshd_inventory

pytestmark = pytest.mark.sshd
HOSTS = 3
STARTED_WITHIN = 30.0  # seconds for one host to finish and the others to start sleeping
EXIT_WITHIN = 20.0  # seconds from the signal to the CLI's exit


@pytest.fixture
def inventory(sshd: OpenSSHServer, tmp_path: Path) -> Path:
    return write_sshd_inventory(sshd, tmp_path / "inventory.ini", HOSTS)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every host's login user can create in (not under pytest's basetemp, which
    a pytest session starting meanwhile makes private)."""
    path = Path(tempfile.mkdtemp(prefix="hostbatch-test-events-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def common(sshd: OpenSSHServer, inventory: Path) -> list[str]:
    return ["-i", str(inventory), "--ssh-config", "", "--known-hosts", str(sshd.known_hosts)]


class Reader:
    """The --events lines of a running CLI, read by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.records: list[dict[str, Any]] = []
        assert process.stdout is not None
        self.stream = process.stdout
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.stream:
            self.records.append(json.loads(line))

    def count(self, event: str) -> int:
        return sum(record["event"] == event for record in list(self.records))


@pytest.mark.parametrize(
    "stop",
    [(signal.SIGINT, 130, None), (signal.SIGTERM, 143, None), (signal.SIGTERM, 143, 2)],
    ids=["SIGINT", "SIGTERM", "SIGTERM-workers"],
)
def test_a_signal_still_ends_the_stream_with_the_summary(
    sshd: OpenSSHServer,
    inventory: Path,
    shared_dir: Path,
    stop: tuple[signal.Signals, int, int | None],
) -> None:
    signum, code, workers = stop
    # the first host to make the folder ends at once; the others print and sleep
    command = f"mkdir {shared_dir}/first 2>/dev/null && exit 0; echo ready; exec sleep 300"
    extra = ["--workers", str(workers)] if workers else []
    argv = cli_argv("run", *common(sshd, inventory), "-h", "all", "--events", *extra)
    with subprocess.Popen(
        [*argv, "--", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    ) as process:
        reader = Reader(process)
        try:
            deadline = time.monotonic() + STARTED_WITHIN
            while reader.count("finished") < 1 or reader.count("stdout") < HOSTS - 1:
                assert process.poll() is None, reader.records
                assert time.monotonic() < deadline, reader.records
                time.sleep(0.05)
            process.send_signal(signum)
            process.wait(timeout=EXIT_WITHIN)  # stdout is the reader's: not communicate()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        reader.thread.join(timeout=5)
        assert process.stderr is not None
        stderr = process.stderr.read()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert "remote commands stopped, connections closed" in stderr
    closing = reader.records[-1]
    assert closing["event"] == "summary", reader.records
    assert reader.count("summary") == 1
    assert closing["interrupted"] is True
    assert closing["exit_code"] == code
    assert closing["hosts"] == HOSTS
    assert closing["unfinished"] == HOSTS - 1
    assert closing["counts"]["ok"] == 1 and sum(closing["counts"].values()) == 1
    assert list(closing["host_ranges"]) == ["ok"]
    assert isinstance(closing["run_id"], int) and closing["version"] == 1
    shown = run_cli("show", str(closing["run_id"]), "--json")
    assert json.loads(shown.stdout)["run"]["outcome"] == "interrupted"


def test_a_finished_run_says_it_was_not_interrupted(sshd: OpenSSHServer, inventory: Path) -> None:
    done = run_cli("run", *common(sshd, inventory), "-h", "all", "--events", "--", "true")
    assert done.returncode == 0, done.stderr
    closing = json.loads(done.stdout.splitlines()[-1])
    assert closing["event"] == "summary"
    assert closing["interrupted"] is False and closing["unfinished"] == 0
    assert closing["hosts"] == HOSTS and closing["counts"]["ok"] == HOSTS
    assert closing["exit_code"] == 0
