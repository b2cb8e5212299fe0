"""A real Dask cluster on loopback for the dask engine's tests: ``dask scheduler`` and two
``dask worker`` processes (``a`` and ``b``, two threads each, no nanny: the worker is the
process the test started), shared by a test module."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("distributed")

DASK = str(Path(sys.executable).with_name("dask"))
START_DEADLINE = 60.0


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    scheduler_file: Path = Path()

    def start_worker(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(
            [
                DASK, "worker", "--scheduler-file", str(self.scheduler_file), "--no-nanny",
                "--nthreads", "2", "--name", name, "--host", "127.0.0.1",
                "--no-dashboard", "--local-directory", str(self.scheduler_file.parent),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.workers[name] = worker
        return worker

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=START_DEADLINE) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(count, timeout=START_DEADLINE)

    def stop(self) -> None:
        for process in [*self.workers.values(), self.scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers.values(), self.scheduler]:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _start_scheduler(directory: Path) -> Cluster:
    scheduler_file = directory / "scheduler.json"
    scheduler = subprocess.Popen(
        [
            DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(scheduler_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + START_DEADLINE
    address = None
    while address is None:
        if time.monotonic() > deadline or scheduler.poll() is not None:
            scheduler.kill()
            raise RuntimeError("dask scheduler did not start")
        try:
            address = json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    return Cluster(address, scheduler, scheduler_file=scheduler_file)


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Cluster]:
    """Scheduler plus workers ``a`` and ``b`` (2 threads each) on 127.0.0.1."""
    with tempfile.TemporaryDirectory() as directory:
        cluster = _start_scheduler(Path(directory))
        try:
            cluster.start_worker("a")
            cluster.start_worker("b")
            cluster.wait_for_workers(2)
            yield cluster
        finally:
            cluster.stop()


def worker_pids(cluster: Cluster) -> dict[str, int]:
    return {name: process.pid for name, process in cluster.workers.items()}


@pytest.fixture
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of the test's own (scheduler plus worker ``w``, 2 threads), for tests
    that kill its scheduler."""
    cluster = _start_scheduler(tmp_path_factory.mktemp("own-cluster"))
    try:
        cluster.start_worker("w")
        cluster.wait_for_workers(1)
        yield cluster
    finally:
        cluster.stop()
