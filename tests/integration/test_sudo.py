"""--sudo against a real OpenSSH sshd and a real sudoers entry for its login user:
NOPASSWD to run as ``nobody``, a password to run as root. The password must show up in
no output channel: stdout, stderr, JSON lines, errors, debug logs."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, run
from hostbatch.engine.limits import Limits
from hostbatch.engine.privilege import INCORRECT, MISSING
from hostbatch.models import Command, Credentials, Host, HostResult, Secret, Status, Sudo
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions
from tests.fixtures.cli import run_cli

pytestmark = pytest.mark.sshd
TRANSPORTS = ["asyncssh", "paramiko"]
SUDOERS_DIR = Path("/etc/sudoers.d")


@pytest.fixture(scope="module")
def sudoers(sshd: OpenSSHServer) -> Iterator[str]:
    """A sudoers entry for the login user (checked with visudo -c, removed afterwards);
    yields the user's password."""
    if os.geteuid() != 0 or sshd.password is None:
        pytest.skip("a sudoers entry for the test user needs root")
    if shutil.which("sudo") is None or shutil.which("visudo") is None:
        missing = "sudo is not installed (scripts/setup.sh --with-sshd installs it)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    user = sshd.username
    rules = (
        f"Defaults:{user} lecture=never, timestamp_timeout=0, passwd_tries=3\n"
        f"{user} ALL=(nobody) NOPASSWD: ALL\n"
        f"{user} ALL=(root) ALL\n"
    )
    path = SUDOERS_DIR / f"hostbatch-test-{secrets.token_hex(4)}"
    staged = path.with_name(f".{path.name}")  # sudo ignores names with a dot
    staged.write_text(rules)
    staged.chmod(0o440)
    try:
        subprocess.run(["visudo", "-c", "-q", "-f", str(staged)], check=True, timeout=30)
        staged.rename(path)
        yield sshd.password
    finally:
        staged.unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def hosts(sshd: OpenSSHServer, count: int = 1, **credentials: object) -> list[Host]:
    creds = Credentials(username=sshd.username, key_file=str(sshd.client_key), **credentials)  # type: ignore[arg-type]
    return [Host(f"h{i}", sshd.host, sshd.port, creds) for i in range(1, count + 1)]


def options(sshd: OpenSSHServer, transport: str = "asyncssh", **limits: object) -> RunOptions:
    connect = ConnectOptions(connect_timeout=10, known_hosts=str(sshd.known_hosts))
    return RunOptions(Limits(**limits), connect, transport)  # type: ignore[arg-type]


def assert_secret_absent(password: str, results: dict[str, HostResult]) -> None:
    for result in results.values():
        for channel in (result.stdout, result.stderr, repr(result).encode()):
            assert password.encode() not in channel
        assert b"hostbatch-sudo" not in result.stderr  # the markers are stripped


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sudo_with_password_runs_as_root(sshd: OpenSSHServer, sudoers: str, transport: str) -> None:
    command = Command("id -u; echo to-stderr >&2", sudo=Sudo(password=Secret(sudoers)))
    results = run(command, hosts(sshd, 2), options=options(sshd, transport))
    for result in results.values():
        assert result.ok, (result.error, result.stderr_text)
        assert result.stdout == b"0\n"
        assert result.stderr == b"to-stderr\n"
    assert_secret_absent(sudoers, results)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_password_fails_the_host_without_hanging(
    sshd: OpenSSHServer, sudoers: str, transport: str
) -> None:
    wrong = "not-" + sudoers
    began = time.monotonic()
    command = Command("id -u", sudo=Sudo(password=Secret(wrong)))
    results = run(command, hosts(sshd), options=options(sshd, transport, command_timeout=60))
    assert time.monotonic() - began < 30
    result = results["h1"]
    assert result.status is Status.FAILED
    assert result.error == INCORRECT
    assert b"0\n" not in result.stdout
    assert_secret_absent(wrong, results)


def test_no_password_at_hand_fails_clearly(sshd: OpenSSHServer, sudoers: str) -> None:
    results = run(Command("id -u", sudo=Sudo()), hosts(sshd), options=options(sshd))
    assert results["h1"].status is Status.FAILED
    assert results["h1"].error == MISSING


