"""The OpenSSH sshd helper against real clients: OpenSSH's ssh and asyncssh."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from hostbatch.testing.sshd import OpenSSHServer, _descendants, _start_time
from tests.fixtures.sshd import SshdFactory

pytestmark = pytest.mark.sshd


async def _run_echo(server: OpenSSHServer, address: str | None = None, **credentials: Any) -> str:
    """Log in with asyncssh (host key checked against known_hosts) and run echo."""
    options: dict[str, Any] = {
        "username": server.username,
        "known_hosts": str(server.known_hosts),
        "client_keys": None,
        "agent_path": None,
    }
    options.update(credentials)
    async with asyncssh.connect(address or server.host, server.port, **options) as conn:
        result = await conn.run("echo hostbatch", check=True, timeout=30)
    return str(result.stdout)


def _echo(server: OpenSSHServer, address: str | None = None, **credentials: Any) -> str:
    return asyncio.run(_run_echo(server, address, **credentials))


def _ssh(server: OpenSSHServer, *args: str, address: str | None = None) -> str:
    done = subprocess.run(
        server.ssh_command(*args, address=address),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _needs_password(server: OpenSSHServer) -> str:
    if server.password is None:
        pytest.skip("password login needs root (the hostbatch-test user)")
    return server.password


def test_openssh_client_runs_command(sshd: OpenSSHServer) -> None:
    assert _ssh(sshd, "echo", "hi") == "hi\n"


def test_asyncssh_logs_in_with_key(sshd: OpenSSHServer) -> None:
    assert _echo(sshd, client_keys=[str(sshd.client_key)]) == "hostbatch\n"


def test_asyncssh_logs_in_with_passphrase_protected_key(sshd: OpenSSHServer) -> None:
    output = _echo(sshd, client_keys=[str(sshd.client_key_enc)], passphrase=sshd.key_passphrase)
    assert output == "hostbatch\n"


def test_asyncssh_logs_in_with_password(sshd: OpenSSHServer) -> None:
    assert _echo(sshd, password=_needs_password(sshd)) == "hostbatch\n"


def test_wrong_password_is_refused(sshd: OpenSSHServer) -> None:
    password = _needs_password(sshd)
    with pytest.raises(asyncssh.PermissionDenied):
        _echo(sshd, password=password + "-wrong")


def test_known_hosts_lists_every_address_with_the_host_key(sshd: OpenSSHServer) -> None:
    lines = sshd.known_hosts.read_text().splitlines()
    key = " ".join(sshd.host_key_line.split()[:2])
    assert lines == [f"[{address}]:{sshd.port} {key}" for address in sshd.addresses]


def test_other_host_key_is_rejected(sshd: OpenSSHServer, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
        check=True,
        capture_output=True,
    )
    blob = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {blob}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        _echo(sshd, client_keys=[str(sshd.client_key)], known_hosts=str(known_hosts))


def test_second_listen_address(sshd_factory: SshdFactory) -> None:
    server = sshd_factory(addresses=["127.0.0.1", "127.0.1.23"])
    assert server.addresses == ("127.0.0.1", "127.0.1.23")
    assert _ssh(server, "echo", "hi", address="127.0.1.23") == "hi\n"
    key = [str(server.client_key)]
    assert _echo(server, "127.0.1.23", client_keys=key) == "hostbatch\n"


def test_only_loopback_addresses_are_accepted() -> None:
    with pytest.raises(ValueError, match="loopback"):
        OpenSSHServer(addresses=["192.0.2.1"])


def test_cpu_seconds_grows_with_logins(sshd_factory: SshdFactory) -> None:
    server = sshd_factory()
    before = server.cpu_seconds()
    for _ in range(5):
        _ssh(server, "true")
    assert server.cpu_seconds() > before


def test_stop_ends_process_and_frees_port(sshd_factory: SshdFactory) -> None:
    server = sshd_factory(addresses=["127.0.0.1", "127.0.1.24"])
    pid, port, root = server.pid, server.port, server.root
    assert Path(f"/proc/{pid}").exists()
    server.stop()
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not root.exists()
    for address in ("127.0.0.1", "127.0.1.24"):
        with socket.socket() as sock:
            # SO_REUSEADDR as sshd sets it: binding still fails while anyone listens
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen()
    server.stop()  # a second stop is harmless


def _runs_sleep(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0060\x00"
    except OSError:
        return False


async def _stop_during_session(server: OpenSSHServer) -> tuple[float, list[int]]:
    async with asyncssh.connect(
        server.host,
        server.port,
        username=server.username,
        known_hosts=str(server.known_hosts),
        client_keys=[str(server.client_key)],
        agent_path=None,
    ) as conn:
        process = await conn.create_process("sleep 60")
        deadline = time.monotonic() + 30  # until the command runs under sshd
        while not any(_runs_sleep(pid) for pid in _descendants(server.pid)):
            assert time.monotonic() < deadline, "the session's command never started"
            await asyncio.sleep(0.02)
        sessions = _descendants(server.pid)
        started = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - started
        await process.wait_closed()
    return elapsed, sessions


def test_stop_ends_open_sessions(sshd_factory: SshdFactory) -> None:
    server = sshd_factory()
    elapsed, sessions = asyncio.run(_stop_during_session(server))
    assert sessions, "the session should have started processes under sshd"
    assert elapsed < 5
    assert not [pid for pid in sessions if _start_time(pid) is not None]


def test_start_retries_when_the_port_is_taken(
    sshd_factory: SshdFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hostbatch.testing import sshd as sshd_module

    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.1.25", 0))
        busy.listen()
        taken = int(busy.getsockname()[1])
        choices = iter([taken])
        real_free_port = sshd_module._free_port
        monkeypatch.setattr(
            sshd_module,
            "_free_port",
            lambda addresses: next(choices, None) or real_free_port(addresses),
        )
        server = sshd_factory(addresses=["127.0.0.1", "127.0.1.25"])
        assert server.port != taken
        assert _ssh(server, "echo", "hi", address="127.0.1.25") == "hi\n"
