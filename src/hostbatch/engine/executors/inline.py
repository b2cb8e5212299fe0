"""Run a plan in this process: asyncio, at most ``fanout`` hosts at once."""

from __future__ import annotations

import asyncio

from hostbatch.engine.hostrun import Emit, run_host
from hostbatch.engine.plan import Plan
from hostbatch.models import Finished


async def run_hosts(plan: Plan, emit: Emit) -> None:
    """Run every host of *plan* with at most ``fanout`` at once; emits Finished for each."""
    pending = iter(plan.hosts)

    async def worker() -> None:
        for host in pending:  # shared iterator: each host is taken once
            emit(Finished(await run_host(plan, host, emit)))

    count = min(plan.limits.fanout, len(plan.hosts))
    await asyncio.gather(*(worker() for _ in range(count)))
