"""One host's part of a run: connect, run, collect, always end in a HostResult."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hostbatch.engine.plan import Plan
from hostbatch.errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    HostbatchError,
    HostKeyError,
)
from hostbatch.models import Event, Host, HostResult, OutputChunk, Started, Status, Stream
from hostbatch.transport.base import Transport
from hostbatch.transport.registry import get_transport

Emit = Callable[[Event], None]


class OutputTail:
    """Keeps the last *limit* bytes of one stream; counts what was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess


def status_for(error: HostbatchError) -> Status:
    """Map an error to the summary's status."""
    if isinstance(error, AuthenticationError):
        return Status.AUTH_FAILED
    if isinstance(error, HostKeyError):
        return Status.HOSTKEY
    if isinstance(error, ConnectionLost):
        return Status.DROPPED
    if isinstance(error, ConnectTimeout | ConnectError):
        return Status.UNREACHABLE
    if isinstance(error, CommandTimeout):
        return Status.TIMEOUT
    return Status.ERROR


async def _connect(transport: Transport, plan: Plan) -> None:
    """Connect, retrying refused/unreachable hosts with exponential backoff."""
    attempt = 0
    while True:
        try:
            await transport.connect()
            return
        except ConnectError:
            if attempt >= plan.limits.connect_retries:
                raise
            await asyncio.sleep(plan.limits.retry_backoff * 2**attempt)
            attempt += 1


async def run_host(plan: Plan, host: Host, emit: Emit) -> HostResult:
    """Run the plan's command on *host*; every failure becomes part of the result."""
    started = time.time()
    emit(Started(host.name, started))
    tails = {
        "stdout": OutputTail(plan.limits.output_limit),
        "stderr": OutputTail(plan.limits.output_limit),
    }

    def output(stream: Stream, data: bytes) -> None:
        tails[stream].add(data)
        emit(OutputChunk(host.name, stream, data))

    status, exit_status, error = Status.ERROR, None, None
    transport: Transport | None = None
    try:
        transport = get_transport(plan.transport_for(host))(host, plan.options)
        await _connect(transport, plan)
        exit_status = await transport.run(plan.operation.text, output, _timeout(plan))
        status = Status.OK if exit_status == 0 else Status.FAILED
    except HostbatchError as exc:
        status, error = status_for(exc), exc.message
    except Exception as exc:  # a bug or an untranslated library error: this host only
        error = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        if transport is not None:
            await transport.close()
    return HostResult(
        host=host.name,
        status=status,
        exit_status=exit_status,
        stdout=bytes(tails["stdout"].data),
        stderr=bytes(tails["stderr"].data),
        error=error,
        started=started,
        ended=time.time(),
        truncated=any(t.dropped for t in tails.values()),
    )


def _timeout(plan: Plan) -> float | None:
    return plan.operation.timeout or plan.limits.command_timeout
