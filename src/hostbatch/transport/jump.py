"""Shared jump-host connections: OpenSSH's ControlMaster, within one run.

Hosts whose jump host resolves to the same hop (same address, port, user and
credentials, reached through the same hops before it) share one SSH connection to it;
each host is one direct-tcpip channel over that connection. When every connection to a
hop carries :data:`DEFAULT_CHANNEL_BUDGET` channels, the next host opens one more
connection to it, never one per host.

The channel budget: OpenSSH's ``MaxSessions`` counts session channels (shells, commands,
subsystems), not direct-tcpip channels; forwarding is governed only by
``AllowTcpForwarding``/``PermitOpen`` and sshd's hard limit of 16384 channels per
connection (``CHANNELS_MAX_CHANNELS`` in channels.h). What does bind is the bastion's
per-connection sshd process: one poll loop moving every channel's bytes, one socket and
a 2 MB window per channel. 128 channels keeps that process's share of work bounded while
200 hosts need 2 logins and the default fanout (256) at most 2 per hop.

A hop that cannot be reached (refused, auth, host key, timeout) fails every host behind
it with its error, and is not tried again in this run: one login attempt per hop, not
one per host. A connection that drops mid-run fails the hosts still to come behind it
the same way. Only a start the server dropped before the SSH handshake (MaxStartups,
:class:`~hostbatch.errors.StartupDropped`) is tried again. This module imports no SSH
library: the transport hands it an ``opener`` that returns a connected
:class:`JumpConnection`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

from hostbatch.errors import ConnectionLost, StartupDropped, TransportError
from hostbatch.logs import logger
from hostbatch.models import Host

DEFAULT_CHANNEL_BUDGET = 128


class JumpConnection(Protocol):
    """A logged-in connection to a jump host (for asyncssh: its AsyncsshTransport)."""

    def alive(self) -> bool:
        """False once the connection has closed or dropped."""

    async def close(self) -> None:
        """Close; never raises."""


C = TypeVar("C", bound=JumpConnection)


def hop_key(hop: Host) -> Hashable:
    """What makes two jump hosts the same connection: where, as whom, with what, and
    through which hops before it. Secrets compare by value and never print."""
    creds = hop.credentials
    before = hop_key(hop.jump) if hop.jump is not None else None
    identity = (creds.username, creds.key_file, creds.password, creds.passphrase)
    return (hop.hostname.lower(), hop.port, identity, before)


class _Shared(Generic[C]):
    """One connection to a hop and how many channels (hosts) use it now."""

    def __init__(self, opening: asyncio.Future[C]) -> None:
        self.opening = opening
        self.channels = 0


class Lease(Generic[C]):
    """One host's channel on a shared connection; :meth:`release` when the host is done."""

    def __init__(self, shared: _Shared[C], connection: C) -> None:
        self._shared: _Shared[C] | None = shared
        self.connection = connection

    def release(self) -> None:
        if self._shared is not None:
            self._shared.channels -= 1
            self._shared = None


class JumpHub:
    """The shared jump-host connections of one run (or one Session), in one process.

    ``logins`` counts connections opened per hop name (tests and benchmarks read it)."""

    def __init__(self, budget: int = DEFAULT_CHANNEL_BUDGET) -> None:
        if budget < 1:
            raise ValueError(f"jump channel budget must be at least 1 (got {budget})")
        self.budget = budget
        self.logins: dict[str, int] = {}
        self._shared: dict[Hashable, list[_Shared[Any]]] = {}
        self._failed: dict[Hashable, TransportError] = {}

    async def lease(self, key: Hashable, name: str, opener: Callable[[], Awaitable[C]]) -> Lease[C]:
        """A channel's place on a connection to hop *key*, opening one (with *opener*)
        when every open one is at the budget. Raises the hop's TransportError."""
        failed = self._failed.get(key)
        if failed is not None:
            raise failed
        shared = self._place(key, name, opener)
        shared.channels += 1
        try:
            connection: C = await asyncio.shield(shared.opening)
        except BaseException:
            shared.channels -= 1
            raise
        if not connection.alive():
            shared.channels -= 1
            raise self._fail(key, name, ConnectionLost("connection to it was lost"))
        return Lease(shared, connection)

    def _place(self, key: Hashable, name: str, opener: Callable[[], Awaitable[C]]) -> _Shared[C]:
        """A connection with room for one more channel, else a new one being opened."""
        connections = self._shared.setdefault(key, [])
        for shared in connections:
            if shared.channels < self.budget:
                return shared
        opening = asyncio.ensure_future(opener())
        fresh: _Shared[C] = _Shared(opening)
        connections.append(fresh)
        self.logins[name] = self.logins.get(name, 0) + 1
        opening.add_done_callback(lambda done: self._opened(key, name, fresh, done))
        return fresh

    def _opened(
        self, key: Hashable, name: str, shared: _Shared[Any], done: asyncio.Future[Any]
    ) -> None:
        if done.cancelled():
            self._forget(key, shared)
            return
        error = done.exception()
        if error is None:
            return
        self._forget(key, shared)
        if isinstance(error, TransportError) and not isinstance(error, StartupDropped):
            self._fail(key, name, error)

    def _fail(self, key: Hashable, name: str, error: TransportError) -> TransportError:
        if key not in self._failed:
            self._failed[key] = error
            logger.warning("jump host %s: %s; every host behind it fails", name, error.message)
        return self._failed[key]

    def _forget(self, key: Hashable, shared: _Shared[Any]) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._shared[key].remove(shared)

    def forget_failures(self) -> None:
        """A new operation in a Session tries failed or dropped hops again."""
        self._failed.clear()
        for key, connections in list(self._shared.items()):
            self._shared[key] = [s for s in connections if not _dead(s)]

    async def close(self) -> None:
        """Close every connection (the run is over); a hop still opening is cancelled."""
        openings = [s.opening for connections in self._shared.values() for s in connections]
        self._shared.clear()
        for opening in openings:
            opening.cancel()
        opened = await asyncio.gather(*openings, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in opened if not isinstance(c, BaseException)))


def _dead(shared: _Shared[Any]) -> bool:
    opening = shared.opening
    if not opening.done():
        return False
    return opening.cancelled() or opening.exception() is not None or not opening.result().alive()
