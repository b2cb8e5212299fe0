"""The benchmark's fleet: real OpenSSH sshd daemons on many distinct loopback addresses.

Host *i* lives on its own address ``127.0.X.Y`` (all of 127.0.0.0/8 is loopback on Linux),
so every host looks distinct to the client. One sshd can listen on at most 16 sockets
(OpenSSH's ``MAX_LISTEN_SOCKS``), so the fleet starts ``ceil(N / 16)`` daemons for N hosts.
All daemons' known_hosts lines go into one file, checked strictly by every client.
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hostbatch.testing.sshd import OpenSSHServer
from sshd_cgroup import SshdCgroup

ADDRESSES_PER_DAEMON = 16  # OpenSSH sshd's MAX_LISTEN_SOCKS
MAX_STARTUPS = "4000:30:8000"  # never refuse the benchmark's burst of handshakes


def address(index: int) -> str:
    """Loopback address of host *index*: 127.0.1.1, 127.0.1.2, ... (never 127.0.0.1)."""
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


class Fleet:
    """``daemons`` sshd processes covering ``hosts`` loopback addresses."""

    def __init__(self, hosts: int) -> None:
        self.size = hosts
        self.servers: list[OpenSSHServer] = []
        self._stack = contextlib.ExitStack()
        self._tmp = Path(tempfile.mkdtemp(prefix="hostbatch-bench-"))
        self.known_hosts = self._tmp / "known_hosts"
        # OpenSSHServer.cpu_seconds() misses finished sessions (the privsep monitor does
        # not reap them); a cgroup counts every sshd process (see sshd_cgroup.py).
        self.cgroup = SshdCgroup()

    def __enter__(self) -> Self:
        self._stack.callback(self._cleanup)
        self._stack.enter_context(self.cgroup)  # left after the daemons are stopped
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _start(self) -> None:
        count = math.ceil(self.size / ADDRESSES_PER_DAEMON)
        started = time.monotonic()
        for number in range(count):
            first = number * ADDRESSES_PER_DAEMON
            last = min(first + ADDRESSES_PER_DAEMON, self.size)
            server = OpenSSHServer(
                [address(i) for i in range(first, last)], max_startups=MAX_STARTUPS
            )
            self._stack.enter_context(server)
            self.cgroup.add(server.pid)
            self.servers.append(server)
            print(f"\rstarting sshd daemons: {number + 1}/{count}", end="", file=sys.stderr)
        print(f" ({time.monotonic() - started:.1f}s)", file=sys.stderr)
        self.known_hosts.write_text("".join(s.known_hosts.read_text() for s in self.servers))

    def _cleanup(self) -> None:
        self.known_hosts.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._tmp.rmdir()

    def servers_for(self, hosts: int) -> list[OpenSSHServer]:
        """The daemons that serve the first *hosts* hosts."""
        return self.servers[: math.ceil(hosts / ADDRESSES_PER_DAEMON)]

    def targets(self, hosts: int) -> list[dict[str, Any]]:
        """The first *hosts* hosts, as fanout_clients.Target fields."""
        if hosts > self.size:
            raise ValueError(f"the fleet has {self.size} hosts, not {hosts}")
        result = []
        for index in range(hosts):
            server = self.servers[index // ADDRESSES_PER_DAEMON]
            result.append(
                {
                    "name": f"host{index:04d}",
                    "hostname": address(index),
                    "port": server.port,
                    "username": server.username,
                    "key_file": str(server.client_key),
                }
            )
        return result

    def sshd_cpu(self, hosts: int) -> float:
        """CPU seconds used so far by the daemons (all of them, from the cgroup; without
        one, those serving the first *hosts* hosts, finished sessions not counted)."""
        if self.cgroup.available:
            return self.cgroup.cpu_seconds()
        return sum(server.cpu_seconds() for server in self.servers_for(hosts))
