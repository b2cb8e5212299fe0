"""-v, --debug and HOSTBATCH_LOG: diagnostics on stderr, quiet by default, secrets masked."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.testing import Fleet, FleetThread


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    with FleetThread(2) as started:
        inventory = tmp_path_factory.mktemp("log") / "inv"
        yield started, started.write_inventory(inventory, auth="password")


def run(
    fleet: tuple[Fleet, Path], *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    started, inventory = fleet
    own = ("HOSTBATCH_INVENTORY", "HOSTBATCH_LOG")
    full_env = {k: v for k, v in os.environ.items() if k not in own} | (env or {})
    argv = [sys.executable, "-m", "hostbatch", *flags, "run", "-i", str(inventory)]
    argv += ["--known-hosts", str(started.known_hosts), "-g", "fleet", "--", "echo ok"]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, env=full_env
    )


def test_quiet_by_default(fleet: tuple[Fleet, Path]) -> None:
    result = run(fleet)
    assert result.returncode == 0, result.stderr
    assert "hostbatch: INFO" not in result.stderr and "DEBUG" not in result.stderr


def test_debug_shows_records_and_never_the_password(fleet: tuple[Fleet, Path]) -> None:
    started, _ = fleet
    result = run(fleet, "--debug")
    assert result.returncode == 0, result.stderr
    assert "hostbatch: DEBUG hostbatch: selected 2 host(s)" in result.stderr
    assert "hostbatch: DEBUG asyncssh" in result.stderr  # the SSH library's records too
    assert started.password not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("flags", "env"), [(("-v",), {}), ((), {"HOSTBATCH_LOG": "info"})], ids=["-v", "env"]
)
def test_info_level(fleet: tuple[Fleet, Path], flags: tuple[str, ...], env: dict[str, str]) -> None:
    result = run(fleet, *flags, env=env)
    assert result.returncode == 0, result.stderr
    assert "hostbatch: INFO hostbatch: Command on 2 host(s)" in result.stderr
    assert "DEBUG" not in result.stderr
