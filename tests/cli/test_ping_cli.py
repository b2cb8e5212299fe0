"""`hostbatch ping` against the fleet's misbehaving hosts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.testing import Fleet, FleetThread
from tests.fixtures.cli import run_cli

BEHAVIOURS = {"node02": "refuse_connect", "node03": "hang_before_banner", "node04": "refuse_auth"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    with FleetThread(5, behaviours=BEHAVIOURS) as started:
        yield started, started.write_inventory(tmp_path_factory.mktemp("p") / "inv", auth="key")


def ping(fleet: tuple[Fleet, Path], *args: str) -> subprocess.CompletedProcess[str]:
    started, inventory = fleet
    return run_cli(
        "ping",
        "-i",
        str(inventory),
        "--known-hosts",
        str(started.known_hosts),
        "--connect-timeout",
        "1",
        "--ssh-config",
        "",
        *args,
    )


def test_ping_json_says_why(fleet: tuple[Fleet, Path]) -> None:
    result = ping(fleet, "--json")
    assert result.returncode == 3
    rows = json.loads(result.stdout)
    status = {r["host"]: r["status"] for r in rows}
    assert status == {
        "node01": "ok",
        "node05": "ok",
        "node02": "refused",
        "node03": "no banner",
        "node04": "auth failed",
    }
    by_host = {r["host"]: r for r in rows}
    assert by_host["node01"]["banner"].startswith("SSH-2.0-")
    assert by_host["node01"]["tcp_ms"] is not None and by_host["node02"]["tcp_ms"] is None
    assert [r["status"] for r in rows][:2] == ["ok", "ok"]  # sorted by status first
    assert "3/5 hosts usable; not usable: node[02-04]" not in result.stderr
    assert "2/5 hosts usable; not usable: node[02-04]" in result.stderr


def test_ping_table_and_exit_0_when_all_usable(fleet: tuple[Fleet, Path]) -> None:
    result = ping(fleet, "-h", "node01,node05")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["HOST", "ADDRESS", "STATUS", "TCP_MS"]
    assert {line.split()[0] for line in lines[1:]} == {"node01", "node05"}
    assert all(" ok " in line for line in lines[1:])
