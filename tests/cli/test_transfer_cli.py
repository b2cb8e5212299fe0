"""`hostbatch put/get` and the seed's `batch_scp` from the command line, against real sshd."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hostbatch.testing.sshd import OpenSSHServer
from tests.fixtures.cli import Program, run_cli


@pytest.fixture
def setup(sshd: OpenSSHServer, sshd_remote_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(inventory with groups web_clusters and db_servers, a remote dir the user owns)."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    for group, names in (("web_clusters", ("h1", "h2")), ("db_servers", ("h2", "h3"))):
        (inventory / f"{group}.ini").write_text(
            "".join(
                f"[{name}]\nhostname = 127.0.0.1\nport = {sshd.port}\nusername = {sshd.username}\n"
                f"key_file = {sshd.client_key}\n\n"
                for name in names
            )
        )
    return inventory, sshd_remote_dir


def cli(
    sshd: OpenSSHServer, inventory: Path, program: Program, *args: str
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        *args,
        "-i",
        str(inventory),
        "--known-hosts",
        str(sshd.known_hosts),
        "--ssh-config",
        "",
        program=program,
    )


def test_seed_batch_scp_put_and_get(
    sshd: OpenSSHServer, setup: tuple[Path, Path], tmp_path: Path
) -> None:
    inventory, remote = setup
    local = tmp_path / "test.py"
    local.write_text("print('hi')\n")
    sent = cli(
        sshd,
        inventory,
        "batch_scp",
        "-h",
        "h1",
        "-g",
        "web_clusters,db_servers",
        "-action",
        "put",
        "-local",
        str(local),
        "-remote",
        f"{remote}/",
    )
    assert sent.returncode == 0, sent.stderr
    assert sorted(line.split()[0] for line in sent.stdout.splitlines()) == ["h1", "h2", "h3"]
    assert "3 hosts in" in sent.stderr
    assert (remote / "test.py").read_text() == "print('hi')\n"
    got = cli(
        sshd,
        inventory,
        "batch_scp",
        "-g",
        "db_servers",
        "-action",
        "get",
        "-remote",
        str(remote / "test.py"),
        "-local",
        str(tmp_path / "logs"),
    )
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "logs" / "h2" / "test.py").exists()
    assert (tmp_path / "logs" / "h3" / "test.py").exists()


def test_put_missing_local_file_exit_2_before_connecting(
    sshd: OpenSSHServer, setup: tuple[Path, Path]
) -> None:
    inventory, remote = setup
    result = cli(
        sshd, inventory, "hostbatch", "put", "-g", "web_clusters", "nope.txt", f"{remote}/"
    )
    assert result.returncode == 2
    assert "nope.txt: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_get_missing_remote_exit_1_names_it(
    sshd: OpenSSHServer, setup: tuple[Path, Path], tmp_path: Path
) -> None:
    inventory, remote = setup
    result = cli(
        sshd, inventory, "hostbatch", "get", "-h", "h1", f"{remote}/absent", str(tmp_path / "o")
    )
    assert result.returncode == 1
    assert "h1 ✗ transfer failed:" in result.stderr and "absent: no such file" in result.stderr


def test_put_help_has_examples() -> None:
    result = run_cli("put", "--help", timeout=30)
    assert "Examples:" in result.stdout and "-r" in result.stdout and "--verify" in result.stdout
