"""The Python API: ``run()``, ``put()``, ``get()``, ``ping()`` and their async twins, and
``stream()`` for events.

The one place that turns a selection into a Plan and hands it to an executor::

    import hostbatch
    results = hostbatch.run("df -h", hosts="h1,h2", groups="web_clusters", inventory="inventory/")
    for name, result in results.items():
        print(name, result.exit_status, result.stdout_text)

Every function takes the same selection: ``hosts`` (names, patterns, Host records or
netmiko-style dicts), ``groups``, ``inventory`` and keyword ``patterns``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hostbatch.engine import loop as event_loop
from hostbatch.engine.executors import execute, run_hosts, with_sink
from hostbatch.engine.limits import Limits
from hostbatch.engine.plan import Plan, check_hosts
from hostbatch.engine.pool import TransportPool
from hostbatch.engine.probe import ProbeResult, probe_all
from hostbatch.engine.rollout import run_rollout
from hostbatch.errors import UsageError
from hostbatch.inventory import Inventory, load_inventory
from hostbatch.inventory.dicts import hosts_from_dicts
from hostbatch.models import (
    Command,
    CommandSet,
    Event,
    Finished,
    Host,
    HostResult,
    Transfer,
)
from hostbatch.transport.base import ConnectOptions
from hostbatch.transport.registry import DEFAULT

HostSpec = str | Host | Mapping[str, Any]
HostsSpec = HostSpec | Sequence[HostSpec] | None
GroupsSpec = str | Sequence[str] | None
PatternsSpec = str | Sequence[str] | None
InventorySpec = Inventory | str | Path | Sequence[str | Path] | None
EventSink = Callable[[Event], None]
T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions:
    """Knobs shared by run(), run_async() and stream()."""

    limits: Limits = field(default_factory=Limits)
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    transport: str = DEFAULT


def _blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run *coroutine* to its end for a sync twin: on the loop the CLI uses
    (engine/loop.py: uvloop unless ``HOSTBATCH_LOOP=asyncio``). Called inside a running
    event loop, it is :func:`asyncio.run`'s as before (which refuses: use the async twin)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return event_loop.run(coroutine)
    return asyncio.run(coroutine)


def _inventory(spec: InventorySpec) -> Inventory:
    if isinstance(spec, Inventory):
        return spec
    if spec is None:
        return load_inventory()
    paths = [spec] if isinstance(spec, str | Path) else list(spec)
    return load_inventory(paths)


def select_hosts(
    hosts: HostsSpec,
    groups: GroupsSpec,
    inventory: InventorySpec,
    patterns: PatternsSpec = None,
) -> list[Host]:
    """Resolve the API's selection (``hosts=``, ``groups=``, ``patterns=``) into Hosts.

    ``hosts`` may be names and patterns (looked up in the inventory), ready Host records,
    or netmiko-style dicts (see :func:`hostbatch.inventory.dicts.hosts_from_dicts`).
    """
    given = [hosts] if isinstance(hosts, str | Host | Mapping) else list(hosts or [])
    names = [h for h in given if isinstance(h, str)]
    from_dicts = iter(
        hosts_from_dicts([(i, h) for i, h in enumerate(given) if isinstance(h, Mapping)])
    )
    records = [
        h if isinstance(h, Host) else next(from_dicts) for h in given if not isinstance(h, str)
    ]
    if not names and not groups and not patterns:
        if not records:
            raise UsageError("no hosts given: pass hosts=..., groups=... or patterns=...")
        return records
    selected = _inventory(inventory).select(hosts=names or None, groups=groups, patterns=patterns)
    known = {h.name for h in records}
    return records + [h for h in selected if h.name not in known]


def make_plan(
    operation: str | Command | CommandSet | Transfer, hosts: Sequence[Host], options: RunOptions
) -> Plan:
    """A Plan; bad input for the whole run (empty command, missing local file) raises here,
    before any connection."""
    if isinstance(operation, str):
        operation = Command(operation)
    if isinstance(operation, Command) and not operation.text.strip() and not operation.script:
        raise UsageError("the command is empty")
    if isinstance(operation, CommandSet) and not (
        operation.commands or operation.config or operation.save
    ):
        raise UsageError("no command and no configuration given")
    if isinstance(operation, Transfer):
        if not operation.sources:
            raise UsageError(f"nothing to {operation.direction}: no source given")
        if operation.direction == "get":
            _check_local_dir(Path(operation.destination))
    # a put's local files are walked here, once: the Plan carries them (Plan.local_items)
    return Plan(operation, tuple(hosts), options.limits, options.connect, options.transport)


def _check_local_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: not a directory")
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: permission denied (not writable)")


async def run_plan(
    plan: Plan,
    on_event: EventSink | None = None,
    pool: TransportPool | None = None,
) -> dict[str, HostResult]:
    """Execute *plan*; results keyed by host name, in the plan's host order. With a
    *pool*, inline over its kept-open connections (a Session).

    *on_event* is called by the engine, never inside a host's operation: if it raises,
    the run is stopped (remaining hosts cancelled) and SinkError(cause) is raised."""
    finished: dict[str, HostResult] = {}

    def collect(event: Event) -> None:
        if isinstance(event, Finished):
            finished[event.host] = event.result
        if on_event is not None:
            on_event(event)

    if pool is None:
        await with_sink(lambda emit: execute(plan, emit), collect)
    elif plan.limits.rolling:
        await with_sink(
            lambda emit: run_rollout(plan, emit, lambda p, e, g: run_hosts(p, e, pool, gate=g)),
            collect,
        )
    else:
        await with_sink(lambda emit: run_hosts(plan, emit, pool), collect)
    return {h.name: finished[h.name] for h in plan.hosts}


async def run_async(
    command: str | Command | CommandSet,
    hosts: HostsSpec = None,
    groups: GroupsSpec = None,
    inventory: InventorySpec = None,
    *,
    patterns: PatternsSpec = None,
    options: RunOptions | None = None,
    on_event: EventSink | None = None,
) -> dict[str, HostResult]:
    """Run *command* on the selected hosts; ``{host name: HostResult}``.

    One host's failure is in its HostResult (status, error), never an exception; only
    bad input for the whole run (unknown host or group, bad inventory) raises.
    """
    selected = select_hosts(hosts, groups, inventory, patterns)
    return await run_plan(make_plan(command, selected, options or RunOptions()), on_event)


def run(
    command: str | Command | CommandSet,
    hosts: HostsSpec = None,
    groups: GroupsSpec = None,
    inventory: InventorySpec = None,
    *,
    patterns: PatternsSpec = None,
    options: RunOptions | None = None,
    on_event: EventSink | None = None,
) -> dict[str, HostResult]:
    """Blocking twin of :func:`run_async` (the seed's ``{ip: output}``, done properly)."""
    return _blocking(
        run_async(
            command, hosts, groups, inventory, patterns=patterns, options=options, on_event=on_event
        )
    )


async def stream(
    command: str | Command | CommandSet,
    hosts: HostsSpec = None,
    groups: GroupsSpec = None,
    inventory: InventorySpec = None,
    *,
    patterns: PatternsSpec = None,
    options: RunOptions | None = None,
) -> AsyncIterator[Event]:
    """Events as they happen (Started, OutputChunk, Finished); ends after the last host."""
    selected = select_hosts(hosts, groups, inventory, patterns)
    plan = make_plan(command, selected, options or RunOptions())
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    task = asyncio.create_task(run_plan(plan, queue.put_nowait))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (event := await queue.get()) is not None:
            yield event
        await task  # re-raise a failure of the run itself
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def transfer_async(
    transfer: Transfer,
    hosts: HostsSpec = None,
    groups: GroupsSpec = None,
    inventory: InventorySpec = None,
    *,
    patterns: PatternsSpec = None,
    options: RunOptions | None = None,
    on_event: EventSink | None = None,
) -> dict[str, HostResult]:
    """Run a put or get on the selected hosts; ``{host name: HostResult}``."""
    selected = select_hosts(hosts, groups, inventory, patterns)
    return await run_plan(make_plan(transfer, selected, options or RunOptions()), on_event)


def put(
    local: str | Path | Sequence[str | Path],
    remote: str,
    hosts: HostsSpec = None,
    groups: GroupsSpec = None,
    inventory: InventorySpec = None,
    *,
    patterns: PatternsSpec = None,
    recursive: bool = False,
    preserve: bool = False,
    verify: bool = False,
    options: RunOptions | None = None,
    on_event: EventSink | None = None,
) -> dict[str, HostResult]:
    """Copy local files to every selected host (atomically; see :mod:`engine.transfer`)."""
    sources = [local] if isinstance(local, str | Path) else list(local)
    transfer = Transfer("put", tuple(str(s) for s in sources), remote, recursive, preserve, verify)
    return _blocking(
        transfer_async(
            transfer,
            hosts,
            groups,
            inventory,
            patterns=patterns,
            options=options,
            on_event=on_event,
        )
    )


def get(
    remote: str | Sequence[str],
    local_dir: str | Path,
    hosts: HostsSpec = None,
    groups: GroupsSpec = None,
    inventory: InventorySpec = None,
    *,
    patterns: PatternsSpec = None,
    recursive: bool = False,
    preserve: bool = False,
    verify: bool = False,
    options: RunOptions | None = None,
    on_event: EventSink | None = None,
) -> dict[str, HostResult]:
    """Copy remote files from every selected host into ``local_dir/<host>/``."""
    sources = [remote] if isinstance(remote, str) else list(remote)
    transfer = Transfer("get", tuple(sources), str(local_dir), recursive, preserve, verify)
    return _blocking(
        transfer_async(
            transfer,
            hosts,
            groups,
            inventory,
            patterns=patterns,
            options=options,
            on_event=on_event,
        )
    )


async def ping_async(
    hosts: HostsSpec = None,
    groups: GroupsSpec = None,
    inventory: InventorySpec = None,
    *,
    patterns: PatternsSpec = None,
    options: RunOptions | None = None,
    on_result: Callable[[ProbeResult], None] | None = None,
) -> dict[str, ProbeResult]:
    """Probe the selected hosts: TCP connect time, SSH banner, and whether login succeeds;
    ``{host name: ProbeResult}`` in selection order (``result.ok``, ``result.status``:
    ok, auth failed, host key rejected, no banner, timed out, refused, unreachable).

    ``options.limits.fanout`` hosts at once; ``options.connect`` as for run(). A host that
    is not usable is its ProbeResult, never an exception; *on_result* is a sink as
    ``on_event`` is for run()."""
    selected = select_hosts(hosts, groups, inventory, patterns)
    chosen = options or RunOptions()
    check_hosts(selected, chosen.transport)
    fanout = chosen.limits.fanout_or_default()
    results = await with_sink(
        lambda emit: probe_all(
            selected, chosen.connect, transport=chosen.transport, fanout=fanout, on_result=emit
        ),
        on_result,
    )
    by_host = {result.host: result for result in results}
    return {host.name: by_host[host.name] for host in selected}


def ping(
    hosts: HostsSpec = None,
    groups: GroupsSpec = None,
    inventory: InventorySpec = None,
    *,
    patterns: PatternsSpec = None,
    options: RunOptions | None = None,
    on_result: Callable[[ProbeResult], None] | None = None,
) -> dict[str, ProbeResult]:
    """Blocking twin of :func:`ping_async`."""
    return _blocking(
        ping_async(
            hosts, groups, inventory, patterns=patterns, options=options, on_result=on_result
        )
    )


class Session:
    """Connections kept open across operations, for the interactive shell and for scripts
    that run several commands on the same hosts::

        async with Session(hosts, options) as session:
            first = await session.run("uptime")
            second = await session.run("df -h")   # no new handshake

    Runs inline (one process): connections cannot cross process boundaries.
    """

    def __init__(self, hosts: Sequence[Host], options: RunOptions | None = None) -> None:
        self.hosts = list(hosts)
        self.options = options or RunOptions()
        self.pool = TransportPool()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def select(self, hosts: Sequence[Host]) -> None:
        """Change the hosts later operations use; open connections are kept."""
        self.hosts = list(hosts)

    async def execute(
        self,
        operation: str | Command | CommandSet | Transfer,
        on_event: EventSink | None = None,
    ) -> dict[str, HostResult]:
        """Run one operation on the session's hosts over their open connections."""
        plan = make_plan(operation, self.hosts, self.options)
        return await run_plan(plan, on_event, self.pool)

    async def run(
        self, command: str | Command, on_event: EventSink | None = None
    ) -> dict[str, HostResult]:
        return await self.execute(command, on_event)

    async def close(self) -> None:
        await self.pool.close_all()
