"""ICMP echo to many hosts at once (``hostbatch ping --icmp``), through icmplib.

icmplib is an optional dependency (``pip install 'hostbatch[icmp]'``), imported lazily.
Sockets: raw ICMP sockets where allowed (root with CAP_NET_RAW); otherwise unprivileged
datagram ICMP sockets, which Linux allows to the groups in ``net.ipv4.ping_group_range``.
The choice is automatic (:func:`use_raw_sockets` tries to open each kind; nothing is sent);
when neither opens, the error says which sysctl helps.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hostbatch.errors import MissingExtraError, UsageError
from hostbatch.inventory.patterns import natural_sorted
from hostbatch.models import Host

PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
DEFAULT_ICMP_TIMEOUT = 1.0
REACHABLE = "reachable"
NO_REPLY = "no reply"


@dataclass(frozen=True)
class EchoResult:
    """One host's echo replies: ``reachable`` (some replies) or ``no reply``."""

    host: str
    address: str
    sent: int
    received: int
    rtt_min_ms: float | None = None
    rtt_avg_ms: float | None = None
    rtt_max_ms: float | None = None
    error: str | None = None  # e.g. the name did not resolve

    @property
    def status(self) -> str:
        return REACHABLE if self.received else NO_REPLY

    @property
    def ok(self) -> bool:
        return self.received > 0

    @property
    def loss_percent(self) -> float:
        return 100.0 if not self.sent else 100.0 * (self.sent - self.received) / self.sent


def sort_results(results: Sequence[EchoResult]) -> list[EchoResult]:
    """Reachable first (as the TCP ping: ok first), then no reply; by name within each."""
    order = {name: index for index, name in enumerate(natural_sorted(r.host for r in results))}
    return sorted(results, key=lambda r: (not r.ok, order[r.host]))


def ping_group_allows(gids: Sequence[int], text: str | None = None) -> bool:
    """True when ``net.ipv4.ping_group_range`` includes one of *gids*."""
    try:
        raw = PING_GROUP_RANGE.read_text() if text is None else text
        low, high = (int(part) for part in raw.split())
    except (OSError, ValueError):
        return False
    return any(low <= gid <= high for gid in gids)


def _socket_opens(privileged: bool) -> bool:
    """True when an ICMP socket of that kind can be created here (nothing is sent)."""
    import icmplib

    try:
        icmplib.ICMPv4Socket(privileged=privileged).close()
    except icmplib.SocketPermissionError:
        return False
    return True


def use_raw_sockets() -> bool:
    """Raw sockets where allowed (root with CAP_NET_RAW), else unprivileged datagram
    sockets where ``net.ipv4.ping_group_range`` allows them; else a UsageError."""
    if os.geteuid() == 0 and _socket_opens(privileged=True):
        return True
    if _socket_opens(privileged=False):
        return False
    allowed = ping_group_allows([os.getegid(), *os.getgroups()])
    raise UsageError(
        "ICMP needs raw sockets (root with CAP_NET_RAW) or unprivileged ICMP sockets"
        + (
            ""
            if allowed
            else ": allow your group with sysctl -w net.ipv4.ping_group_range='0 2147483647'"
        )
    )


async def echo_host(
    host: Host, *, count: int, interval: float, timeout: float, privileged: bool
) -> EchoResult:
    """Echo *count* times to one host; never raises for the host's own failure."""
    import icmplib

    try:
        reply = await icmplib.async_ping(
            host.hostname, count=count, interval=interval, timeout=timeout, privileged=privileged
        )
    except icmplib.SocketPermissionError:
        raise UsageError("ICMP sockets are not permitted here (try as root)") from None
    except icmplib.ICMPLibError as exc:
        return EchoResult(host.name, host.hostname, 0, 0, error=str(exc) or type(exc).__name__)
    if not reply.packets_received:
        return EchoResult(host.name, reply.address, reply.packets_sent, 0)
    return EchoResult(
        host.name,
        reply.address,
        reply.packets_sent,
        reply.packets_received,
        reply.min_rtt,
        reply.avg_rtt,
        reply.max_rtt,
    )


async def echo_all(
    hosts: Sequence[Host],
    *,
    count: int = 3,
    interval: float = 0.2,
    timeout: float = DEFAULT_ICMP_TIMEOUT,
    fanout: int = 256,
) -> list[EchoResult]:
    """Echo every host in parallel (at most *fanout* at once), results sorted."""
    try:
        import icmplib  # noqa: F401  (checked here, used in echo_host)
    except ImportError:
        raise MissingExtraError("ping --icmp", "icmp", "icmplib") from None
    privileged = use_raw_sockets()
    gate = asyncio.Semaphore(fanout)

    async def one(host: Host) -> EchoResult:
        async with gate:
            return await echo_host(
                host, count=count, interval=interval, timeout=timeout, privileged=privileged
            )

    return sort_results(await asyncio.gather(*(one(h) for h in hosts)))
