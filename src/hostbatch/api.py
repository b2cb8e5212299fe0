"""The Python API: ``run()`` and its async twin ``run_async()``, and ``stream()`` for events.

The one place that turns a selection into a Plan and hands it to an executor::

    import hostbatch
    results = hostbatch.run("df -h", hosts="h1,h2", groups="web_clusters", inventory="inventory/")
    for name, result in results.items():
        print(name, result.exit_status, result.stdout_text)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostbatch.engine.executors import execute, run_hosts
from hostbatch.engine.limits import Limits
from hostbatch.engine.plan import Plan
from hostbatch.engine.pool import TransportPool
from hostbatch.engine.transfer import preflight_put
from hostbatch.errors import UsageError
from hostbatch.inventory import Inventory, load_inventory
from hostbatch.inventory.records import (
    ALIASES,
    HOST_KEYS,
    STRUCTURE_KEYS,
    HostDefinition,
    Layer,
    Located,
)
from hostbatch.inventory.resolve import resolve
from hostbatch.models import (
    Command,
    CommandSet,
    Event,
    Finished,
    Host,
    HostResult,
    Secret,
    Transfer,
)
from hostbatch.transport.base import ConnectOptions
from hostbatch.transport.registry import DEFAULT

HostSpec = str | Host | Mapping[str, Any]
InventorySpec = Inventory | str | Path | Sequence[str | Path] | None


@dataclass(frozen=True)
class RunOptions:
    """Knobs shared by run(), run_async() and stream()."""

    limits: Limits = field(default_factory=Limits)
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    transport: str = DEFAULT


def _inventory(spec: InventorySpec) -> Inventory:
    if isinstance(spec, Inventory):
        return spec
    if spec is None:
        return load_inventory()
    paths = [spec] if isinstance(spec, str | Path) else list(spec)
    return load_inventory(paths)


# netmiko connection tunables a seed's host dicts may carry; hostbatch sets its own
# (timeouts, host key checking, fast CLI), so these are accepted and not used.
NETMIKO_TUNING_KEYS = frozenset(
    {
        "allow_agent",
        "alt_host_keys",
        "alt_key_file",
        "auth_timeout",
        "banner_timeout",
        "blocking_timeout",
        "conn_timeout",
        "fast_cli",
        "global_delay_factor",
        "keepalive",
        "session_log",
        "ssh_strict",
        "system_host_keys",
        "timeout",
        "use_keys",
        "verbose",
    }
)


def _dict_layer(spec: Mapping[str, Any], where: str) -> Layer:
    layer: Layer = {}
    for raw_key, value in spec.items():
        key = ALIASES.get(str(raw_key).lower(), str(raw_key).lower())
        if value is None or key in NETMIKO_TUNING_KEYS or key in STRUCTURE_KEYS:
            continue
        if key not in HOST_KEYS:
            known = ", ".join(sorted({*HOST_KEYS, "ip", "host", "name"}))
            raise UsageError(f"{where}: unknown key '{raw_key}' in a host dict (known: {known})")
        text = value.reveal() if isinstance(value, Secret) else str(value)
        layer[key] = Located(text, where)
    if not layer.get("hostname") or not layer["hostname"].value:
        raise UsageError(f"{where}: a host dict needs 'host' or 'ip'")
    return layer


def hosts_from_dicts(specs: Sequence[tuple[int, Mapping[str, Any]]]) -> list[Host]:
    """netmiko-style dicts (``device_type``, ``ip``/``host``, ``username``, ``password``,
    ``secret``, ``port``, ...) as Host records, resolved like inventory entries (a dict
    with ``device_type`` uses the netmiko transport; passwords become Secrets).

    A host is named by its ``name``, else by its address; when several unnamed dicts share
    an address (one IP, several ports), each is named ``address:port``.
    """
    layers = [(index, spec, _dict_layer(spec, f"hosts[{index}]")) for index, spec in specs]
    unnamed = Counter(layer["hostname"].value for _, spec, layer in layers if not spec.get("name"))
    definitions: list[HostDefinition] = []
    for index, spec, layer in layers:
        address = layer["hostname"].value
        name = str(spec.get("name") or "")
        if not name:
            port = layer["port"].value if "port" in layer else "22"
            name = address if unnamed[address] == 1 else f"{address}:{port}"
        definitions.append(HostDefinition(name, f"hosts[{index}]", None, layers=[layer]))
    return resolve(definitions)


def select_hosts(
    hosts: HostSpec | Sequence[HostSpec] | None,
    groups: str | Sequence[str] | None,
    inventory: InventorySpec,
    patterns: str | Sequence[str] | None = None,
) -> list[Host]:
    """Resolve the API's ``hosts=`` / ``groups=`` into Host records.

    ``hosts`` may be names and patterns (looked up in the inventory), ready Host records,
    or netmiko-style dicts (see :func:`hosts_from_dicts`).
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
    if isinstance(operation, Command) and not operation.text.strip():
        raise UsageError("the command is empty")
    if isinstance(operation, CommandSet) and not (
        operation.commands or operation.config or operation.save
    ):
        raise UsageError("no command and no configuration given")
    if isinstance(operation, Transfer):
        if not operation.sources:
            raise UsageError(f"nothing to {operation.direction}: no source given")
        if operation.direction == "put":
            preflight_put(operation)
        else:
            _check_local_dir(Path(operation.destination))
    return Plan(operation, tuple(hosts), options.limits, options.connect, options.transport)


