"""Hosts that reset the connection or answer with a garbage banner: each fails as its own
host result, and no SSH library prints a traceback into the user's terminal (paramiko
logs one for each such host through its own logger unless hostbatch routes it)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from tests.fixtures.cli import run_cli


class BadServer:
    """A loopback TCP server: ``garbage`` answers with a non-SSH banner, ``reset`` closes
    with an RST right after accepting."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                if self.kind == "garbage":
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n" * 40)
                else:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def __enter__(self) -> BadServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def bad_servers() -> Iterator[tuple[BadServer, BadServer]]:
    with BadServer("garbage") as garbage, BadServer("reset") as reset:
        yield garbage, reset


@pytest.mark.parametrize("transport", ["paramiko", "asyncssh"])
def test_bad_servers_fail_their_hosts_without_tracebacks(
    bad_servers: tuple[BadServer, BadServer], transport: str
) -> None:
    garbage, reset = bad_servers
    done = run_cli(
        "run",
        "-h",
        f"127.0.0.1:{garbage.port},127.0.0.1:{reset.port}",
        "--ssh-config",
        "",
        "--transport",
        transport,
        "--connect-timeout",
        "3",
        "--no-journal",
        "--",
        "true",
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "Exception (client)" not in done.stderr, done.stderr
    failed = [line for line in done.stderr.splitlines() if " ✗ " in line]
    assert len(failed) == 2, done.stderr
    assert any(f":{garbage.port}" in line for line in failed)
    assert any(f":{reset.port}" in line for line in failed)
