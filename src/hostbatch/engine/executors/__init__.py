"""Executors: inline (asyncio in this process) and processes (shards in workers).

Sinks (the terminal, JSON, a caller's ``on_event``) are called through :func:`with_sink`:
a sink that raises never reaches the host whose event it was; the run is stopped
(its hosts cancelled, remote commands signalled as on Ctrl-C) and SinkError raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from hostbatch.engine.executors.inline import for_each_host, run_hosts
from hostbatch.engine.hostrun import Emit
from hostbatch.engine.plan import Plan
from hostbatch.engine.rollout import StartGate, run_rollout
from hostbatch.errors import SinkError
from hostbatch.transport.registry import is_blocking

T = TypeVar("T")
E = TypeVar("E")


async def execute(plan: Plan, emit: Emit) -> None:
    """Run *plan*, in this process or sharded across worker processes by host count;
    a rolling plan (canary, batches, failure budget) wave by wave (engine/rollout.py);
    on a Dask cluster with ``engine="dask"`` (executors/dask_.py, imported only then)."""
    if plan.limits.engine == "dask":
        from hostbatch.engine.executors.dask_ import run_on_dask

        await run_on_dask(plan, emit)
    elif plan.limits.rolling:
        await run_rollout(plan, emit, _execute_wave)
    else:
        await _execute_wave(plan, emit, None)


def layout(plan: Plan) -> tuple[int, int]:
    """(worker processes, hosts at once) for *plan* on this machine: Limits.layout, told
    whether blocking transports drive most of its hosts."""
    blocking_hosts = sum(is_blocking(plan.transport_for(h)) for h in plan.hosts)
    return plan.limits.layout(len(plan.hosts), blocking=blocking_hosts * 2 > len(plan.hosts))


def runs_here(plan: Plan) -> bool:
    """Whether :func:`execute` runs *plan*'s hosts in this process (no workers, no Dask)."""
    return plan.limits.engine == "local" and layout(plan)[0] == 1


async def _execute_wave(plan: Plan, emit: Emit, gate: StartGate | None) -> None:
    workers, fanout = layout(plan)
    plan = replace(plan, limits=replace(plan.limits, fanout=fanout))
    if workers == 1:
        await run_hosts(plan, emit, gate=gate)
    else:  # imported only here: multiprocessing costs every one-process run ~10 ms
        from hostbatch.engine.executors.processes import run_sharded

        await run_sharded(plan, emit, workers, gate=gate)


async def with_sink(
    start: Callable[[Callable[[E], None]], Coroutine[Any, Any, T]],
    sink: Callable[[E], None] | None,
) -> T:
    """Await ``start(emit)``, where ``emit`` hands each event to *sink* and never raises.

    When *sink* raises, later events are dropped, the run is cancelled and
    :class:`SinkError` (with the sink's exception as ``cause``) is raised here."""
    failures: list[Exception] = []

    def emit(event: E) -> None:
        if failures:
            task.cancel()  # again, should some code have absorbed the first cancel
            return
        if sink is None:
            return
        try:
            sink(event)
        except Exception as exc:
            failures.append(exc)
            task.cancel()

    task = asyncio.ensure_future(start(emit))
    try:
        result = await task
    except asyncio.CancelledError:
        if not failures or _cancelled_from_outside():
            raise
    if failures:
        raise SinkError(failures[0]) from failures[0]
    return result


def _cancelled_from_outside() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


__all__ = ["Emit", "execute", "for_each_host", "layout", "run_hosts", "runs_here", "with_sink"]