def _check_local_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: not a directory")
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: permission denied (not writable)")


async def run_plan(
    plan: Plan,
    on_event: Callable[[Event], None] | None = None,
    pool: TransportPool | None = None,
) -> dict[str, HostResult]:
    """Execute *plan*; results keyed by host name, in the plan's host order. With a
    *pool*, inline over its kept-open connections (a Session)."""
    finished: dict[str, HostResult] = {}

    def emit(event: Event) -> None:
        if isinstance(event, Finished):
            finished[event.host] = event.result
        if on_event is not None:
            on_event(event)

    if pool is None:
        await execute(plan, emit)
    else:
        await run_hosts(plan, emit, pool)
    return {h.name: finished[h.name] for h in plan.hosts}


async def run_async(
    command: str | Command | CommandSet,
    hosts: HostSpec | Sequence[HostSpec] | None = None,
    groups: str | Sequence[str] | None = None,
    inventory: InventorySpec = None,
    *,
    patterns: str | Sequence[str] | None = None,
    options: RunOptions | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> dict[str, HostResult]:
    """Run *command* on the selected hosts; ``{host name: HostResult}``.

    One host's failure is in its HostResult (status, error), never an exception; only
    bad input for the whole run (unknown host or group, bad inventory) raises.
    """
    selected = select_hosts(hosts, groups, inventory, patterns)
    return await run_plan(make_plan(command, selected, options or RunOptions()), on_event)


def run(
    command: str | Command | CommandSet,
    hosts: HostSpec | Sequence[HostSpec] | None = None,
    groups: str | Sequence[str] | None = None,
    inventory: InventorySpec = None,
    *,
    patterns: str | Sequence[str] | None = None,
    options: RunOptions | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> dict[str, HostResult]:
    """Blocking twin of :func:`run_async` (the seed's ``{ip: output}``, done properly)."""
    return asyncio.run(
        run_async(
            command, hosts, groups, inventory, patterns=patterns, options=options, on_event=on_event
        )
    )


async def stream(
    command: str | Command | CommandSet,
    hosts: HostSpec | Sequence[HostSpec] | None = None,
    groups: str | Sequence[str] | None = None,
    inventory: InventorySpec = None,
    *,
    patterns: str | Sequence[str] | None = None,
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
    hosts: HostSpec | Sequence[HostSpec] | None = None,
    groups: str | Sequence[str] | None = None,
    inventory: InventorySpec = None,
    *,
    patterns: str | Sequence[str] | None = None,
    options: RunOptions | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> dict[str, HostResult]:
    """Run a put or get on the selected hosts; ``{host name: HostResult}``."""
    selected = select_hosts(hosts, groups, inventory, patterns)
    return await run_plan(make_plan(transfer, selected, options or RunOptions()), on_event)


def put(
    local: str | Path | Sequence[str | Path],
    remote: str,
    hosts: HostSpec | Sequence[HostSpec] | None = None,
    groups: str | Sequence[str] | None = None,
    inventory: InventorySpec = None,
    *,
    recursive: bool = False,
    preserve: bool = False,
    verify: bool = False,
    options: RunOptions | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> dict[str, HostResult]:
    """Copy local files to every selected host (atomically; see :mod:`engine.transfer`)."""
    sources = [local] if isinstance(local, str | Path) else list(local)
    transfer = Transfer("put", tuple(str(s) for s in sources), remote, recursive, preserve, verify)
    return asyncio.run(
        transfer_async(transfer, hosts, groups, inventory, options=options, on_event=on_event)
    )


def get(
    remote: str | Sequence[str],
    local_dir: str | Path,
    hosts: HostSpec | Sequence[HostSpec] | None = None,
    groups: str | Sequence[str] | None = None,
    inventory: InventorySpec = None,
    *,
    recursive: bool = False,
    preserve: bool = False,
    verify: bool = False,
    options: RunOptions | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> dict[str, HostResult]:
    """Copy remote files from every selected host into ``local_dir/<host>/``."""
    sources = [remote] if isinstance(remote, str) else list(remote)
    transfer = Transfer("get", tuple(sources), str(local_dir), recursive, preserve, verify)
    return asyncio.run(
        transfer_async(transfer, hosts, groups, inventory, options=options, on_event=on_event)
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
        on_event: Callable[[Event], None] | None = None,
    ) -> dict[str, HostResult]:
        """Run one operation on the session's hosts over their open connections."""
        plan = make_plan(operation, self.hosts, self.options)
        return await run_plan(plan, on_event, self.pool)

    async def run(
        self, command: str | Command, on_event: Callable[[Event], None] | None = None
    ) -> dict[str, HostResult]:
        return await self.execute(command, on_event)

    async def close(self) -> None:
        await self.pool.close_all()
