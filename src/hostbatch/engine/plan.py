"""A Plan: one operation on a set of hosts, with the run's limits and connect options."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hostbatch.engine.limits import Limits
from hostbatch.errors import UsageError
from hostbatch.models import Command, CommandSet, Host, Transfer
from hostbatch.transport.base import ConnectOptions
from hostbatch.transport.registry import DEFAULT, NAMES


@dataclass(frozen=True)
class Plan:
    """Everything an executor needs; picklable, so worker processes receive it whole."""

    operation: Command | CommandSet | Transfer
    hosts: tuple[Host, ...]
    limits: Limits = field(default_factory=Limits)
    options: ConnectOptions = field(default_factory=ConnectOptions)
    transport: str = DEFAULT  # for hosts that do not name their own

    def __post_init__(self) -> None:
        if not self.hosts:
            raise UsageError("nothing to do: no hosts selected")
        if self.transport not in NAMES:
            raise UsageError(
                f"unknown transport '{self.transport}' (choose from {', '.join(NAMES)})"
            )
        names = [h.name for h in self.hosts]
        if len(set(names)) != len(names):
            raise UsageError("a host appears twice in the plan")

    def transport_for(self, host: Host) -> str:
        return host.transport or self.transport

    def shard(self, index: int, count: int) -> Plan:
        """Every *count*-th host from *index*, with the fanout split between shards."""
        fanout = max(1, -(-self.limits.fanout_or_default() // count))
        return replace(
            self, hosts=self.hosts[index::count], limits=replace(self.limits, fanout=fanout)
        )
