"""Admission of connection starts (TCP, banner, key exchange, login), apart from the fanout
of running sessions, adapted per destination to what the server accepts.

OpenSSH's ``MaxStartups 10:30:100`` (its default) drops 30% of new connections once 10
are unauthenticated, rising to all of them at 100: sshd closes the socket right after
accept, and the client sees EOF or a reset before the banner
(:class:`~hostbatch.errors.StartupDropped`). Many inventory hosts behind one address (NAT,
containers on one host, a lab behind one port, hosts behind one jump host) meet exactly
that. Each destination gets a :class:`Gate` that admits at most ``window`` starts at
once and adapts it AIMD-style, as TCP does its congestion window:

* the window starts at :data:`MAX_WINDOW` (no limit below the fanout), so a server that
  accepts everything costs nothing;
* a dropped start halves it (from the starts in flight, if fewer), at most once per
  round: drops of starts begun before the last decrease do not decrease it again;
* each start that gets past the key exchange adds ``1/window`` (one per window's worth
  of successful starts), up to :data:`MAX_WINDOW`.

The dropped host waits a jittered, exponentially growing delay (:func:`drop_delay`) and
tries again, as often as needed while its own starts and waits stay within the connect
timeout (time waiting for admission does not count). A destination is its address and
port, and for hosts behind jump hosts the jump chain too: the jump host is the one that
connects. Each worker process has its own gates.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Hashable
from dataclasses import dataclass

from hostbatch.logs import logger
from hostbatch.models import Host, Throttled
from hostbatch.transport.jump import hop_key

MAX_WINDOW = 1024.0
MIN_WINDOW = 1.0
DECREASE = 0.5
DROP_BACKOFF = 0.05  # seconds before the first retry of a dropped start (full jitter)
DROP_BACKOFF_CAP = 1.0


def drop_delay(drops: int) -> float:
    """Wait before retrying a start dropped *drops* times in a row: full jitter over an
    exponentially growing cap (0.05 s, 0.1 s, ... 1 s)."""
    return random.uniform(0, min(DROP_BACKOFF_CAP, DROP_BACKOFF * 2 ** (drops - 1)))


@dataclass(frozen=True)
class Ticket:
    """One admitted start: the gate's round (decrease count) when it began."""

    round: int


class Gate:
    """The admission of starts toward one destination (see the module docstring)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.window = MAX_WINDOW
        self.in_flight = 0
        self.round = 0
        self.dropped = 0  # dropped starts since the last report
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def limit(self) -> int:
        return max(1, int(self.window))

    async def enter(self) -> Ticket:
        """Wait for room for one more start (first come, first served)."""
        if not self._waiters and self.in_flight < self.limit:
            self.in_flight += 1
            return Ticket(self.round)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # in_flight was counted for us by _wake
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._leave()
            else:
                self._waiters.remove(waiter)
            raise
        return Ticket(self.round)

    def succeeded(self, _ticket: Ticket) -> None:
        self.window = min(MAX_WINDOW, self.window + 1 / self.window)
        self._leave()

    def dropped_by_server(self, ticket: Ticket) -> None:
        self.dropped += 1
        if ticket.round == self.round:  # once per round: the first drop of a burst
            self.window = max(MIN_WINDOW, min(self.window, self.in_flight) * DECREASE)
            self.round += 1
            logger.debug("%s dropped a start: %d starts at once now", self.label, self.limit)
        self._leave()

    def failed(self, _ticket: Ticket) -> None:
        """Ended otherwise (refused, auth, host key, timeout): says nothing about load."""
        self._leave()

    def _leave(self) -> None:
        self.in_flight -= 1
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)


def destination(host: Host) -> tuple[Hashable, str]:
    """Where *host*'s starts go (its gate's key) and how the summary names it."""
    address = f"{host.hostname}:{host.port}"
    if host.jump is None:
        return (host.hostname.lower(), host.port), address
    key = (host.hostname.lower(), host.port, hop_key(host.jump))
    return key, f"{address} via {host.jump.name}"


class Admission:
    """The gates of one run (or Session) in one process, by destination."""

    def __init__(self) -> None:
        self._gates: dict[Hashable, Gate] = {}

    def gate(self, host: Host) -> Gate:
        key, label = destination(host)
        found = self._gates.get(key)
        if found is None:
            found = self._gates[key] = Gate(label)
        return found

    def reports(self) -> list[Throttled]:
        """A Throttled event for each destination that dropped starts since the last
        call, with the start concurrency it settled at."""
        events = []
        for gate in self._gates.values():
            if gate.dropped:
                events.append(Throttled(gate.label, gate.limit, gate.dropped))
                gate.dropped = 0
        return events
