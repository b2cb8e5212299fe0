"""SIGTERM and SIGHUP stop `hostbatch run` like Ctrl-C: remote commands are signalled,
connections closed, exit 143 / 129 with one line (issue #11).

Real servers: the in-process fleet (commands run as children of this test process) and a
real OpenSSH sshd (commands run on this machine), so the remote pids can be checked here.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostbatch.testing import Fleet, FleetThread
from hostbatch.testing.sshd import OpenSSHServer
from tests.fixtures.sshd import write_sshd_inventory

HOSTS = 3
PIDS_WITHIN = 30.0  # seconds for every host to connect and start its command
EXIT_WITHIN = 15.0  # seconds from the signal to the CLI's exit
GONE_WITHIN = 10.0  # seconds for the remote processes to disappear
SLEEPER = "echo $$ > {pidfile}; exec sleep 300"


@pytest.fixture(scope="module")
def fleet_inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    with FleetThread(HOSTS) as started:
        yield started, started.write_inventory(tmp_path_factory.mktemp("sig") / "inv", auth="key")


def alive(pid: int) -> bool:
    """True while *pid* runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_pids(pidfiles: list[Path]) -> list[int]:
    """The pids written completely so far."""
    texts = [path.read_text() for path in pidfiles if path.exists()]
    return [int(text) for text in texts if text.endswith("\n")]


def start_cli(args: list[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "HOSTBATCH_INVENTORY"}
    return subprocess.Popen(
        [sys.executable, "-m", "hostbatch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def stop_when_started(
    process: subprocess.Popen[str],
    pids_now: Callable[[], list[int]],
    count: int,
    signum: signal.Signals,
) -> tuple[int, str, list[int]]:
    """Wait until *count* remote pids are written, send *signum*; (exit code, stderr, pids)."""
    try:
        started = wait_until(
            lambda: len(pids_now()) == count or process.poll() is not None, PIDS_WITHIN
        )
        if not started or process.poll() is not None:
            process.kill()
            pytest.fail(f"remote commands did not start: {process.communicate()[1]}")
        pids = pids_now()
        assert all(alive(pid) for pid in pids)
        process.send_signal(signum)
        sent = time.monotonic()
        _, stderr = process.communicate(timeout=EXIT_WITHIN + 5)
        assert time.monotonic() - sent < EXIT_WITHIN
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stderr, pids


@pytest.mark.parametrize(
    ("signum", "code", "words"),
    [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGHUP, 129, "hung up (SIGHUP)")],
)
@pytest.mark.parametrize("workers", [None, 2])
def test_signal_stops_every_remote_command(
    fleet_inventory: tuple[Fleet, Path],
    signum: signal.Signals,
    code: int,
    words: str,
    workers: int | None,
) -> None:
    fleet, inventory = fleet_inventory
    name = f"pid-{signum.name}-{workers}"
    pidfiles = [host.root / name for host in fleet.hosts]
    for path in pidfiles:
        path.unlink(missing_ok=True)
    args = ["run", "-i", str(inventory), "--known-hosts", str(fleet.known_hosts), "-g", "fleet"]
    if workers:
        args += ["--workers", str(workers)]
    process = start_cli([*args, "--", SLEEPER.format(pidfile=name)])
    returncode, stderr, pids = stop_when_started(
        process, lambda: read_pids(pidfiles), len(pidfiles), signum
    )
    assert returncode == code, stderr
    assert f"hostbatch: {words}; remote commands stopped, connections closed" in stderr
    assert "Traceback" not in stderr
    assert "✗" not in stderr  # no flood of host failures
    assert wait_until(lambda: not any(alive(pid) for pid in pids), GONE_WITHIN), pids


@pytest.fixture
def pids_dir(sshd: OpenSSHServer) -> Iterator[Path]:
    """A folder the sshd login user writes its pid files in. Not under pytest's basetemp:
    a pytest session starting meanwhile (as root, the same user) makes that private again."""
    path = Path(tempfile.mkdtemp(prefix="hostbatch-test-pids-"))
    path.chmod(0o755)
    owner = pwd.getpwnam(sshd.username)
    if os.geteuid() == 0:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sshd_inventory(sshd: OpenSSHServer, tmp_path: Path) -> Path:
    return write_sshd_inventory(sshd, tmp_path / "inventory.ini", HOSTS)


def start_on_sshd(
    sshd: OpenSSHServer, inventory: Path, pids_dir: Path, *extra: str
) -> subprocess.Popen[str]:
    """`hostbatch run` of a sleeper on every host; each writes its pid in *pids_dir*."""
    command = f"f=$(mktemp {pids_dir}/run.XXXXXX); echo $$ > $f; exec sleep 300"
    return start_cli(
        [
            *("run", "-i", str(inventory), "--known-hosts", str(sshd.known_hosts)),
            *("--ssh-config", "", "-h", "all", *extra, "--", command),
        ]
    )


@pytest.mark.parametrize(
    ("stop", "workers"),
    [((signal.SIGTERM, 143), None), ((signal.SIGHUP, 129), None), ((signal.SIGTERM, 143), 2)],
)
def test_signal_stops_commands_on_openssh(
    sshd: OpenSSHServer,
    sshd_inventory: Path,
    pids_dir: Path,
    stop: tuple[signal.Signals, int],
    workers: int | None,
) -> None:
    """OpenSSH leaves a command running when its connection closes: only the signal sent
    for the cancelled command stops it."""
    signum, code = stop
    extra = ("--workers", str(workers)) if workers else ()
    process = start_on_sshd(sshd, sshd_inventory, pids_dir, *extra)
    returncode, stderr, pids = stop_when_started(
        process, lambda: read_pids(list(pids_dir.iterdir())), HOSTS, signum
    )
    assert returncode == code, stderr
    assert "remote commands stopped" in stderr and "Traceback" not in stderr
    assert wait_until(lambda: not any(alive(pid) for pid in pids), GONE_WITHIN), pids


def workers_of(pid: int) -> list[int]:
    """Child processes of *pid* that are multiprocessing spawn workers."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_worker_given_sigterm_stops_its_commands(
    sshd: OpenSSHServer, sshd_inventory: Path, pids_dir: Path
) -> None:
    """A worker process that gets SIGTERM cancels its own hosts, so their commands are
    signalled (OpenSSH would leave them running); the other worker and the run go on."""
    process = start_on_sshd(sshd, sshd_inventory, pids_dir, "--workers", "2")

    def pids_now() -> list[int]:
        return read_pids(list(pids_dir.iterdir()))

    try:
        assert wait_until(lambda: len(pids_now()) == HOSTS, PIDS_WITHIN)
        pids = pids_now()
        workers = workers_of(process.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGTERM)
        assert wait_until(lambda: any(not alive(pid) for pid in pids), GONE_WITHIN)
        assert 0 < sum(not alive(pid) for pid in pids) < HOSTS  # one worker's hosts only
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=EXIT_WITHIN)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143, stderr
    assert wait_until(lambda: not any(alive(pid) for pid in pids), GONE_WITHIN), pids
