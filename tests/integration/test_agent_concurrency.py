"""Two ``--persist`` runs at once (real OpenSSH sshd): runs from the same directory go on
together in the agent; a run from another directory waits, is told so, and runs after.

The first run's command holds until the test creates a gate file, so which run ended
first is decided by the test, not by timing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.engine.executors.agent import WAITING
from hostbatch.testing.sshd import OpenSSHServer
from tests.fixtures.cli import cli_argv, cli_env, run_cli
from tests.integration.test_agent import Env, agent_env, common, inventory, wait_until

__all__ = ["agent_env"]  # the fixture, used by name


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the remote user (another uid when the tests run as root) can write."""
    path = Path(tempfile.mkdtemp(prefix="hb-turns-", dir="/tmp"))
    os.chmod(path, 0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _start(args: tuple[str, ...], env: Env, cwd: Path, stderr: Path) -> subprocess.Popen[str]:
    """The CLI in the background, its stderr into *stderr* (read while it runs)."""
    with stderr.open("w") as err:
        return subprocess.Popen(
            cli_argv("run", *args),
            cwd=cwd,
            env=cli_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def test_same_directory_runs_at_once_another_directory_waits(
    sshd: OpenSSHServer, agent_env: Env, tmp_path: Path, shared_dir: Path
) -> None:
    inv = inventory(sshd, tmp_path / "inv.ini")
    args = (*common(sshd, inv), "-h", "all", "--persist", "1m")
    started, gate = shared_dir / "started", shared_dir / "gate"
    hold = f"echo x >> {started}; while [ ! -e {gate} ]; do sleep 0.05; done; echo held"
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()

    first = _start((*args, "--", hold), agent_env, here, tmp_path / "first.err")
    try:
        wait_until(
            lambda: started.exists() and len(started.read_text().split()) == 2,
            "the first run's command on both hosts",
        )
        # the same directory: runs while the first one still holds
        same = subprocess.run(
            cli_argv("run", *args, "--", "echo beside"),
            cwd=here,
            env=cli_env(agent_env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert same.returncode == 0, same.stderr
        assert sorted(same.stdout.splitlines()) == ["h1 | beside", "h2 | beside"]
        assert WAITING not in same.stderr
        assert first.poll() is None and not gate.exists()

        # another directory: waits for the first run, and says so
        other_err = tmp_path / "other.err"
        other = _start((*args, "--", "echo after"), agent_env, elsewhere, other_err)
        try:
            wait_until(lambda: WAITING in other_err.read_text(), "the waiting note")
            assert other.poll() is None and first.poll() is None
            listed = run_cli("agent", "status", env=agent_env).stdout
            runs = sorted(line for line in listed.splitlines() if ": a run on " in line)
            assert len(runs) == 2, listed
            assert runs[0].startswith("running for ") and runs[0].endswith(f"from {here}")
            assert runs[1].startswith("waiting for ") and runs[1].endswith(f"from {elsewhere}")
            assert "2 host(s)" in runs[0] and "2 host(s)" in runs[1]
            gate.touch()
            out, _ = other.communicate(timeout=60)
            assert other.returncode == 0, other_err.read_text()
            assert sorted(out.splitlines()) == ["h1 | after", "h2 | after"]
        finally:
            if other.poll() is None:
                other.kill()
        out, _ = first.communicate(timeout=60)
        assert first.returncode == 0, (tmp_path / "first.err").read_text()
        assert sorted(out.splitlines()) == ["h1 | held", "h2 | held"]
    finally:
        gate.touch()
        if first.poll() is None:
            first.kill()
    status = run_cli("agent", "status", env=agent_env)
    assert "2 open connection(s)" in status.stdout  # all three runs shared two logins
    assert ": a run on " not in status.stdout  # none in progress any more
