"""Run a plan in this process: asyncio, at most ``fanout`` hosts at once."""

from __future__ import annotations

import asyncio

from hostbatch.engine.hostrun import Emit, run_host
from hostbatch.engine.plan import Plan
from hostbatch.engine.pool import TransportPool
from hostbatch.models import Finished


async def run_hosts(plan: Plan, emit: Emit, pool: TransportPool | None = None) -> None:
    """Run every host of *plan* with at most ``fanout`` at once; emits Finished for each.
    With a *pool*, connections are reused and left open (the shell)."""
    pending = iter(plan.hosts)

    async def worker() -> None:
        for host in pending:  # shared iterator: each host is taken once
            emit(Finished(await run_host(plan, host, emit, pool)))

    count = min(plan.limits.fanout_or_default(), len(plan.hosts))
    await asyncio.gather(*(worker() for _ in range(count)))
