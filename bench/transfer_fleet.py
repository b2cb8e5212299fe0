"""The transfer benchmark's fleet: sshd daemons whose every host is its own SFTP chroot.

All hosts are this machine, so each one needs a target directory of its own. Every host
has its own loopback address (``fanout_fleet.address``), and its daemon's config ends with
one block per address::

    Match LocalAddress 127.0.1.1
        ChrootDirectory /var/lib/hostbatch-bench-chroot-XXXX/h0000
        ForceCommand internal-sftp

so a client that writes ``/in/FILE`` on host *i* writes ``.../h000i/in/FILE`` here, for
hostbatch (asyncssh or paramiko SFTP) and OpenSSH ``scp`` alike (9.x ``scp`` speaks SFTP).
sshd requires every component of a chroot path to be root-owned and not writable by group
or others, so the chroots live under ``/var/lib`` (``/tmp`` is world-writable) and this
needs root; ``in/`` inside each is owned by the login user.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import pwd
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from fanout_fleet import ADDRESSES_PER_DAEMON, MAX_STARTUPS, address
from hostbatch.testing.sshd import OpenSSHServer
from sshd_cgroup import SshdCgroup

CHROOT_PARENT = Path("/var/lib")  # root-owned, 0755 all the way up (unlike /tmp)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ChrootFleet:
    """``hosts`` loopback hosts on ``ceil(hosts / 16)`` daemons, one SFTP chroot each."""

    def __init__(self, hosts: int) -> None:
        if os.geteuid() != 0:
            raise SystemExit(
                "bench/transfer.py needs root: sshd's ChrootDirectory must be root-owned, "
                "and it is how every loopback host gets a target directory of its own"
            )
        self.size = hosts
        self.servers: list[OpenSSHServer] = []
        self._stack = contextlib.ExitStack()
        self.base = Path(tempfile.mkdtemp(prefix="hostbatch-bench-chroot-", dir=CHROOT_PARENT))
        self.known_hosts = self.base / "known_hosts"
        self.cgroup = SshdCgroup()

    def __enter__(self) -> Self:
        self._stack.callback(shutil.rmtree, self.base, True)
        try:
            self._stack.enter_context(self.cgroup)  # left after the daemons are stopped
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

    def chroot(self, index: int) -> Path:
        return self.base / f"h{index:04d}"

    def inbox(self, index: int) -> Path:
        """Where host *index*'s ``/in/`` is on this machine."""
        return self.chroot(index) / "in"

    def _match_blocks(self, first: int, last: int) -> list[str]:
        lines: list[str] = []
        for index in range(first, last):
            lines += [
                f"Match LocalAddress {address(index)}",
                f"    ChrootDirectory {self.chroot(index)}",
                "    ForceCommand internal-sftp",
            ]
        return lines

    def _start(self) -> None:
        self.base.chmod(0o755)  # mkdtemp makes it 0700: the login user must get through
        for index in range(self.size):
            self.chroot(index).mkdir(mode=0o755)
            self.inbox(index).mkdir(mode=0o755)
        count, started = math.ceil(self.size / ADDRESSES_PER_DAEMON), time.monotonic()
        for number in range(count):
            first = number * ADDRESSES_PER_DAEMON
            last = min(first + ADDRESSES_PER_DAEMON, self.size)
            server = OpenSSHServer(
                [address(i) for i in range(first, last)],
                max_startups=MAX_STARTUPS,
                extra_config=self._match_blocks(first, last),
            )
            self._stack.enter_context(server)
            self.cgroup.add(server.pid)
            self.servers.append(server)
        print(f"{count} sshd daemons started ({time.monotonic() - started:.1f}s)", file=sys.stderr)
        user = pwd.getpwnam(self.servers[0].username)
        for index in range(self.size):
            os.chown(self.inbox(index), user.pw_uid, user.pw_gid)
        self.known_hosts.write_text("".join(s.known_hosts.read_text() for s in self.servers))

    def targets(self, hosts: int) -> list[dict[str, Any]]:
        """The first *hosts* hosts, as fanout_clients.Target fields."""
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

    @property
    def sshd_cpu_method(self) -> str:
        if self.cgroup.available:
            return f"cgroup cpuacct ({self.cgroup.path}): every sshd process, sessions included"
        return "OpenSSHServer.cpu_seconds(): no cgroup, finished sessions NOT counted"

    def sshd_cpu(self) -> float:
        if self.cgroup.available:
            return self.cgroup.cpu_seconds()
        return sum(server.cpu_seconds() for server in self.servers)

    def check(self, hosts: int, name: str, size: int, digest: str) -> list[tuple[str, str]]:
        """Every host's copy has *size* bytes, nothing else is left, host 0 has *digest*."""
        problems: list[tuple[str, str]] = []
        for index in range(hosts):
            inbox = self.inbox(index)
            copy = inbox / name
            if not copy.is_file():
                problems.append((f"host{index:04d}", f"no {name} in /in/"))
            elif copy.stat().st_size != size:
                problems.append((f"host{index:04d}", f"{copy.stat().st_size} bytes, not {size}"))
            extra = sorted(p.name for p in inbox.iterdir() if p.name != name)
            if extra:
                problems.append((f"host{index:04d}", f"left over in /in/: {extra[:3]}"))
        if not problems and sha256_of(self.inbox(0) / name) != digest:
            problems.append(("host0000", "sha256 differs from the source"))
        return problems

    def clean(self) -> None:
        """Empty every host's ``/in/``."""
        for index in range(self.size):
            for entry in self.inbox(index).iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
