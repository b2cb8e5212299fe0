"""Auth and routing paths users rely on: ssh-agent, ProxyJump, ~/.ssh/config, passphrases."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from hostbatch.api import RunOptions, run, run_async
from hostbatch.engine.limits import Limits
from hostbatch.inventory import load_inventory
from hostbatch.models import Credentials, Host, Secret, Status
from hostbatch.testing import Fleet, FleetThread
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with FleetThread(2) as started:
        yield started


def opts(known_hosts: Path, transport: str = "asyncssh", **connect: object) -> RunOptions:
    options = ConnectOptions(connect_timeout=5, known_hosts=str(known_hosts), **connect)  # type: ignore[arg-type]
    return RunOptions(Limits(), options, transport)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private ssh-agent for this test; its environment (SSH_AUTH_SOCK)."""
    if shutil.which("ssh-agent") is None:
        pytest.fail("ssh-agent is missing (openssh-client)")
    socket = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if socket.exists():
                break
            subprocess.run(["sleep", "0.1"], check=True)
        yield {"SSH_AUTH_SOCK": str(socket)}
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.mark.parametrize("transport", ["asyncssh", "paramiko"])
def test_ssh_agent_auth(
    fleet: Fleet,
    agent: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    transport: str,
) -> None:
    subprocess.run(
        ["ssh-add", str(fleet.client_key)],
        env={**os.environ, **agent},
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSH_AUTH_SOCK", agent["SSH_AUTH_SOCK"])
    monkeypatch.setenv("HOME", str(tmp_path))  # no default keys: only the agent can succeed
    node = fleet.hosts[0]
    host = Host("a", node.address, node.port, Credentials(username=fleet.username))
    result = run("echo via-agent", hosts=[host], options=opts(fleet.known_hosts, transport))["a"]
    assert result.status is Status.OK, result.error
    assert result.stdout == b"via-agent\n"
    no_agent = run(
        "true", hosts=[host], options=opts(fleet.known_hosts, transport, use_agent=False)
    )["a"]
    assert no_agent.status is Status.AUTH_FAILED


def test_encrypted_key_with_passphrase(fleet: Fleet) -> None:
    node = fleet.hosts[0]
    creds = Credentials(
        fleet.username, key_file=str(fleet.client_key_enc), passphrase=Secret(fleet.key_passphrase)
    )
    ok = run(
        "echo k", hosts=[Host("a", node.address, node.port, creds)], options=opts(fleet.known_hosts)
    )["a"]
    assert ok.status is Status.OK, ok.error
    wrong = Credentials(
        fleet.username, key_file=str(fleet.client_key_enc), passphrase=Secret("not-it")
    )
    bad = run(
        "true", hosts=[Host("a", node.address, node.port, wrong)], options=opts(fleet.known_hosts)
    )["a"]
    assert bad.status is Status.AUTH_FAILED
    assert "passphrase" in (bad.error or "") and "not-it" not in (bad.error or "")


def test_proxy_jump_through_real_sshd(fleet: Fleet, sshd: OpenSSHServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts.read_text() + fleet.known_hosts.read_text())
    node = fleet.hosts[1]
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"[bastion]\nhostname = 127.0.0.1\nport = {sshd.port}\nusername = {sshd.username}\n"
        f"key_file = {sshd.client_key}\n\n"
        f"[inner]\nhostname = {node.address}\nport = {node.port}\nusername = {fleet.username}\n"
        f"key_file = {fleet.client_key}\nproxy_jump = bastion\n"
    )
    loaded = load_inventory([inventory], ssh_config=None)
    assert loaded.hosts["inner"].jump is not None
    assert loaded.hosts["inner"].jump.port == sshd.port
    result = run(
        "echo $HOSTBATCH_FLEET_HOST", hosts="inner", inventory=loaded, options=opts(known)
    )["inner"]
    assert result.status is Status.OK, result.error
    assert result.stdout == f"{node.name}\n".encode()


def test_proxy_jump_failure_names_the_jump_host(fleet: Fleet, tmp_path: Path) -> None:
    node = fleet.hosts[0]
    host = Host(
        "inner",
        node.address,
        node.port,
        Credentials(fleet.username, key_file=str(fleet.client_key)),
        jump=Host("127.0.0.1:1", "127.0.0.1", 1, Credentials("x")),
    )
    result = run("true", hosts=[host], options=opts(fleet.known_hosts))["inner"]
    assert result.status is Status.UNREACHABLE
    assert "via jump host 127.0.0.1:1" in (result.error or "")


def test_ssh_config_values_are_used(fleet: Fleet, tmp_path: Path) -> None:
    node = fleet.hosts[0]
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host box\n  HostName {node.address}\n  Port {node.port}\n  User {fleet.username}\n"
        f"  IdentityFile {fleet.client_key}\n"
    )
    loaded = load_inventory([config], ssh_config=None)
    result = run("echo cfg", hosts="box", inventory=loaded, options=opts(fleet.known_hosts))
    assert result["box"].status is Status.OK, result["box"].error


async def test_decrypting_a_key_does_not_stall_other_hosts() -> None:
    """A passphrase-protected key takes bcrypt rounds to decrypt; that must not block the
    event loop (it once starved password hosts past a 1 s connect timeout)."""
    with FleetThread(2) as fleet:  # a fresh fleet: a key file no test has loaded yet
        began = time.perf_counter()
        asyncssh.read_private_key(str(fleet.client_key_enc), fleet.key_passphrase)
        decrypt = time.perf_counter() - began
        first, second = fleet.hosts
        creds = Credentials(
            username=fleet.username,
            key_file=str(fleet.client_key_enc),
            passphrase=Secret(fleet.key_passphrase),
        )
        hosts = [
            Host("keyed", "127.0.0.1", first.port, credentials=creds),
            Host(
                "pw", "127.0.0.1", second.port, Credentials(fleet.username, Secret(fleet.password))
            ),
        ]
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        results = await run_async("true", hosts, options=opts(fleet.known_hosts))
        ticking.cancel()
    assert {name: r.status for name, r in results.items()} == {
        "keyed": Status.OK,
        "pw": Status.OK,
    }
    assert max(gaps) < decrypt / 2, (max(gaps), decrypt)
