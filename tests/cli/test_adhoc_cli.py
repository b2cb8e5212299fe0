"""Hosts without an inventory: -h addresses, --hostfile, -h - (a real fleet on loopback)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.testing import Fleet, FleetThread
from tests.fixtures.cli import cli_argv, cli_env

ROOT = Path(__file__).resolve().parents[2]
DEMO_INVENTORY = ROOT / "examples" / "inventory"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with FleetThread(3) as started:
        yield started


def in_empty_dir(
    tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """hostbatch run from a folder with no inventory, $HOME without one either."""
    return subprocess.run(
        cli_argv(*args),
        cwd=tmp_path,
        env=cli_env({"HOME": str(tmp_path)}),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ssh_config_for(fleet: Fleet, path: Path) -> Path:
    """User and key for 127.0.0.1 come from this file, as from ~/.ssh/config."""
    path.write_text(f"Host 127.0.0.1\n  User {fleet.username}\n  IdentityFile {fleet.client_key}\n")
    return path


def test_run_on_addresses_without_any_inventory(fleet: Fleet, tmp_path: Path) -> None:
    first, second = fleet.host("node01"), fleet.host("node02")
    config = ssh_config_for(fleet, tmp_path / "ssh_config")
    terms = f"127.0.0.1:{first.port},{fleet.username}@127.0.0.1:{second.port}"
    result = in_empty_dir(
        tmp_path, "run", "-h", terms, "--ssh-config", str(config),
        "--known-hosts", str(fleet.known_hosts), "--", "echo", "hi",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = {tuple(part.strip() for part in line.split("|")) for line in result.stdout.splitlines()}
    assert lines == {
        (f"127.0.0.1:{first.port}", "hi"),
        (f"{fleet.username}@127.0.0.1:{second.port}", "hi"),
    }


def test_hostfile_and_stdin_add_hosts(fleet: Fleet, tmp_path: Path) -> None:
    config = ssh_config_for(fleet, tmp_path / "ssh_config")
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text(f"# lab\n\n127.0.0.1:{fleet.host('node01').port}  # first\n")
    result = in_empty_dir(
        tmp_path, "run", "--hostfile", str(hostfile), "-h", "-", "--ssh-config", str(config),
        "--known-hosts", str(fleet.known_hosts), "--json", "--", "hostname",
        stdin=f"127.0.0.1:{fleet.host('node03').port}\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    hosts = sorted(line.split('"host": "')[1].split('"')[0] for line in result.stdout.splitlines())
    ports = sorted(str(fleet.host(n).port) for n in ("node01", "node03"))
    assert hosts == [f"127.0.0.1:{port}" for port in ports]


def test_bad_hostfile_line_names_file_and_line(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text("127.0.0.1\n\nweb01:ssh\n")
    result = in_empty_dir(tmp_path, "hosts", "--hostfile", str(hostfile))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"hostbatch: error: {hostfile}:3: bad host 'web01:ssh': port 'ssh' is not a number"
    )
    missing = in_empty_dir(tmp_path, "hosts", "--hostfile", "nope.txt")
    assert missing.returncode == 2
    assert "nope.txt: cannot read host file" in missing.stderr
    assert "Traceback" not in missing.stderr + result.stderr


def test_bare_word_without_inventory_still_needs_one(tmp_path: Path) -> None:
    result = in_empty_dir(tmp_path, "hosts", "-h", "127.0.0.1,web01")
    assert result.returncode == 2
    assert "hostbatch: error: no inventory found" in result.stderr


def test_typo_of_inventory_name_is_not_an_adhoc_host(tmp_path: Path) -> None:
    args = ("hosts", "-i", str(DEMO_INVENTORY), "--ssh-config", "")
    result = in_empty_dir(tmp_path, *args, "-h", "web0l")
    assert result.returncode == 2
    assert "unknown host 'web0l'; did you mean" in result.stderr
    assert "'web01'" in result.stderr
    mixed = in_empty_dir(tmp_path, *args, "-h", "web01,deploy@127.0.0.9:2200", "--json")
    assert mixed.returncode == 0, mixed.stderr
    assert '"name": "web01"' in mixed.stdout
    assert '"name": "deploy@127.0.0.9:2200"' in mixed.stdout
    assert '"port": 2200' in mixed.stdout


def test_ask_pass_and_stdin_hosts_conflict(tmp_path: Path) -> None:
    result = in_empty_dir(tmp_path, "hosts", "-h", "-", "--ask-pass", stdin="127.0.0.1\n")
    assert result.returncode == 2
    assert "--ask-pass cannot prompt there" in result.stderr
