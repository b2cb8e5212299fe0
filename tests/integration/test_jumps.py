"""Shared jump-host connections against real OpenSSH servers: one login per jump host
(per channel budget), multi-hop ProxyJump, failures that name the jump host."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, run, run_async
from hostbatch.engine.limits import Limits
from hostbatch.inventory import load_inventory
from hostbatch.models import Credentials, Event, Host, HostResult, OutputChunk, Secret, Status
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions
from tests.fixtures.sshd import SshdFactory

pytestmark = pytest.mark.sshd

THROTTLED = "10:30:100"  # OpenSSH's default MaxStartups


def logins(server: OpenSSHServer) -> int:
    return server.log_text().count("Accepted publickey for ")


def login_host(server: OpenSSHServer, name: str, **fields: object) -> Host:
    creds = Credentials(server.username, key_file=str(server.client_key))
    return Host(name, server.host, server.port, creds, **fields)  # type: ignore[arg-type]


def known_hosts(tmp_path: Path, *servers: OpenSSHServer) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text("".join(s.known_hosts.read_text() for s in servers))
    return path


def options(known: Path, **limits: object) -> RunOptions:
    return RunOptions(Limits(**limits), ConnectOptions(connect_timeout=20, known_hosts=str(known)))  # type: ignore[arg-type]


def test_channel_budget_opens_another_connection(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    bastion = sshd_factory()
    jump = login_host(bastion, "bastion1")
    hosts = [login_host(bastion, f"h{i}", jump=jump) for i in range(12)]
    known = known_hosts(tmp_path, bastion)
    results = run("sleep 0.3", hosts=hosts, options=options(known, jump_channels=5))
    assert all(r.ok for r in results.values()), [r.error for r in results.values()]
    # 12 hosts at once over connections of 5 channels: 3 jump logins, plus 12 targets
    assert logins(bastion) == 3 + 12


def test_two_bastions_two_connections(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    first, second = sshd_factory(), sshd_factory()
    target = sshd_factory()
    jumps = [login_host(first, "bastion1"), login_host(second, "bastion2")]
    hosts = [login_host(target, f"h{i:02}", jump=jumps[i % 2]) for i in range(40)]
    known = known_hosts(tmp_path, first, second, target)
    results = run("true", hosts=hosts, options=options(known))
    assert all(r.ok for r in results.values()), [r.error for r in results.values()]
    assert (logins(first), logins(second), logins(target)) == (1, 1, 40)


def test_bastion_refusing_auth_fails_its_hosts_only(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    bastion, target = sshd_factory(), sshd_factory()
    wrong = Credentials(bastion.username, key_file=str(target.client_key))  # not authorized
    jump = Host("bastion1", bastion.host, bastion.port, wrong)
    behind = [login_host(target, f"b{i}", jump=jump) for i in range(20)]
    direct = [login_host(target, f"d{i}") for i in range(3)]
    known = known_hosts(tmp_path, bastion, target)
    results = run("true", hosts=behind + direct, options=options(known))
    for host in behind:
        result = results[host.name]
        assert result.status is Status.AUTH_FAILED
        assert result.error == "via jump host bastion1: authentication failed (offered: key)"
    assert all(results[h.name].ok for h in direct)
    # one login attempt at the bastion for all 20 hosts, not one each
    assert bastion.log_text().count("Connection closed by authenticating user") <= 1
    assert (
        bastion.log_text().count("Failed publickey")
        + bastion.log_text().count("Connection closed by authenticating")
        >= 1
    )


def test_bastion_host_key_is_checked(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    bastion, target = sshd_factory(), sshd_factory()
    jump = login_host(bastion, "bastion1")
    hosts = [login_host(target, f"h{i}", jump=jump) for i in range(5)]
    known = known_hosts(tmp_path, target)  # the bastion's key is not known
    results = run("true", hosts=hosts, options=options(known))
    for result in results.values():
        assert result.status is Status.HOSTKEY
        assert (result.error or "").startswith("via jump host bastion1: host key for ")
    assert logins(bastion) == 0 and logins(target) == 0


def test_multi_hop_proxy_jump_from_inventory(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    first, second, target = sshd_factory(), sshd_factory(), sshd_factory()
    inventory = tmp_path / "hosts.ini"
    sections = [
        f"[{name}]\nhostname = {s.host}\nport = {s.port}\nusername = {s.username}\n"
        f"key_file = {s.client_key}\n"
        for name, s in (("hopa", first), ("hopb", second))
    ]
    sections += [
        f"[t{i}]\nhostname = {target.host}\nport = {target.port}\n"
        f"username = {target.username}\nkey_file = {target.client_key}\n"
        "proxy_jump = hopa,hopb\n"
        for i in range(10)
    ]
    inventory.write_text("\n".join(sections))
    loaded = load_inventory([inventory], ssh_config=None)
    chain = loaded.hosts["t0"].jump_chain
    assert [hop.name for hop in chain] == ["hopa", "hopb"]
    known = known_hosts(tmp_path, first, second, target)
    results = run("echo ok", hosts="t*", inventory=loaded, options=options(known))
    assert len(results) == 10
    assert all(r.stdout == b"ok\n" for r in results.values()), [r.error for r in results.values()]
    assert (logins(first), logins(second), logins(target)) == (1, 1, 10)


def test_password_is_not_in_a_jump_error(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    bastion, target = sshd_factory(), sshd_factory()
    if bastion.password is None:
        pytest.skip("password login needs root (the hostbatch-test user)")
    secret = "jump-" + bastion.password[::-1]
    jump = Host(
        "bastion1", bastion.host, bastion.port, Credentials(bastion.username, Secret(secret))
    )
    hosts = [login_host(target, "h1", jump=jump)]
    result = run("true", hosts=hosts, options=options(known_hosts(tmp_path, bastion, target)))["h1"]
    assert result.status is Status.AUTH_FAILED
    assert "bastion1" in (result.error or "") and secret not in (result.error or "")


async def _stop_bastion_mid_run(
    bastion: OpenSSHServer, hosts: list[Host], known: Path
) -> dict[str, HostResult]:
    started: list[str] = []

    def seen(event: Event) -> None:
        if isinstance(event, OutputChunk):
            started.append(event.host)

    task = asyncio.create_task(
        run_async("echo up; sleep 30", hosts=hosts, options=options(known, fanout=4), on_event=seen)
    )
    deadline = time.monotonic() + 20
    while len(started) < 4 and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.02)
    assert len(started) == 4
    await asyncio.to_thread(bastion.stop)
    return await asyncio.wait_for(task, 20)


def test_bastion_dropping_mid_run_fails_its_hosts(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    bastion, target = sshd_factory(), sshd_factory()
    jump = login_host(bastion, "bastion1")
    hosts = [login_host(target, f"h{i}", jump=jump) for i in range(8)]
    known = known_hosts(tmp_path, bastion, target)
    results = asyncio.run(_stop_bastion_mid_run(bastion, hosts, known))
    running = [r for r in results.values() if r.stdout == b"up\n"]
    waiting = [r for r in results.values() if r.stdout == b""]
    assert len(running) == 4 and len(waiting) == 4
    for result in running:
        assert result.status is Status.DROPPED
        assert "the connection to jump host bastion1 was lost" in (result.error or "")
    for result in waiting:
        assert result.status is Status.DROPPED
        assert result.error == "via jump host bastion1: connection to it was lost"
