"""Executors: inline (asyncio in this process) and processes (shards in workers)."""

from __future__ import annotations

from dataclasses import replace

from hostbatch.engine.executors.inline import run_hosts
from hostbatch.engine.executors.processes import run_sharded
from hostbatch.engine.hostrun import Emit
from hostbatch.engine.plan import Plan


async def execute(plan: Plan, emit: Emit) -> None:
    """Run *plan*, in this process or sharded across worker processes by host count."""
    blocking = sum(plan.transport_for(h) == "netmiko" for h in plan.hosts) * 2 > len(plan.hosts)
    workers, fanout = plan.limits.layout(len(plan.hosts), blocking=blocking)
    plan = replace(plan, limits=replace(plan.limits, fanout=fanout))
    if workers == 1:
        await run_hosts(plan, emit)
    else:
        await run_sharded(plan, emit, workers)


__all__ = ["Emit", "execute", "run_hosts", "run_sharded"]
