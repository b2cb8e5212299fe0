"""Connections kept open across operations (the interactive shell): one per host; and
what the hosts of one run share (:class:`Shared`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hostbatch.engine.admission import Admission
from hostbatch.models import Host
from hostbatch.transport.base import Transport
from hostbatch.transport.jump import DEFAULT_CHANNEL_BUDGET, JumpHub

Connector = Callable[[Transport], Awaitable[None]]
Factory = Callable[[Host], Transport]


def alive(transport: Transport) -> bool:
    """False when the transport knows its connection was closed (by the server)."""
    check = getattr(transport, "alive", None)  # asyncssh, paramiko; others: assumed open
    return bool(check()) if callable(check) else True


async def connected(transport: Transport, connect: Connector) -> Transport:
    """*transport* once *connect* has opened it; closed again when connecting fails or is
    cancelled, so a failed start never leaves a half-open connection behind."""
    try:
        await connect(transport)
    except BaseException:
        await transport.close()
        raise
    return transport


class Shared:
    """What the hosts of one run (or of one Session, across its operations) share in one
    process: connections to jump hosts, and the admission of connection starts."""

    def __init__(self, jump_channels: int = DEFAULT_CHANNEL_BUDGET) -> None:
        self.jumps = JumpHub(jump_channels)
        self.admission = Admission()

    async def close(self) -> None:
        await self.jumps.close()


class TransportPool:
    """Open transports by host name. ``opened`` counts logins, so callers can show that
    a second command paid no new handshake."""

    def __init__(self) -> None:
        self._open: dict[str, Transport] = {}
        self.opened = 0
        self.reconnected: set[str] = set()
        self._ever: set[str] = set()
        self.shared = Shared()  # jump hosts stay connected while their hosts are

    def is_open(self, name: str) -> bool:
        return name in self._open

    async def acquire(self, host: Host, factory: Factory, connect: Connector) -> Transport:
        """The host's open transport, connecting (again) when there is none."""
        transport = self._open.get(host.name)
        if transport is not None:
            return transport
        transport = await connected(factory(host), connect)
        self.opened += 1
        if host.name in self._ever:
            self.reconnected.add(host.name)
        self._ever.add(host.name)
        self._open[host.name] = transport
        return transport

    async def discard(self, name: str) -> None:
        """Forget a host whose connection failed; the next acquire reconnects."""
        transport = self._open.pop(name, None)
        if transport is not None:
            await transport.close()

    async def close_all(self) -> None:
        transports, self._open = list(self._open.values()), {}
        await asyncio.gather(*(t.close() for t in transports))
        await self.shared.close()
