"""Bounds on a run: how many hosts at once, how long, how much output is kept."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hostbatch.errors import UsageError

DEFAULT_FANOUT = 256
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_OUTPUT_LIMIT = 1024 * 1024  # bytes kept in memory per host and stream (the tail)
HOSTS_PER_WORKER = 500  # below this many hosts per core, one process is faster (bench/fanout.py)
# Blocking libraries in threads (netmiko polls its channel in Python) hold the GIL, so one
# process tops out near one core much sooner (bench/devices.py: 200 devices, 2 workers
# 1.8-2.1x faster than one process).
HOSTS_PER_WORKER_BLOCKING = 32


@dataclass(frozen=True)
class Limits:
    """``fanout`` caps concurrent hosts across the whole run (all workers together)."""

    fanout: int = DEFAULT_FANOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    command_timeout: float | None = None
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    connect_retries: int = 0
    retry_backoff: float = 0.5
    workers: int | None = None  # None: chosen from the host count and cores

    def __post_init__(self) -> None:
        if self.fanout < 1:
            raise UsageError(f"fanout must be at least 1 (got {self.fanout})")
        if self.connect_timeout <= 0:
            raise UsageError(f"connect timeout must be positive (got {self.connect_timeout})")
        if self.command_timeout is not None and self.command_timeout <= 0:
            raise UsageError(f"command timeout must be positive (got {self.command_timeout})")
        if self.output_limit < 0 or self.connect_retries < 0:
            raise UsageError("output limit and retries cannot be negative")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"workers must be at least 1 (got {self.workers})")

    def worker_count(self, host_count: int, *, blocking: bool = False) -> int:
        """Explicit ``workers``, else one process per core once there are enough hosts
        (far sooner when *blocking* transports such as netmiko drive most hosts)."""
        if self.workers is not None:
            return max(1, min(self.workers, host_count))
        cores = os.cpu_count() or 1
        per_worker = HOSTS_PER_WORKER_BLOCKING if blocking else HOSTS_PER_WORKER
        return max(1, min(cores, host_count // per_worker))
