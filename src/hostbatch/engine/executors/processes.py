"""Run a plan's hosts in shards across worker processes, events back over pipes.

Each worker runs the inline executor on its shard with its share of the fanout and sends
events in small batches (every ``FLUSH_SECONDS`` or ``FLUSH_EVENTS``). The parent emits
them as they arrive. Workers log as the parent was told (``hostbatch.logs.current()``:
level and destination, secrets masked). A worker that dies marks its unfinished hosts
failed; the run never hangs on it.

Stopping: when the parent's run is cancelled (Ctrl-C, SIGTERM, SIGHUP in the CLI) it sends
SIGTERM to its workers and waits for them at most ``WORKER_EXIT_WAIT`` seconds (then
SIGKILL). A worker treats SIGTERM, and its parent going away, as a cancellation of its own
run: every host's task is cancelled, so the transport signals the remote command and
closes the connection, before the worker exits. A worker starts with SIGTERM blocked
until its handler is in place, so one sent while it imports the SSH libraries stops it
the same way rather than killing it. Ctrl-C and hang-ups reach the whole process group;
workers ignore those and let the parent decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import replace
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from hostbatch import logs
from hostbatch.engine import loop as event_loop
from hostbatch.engine.executors.inline import run_hosts
from hostbatch.engine.hostrun import Emit
from hostbatch.engine.plan import Plan
from hostbatch.engine.rollout import StartGate
from hostbatch.models import Event, Finished, HostResult, Started, Status

FLUSH_SECONDS = 0.02
FLUSH_EVENTS = 256
# Seconds the parent waits for stopped workers to signal their remote commands and close
# their connections (the transports bound each close by a few seconds), before SIGKILL.
WORKER_EXIT_WAIT = 8.0
EXIT_CANCELLED = 128 + signal.SIGTERM
# The parent's StartGate closed (--max-fail): it writes this on each worker's control
# pipe and the worker starts no more hosts. Hosts a worker started before the message
# arrived (its events reach the parent every FLUSH_SECONDS) finish.
STOP_STARTING = "stop-starting"


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

    async def tick(self, parent: int, run: asyncio.Task[None]) -> None:
        """Flush quiet periods too, so slow output is not held back; cancel *run* when
        the parent process is gone (nobody would read the results)."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if os.getppid() != parent:
                run.cancel()
                return
            self.flush()


def _watch_control(control: Connection, gate: StartGate) -> None:
    """Close *gate* when the parent says so on *control* (read when readable)."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            message = control.recv()
        except (EOFError, OSError):
            message = None
        if message == STOP_STARTING:
            gate.close("")
        if message != STOP_STARTING or not gate.open:
            loop.remove_reader(control.fileno())

    loop.add_reader(control.fileno(), readable)


def _worker_main(
    plan: Plan, conn: Connection, control: Connection, log: logs.LogSettings | None
) -> None:
    """Entry point of a worker process; *log*: how the parent logs (logs.current())."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides about Ctrl-C
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # and about a hang-up
    logs.configure_as(log)
    logs.logger.info("worker process %d: %d host(s)", os.getpid(), len(plan.hosts))
    batcher = _Batcher(conn)
    parent = os.getppid()

    async def main() -> None:
        run = asyncio.current_task()
        assert run is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, run.cancel)
        # started with SIGTERM blocked (_start_worker): one that came meanwhile is
        # delivered now, to the handler, and cancels the run like a later one
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        ticker = asyncio.create_task(batcher.tick(parent, run))
        gate = StartGate()
        _watch_control(control, gate)
        try:
            await run_hosts(plan, batcher, gate=gate)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    event_loop.warm_up(plan)
    try:
        event_loop.run(main())
    except asyncio.CancelledError:
        # Stopped: each host's task was cancelled, so its remote command was signalled and
        # its connection closed. Unfinished hosts are the parent's to report.
        with contextlib.suppress(OSError):
            conn.close()
        os._exit(EXIT_CANCELLED)
    batcher.flush()
    conn.close()
    # Every host has finished and been reported; skip the interpreter's teardown (idle
    # pool threads joined, modules freed: ~0.15 s per worker), the parent waits on it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Shard:
    def __init__(
        self,
        plan: Plan,
        process: BaseProcess,
        conn: Connection,
        control: Connection,
        gate: StartGate | None,
    ) -> None:
        self.plan = plan
        self.control = control
        self.gate = gate
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
        for received in batch:
            event = received
            if isinstance(event, Started):
                self.started[event.host] = event.at
            elif isinstance(event, Finished):
                self.unfinished.discard(event.host)
                if event.result.status is Status.NOT_STARTED and self.gate is not None:
                    event = Finished(replace(event.result, error=self.gate.reason))
            emit(event)

    def stop_starting(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.control.send(STOP_STARTING)

    def fail_unfinished(self, emit: Emit) -> None:
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


async def _wait_for_workers(shards: list[_Shard]) -> None:
    """Stop workers that still have hosts (SIGTERM: they cancel their runs) and wait for
    every worker to exit, at most WORKER_EXIT_WAIT seconds; events keep flowing meanwhile,
    so no worker blocks on a full pipe. Then SIGKILL whatever is left."""
    loop = asyncio.get_running_loop()
    for shard in shards:
        if shard.process.is_alive() and shard.unfinished:
            shard.process.terminate()
    deadline = loop.time() + WORKER_EXIT_WAIT
    try:
        while any(s.process.is_alive() for s in shards) and loop.time() < deadline:
            await asyncio.sleep(0.02)
    finally:
        for shard in shards:
            if shard.process.is_alive():
                shard.process.kill()
            shard.process.join(timeout=1)


def _start_worker(process: BaseProcess) -> None:
    """Start *process* with SIGTERM blocked (the mask survives fork and exec), so a
    SIGTERM that comes while it starts up and imports the SSH libraries (warm_up, before
    its loop can take a handler) waits for that handler instead of killing it outright
    with its hosts unreported; the worker unblocks it once the handler is in place.
    (multiprocessing does the same for its resource tracker, bpo-33613, and unblocks
    SIGTERM after starting that: so it is started first.)"""
    resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        process.start()
    finally:
        if signal.SIGTERM not in blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


async def run_sharded(plan: Plan, emit: Emit, workers: int, gate: StartGate | None = None) -> None:
    """Run *plan* across *workers* processes; returns when every host has finished.
    When *gate* closes, every worker is told to start no more hosts."""
    context = multiprocessing.get_context("spawn")  # fork is unsafe with threads or a loop
    loop = asyncio.get_running_loop()
    shards: list[_Shard] = []
    for index in range(workers):
        shard_plan = plan.shard(index, workers)
        if not shard_plan.hosts:
            continue
        receiver, sender = context.Pipe(duplex=False)
        control_in, control_out = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_main,
            args=(shard_plan, sender, control_in, logs.current()),
            daemon=True,
        )
        _start_worker(process)
        sender.close()
        control_in.close()
        shard = _Shard(shard_plan, process, receiver, control_out, gate)
        loop.add_reader(receiver.fileno(), shard.receive, emit)
        shards.append(shard)
        if gate is not None:
            gate.on_close(shard.stop_starting)
    cancelled = False
    try:
        await asyncio.gather(*(s.done for s in shards))
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        try:
            await _wait_for_workers(shards)
        finally:
            for shard in shards:
                with contextlib.suppress(Exception):
                    loop.remove_reader(shard.conn.fileno())
                if not cancelled:  # a cancelled run reports nothing more
                    shard.fail_unfinished(emit)
                shard.conn.close()
                shard.control.close()
