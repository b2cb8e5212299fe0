"""`hostbatch run ... | head -1`: a closed stdout ends the run quietly (exit 141), never as
a flood of "connection lost: Broken pipe" host failures (issue #11)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.testing import Fleet, FleetThread

EXIT_BROKEN_PIPE = 141


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    with FleetThread(4) as started:
        yield started, started.write_inventory(tmp_path_factory.mktemp("bp") / "inv", auth="key")


def read_one_line_then_close(*args: str) -> tuple[int, str, str]:
    """Run hostbatch with stdout on a real pipe; read one line, close the pipe like
    ``head -1``; (exit code, first line, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "HOSTBATCH_INVENTORY"}
    argv = [sys.executable, "-m", "hostbatch", *args]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        try:
            first = process.stdout.readline()
            process.stdout.close()
            stderr = process.stderr.read()
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    return process.returncode, first, stderr


@pytest.mark.parametrize("form", ["live", "--json", "--gather"])
def test_closed_stdout_ends_quietly(fleet: tuple[Fleet, Path], form: str) -> None:
    started, inventory = fleet
    extra = () if form == "live" else (form,)
    code, first, stderr = read_one_line_then_close(
        *("run", "-i", str(inventory), "--known-hosts", str(started.known_hosts)),
        *("-g", "fleet", *extra, "-c", "seq 200000"),
    )
    assert first.strip()  # the reader got its line
    assert code == EXIT_BROKEN_PIPE, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "connection lost" not in stderr and "Broken pipe" not in stderr
    assert "✗" not in stderr  # no host reported failed
