"""Adaptive admission of connection starts against real OpenSSH servers that throttle
with MaxStartups, and which failures are (never) retried."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, run
from hostbatch.engine.limits import Limits
from hostbatch.models import Credentials, Event, Host, Status, Throttled
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions
from tests.fixtures.cli import run_cli
from tests.fixtures.sshd import SshdFactory

LOG_DEADLINE = 15.0  # seconds for sshd's log line of a finished connection

pytestmark = pytest.mark.sshd

THROTTLED = "10:30:100"  # OpenSSH's default MaxStartups


def login_host(server: OpenSSHServer, name: str, **fields: object) -> Host:
    creds = Credentials(server.username, key_file=str(server.client_key))
    return Host(name, server.host, server.port, creds, **fields)  # type: ignore[arg-type]


def options(known: Path, connect_timeout: float = 20, **limits: object) -> RunOptions:
    connect = ConnectOptions(connect_timeout=connect_timeout, known_hosts=str(known))
    return RunOptions(Limits(**limits), connect)  # type: ignore[arg-type]


def dropped_by_sshd(server: OpenSSHServer) -> int:
    """Connections sshd dropped for MaxStartups (logged at LogLevel VERBOSE)."""
    return server.log_text().count("past MaxStartups")


def test_300_hosts_behind_one_address_all_ok(sshd_factory: SshdFactory) -> None:
    server = sshd_factory(max_startups=THROTTLED, log_level="VERBOSE")
    hosts = [login_host(server, f"h{i:03}") for i in range(300)]
    throttled: list[Throttled] = []

    def keep(event: Event) -> None:
        if isinstance(event, Throttled):
            throttled.append(event)

    results = run("true", hosts=hosts, options=options(server.known_hosts), on_event=keep)
    failed = {name: r.error for name, r in results.items() if not r.ok}
    assert not failed, list(failed.items())[:3]
    assert server.log_text().count("Accepted publickey for ") == 300
    assert dropped_by_sshd(server) > 0, "the server never throttled: the test shows nothing"
    [report] = throttled
    assert report.address == f"{server.host}:{server.port}"
    assert report.dropped == dropped_by_sshd(server)
    assert 1 <= report.settled <= 64


def test_200_hosts_behind_a_throttling_bastion(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    bastion = sshd_factory(max_startups=THROTTLED)
    target = sshd_factory(max_startups=THROTTLED)
    known = tmp_path / "known_hosts"
    known.write_text(bastion.known_hosts.read_text() + target.known_hosts.read_text())
    jump = login_host(bastion, "bastion1")
    hosts = [login_host(target, f"h{i:03}", jump=jump) for i in range(200)]
    results = run("echo $SSH_CLIENT", hosts=hosts, options=options(known))
    failed = {name: r.error for name, r in results.items() if not r.ok}
    assert not failed, list(failed.items())[:3]
    assert 1 <= bastion.log_text().count("Accepted publickey for ") <= 2
    assert target.log_text().count("Accepted publickey for ") == 200
    # every host came through the bastion: the target saw the bastion's end of a tunnel
    assert all(r.stdout.startswith(b"127.0.0.1 ") for r in results.values())


def test_cli_summary_says_the_server_throttled(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    server = sshd_factory(max_startups="2:50:6", log_level="VERBOSE")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"[DEFAULT]\nhostname = {server.host}\nport = {server.port}\n"
        f"username = {server.username}\nkey_file = {server.client_key}\n\n"
        + "".join(f"[n{i:02}]\n" for i in range(40))
    )
    done = run_cli(
        "run", "-i", str(inventory), "-h", "all", "--ssh-config", "",
        "--known-hosts", str(server.known_hosts), "--", "true",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert dropped_by_sshd(server) > 0
    prefix = f"throttled by server at {server.host}:{server.port}: start concurrency settled at "
    [line] = [line for line in done.stderr.splitlines() if line.startswith(prefix)]
    assert "starts dropped and retried" in line


def test_auth_failure_is_never_retried(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    server, other = sshd_factory(), sshd_factory()
    wrong = Credentials(server.username, key_file=str(other.client_key))
    host = Host("h", server.host, server.port, wrong)
    result = run("true", hosts=[host], options=options(server.known_hosts, connect_retries=3))["h"]
    assert result.status is Status.AUTH_FAILED
    refused = "Connection closed by authenticating user"
    # sshd writes the line as its pre-auth process ends, possibly after run() returned
    deadline = time.monotonic() + LOG_DEADLINE
    while refused not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.log_text().count(refused) == 1


@contextlib.contextmanager
def silent_listener() -> Iterator[socket.socket]:
    """A port that completes TCP handshakes and never says anything (no banner)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener


def accepted(listener: socket.socket) -> int:
    """Connections that reached *listener* (waiting in its backlog, closed or not)."""
    listener.setblocking(False)
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            listener.accept()[0].close()
            count += 1
    return count


@pytest.mark.parametrize("retries", [0, 2])
def test_a_host_hanging_before_its_banner_is_retried_only_under_retries(
    retries: int, tmp_path: Path
) -> None:
    with silent_listener() as listener:
        host = Host("hang", "127.0.0.1", listener.getsockname()[1], Credentials("x"))
        known = tmp_path / "known_hosts"
        plan = options(known, connect_timeout=0.3, connect_retries=retries, retry_backoff=0.01)
        result = run("true", hosts=[host], options=plan)["hang"]
        assert result.status is Status.UNREACHABLE
        assert "no SSH handshake within 0.3s" in (result.error or "")
        assert accepted(listener) == 1 + retries


def test_a_refusal_is_never_retried(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        host = Host("closed", "127.0.0.1", port, Credentials("x"))
        plan = options(tmp_path / "known_hosts", connect_retries=3, retry_backoff=30)
        result = run("true", hosts=[host], options=plan)["closed"]
    # three retries would have waited at least 15 s (30 s backoff, jitter 0.5-1)
    assert result.status is Status.UNREACHABLE
    assert result.error == f"connection refused (127.0.0.1:{port})"
    assert result.elapsed < 10
