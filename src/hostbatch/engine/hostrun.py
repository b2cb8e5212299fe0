"""One host's part of a run: connect, run, collect, always end in a HostResult.

``emit`` is the engine's event callback: it never raises (the executors call the sinks
behind it and stop the run when one fails), so nothing a sink does can become a host's
result.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from hostbatch.engine.admission import Gate, drop_delay
from hostbatch.engine.command import run_command
from hostbatch.engine.plan import Plan
from hostbatch.engine.pool import Shared, TransportPool, connected
from hostbatch.engine.transfer import (
    ProgressMeter,
    TransferStats,
    get_from_host,
    put_to_host,
)
from hostbatch.errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    DeviceCommandError,
    HostbatchError,
    HostKeyError,
    RemoteFileError,
    StartupDropped,
    TransportError,
    UsageError,
)
from hostbatch.logs import logger, redact
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
from hostbatch.transport.base import DeviceTransport, OutputSink, SharesJumps, Transport
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


@dataclass
class _Starts:
    """One host's connection attempts: seconds spent starting (waits for admission not
    included), starts the server dropped, other failures retried."""

    spent: float = 0.0
    drops: int = 0
    retries: int = 0


async def _attempt(transport: Transport, gate: Gate | None, starts: _Starts) -> None:
    """One connection start, admitted by *gate*, which learns how it ended."""
    ticket = await gate.enter() if gate is not None else None
    began = time.monotonic()
    try:
        await transport.connect()
    except StartupDropped:
        if gate is not None and ticket is not None:
            gate.dropped_by_server(ticket)
        raise
    except BaseException:
        if gate is not None and ticket is not None:
            gate.failed(ticket)
        raise
    finally:
        starts.spent += time.monotonic() - began
    if gate is not None and ticket is not None:
        gate.succeeded(ticket)


def _retry_delay(exc: TransportError, plan: Plan, starts: _Starts) -> float:
    """How long to wait before the next start, or raise *exc* when there is none.

    A start the server dropped before the handshake (MaxStartups) is retried while the
    host's starts and waits fit in the connect timeout. A refusal, an auth or host-key
    failure never; other connect failures and timeouts ``--retries`` times, with
    exponential backoff and jitter."""
    if isinstance(exc, StartupDropped):
        starts.drops += 1
        delay = drop_delay(starts.drops)
        budget = plan.options.connect_timeout
        if starts.spent + delay >= budget:
            raise StartupDropped(
                f"{exc.message}; {starts.drops} starts dropped by the server within the "
                f"{budget:g}s connect timeout (sshd MaxStartups?)",
                host=exc.host,
            ) from None
        starts.spent += delay
        return delay
    if isinstance(exc, ConnectionRefused) or starts.retries >= plan.limits.connect_retries:
        raise exc
    delay = plan.limits.retry_backoff * 2.0**starts.retries * random.uniform(0.5, 1.0)
    starts.retries += 1
    return delay


async def _connect(transport: Transport, plan: Plan, host: Host, gate: Gate | None) -> None:
    """Connect, through admission; retried as :func:`_retry_delay` says."""
    starts = _Starts()
    where = f"{host.hostname}:{host.port} ({plan.transport_for(host)})"
    while True:
        logger.debug("%s: connecting to %s", host.name, where)
        try:
            await _attempt(transport, gate, starts)
        except (ConnectError, ConnectTimeout) as exc:
            delay = _retry_delay(exc, plan, starts)
            logger.debug(
                "%s: %s; retry (%d dropped, %d of %d retries) in %.2gs",
                *(host.name, exc.message, starts.drops, starts.retries),
                *(plan.limits.connect_retries, delay),
            )
            await asyncio.sleep(delay)
            continue
        logger.debug("%s: connected", host.name)
        return


@dataclass
class _Outcome:
    status: Status = Status.ERROR
    exit_status: int | None = None
    error: str | None = None
    stats: TransferStats = field(default_factory=TransferStats)
    outputs: tuple[CommandOutput, ...] = ()


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
        ran = await run_command(transport, host, operation, output, _timeout(plan))
        ok = ran.exit_status == 0 and ran.error is None
        return _Outcome(Status.OK if ok else Status.FAILED, ran.exit_status, ran.error)
    if isinstance(operation, CommandSet):
        return await _command_set(plan, host, transport, operation, output, outputs=outputs)
    return await _transfer(plan, host, transport, operation, emit)


async def _transfer(
    plan: Plan, host: Host, transport: Transport, transfer: Transfer, emit: Emit
) -> _Outcome:
    """One host's put or get, within ``limits.command_timeout`` as a whole (its --verify
    included); past that deadline it is cancelled (temporary files removed) and timed out."""

    def report(done: int, total: int) -> None:
        emit(Progress(host.name, done, total))

    timeout = plan.limits.command_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            if transfer.direction == "put":
                items = [list(source) for source in plan.local_items]
                meter = ProgressMeter(sum(i.size for group in items for i in group), report)
                stats = await put_to_host(transport, transfer, items, meter, deadline=deadline)
            else:
                stats = await get_from_host(
                    transport, transfer, host.name, report, deadline=deadline
                )
    except (TimeoutError, HostbatchError) as exc:
        # verify()'s sha256sum gets the time left, so it may hit the deadline first
        if timeout is not None and (scope.expired() or isinstance(exc, CommandTimeout)):
            raise CommandTimeout(
                f"{transfer.direction} did not finish within its {timeout:g}s timeout",
                host=host.name,
            ) from None
        raise
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


async def _open(
    plan: Plan, host: Host, pool: TransportPool | None, shared: Shared | None
) -> Transport:
    """A connected transport: a new one, or the *pool*'s open one for *host*. Its start is
    admitted by *shared*'s gate for its destination; jump hosts are reached over
    *shared* connections where the transport can (asyncssh)."""
    factory = get_transport(plan.transport_for(host))
    gate = shared.admission.gate(host) if shared is not None else None

    def make(target: Host) -> Transport:
        transport = factory(target, plan.options)
        if shared is not None and isinstance(transport, SharesJumps):
            transport.share_jumps(shared.jumps)
        return transport

    def connect(transport: Transport) -> Awaitable[None]:
        return _connect(transport, plan, host, gate)

    if pool is not None:
        return await pool.acquire(host, make, connect)
    return await connected(make(host), connect)


async def run_host(
    plan: Plan,
    host: Host,
    emit: Emit,
    pool: TransportPool | None = None,
    shared: Shared | None = None,
) -> HostResult:
    """Run the plan's operation on *host*; every failure becomes part of the result.

    With a *pool*, the host's open connection is reused (and kept open afterwards);
    a connection that failed is dropped from the pool so the next use reconnects.
    *shared* is what the run's hosts share (jump-host connections); None: nothing.
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
    keep = True  # a pooled connection stays open unless it failed (cancelled: still fine)
    try:
        transport = await _open(plan, host, pool, shared)
        outcome = await _operate(plan, host, transport, output, emit, outputs=outputs)
    except HostbatchError as exc:
        outcome.status, outcome.error = status_for(exc), exc.message
        outcome.outputs = tuple(outputs)
        keep = outcome.status.reached and outcome.status is not Status.DROPPED
    except Exception as exc:  # a bug or an untranslated library error: this host only
        logger.exception("%s: internal error", host.name)
        outcome.error = redact(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        await _release(host, transport, pool, keep=keep)
    logger.debug("%s: done (%s)", host.name, outcome.status.value)
    return _host_result(host, outcome, tails, started)


async def _release(
    host: Host, transport: Transport | None, pool: TransportPool | None, *, keep: bool
) -> None:
    if pool is None and transport is not None:
        await transport.close()
        logger.debug("%s: connection closed", host.name)
    elif pool is not None and not keep:
        await pool.discard(host.name)


def _host_result(
    host: Host, outcome: _Outcome, tails: dict[str, OutputTail], started: float
) -> HostResult:
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
