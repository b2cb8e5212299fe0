"""One host's part of a run: connect, run, collect, always end in a HostResult."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hostbatch.engine.plan import Plan
from hostbatch.engine.transfer import (
    LocalItem,
    ProgressMeter,
    TransferStats,
    get_from_host,
    preflight_put,
    put_to_host,
)
from hostbatch.errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    HostbatchError,
    HostKeyError,
    RemoteFileError,
)
from hostbatch.models import (
    Command,
    Event,
    Host,
    HostResult,
    OutputChunk,
    Progress,
    Started,
    Status,
    Stream,
    Transfer,
)
from hostbatch.transport.base import OutputSink, Transport
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
    if isinstance(error, RemoteFileError):
        return Status.TRANSFER_FAILED
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


@dataclass
class _Outcome:
    status: Status = Status.ERROR
    exit_status: int | None = None
    error: str | None = None
    stats: TransferStats = field(default_factory=TransferStats)


@functools.lru_cache(maxsize=4)
def _put_items(transfer: Transfer) -> list[list[LocalItem]]:
    """Local sources walked once per process, not once per host."""
    return preflight_put(transfer)


async def _operate(
    plan: Plan, host: Host, transport: Transport, output: OutputSink, emit: Emit
) -> _Outcome:
    operation = plan.operation
    if isinstance(operation, Command):
        exit_status = await transport.run(operation.text, output, _timeout(plan))
        return _Outcome(Status.OK if exit_status == 0 else Status.FAILED, exit_status)

    def report(done: int, total: int) -> None:
        emit(Progress(host.name, done, total))

    if operation.direction == "put":
        items = _put_items(operation)
        meter = ProgressMeter(sum(i.size for group in items for i in group), report)
        stats = await put_to_host(transport, operation, items, meter)
    else:
        stats = await get_from_host(transport, operation, host.name, report)
    return _Outcome(Status.OK, stats=stats)


async def run_host(plan: Plan, host: Host, emit: Emit) -> HostResult:
    """Run the plan's operation on *host*; every failure becomes part of the result."""
    started = time.time()
    emit(Started(host.name, started))
    tails = {
        "stdout": OutputTail(plan.limits.output_limit),
        "stderr": OutputTail(plan.limits.output_limit),
    }

    def output(stream: Stream, data: bytes) -> None:
        tails[stream].add(data)
        emit(OutputChunk(host.name, stream, data))

    outcome = _Outcome()
    transport: Transport | None = None
    try:
        transport = get_transport(plan.transport_for(host))(host, plan.options)
        await _connect(transport, plan)
        outcome = await _operate(plan, host, transport, output, emit)
    except HostbatchError as exc:
        outcome.status, outcome.error = status_for(exc), exc.message
    except Exception as exc:  # a bug or an untranslated library error: this host only
        outcome.error = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        if transport is not None:
            await transport.close()
    return HostResult(
        host=host.name,
        status=outcome.status,
        exit_status=outcome.exit_status,
        stdout=bytes(tails["stdout"].data),
        stderr=bytes(tails["stderr"].data),
        error=outcome.error,
        started=started,
        ended=time.time(),
        truncated=any(t.dropped for t in tails.values()),
        files=outcome.stats.files,
        bytes_transferred=outcome.stats.bytes,
    )


def _timeout(plan: Plan) -> float | None:
    operation = plan.operation
    own = operation.timeout if isinstance(operation, Command) else None
    return own or plan.limits.command_timeout
