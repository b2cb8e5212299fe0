"""One host's part of a run: connect, run, collect, always end in a HostResult."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from hostbatch.engine.plan import Plan
from hostbatch.engine.pool import TransportPool
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
    DeviceCommandError,
    HostbatchError,
    HostKeyError,
    RemoteFileError,
    UsageError,
)
from hostbatch.models import (
    Command,
    CommandOutput,
    CommandSet,
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
from hostbatch.transport.base import DeviceTransport, OutputSink, Transport
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
    if isinstance(error, DeviceCommandError):
        return Status.FAILED
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
    outputs: tuple[CommandOutput, ...] = ()


@functools.lru_cache(maxsize=4)
def _put_items(transfer: Transfer) -> list[list[LocalItem]]:
    """Local sources walked once per process, not once per host."""
    return preflight_put(transfer)


async def _operate(
    plan: Plan,
    host: Host,
    transport: Transport,
    output: OutputSink,
    emit: Emit,
    *,
    outputs: list[CommandOutput],
) -> _Outcome:
    operation = plan.operation
    if isinstance(operation, Command):
        exit_status = await transport.run(operation.text, output, _timeout(plan))
        return _Outcome(Status.OK if exit_status == 0 else Status.FAILED, exit_status)
    if isinstance(operation, CommandSet):
        return await _command_set(plan, host, transport, operation, output, outputs=outputs)

    def report(done: int, total: int) -> None:
        emit(Progress(host.name, done, total))

    if operation.direction == "put":
        items = _put_items(operation)
        meter = ProgressMeter(sum(i.size for group in items for i in group), report)
        stats = await put_to_host(transport, operation, items, meter)
    else:
        stats = await get_from_host(transport, operation, host.name, report)
    return _Outcome(Status.OK, stats=stats)


async def _command_set(
    plan: Plan,
    host: Host,
    transport: Transport,
    commands: CommandSet,
    output: OutputSink,
    *,
    outputs: list[CommandOutput],
) -> _Outcome:
    """Each command in turn, outputs kept apart in *outputs* as each one ends (so they
    outlive a timeout or a lost connection); devices run the set in one CLI session."""
    if isinstance(transport, DeviceTransport):
        timeout = commands.timeout or _timeout(plan)
        await transport.run_commands(replace(commands, timeout=timeout), output, outputs)
    elif commands.device_only:
        raise UsageError(
            f"--config, --save and --parse need a network device; {host.name} has no device_type"
        )
    else:
        for text in commands.commands:
            captured = bytearray()

            def tee(stream: Stream, data: bytes, captured: bytearray = captured) -> None:
                captured.extend(data)
                output(stream, data)

            try:
                status = await transport.run(text, tee, commands.timeout or _timeout(plan))
            except HostbatchError as exc:
                decoded = bytes(captured).decode("utf-8", errors="replace")
                outputs.append(CommandOutput(text, decoded, error=exc.message))
                raise
            decoded = bytes(captured).decode("utf-8", errors="replace")
            outputs.append(CommandOutput(text, decoded, exit_status=status))
    failed = [o for o in outputs if o.error or (o.exit_status not in (None, 0))]
    outcome = _Outcome(Status.FAILED if failed else Status.OK, outputs=tuple(outputs))
    if failed:
        first = failed[0]
        outcome.exit_status = first.exit_status
        outcome.error = f"{first.command}: {first.error or f'exit status {first.exit_status}'}"
    return outcome


async def run_host(
    plan: Plan, host: Host, emit: Emit, pool: TransportPool | None = None
) -> HostResult:
    """Run the plan's operation on *host*; every failure becomes part of the result.

    With a *pool*, the host's open connection is reused (and kept open afterwards);
    a connection that failed is dropped from the pool so the next use reconnects.
    """
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
    outputs: list[CommandOutput] = []  # a CommandSet's finished steps, kept on failure too
    transport: Transport | None = None
    factory = get_transport(plan.transport_for(host))
    try:
        if pool is None:
            transport = factory(host, plan.options)
            await _connect(transport, plan)
        else:
            transport = await pool.acquire(
                host, lambda h: factory(h, plan.options), lambda t: _connect(t, plan)
            )
        outcome = await _operate(plan, host, transport, output, emit, outputs=outputs)
    except HostbatchError as exc:
        outcome.status, outcome.error = status_for(exc), exc.message
        outcome.outputs = tuple(outputs)
    except Exception as exc:  # a bug or an untranslated library error: this host only
        outcome.error = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        if pool is None and transport is not None:
            await transport.close()
        elif pool is not None and (not outcome.status.reached or outcome.status is Status.DROPPED):
            await pool.discard(host.name)
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
        outputs=outcome.outputs,
    )


def _timeout(plan: Plan) -> float | None:
    operation = plan.operation
    own = operation.timeout if isinstance(operation, Command | CommandSet) else None
    return own or plan.limits.command_timeout
