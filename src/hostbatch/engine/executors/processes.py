"""Run a plan's hosts in shards across worker processes, events back over pipes.

Each worker runs the inline executor on its shard with its share of the fanout and sends
events in small batches (every ``FLUSH_SECONDS`` or ``FLUSH_EVENTS``). The parent emits
them as they arrive. A worker that dies marks its unfinished hosts failed; the run
never hangs on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from hostbatch.engine.executors.inline import run_hosts
from hostbatch.engine.hostrun import Emit
from hostbatch.engine.plan import Plan
from hostbatch.models import Event, Finished, HostResult, Started, Status

FLUSH_SECONDS = 0.02
FLUSH_EVENTS = 256


class _Batcher:
    """Collects a worker's events and sends them to the parent in batches."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.batch: list[Event] = []
        self.last = time.monotonic()

    def __call__(self, event: Event) -> None:
        self.batch.append(event)
        now = time.monotonic()
        if len(self.batch) >= FLUSH_EVENTS or now - self.last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.conn.send(self.batch)
            self.batch = []
        self.last = time.monotonic()

    async def tick(self) -> None:
        """Flush quiet periods too, so slow output is not held back."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()


def _worker_main(plan: Plan, conn: Connection) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides about Ctrl-C
    batcher = _Batcher(conn)

    async def main() -> None:
        ticker = asyncio.create_task(batcher.tick())
        try:
            await run_hosts(plan, batcher)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    asyncio.run(main())
    batcher.flush()
    conn.close()
    # Every host has finished and been reported; skip the interpreter's teardown (idle
    # pool threads joined, modules freed: ~0.15 s per worker), the parent waits on it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Shard:
    def __init__(self, plan: Plan, process: BaseProcess, conn: Connection) -> None:
        self.plan = plan
        self.process = process
        self.conn = conn
        self.unfinished = {h.name for h in plan.hosts}
        self.started: dict[str, float] = {}
        self.done = asyncio.get_running_loop().create_future()

    def receive(self, emit: Emit) -> None:
        """Called when the pipe is readable: forward one batch, or notice the end."""
        try:
            batch: list[Event] = self.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            if not self.done.done():
                self.done.set_result(None)
            return
        for event in batch:
            if isinstance(event, Started):
                self.started[event.host] = event.at
            elif isinstance(event, Finished):
                self.unfinished.discard(event.host)
            emit(event)

    def fail_unfinished(self, emit: Emit) -> None:
        self.process.join(timeout=5)
        code = self.process.exitcode
        for name in sorted(self.unfinished):
            now = time.time()
            emit(
                Finished(
                    HostResult(
                        host=name,
                        status=Status.ERROR,
                        error=f"worker process died (exit code {code}) before this host finished",
                        started=self.started.get(name, now),
                        ended=now,
                    )
                )
            )
        self.unfinished.clear()


async def run_sharded(plan: Plan, emit: Emit, workers: int) -> None:
    """Run *plan* across *workers* processes; returns when every host has finished."""
    context = multiprocessing.get_context("spawn")  # fork is unsafe with threads or a loop
    loop = asyncio.get_running_loop()
    shards: list[_Shard] = []
    for index in range(workers):
        shard_plan = plan.shard(index, workers)
        if not shard_plan.hosts:
            continue
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_worker_main, args=(shard_plan, sender), daemon=True)
        process.start()
        sender.close()
        shard = _Shard(shard_plan, process, receiver)
        loop.add_reader(receiver.fileno(), shard.receive, emit)
        shards.append(shard)
    try:
        await asyncio.gather(*(s.done for s in shards))
    finally:
        for shard in shards:
            with contextlib.suppress(Exception):
                loop.remove_reader(shard.conn.fileno())
            if shard.process.is_alive() and shard.unfinished:
                shard.process.terminate()
            shard.fail_unfinished(emit)
            shard.conn.close()
