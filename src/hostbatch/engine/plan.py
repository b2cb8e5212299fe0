"""A Plan: one operation on a set of hosts, with the run's limits and connect options."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from hostbatch.engine.limits import Limits
from hostbatch.engine.transfer import LocalItem, preflight_put
from hostbatch.errors import UsageError
from hostbatch.models import Command, CommandSet, Host, Transfer
from hostbatch.transport.base import ConnectOptions
from hostbatch.transport.registry import DEFAULT, NAMES

LocalSources = tuple[tuple[LocalItem, ...], ...]


def check_hosts(hosts: Sequence[Host], transport: str) -> None:
    """Bad input for a whole run: no hosts, a host twice, an unknown default transport."""
    if not hosts:
        raise UsageError("nothing to do: no hosts selected")
    if transport not in NAMES:
        raise UsageError(f"unknown transport '{transport}' (choose from {', '.join(NAMES)})")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise UsageError("a host appears twice in the plan")


@dataclass(frozen=True)
class Plan:
    """Everything an executor needs; picklable, so worker processes receive it whole.

    For a put, ``local_items`` holds each source's files and directories with their sizes,
    walked once when the plan is made (a missing or unreadable source raises here, before
    any connection); every host, in every worker, sends exactly those."""

    operation: Command | CommandSet | Transfer
    hosts: tuple[Host, ...]
    limits: Limits = field(default_factory=Limits)
    options: ConnectOptions = field(default_factory=ConnectOptions)
    transport: str = DEFAULT  # for hosts that do not name their own
    local_items: LocalSources = ()

    def __post_init__(self) -> None:
        check_hosts(self.hosts, self.transport)
        operation = self.operation
        if (
            isinstance(operation, Transfer)
            and operation.direction == "put"
            and not self.local_items
        ):
            walked = tuple(tuple(items) for items in preflight_put(operation))
            object.__setattr__(self, "local_items", walked)

    def transport_for(self, host: Host) -> str:
        return host.transport or self.transport

    def shard(self, index: int, count: int) -> Plan:
        """Every *count*-th host from *index*, with the fanout split between shards."""
        fanout = max(1, -(-self.limits.fanout_or_default() // count))
        return replace(
            self, hosts=self.hosts[index::count], limits=replace(self.limits, fanout=fanout)
        )
