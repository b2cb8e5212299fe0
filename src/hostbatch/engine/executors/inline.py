"""Run a plan in this process: asyncio, at most ``fanout`` hosts at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from hostbatch.engine.hostrun import Emit, run_host
from hostbatch.engine.plan import Plan
from hostbatch.engine.pool import Shared, TransportPool
from hostbatch.engine.rollout import StartGate, not_started
from hostbatch.models import Finished, Host

HostJob = Callable[[Host], Awaitable[None]]


async def for_each_host(hosts: Sequence[Host], fanout: int, job: HostJob) -> None:
    """Await ``job(host)`` for every host, at most *fanout* at once (a run, a probe)."""
    pending = iter(hosts)

    async def worker() -> None:
        for host in pending:  # shared iterator: each host is taken once
            await job(host)

    await asyncio.gather(*(worker() for _ in range(min(fanout, len(hosts)))))


async def run_hosts(
    plan: Plan, emit: Emit, pool: TransportPool | None = None, gate: StartGate | None = None
) -> None:
    """Run every host of *plan* with at most ``fanout`` at once; emits Finished for each.
    With a *pool*, connections are reused and left open (the shell); jump-host
    connections and the admission of starts are shared by the run's hosts (the pool's:
    kept with it). Ends with a Throttled event per destination that dropped starts.
    Once *gate* is closed, hosts not yet started are reported not started
    (engine/rollout.py)."""
    shared = pool.shared if pool is not None else Shared(plan.limits.jump_channels)
    if pool is not None:
        shared.jumps.forget_failures()

    async def one(host: Host) -> None:
        if gate is not None and not gate.open:
            emit(Finished(not_started(host.name, gate.reason)))
            return
        emit(Finished(await run_host(plan, host, emit, pool, shared)))

    try:
        await for_each_host(plan.hosts, plan.limits.fanout_or_default(), one)
    finally:
        if pool is None:
            await shared.close()
    for event in shared.admission.reports():
        emit(event)
