"""Reachability: TCP connect time, SSH banner, and whether login succeeds, per host.

Probes run through the inline executor (:func:`for_each_host`), like a plan's hosts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hostbatch.engine.executors.inline import for_each_host
from hostbatch.engine.hostrun import status_for
from hostbatch.errors import HostbatchError
from hostbatch.logs import logger, redact
from hostbatch.models import Host, Status
from hostbatch.transport.base import ConnectOptions
from hostbatch.transport.registry import get_transport

# Summary order: fully usable first, then by how far the host got.
ORDER = (
    "ok",
    "auth failed",
    "host key rejected",
    "no banner",
    "timed out",
    "refused",
    "unreachable",
    "error",
)


@dataclass(frozen=True)
class ProbeResult:
    host: str
    address: str
    port: int
    status: str  # one of ORDER
    tcp_ms: float | None = None
    banner: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def sort_key(self) -> tuple[int, float]:
        return ORDER.index(self.status), self.tcp_ms if self.tcp_ms is not None else float("inf")


def _result(
    host: Host,
    status: str,
    *,
    tcp_ms: float | None = None,
    banner: str | None = None,
    error: str | None = None,
) -> ProbeResult:
    return ProbeResult(host.name, host.hostname, host.port, status, tcp_ms, banner, error)


async def _tcp_and_banner(host: Host, timeout: float) -> tuple[float, str | None]:
    began = time.perf_counter()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host.hostname, host.port), timeout
    )
    tcp_ms = (time.perf_counter() - began) * 1000
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        return tcp_ms, None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return tcp_ms, line.decode("utf-8", "replace").strip() or None


async def probe_host(host: Host, options: ConnectOptions, transport: str) -> ProbeResult:
    """Connect, read the banner, then log in with the host's transport and credentials."""
    try:
        tcp_ms, banner = await _tcp_and_banner(host, options.connect_timeout)
    except ConnectionRefusedError:
        return _result(host, "refused", error="connection refused")
    except TimeoutError:
        return _result(host, "timed out", error="TCP connect timed out")
    except OSError as exc:
        return _result(host, "unreachable", error=exc.strerror or str(exc))
    if banner is None or not banner.startswith("SSH-"):
        return _result(
            host,
            "no banner",
            tcp_ms=tcp_ms,
            banner=banner,
            error=f"no SSH banner within {options.connect_timeout:g}s",
        )
    session = get_transport(host.transport or transport)(host, options)
    try:
        await session.connect()
    except HostbatchError as exc:
        status = {Status.AUTH_FAILED: "auth failed", Status.HOSTKEY: "host key rejected"}.get(
            status_for(exc), "unreachable"
        )
        return _result(host, status, tcp_ms=tcp_ms, banner=banner, error=exc.message)
    except Exception as exc:  # a bug or an untranslated library error: this host only
        logger.exception("%s: internal error while probing", host.name)
        error = redact(f"internal error: {type(exc).__name__}: {exc}")
        return _result(host, "error", tcp_ms=tcp_ms, banner=banner, error=error)
    finally:
        await session.close()
    return _result(host, "ok", tcp_ms=tcp_ms, banner=banner)


async def probe_all(
    hosts: Sequence[Host],
    options: ConnectOptions,
    *,
    transport: str,
    fanout: int,
    on_result: Callable[[ProbeResult], None] | None = None,
) -> list[ProbeResult]:
    """Probe every host, at most *fanout* at once; sorted by status, then latency.

    An unknown or uninstalled transport raises before any host is probed."""
    for name in {host.transport or transport for host in hosts}:
        get_transport(name)
    results: list[ProbeResult] = []

    async def probe(host: Host) -> None:
        result = await probe_host(host, options, transport)
        results.append(result)
        if on_result is not None:
            on_result(result)

    await for_each_host(hosts, fanout, probe)
    return sorted(results, key=ProbeResult.sort_key)
