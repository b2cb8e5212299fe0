"""Exact CPU of the benchmark's sshd daemons and everything they start, via a cgroup.

``OpenSSHServer.cpu_seconds()`` adds up the listener and its live descendants, including
``cutime``/``cstime`` of children that were reaped. OpenSSH's privilege-separation monitor
does not reap the post-authentication session process (it exits when that child closes
its socket), so a finished session's CPU -- the cipher, SFTP server, shell -- is lost: on
this machine one 500 MiB scp upload showed 0.05 s there against 2 s per-process. The
sessions of a transfer benchmark are exactly that CPU.

A cgroup counts every task in it, reaped or not. :class:`SshdCgroup` creates a cgroup v1
``cpuacct`` group (``/sys/fs/cgroup/cpuacct/hostbatch-bench-PID``), moves the listeners
into it (children inherit it), reads ``cpuacct.usage`` and removes the group at the end.
Where no writable cpuacct hierarchy exists it is not :attr:`available` and callers fall
back to ``cpu_seconds()`` (saying so in the report).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Self

CPUACCT = Path("/sys/fs/cgroup/cpuacct")


class SshdCgroup:
    def __init__(self) -> None:
        self.path = CPUACCT / f"hostbatch-bench-{os.getpid()}"
        self.available = False

    def __enter__(self) -> Self:
        try:
            self.path.mkdir()
            self.available = (self.path / "cpuacct.usage").exists()
        except OSError:
            self.available = False
        return self

    def add(self, pid: int) -> None:
        """Move *pid* (a listener: before it has children) into the group."""
        if self.available:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def cpu_seconds(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.path.exists():
            return
        for _ in range(50):  # the daemons were stopped first; stragglers go to the root
            with contextlib.suppress(OSError):
                self.path.rmdir()
                return
            with contextlib.suppress(OSError):
                for pid in (self.path / "cgroup.procs").read_text().split():
                    (CPUACCT / "cgroup.procs").write_text(f"{pid}\n")
            time.sleep(0.1)
