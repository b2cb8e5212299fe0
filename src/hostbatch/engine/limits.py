"""Bounds on a run: how many hosts at once, how long, how much output is kept."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from hostbatch.errors import UsageError
from hostbatch.transport import base
from hostbatch.transport.jump import DEFAULT_CHANNEL_BUDGET

# The connect timeout is ConnectOptions.connect_timeout (the transports read it); its
# default is repeated here for the CLI's option default.
DEFAULT_CONNECT_TIMEOUT = base.DEFAULT_CONNECT_TIMEOUT

DEFAULT_FANOUT = 256  # hosts at once, all workers together, when most hosts use asyncssh
DEFAULT_OUTPUT_LIMIT = 1024 * 1024  # bytes kept in memory per host and stream (the tail)
HOSTS_PER_WORKER = 500  # below this many hosts per core, one process is faster (bench/fanout.py)
# Blocking libraries in threads (netmiko: a thread per session polling its channel)
# hold the GIL, so one process tops out near one core much sooner: network devices get a
# worker per core from a few dozen devices. Sessions per worker, bench/devices.py, 200
# fake IOS devices on 2 cores, 4 interleaved rounds (netmiko over asyncssh): 2 workers x 32
# sessions 3.54 s median, x 64 2.83 s, x 100 2.71 s; seed 5.52 s. (With a paramiko thread
# per session as well, 32 was the best: 2 x 128 took 7.0 s.) More workers cost ~0.6 s of
# CPU each for importing asyncssh, paramiko and netmiko.
HOSTS_PER_WORKER_BLOCKING = 32
SESSIONS_PER_WORKER_BLOCKING = 128


HostCount = int | str
"""A number of hosts: ``5``, ``"5"`` or a percentage of the run's hosts, ``"25%"``."""
_COUNT = re.compile(r"\s*(\d+)\s*(%?)\s*")


def hosts_in(count: HostCount, total: int, *, what: str) -> int:
    """*count* resolved against *total* hosts: a percentage rounds up, and is at least 1.
    A count that is not a positive number or percentage is a UsageError naming *what*."""
    match = _COUNT.fullmatch(str(count))
    if match is None or int(match[1]) < 1 or (match[2] and int(match[1]) > 100):
        raise UsageError(f"{what} must be a positive number of hosts or 1%-100% (got {count!r})")
    number = int(match[1])
    return max(1, math.ceil(total * number / 100)) if match[2] else number


@dataclass(frozen=True)
class Limits:
    """``fanout`` caps concurrent hosts across the whole run (all workers together); None
    is the default, :data:`DEFAULT_FANOUT`, or for network devices (blocking transports)
    :data:`SESSIONS_PER_WORKER_BLOCKING` per worker.

    ``command_timeout`` bounds each command of a run, and each host's whole put or get
    (its ``--verify`` included). The connect timeout is ``ConnectOptions.connect_timeout``."""

    fanout: int | None = None
    command_timeout: float | None = None
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    connect_retries: int = 0
    retry_backoff: float = 0.5
    workers: int | None = None  # None: chosen from the host count and cores
    # hosts (direct-tcpip channels) per shared connection to a jump host (transport/jump.py)
    jump_channels: int = DEFAULT_CHANNEL_BUDGET
    # Rolling runs (engine/rollout.py): hosts in successive batches, each finished before
    # the next starts; no new host started once max_fail hosts failed; the first canary
    # hosts alone first, the rest only if all of them are ok. Counts: see HostCount.
    batch: HostCount | None = None
    max_fail: HostCount | None = None
    canary: int = 0

    @property
    def rolling(self) -> bool:
        """True when hosts are not simply all started as the fanout allows."""
        return self.batch is not None or self.max_fail is not None or self.canary > 0

    def __post_init__(self) -> None:
        for what, count in (("--batch", self.batch), ("--max-fail", self.max_fail)):
            if count is not None:
                hosts_in(count, 1, what=what)
        if self.canary < 0:
            raise UsageError(f"--canary cannot be negative (got {self.canary})")
        if self.fanout is not None and self.fanout < 1:
            raise UsageError(f"fanout must be at least 1 (got {self.fanout})")
        if self.command_timeout is not None and self.command_timeout <= 0:
            raise UsageError(f"command timeout must be positive (got {self.command_timeout})")
        if self.output_limit < 0 or self.connect_retries < 0:
            raise UsageError("output limit and retries cannot be negative")
        if self.jump_channels < 1:
            raise UsageError(f"jump channels must be at least 1 (got {self.jump_channels})")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"workers must be at least 1 (got {self.workers})")

    def layout(self, host_count: int, *, blocking: bool = False) -> tuple[int, int]:
        """(worker processes, hosts at once across all of them) for *host_count* hosts.

        Explicit ``workers`` and ``fanout`` are kept. Otherwise one process per core once
        there are enough hosts per core (far sooner when *blocking* transports such as
        netmiko drive most hosts). A blocking run keeps at most
        :data:`SESSIONS_PER_WORKER_BLOCKING` sessions per process: its default fanout is
        that many per worker, and a larger explicit fanout gets more workers."""
        hosts = max(1, host_count)
        cores = os.cpu_count() or 1
        if not blocking:
            workers = self.workers or min(cores, hosts // HOSTS_PER_WORKER)
            return max(1, min(workers, hosts)), self.fanout or DEFAULT_FANOUT
        per_worker = SESSIONS_PER_WORKER_BLOCKING
        workers = self.workers or min(cores, hosts // HOSTS_PER_WORKER_BLOCKING)
        if self.workers is None and self.fanout is not None:
            workers = max(workers, -(-min(self.fanout, hosts) // per_worker))
        workers = max(1, min(workers, hosts))
        return workers, self.fanout or per_worker * workers

    def fanout_or_default(self) -> int:
        return self.fanout or DEFAULT_FANOUT
