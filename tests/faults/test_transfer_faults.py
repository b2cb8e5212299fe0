"""Faults users hit in transfers and output, against real servers (the in-process fleet
and a real OpenSSH sshd): colliding host directories, endless output without newlines,
endless remote files, stale temporaries of killed puts, malformed known_hosts lines."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, get, run
from hostbatch.engine.limits import Limits
from hostbatch.logs import logger
from hostbatch.models import Credentials, Event, Host, OutputChunk
from hostbatch.output.live import LiveRenderer
from hostbatch.testing import Fleet, FleetThread
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with FleetThread(2) as started:
        yield started


def _fleet_host(fleet: Fleet, name: str, index: int = 0) -> Host:
    node = fleet.hosts[index]
    credentials = Credentials(fleet.username, key_file=str(fleet.client_key))
    return Host(name, node.address, node.port, credentials)


def _fleet_options(fleet: Fleet) -> RunOptions:
    return RunOptions(
        Limits(), ConnectOptions(connect_timeout=5, known_hosts=str(fleet.known_hosts))
    )


def test_get_from_hosts_named_alike_keeps_both(fleet: Fleet, tmp_path: Path) -> None:
    for index, node in enumerate(fleet.hosts):
        (node.root / "id.txt").write_text(f"host {index}")
    hosts = [_fleet_host(fleet, "a/b", 0), _fleet_host(fleet, "a_b", 1)]
    out = tmp_path / "out"
    results = get("id.txt", out, hosts=hosts, options=_fleet_options(fleet))
    assert all(r.ok for r in results.values()), results
    assert (out / "a%2Fb" / "id.txt").read_text() == "host 0"
    assert (out / "a_b" / "id.txt").read_text() == "host 1"
    assert sorted(p.name for p in out.iterdir()) == ["a%2Fb", "a_b"]


def test_megabytes_without_a_newline_are_held_at_most_the_cap(fleet: Fleet) -> None:
    out = io.StringIO()
    render = LiveRenderer(out, io.StringIO(), width=1)
    held: list[int] = []
    received = 0

    def sink(event: Event) -> None:
        nonlocal received
        render(event)
        if isinstance(event, OutputChunk):
            received += len(event.data)
            held.append(sum(map(len, render.partial.values())))

    size = 20 * 1024 * 1024
    command = f"head -c {size} /dev/zero | tr '\\0' x"
    result = run(
        command, hosts=[_fleet_host(fleet, "h")], options=_fleet_options(fleet), on_event=sink
    )["h"]
    assert result.ok, result.error
    assert received == size and held and max(held) <= render.cap
    lines = out.getvalue().split("\n")[:-1]
    assert len(lines) == -(-size // render.cap)
    assert sum(len(line) - len("h | ") for line in lines) == size


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    """Warnings of the ``hostbatch`` logger during the test."""
    handler = _Records()
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.WARNING
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("transport", ["asyncssh", "paramiko"])
def test_malformed_known_hosts_lines_are_skipped_with_one_warning_each(
    sshd: OpenSSHServer, tmp_path: Path, transport: str, warnings_logged: list[str]
) -> None:
    known_hosts = tmp_path / "known_hosts"
    bad = ["single-field", "@bogus-marker 127.0.0.9 ssh-ed25519 AAAA", "|1|x|y ssh-ed25519 AAAA"]
    known_hosts.write_text("\n".join([*bad, sshd.known_hosts.read_text().strip(), ""]))
    credentials = Credentials(sshd.username, key_file=str(sshd.client_key))
    hosts = [Host(f"h{i}", sshd.host, sshd.port, credentials) for i in range(2)]
    connect = ConnectOptions(connect_timeout=5, known_hosts=str(known_hosts))
    options = RunOptions(Limits(), connect, transport=transport)
    for _ in range(2):
        results = run("echo in", hosts=hosts, options=options)
        assert all(r.ok and r.stdout == b"in\n" for r in results.values()), results
    skipped = [m for m in warnings_logged if "skipping malformed known_hosts line" in m]
    assert sorted(m.split(": ", 1)[0] for m in skipped) == [f"{known_hosts}:{n}" for n in (1, 2, 3)]