def test_nopasswd_never_gives_the_password_to_the_command(
    sshd: OpenSSHServer, sudoers: str
) -> None:
    command = Command("id -un; cat", sudo=Sudo(user="nobody", password=Secret(sudoers)))
    results = run(command, hosts(sshd), options=options(sshd))
    assert results["h1"].ok, results["h1"].stderr_text
    assert results["h1"].stdout == b"nobody\n"  # cat read EOF, not the password
    assert_secret_absent(sudoers, results)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stdin_reaches_the_command_after_the_password(
    sshd: OpenSSHServer, sudoers: str, tmp_path: Path, transport: str
) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(2 * 1024 * 1024 + 3))
    command = Command("sha256sum", stdin=str(payload), sudo=Sudo(password=Secret(sudoers)))
    results = run(command, hosts(sshd), options=options(sshd, transport))
    assert results["h1"].ok, results["h1"].stderr_text
    assert results["h1"].stdout_text.split()[0] == hashlib.sha256(payload.read_bytes()).hexdigest()


def test_become_password_env_in_the_inventory(
    sshd: OpenSSHServer, sudoers: str, tmp_path: Path
) -> None:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"[h1]\nhostname = 127.0.0.1\nport = {sshd.port}\nusername = {sshd.username}\n"
        f"key_file = {sshd.client_key}\nbecome_password_env = HB_TEST_SUDO_PW\n"
    )
    common = ("-i", str(inventory), "--ssh-config", "", "--known-hosts", str(sshd.known_hosts))
    env = {"HB_TEST_SUDO_PW": sudoers, "HOSTBATCH_BECOME_PASSWORD": "wrong-" + sudoers}
    done = run_cli(
        "--debug", "run", *common, "-h", "h1", "--sudo", "--json", "--", "id -u", env=env
    )
    assert done.returncode == 0, done.stderr
    assert '"stdout": "0\\n"' in done.stdout
    assert sudoers not in done.stdout + done.stderr


def test_cli_ask_become_pass(sshd: OpenSSHServer, sudoers: str, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"[h1]\nhostname = 127.0.0.1\nport = {sshd.port}\nusername = {sshd.username}\n"
        f"key_file = {sshd.client_key}\n"
    )
    common = ("-i", str(inventory), "--ssh-config", "", "--known-hosts", str(sshd.known_hosts))
    args = ("run", *common, "-h", "h1", "--sudo", "--ask-become-pass")
    good = run_cli("-vv", *args, "--", "id -u", input=sudoers + "\n")
    assert good.returncode == 0, good.stderr
    assert "h1 | 0" in good.stdout
    assert "sudo password:" in good.stderr
    assert sudoers not in good.stdout + good.stderr
    bad = run_cli(*args, "--json", "--", "id -u", input="wrong-" + sudoers + "\n")
    assert bad.returncode == 1
    assert INCORRECT in bad.stdout
    assert "wrong-" + sudoers not in bad.stdout + bad.stderr
    usage = run_cli("run", *common, "-h", "h1", "--ask-become-pass", "--", "id -u")
    assert usage.returncode == 2
    assert usage.stderr.strip() == "hostbatch: error: --ask-become-pass needs --sudo or --sudo-user"


@pytest.mark.parametrize(("user", "expected"), [(None, b"0\n"), ("nobody", b"nobody\n")])
def test_script_under_sudo(
    sshd: OpenSSHServer, sudoers: str, tmp_path: Path, user: str | None, expected: bytes
) -> None:
    script = tmp_path / "who.sh"
    script.write_text('#!/bin/sh\nif [ "$1" = name ]; then id -un; else id -u; fi\n')
    arguments = "name" if user else ""
    sudo = Sudo(user=user, password=Secret(sudoers))
    results = run(
        Command(arguments, script=str(script), sudo=sudo), hosts(sshd), options=options(sshd)
    )
    assert results["h1"].ok, (results["h1"].error, results["h1"].stderr_text)
    assert results["h1"].stdout == expected
