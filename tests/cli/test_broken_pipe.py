"""`hostbatch run ... | head -1`: a closed stdout ends the run quietly (exit 141), never as
a flood of "connection lost: Broken pipe" host failures (issue #11). Also under ``python -u``
(PYTHONUNBUFFERED), where a write cut short by the closed pipe was once dropped silently
and ``--gather`` ended with exit 0."""

from __future__ import annotations

import array
import fcntl
import os
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.testing import Fleet, FleetThread

EXIT_BROKEN_PIPE = 141
UNBUFFERED = "PYTHONUNBUFFERED"
PAGE = 4096


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    with FleetThread(4) as started:
        yield started, started.write_inventory(tmp_path_factory.mktemp("bp") / "inv", auth="key")


def pipe_backlog(fd: int) -> int:
    """Bytes written to the pipe and not read yet."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


def read_one_line_then_close(*args: str, unbuffered: bool) -> tuple[int, str, str]:
    """Run hostbatch with stdout on a real pipe; read one line, then close the pipe like
    ``head -1`` once the pipe is (all but) full: hostbatch is then in the middle of a write
    that cannot finish, the case a closed stdout must not be lost in. (exit code, first
    line, stderr). *unbuffered*: under ``python -u`` (PYTHONUNBUFFERED=1)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HOSTBATCH_INVENTORY", UNBUFFERED)}
    if unbuffered:
        env[UNBUFFERED] = "1"
    argv = [sys.executable, "-m", "hostbatch", *args]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        try:
            fd = process.stdout.fileno()
            read = b""
            while b"\n" not in read and (chunk := os.read(fd, 65536)):
                read += chunk
            first = read.split(b"\n", 1)[0].decode()
            # Every form writes far more than a pipe holds: wait until the pipe is full to
            # within two pages (the kernel may leave the last pages partly filled).
            full = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) - 2 * PAGE
            deadline = time.monotonic() + 60
            while pipe_backlog(fd) < full and process.poll() is None:
                assert time.monotonic() < deadline, f"the pipe never filled: {pipe_backlog(fd)}"
                time.sleep(0.01)
            process.stdout.close()
            stderr = process.stderr.read().decode()
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    return process.returncode, first, stderr


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "python-u"])
@pytest.mark.parametrize("form", ["live", "--json", "--gather"])
def test_closed_stdout_ends_quietly(fleet: tuple[Fleet, Path], form: str, unbuffered: bool) -> None:
    started, inventory = fleet
    extra = () if form == "live" else (form,)
    code, first, stderr = read_one_line_then_close(
        *("run", "-i", str(inventory), "--known-hosts", str(started.known_hosts)),
        *("-g", "fleet", *extra, "-c", "seq 200000"),
        unbuffered=unbuffered,
    )
    assert first.strip()  # the reader got its line
    assert code == EXIT_BROKEN_PIPE, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "connection lost" not in stderr and "Broken pipe" not in stderr
    assert "✗" not in stderr  # no host reported failed
