"""--dry-run prints the plan with masked credentials and connects to nothing."""

from __future__ import annotations

import json
import pickle
import select
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.models import Secret
from tests.fixtures.cli import run_cli

PASSWORD = "inventory-pw-4242"
ENV_PASSWORD = "env-pw-31337"
ENABLE = "enable-7777-secret"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener on loopback that never accepts: a connection attempt stays queued."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock


def attempted(sock: socket.socket) -> bool:
    """True when a client connected (its connection waits in the accept queue)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def inventory_for(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "inventory.ini"
    path.write_text(
        f"[web01]\nhostname = 127.0.0.1\nport = {port}\nusername = deploy\n"
        "password_env = WEB_PW\nproxy_jump = hop@127.0.0.1:" + str(port) + "\n\n"
        f"[db01]\nhostname = 127.0.0.1\nport = {port}\npassword = {PASSWORD}\n"
        "key_file = /keys/id_db\n\n"
        f"[sw01]\nhostname = 127.0.0.1\nport = {port}\ndevice_type = cisco_ios\n"
        f"password = {PASSWORD}\nsecret = {ENABLE}\n"
    )
    path.chmod(0o600)
    return path


def dry(tmp_path: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    inventory = inventory_for(tmp_path, port)
    return run_cli(
        *args[:1], "-i", str(inventory), "--ssh-config", "", "--connect-timeout", "1",
        *args[1:], env={"WEB_PW": ENV_PASSWORD},
    )  # fmt: skip


def test_run_dry_run_plan_masks_and_connects_nothing(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    result = dry(tmp_path, port, "run", "-h", f"all,ops@127.0.0.1:{port}", "--dry-run", "--", "id")
    assert result.returncode == 0, result.stderr
    assert not attempted(listener)
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert result.stdout.splitlines()[0] == "plan: run 'id'"
    assert f"jump hop@127.0.0.1:{port}" not in rows["web01"]  # the column, not a phrase
    assert f"hop@127.0.0.1:{port}" in rows["web01"]
    assert "password ******** (password_env WEB_PW)" in rows["web01"]
    assert "key /keys/id_db; password ******** (inventory " in rows["db01"]
    assert "netmiko (cisco_ios)" in rows["sw01"]
    assert "enable secret ******** (inventory " in rows["sw01"]
    assert "ssh-agent / default keys" in rows[f"ops@127.0.0.1:{port}"]
    assert "nothing was connected" in result.stderr
    for secret in (PASSWORD, ENV_PASSWORD, ENABLE):
        assert secret not in result.stdout + result.stderr


def test_run_dry_run_json_and_ask_pass(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    inventory = tmp_path / "hosts.txt"
    inventory.write_text(f"127.0.0.1:{port}\n")
    result = run_cli(
        "run", "--hostfile", str(inventory), "--ask-pass", "--dry-run", "--json", "--", "id",
        input="typed-pw-5150\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not attempted(listener)
    plan = json.loads(result.stdout)
    assert plan["operation"] == "run 'id'"
    assert plan["hosts"][0]["auth"] == ["password ******** (--ask-pass)"]
    assert plan["hosts"][0]["source"] == f"{inventory}:1"
    assert "typed-pw-5150" not in result.stdout + result.stderr


@pytest.mark.parametrize("direction", ["put", "get"])
def test_transfer_dry_run_connects_nothing(
    tmp_path: Path, listener: socket.socket, direction: str
) -> None:
    port = listener.getsockname()[1]
    local = tmp_path / "app.conf"
    local.write_text("x\n")
    paths = [str(local), "/tmp/"] if direction == "put" else ["/etc/hosts", str(tmp_path / "out")]
    result = dry(tmp_path, port, direction, "-h", "web01,db01", "--dry-run", *paths)
    assert result.returncode == 0, result.stderr
    assert not attempted(listener)
    assert result.stdout.startswith(f"plan: {direction} {paths[0]} -> {paths[1]}\n")
    assert not (tmp_path / "out").exists()  # a dry get creates no local folder
    assert ENV_PASSWORD not in result.stdout and PASSWORD not in result.stdout


def test_without_dry_run_the_listener_sees_the_attempt(
    tmp_path: Path, listener: socket.socket
) -> None:
    """The check above can fail: the same run without --dry-run does connect."""
    port = listener.getsockname()[1]
    result = dry(tmp_path, port, "run", "-h", "web01", "--", "id")
    assert result.returncode == 3  # the listener never answers: no banner within 1 s
    assert attempted(listener)


def test_secret_origin_survives_pickling_and_never_shows_the_value() -> None:
    secret = pickle.loads(pickle.dumps(Secret("v4lue", origin="password_env X")))
    assert (secret.reveal(), secret.origin) == ("v4lue", "password_env X")
    assert "v4lue" not in repr(secret) + str(secret)


def test_run_dry_run_shows_the_workflow_masked(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\necho ok\n")
    result = run_cli(
        "run", "-h", f"127.0.0.1:{port}", "--ssh-config", "", "--dry-run", "--script",
        str(script), "--env", "RELEASE=rel-value-9931", "--sudo-user", "app", "--batch", "2", "--",
        "--quick", env={"HOSTBATCH_BECOME_PASSWORD": "sudo-pw-8080"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not attempted(listener)
    assert result.stdout.splitlines()[0] == (
        f"plan: script {script} --quick; env RELEASE; sudo as app; "
        "sudo password ******** ($HOSTBATCH_BECOME_PASSWORD)"
    )
    assert ", batches of 2," in result.stderr
    assert "sudo-pw-8080" not in result.stdout + result.stderr
    assert "rel-value-9931" not in result.stdout  # variables by name only
    bad = run_cli("run", "-h", f"127.0.0.1:{port}", "--dry-run", "--env", "NOEQUALS", "--", "id")
    assert bad.returncode == 2 and "--env takes NAME=VALUE" in bad.stderr
    assert not attempted(listener)
