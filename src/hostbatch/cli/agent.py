"""``hostbatch agent status|stop``, and runs handed to the agent (``--persist``).

The agent itself (socket, protocol, pool, expiry) is :mod:`hostbatch.engine.executors.agent`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import click

from hostbatch.cli.common import handle_errors
from hostbatch.engine.executors import with_sink
from hostbatch.engine.executors.agent import AgentRun, request, run_in_agent, wait_stopped
from hostbatch.engine.plan import Plan
from hostbatch.inventory.patterns import fold_text
from hostbatch.models import Event, HostResult

AFTER_PERSIST = "remote commands stopped; the agent keeps the connections open"


async def run_persisted(
    plan: Plan, sink: Callable[[Event], None], idle: float
) -> dict[str, HostResult]:
    """Run *plan* in the agent with the CLI's sink; names the hosts it reconnected."""

    def note(text: str) -> None:
        click.echo(f"hostbatch: {text}", err=True)

    outcome: AgentRun = await with_sink(lambda emit: run_in_agent(plan, emit, idle, note), sink)
    if outcome.reconnected:
        click.echo(f"reconnected: {fold_text(outcome.reconnected)}", err=True)
    return outcome.results


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def format_status(info: dict[str, Any], connections: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"agent pid {info['pid']}, socket {info['socket']}, idle limit "
        f"{_duration(info['idle'])}, {len(connections)} open connection(s)"
    ]
    lines += [
        f"{run['state']} for {_duration(run['for'])}: a run on {run['hosts']} host(s) "
        f"from {run['cwd']}"
        for run in info.get("runs", [])
    ]
    if connections:
        width = max(len("HOST"), *(len(c["host"]) for c in connections))
        lines.append(f"{'HOST':<{width}}  {'ADDRESS':<21}  {'USER':<12}  {'AGE':>5}  IDLE")
        lines += [
            f"{c['host']:<{width}}  {c['address']:<21}  {c['user']:<12}  "
            f"{_duration(c['age']):>5}  {_duration(c['idle'])}"
            for c in connections
        ]
    return lines


@click.group("agent")
def agent_command() -> None:
    """The background agent that --persist starts: warm connections for later commands."""


@agent_command.command("status")
@handle_errors
def status_command() -> None:
    """Show the agent, its runs in progress or waiting, and its open connections (host,
    address, user, age, idle)."""
    reply = asyncio.run(request(("status",)))
    if reply is None:
        click.echo("no agent is running")
        return
    for line in format_status(reply[1], reply[2]):
        click.echo(line)


@agent_command.command("stop")
@handle_errors
def stop_command() -> None:
    """Close the agent's connections and end it."""
    reply = asyncio.run(request(("stop",)))
    if reply is not None:
        wait_stopped()
    click.echo("no agent was running" if reply is None else "agent stopped", err=True)
