"""The agent executor: a per-user daemon that keeps connections open between commands.

``hostbatch run|put|get --persist [DURATION]`` hands its Plan to the agent over a Unix
socket and gets the events back; the agent runs the plan inline over its warm connections
(:class:`WarmPool`), so a later command on the same hosts makes no new login. Warm
connections run plain commands in a resident shell, no session each
(:mod:`hostbatch.engine.resident`; ``HOSTBATCH_RESIDENT=0`` in the client's env: off).

Socket: ``$XDG_RUNTIME_DIR/hostbatch/agent.sock`` (else ``/tmp/hostbatch-<uid>/``), the
directory 0700, the socket 0600; the agent reads the peer's uid with SO_PEERCRED and
answers anyone but its own user with one refusal frame, before unpickling a byte.

Protocol: frames of a 4-byte big-endian length and a pickle. The client sends one request,
``("run", plan, idle_seconds, cwd, env, version)``, ``("status",)`` or ``("stop",)``. For a run the
agent answers ``("events", [Event, ...])`` frames, then ``("done", reconnected_names)`` or
``("error", message)``; any byte from the client during a run (or its going away)
cancels the run (remote commands signalled, connections kept), answered ``("cancelled",)``.

Pool keys: a host's connection is reused only by a host with the same name, address,
port, user, credentials (secrets as HMACs under a per-agent random key), transport, jump
host, host-key policy and file, and that file's lines for the host. Nothing is written
to disk but the socket and a lock.

Expiry: a connection unused for the idle duration is closed; the agent exits when it has
had no run for that long (the latest run's ``--persist`` sets the duration), and on
``stop``. A run goes on in its client's working directory and with its ``HOME`` /
``SSH_AUTH_SOCK`` (relative paths and the ssh-agent are the client's), which are the
process's: runs from the same directory and environment go on at once (two terminals
looping over the same hosts), one from elsewhere waits until they end (:class:`Turns`,
first come first served) and its client is told so with a ``("waiting", text)`` frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import os
import pickle
import resource
import secrets
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostbatch import logs
from hostbatch.engine import loop as event_loop
from hostbatch.engine.executors.inline import run_hosts
from hostbatch.engine.hostrun import Emit
from hostbatch.engine.plan import Plan
from hostbatch.engine.pool import Connector, Factory, Shared, TransportPool, alive, connected
from hostbatch.engine.resident import SWITCH, resident
from hostbatch.engine.rollout import run_rollout
from hostbatch.errors import HostbatchError
from hostbatch.logs import redact
from hostbatch.models import Event, Finished, Host, HostResult, Secret
from hostbatch.transport import hostkeys
from hostbatch.transport.base import Transport

SOCKET_NAME = "agent.sock"
LOCK_NAME = "agent.lock"
HEADER = struct.Struct("!I")
MAX_FRAME = 1 << 30
START_WAIT = 15.0  # seconds the CLI waits for a new agent's socket
CANCEL_WAIT = 10.0  # seconds the CLI waits for a cancelled run's clean-up in the agent
ENV_PASSED = ("HOME", "SSH_AUTH_SOCK", SWITCH)  # the client's, applied while its run goes on
REFUSED = "refused: this agent serves only its own user"
WAITING = (
    "the agent is running a run from another directory or environment; "
    "this one starts when that ends ('hostbatch agent status' lists them)"
)
PROTOCOL = 1  # with hostbatch's version: a run's plan is only handed to the same code


def agent_version() -> str:
    import hostbatch  # here: the package is initialised by the time a request is made

    return f"{hostbatch.__version__}/{PROTOCOL}"


class AgentError(HostbatchError):
    """The agent could not be reached or started, or it failed a request."""


# -- where ------------------------------------------------------------------------------


def agent_dir() -> Path:
    """The agent's private directory (made 0700 when missing; refused when anyone but
    this user could enter it)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "hostbatch" if runtime else Path(f"/tmp/hostbatch-{os.getuid()}")
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = base.lstat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or not base.is_dir():
        raise AgentError(f"{base}: not a private directory of this user (want mode 0700)")
    return base


def socket_path() -> Path:
    return agent_dir() / SOCKET_NAME


def peer_uid(sock: socket.socket | Any) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def peer_allowed(sock: socket.socket | Any) -> bool:
    return peer_uid(sock) == os.getuid()


# -- frames -----------------------------------------------------------------------------


def encode(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """One message; EOFError when the other side closed."""
    try:
        (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
        if size > MAX_FRAME:
            raise EOFError("frame too large")
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        raise EOFError("connection closed") from None


# -- the pool ---------------------------------------------------------------------------


class Fingerprint:
    """Pool keys: what a connection's identity is made of, secrets as HMACs."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _secret(self, value: Secret | None) -> str:
        if value is None:
            return ""
        return hmac.new(self._key, value.reveal().encode(), hashlib.sha256).hexdigest()

    def _host(self, host: Host) -> tuple[object, ...]:
        creds = host.credentials
        jump = self._host(host.jump) if host.jump is not None else ()
        secrets_ = (creds.password, creds.passphrase, creds.secret)
        return (
            *(host.name, host.hostname, host.port, host.transport, host.device_type),
            *(creds.username, creds.key_file, *(self._secret(s) for s in secrets_), jump),
        )

    def of(self, plan: Plan, host: Host, env: Mapping[str, str]) -> str:
        """The key; it changes with the host's known_hosts lines too, so a connection is
        not reused once known_hosts no longer holds what it was opened under."""
        options = plan.options
        path = options.known_hosts_path
        trusted = tuple(hostkeys.key_lines(path, host.hostname, host.port))
        identity = (
            self._host(host),
            trusted if options.host_keys != "off" else (),
            plan.transport_for(host),
            *(options.host_keys, str(options.known_hosts_path), options.use_agent),
            *(options.keepalive, env.get("SSH_AUTH_SOCK", "")),
        )
        return hashlib.sha256(repr(identity).encode()).hexdigest()


@dataclass
class Warm:
    """One open connection of the agent."""

    host: Host
    transport: Transport
    opened: float  # time.time()
    last_used: float  # time.monotonic()
    users: int = 0


class WarmPool:
    """The agent's open connections by fingerprint; ``logins`` counts connects."""

    def __init__(self) -> None:
        self.warm: dict[str, Warm] = {}
        self.shared = Shared()  # jump-host connections and admission, across runs
        self._connecting: dict[str, asyncio.Lock] = {}
        self._freed: dict[str, asyncio.Event] = {}  # a blocking transport's run ended
        self.ever: set[str] = set()
        self.logins = 0

    async def acquire(
        self, key: str, host: Host, factory: Factory, connect: Connector
    ) -> tuple[Transport, bool]:
        """An open transport for *key* and whether it is a reconnection. Runs going on at
        once share a connection as SSH channels of it, except a blocking transport's
        (netmiko: one interactive channel), which serves one run at a time: a second
        run waits here until the first has released it."""
        lock = self._connecting.setdefault(key, asyncio.Lock())
        while True:
            async with lock:
                warm = self.warm.get(key)
                if warm is not None and not alive(warm.transport):
                    await self.discard(key)
                    warm = None
                if warm is None:
                    transport = resident(await connected(factory(host), connect), host.name)
                    self.logins += 1
                    warm = self.warm[key] = Warm(host, transport, time.time(), time.monotonic())
                    reconnected = key in self.ever
                    self.ever.add(key)
                elif warm.transport.blocking and warm.users:
                    freed = self._freed.setdefault(key, asyncio.Event())
                    freed.clear()  # set by release(); no await between this and the check
                    warm = None
                else:
                    reconnected = False
                if warm is not None:
                    warm.users += 1
                    warm.last_used = time.monotonic()
                    return warm.transport, reconnected
            await freed.wait()

    def release(self, key: str) -> None:
        warm = self.warm.get(key)
        if warm is not None:
            warm.users = max(0, warm.users - 1)
            warm.last_used = time.monotonic()
        freed = self._freed.get(key)
        if freed is not None:
            freed.set()

    async def discard(self, key: str) -> None:
        warm = self.warm.pop(key, None)
        if warm is not None:
            await warm.transport.close()

    async def expire(self, idle: float) -> None:
        """Close connections nobody used for *idle* seconds."""
        now = time.monotonic()
        stale = [k for k, w in self.warm.items() if not w.users and now - w.last_used > idle]
        closing = [self.warm.pop(key).transport for key in stale]  # before any await
        await asyncio.gather(*(transport.close() for transport in closing))

    async def close_all(self) -> None:
        await asyncio.gather(*(self.discard(key) for key in list(self.warm)))
        await self.shared.close()

    def status(self) -> list[dict[str, Any]]:
        now, mono = time.time(), time.monotonic()
        return [
            {
                "host": w.host.name,
                "address": f"{w.host.hostname}:{w.host.port}",
                "user": w.host.username or "",
                "age": now - w.opened,
                "idle": 0.0 if w.users else mono - w.last_used,
            }
            for w in sorted(self.warm.values(), key=lambda w: w.host.name)
        ]


class RunPool(TransportPool):
    """One run's view of the WarmPool: the engine's pool interface, keyed by name."""

    def __init__(self, warm: WarmPool, keys: dict[str, str]) -> None:
        super().__init__()
        self.shared = warm.shared
        self._warm_pool = warm
        self._keys = keys
        self._held: list[str] = []

    def is_open(self, name: str) -> bool:
        return self._keys[name] in self._warm_pool.warm

    async def acquire(self, host: Host, factory: Factory, connect: Connector) -> Transport:
        key = self._keys[host.name]
        transport, reconnected = await self._warm_pool.acquire(key, host, factory, connect)
        self._held.append(key)
        if reconnected:
            self.reconnected.add(host.name)
        return transport

    async def discard(self, name: str) -> None:
        await self._warm_pool.discard(self._keys[name])

    def release_all(self) -> None:
        for key in self._held:
            self._warm_pool.release(key)
        self._held.clear()

    async def close_all(self) -> None:  # the agent's connections outlive a run
        self.release_all()


# -- the daemon -------------------------------------------------------------------------


class _Outbox:
    """Events to one client, sent in one frame per turn of the event loop."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending: list[Event] = []

    def emit(self, event: Event) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self.pending.append(event)

    def flush(self) -> None:
        if self.pending and not self.writer.is_closing():
            self.writer.write(encode(("events", self.pending)))
        self.pending = []


async def _execute(plan: Plan, emit: Emit, pool: RunPool) -> None:
    """The plan inline over the agent's connections (rolling plans wave by wave)."""
    if plan.limits.rolling:
        await run_rollout(plan, emit, lambda p, e, g: run_hosts(p, e, pool, gate=g))
    else:
        await run_hosts(plan, emit, pool)


@contextlib.contextmanager
def _client_context(cwd: str, env: Mapping[str, str]) -> Any:
    """The client's working directory and ssh-agent for the length of its run."""
    saved = {name: os.environ.get(name) for name in ENV_PASSED}
    before = os.getcwd()
    try:
        os.chdir(cwd)
        for name in ENV_PASSED:
            if env.get(name) is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = env[name]
        yield
    finally:
        os.chdir(before)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


Context = tuple[str, tuple[tuple[str, str], ...]]
"""A run's working directory and the :data:`ENV_PASSED` variables it has set."""


@dataclass(eq=False)  # each run its own, kept in a set
class RunInfo:
    """A run in the agent, as ``agent status`` shows it (no command text: only its size,
    its client's directory and how long it has waited or run)."""

    hosts: int
    cwd: str
    state: str = "running"
    since: float = field(default_factory=time.monotonic)


class Turns:
    """Runs share the process's working directory and environment: runs of one context go
    on at once, another context waits until they have ended. Waiters are served in order
    of arrival, and a run does not join a running context past an earlier waiter of
    another (no starvation)."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._queue: list[tuple[object, Context]] = []  # waiting, in order of arrival
        self._context: Context | None = None
        self._active = 0
        self._applied = contextlib.ExitStack()

    def must_wait(self, context: Context) -> bool:
        """Whether a run of *context* arriving now waits for others to end."""
        if not self._active:
            return False
        return context != self._context or any(other != context for _, other in self._queue)

    def _may_start(self, ticket: object, context: Context) -> bool:
        if self._active and context != self._context:
            return False
        for waiting, other in self._queue:  # nobody of another context ahead of us
            if waiting is ticket:
                return True
            if other != context or not self._active:
                return False
        return False

    @contextlib.asynccontextmanager
    async def turn(self, context: Context) -> Any:
        ticket = object()
        async with self._changed:
            self._queue.append((ticket, context))
            try:
                await self._changed.wait_for(lambda: self._may_start(ticket, context))
            finally:
                self._queue.remove((ticket, context))
                self._changed.notify_all()  # who waited behind us may start (or move up)
            if not self._active:
                self._applied.enter_context(_client_context(context[0], dict(context[1])))
                self._context = context
            self._active += 1
        try:
            yield
        finally:
            async with self._changed:
                self._active -= 1
                if not self._active:
                    self._context = None
                    self._applied.close()
                self._changed.notify_all()


class Agent:
    """The daemon: serves requests on *path*, exits after *idle* seconds without one."""

    def __init__(self, path: Path, idle: float) -> None:
        self.path = path
        self.idle = idle
        self.pool = WarmPool()
        self.fingerprint = Fingerprint()
        self.turns = Turns()  # runs of one cwd and env at once, others after them
        self.active = 0
        self.last_request = time.monotonic()
        self.stopping = asyncio.Event()
        self.runs: set[asyncio.Future[list[str]]] = set()
        self.in_progress: set[RunInfo] = set()  # what `agent status` lists

    async def serve(self) -> None:
        server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        os.chmod(self.path, 0o600)
        reaper = asyncio.create_task(self._reap())
        try:
            await self.stopping.wait()
        finally:
            reaper.cancel()
            server.close()
            for run in list(self.runs):
                run.cancel()
            await asyncio.gather(*self.runs, return_exceptions=True)
            await self.pool.close_all()
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle / 4))
            await self.pool.expire(self.idle)
            if not self.active and time.monotonic() - self.last_request > self.idle:
                self.stopping.set()
                return

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not peer_allowed(writer.get_extra_info("socket")):
                writer.write(encode(("error", REFUSED)))  # before reading a single byte
                return
            self.active += 1
            try:
                await self._request(await read_frame(reader), reader, writer)
            finally:
                self.active -= 1
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()

    async def _request(
        self, request: tuple[Any, ...], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        kind = request[0]
        if kind == "status":
            info = {"pid": os.getpid(), "idle": self.idle, "socket": str(self.path)}
            now = time.monotonic()
            info["runs"] = [
                {"hosts": run.hosts, "cwd": run.cwd, "state": run.state, "for": now - run.since}
                for run in self.in_progress
            ]
            writer.write(encode(("status", info, self.pool.status())))
        elif kind == "stop":
            writer.write(encode(("stopped",)))
            self.stopping.set()
        elif kind == "run" and request[-1] != agent_version():
            message = f"the running agent is hostbatch {agent_version()}, this is {request[-1]}"
            writer.write(encode(("error", f"{message}; end it with 'hostbatch agent stop'")))
        elif kind == "run":
            _, plan, idle, cwd, env, _version = request
            self.idle = idle
            try:
                await self._run(plan, cwd, env, reader, writer)
            finally:  # only runs keep the agent alive: status is no use of it
                self.last_request = time.monotonic()
        else:
            writer.write(encode(("error", f"unknown request {kind!r}")))

    async def _run(
        self,
        plan: Plan,
        cwd: str,
        env: Mapping[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        outbox = _Outbox(writer)
        watcher = asyncio.ensure_future(reader.read(1))  # any byte, or EOF: cancel
        context: Context = (cwd, tuple(sorted(env.items())))
        info = RunInfo(len(plan.hosts), cwd)
        self.in_progress.add(info)
        if self.turns.must_wait(context):
            writer.write(encode(("waiting", WAITING)))
            info.state = "waiting"
        turn = asyncio.ensure_future(self._turn(context, plan, env, outbox, watcher, info=info))
        self.runs.add(turn)  # the agent's stop cancels it, waiting or running
        try:
            await asyncio.wait({turn, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not turn.done():  # the client left (or cancelled) while waiting its turn
                turn.cancel()
            reply = await self._outcome(turn)
        finally:
            self.runs.discard(turn)
            self.in_progress.discard(info)
            watcher.cancel()
        outbox.flush()
        writer.write(encode(reply))

    async def _turn(
        self,
        context: Context,
        plan: Plan,
        env: Mapping[str, str],
        outbox: _Outbox,
        watcher: asyncio.Future[bytes],
        *,
        info: RunInfo,
    ) -> list[str]:
        """The run, once its context's turn has come; the hosts it reconnected."""
        async with self.turns.turn(context):  # ~ and relative paths are the client's
            info.state, info.since = "running", time.monotonic()
            keys = {h.name: self.fingerprint.of(plan, h, env) for h in plan.hosts}
            pool = RunPool(self.pool, keys)
            run = asyncio.ensure_future(_execute(plan, outbox.emit, pool))
            try:
                either: set[asyncio.Future[Any]] = {run, watcher}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:  # the client's byte, its going away, or the agent's stop
                if not run.done():
                    run.cancel()
                while not run.done():  # remote commands signalled before the turn ends
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait({run})
                pool.release_all()
            run.result()  # its error, or CancelledError when it was cancelled
            return sorted(pool.reconnected)

    @staticmethod
    async def _outcome(turn: asyncio.Future[list[str]]) -> tuple[Any, ...]:
        try:
            reconnected = await turn
        except asyncio.CancelledError:
            return ("cancelled",)
        except Exception as exc:  # a bug: the client reports it, the agent goes on
            return ("error", redact(f"agent: {type(exc).__name__}: {exc}"))
        return ("done", reconnected)


def _lock(directory: Path) -> int | None:
    """An exclusive lock on the directory's lock file, or None when another agent has it."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def serve_forever(idle: float) -> None:
    """Run the agent in this process until it is stopped or idle (one agent per user)."""
    directory = agent_dir()
    fd = _lock(directory)
    if fd is None:
        return  # another agent runs (or is starting): the client connects to that one
    try:
        path = directory / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by an agent that was killed
        logs.configure(None)  # library loggers silent (and cheap: asyncssh logs every packet)
        event_loop.run(Agent(path, idle).serve())
    finally:
        os.close(fd)


def _daemon_main(argv: list[str]) -> None:
    """``python -m hostbatch.engine.executors.agent IDLE``: detach and serve."""
    idle = float(argv[0])
    if os.fork():
        os._exit(0)  # the launcher returns at once; the agent is no child of the CLI
    os.setsid()
    os.chdir("/")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:  # one descriptor per warm connection: thousands of hosts
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    devnull = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1, 2):
        os.dup2(devnull, stream)
    serve_forever(idle)


# -- the client -------------------------------------------------------------------------


async def _open(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        return await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        return None


def _launch(idle: float) -> None:
    argv = [sys.executable, "-m", "hostbatch.engine.executors.agent", repr(idle)]
    launcher = subprocess.run(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False, timeout=START_WAIT
    )
    if launcher.returncode != 0:
        raise AgentError(f"could not start the agent (exit code {launcher.returncode})")


async def connect(
    *, start_idle: float | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A connection to this user's agent; when none runs, start one if *start_idle* is
    given (else None)."""
    path = socket_path()
    opened = await _open(path)
    if opened is not None or start_idle is None:
        return opened
    await asyncio.to_thread(_launch, start_idle)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_WAIT
    while (opened := await _open(path)) is None:
        if loop.time() > deadline:
            raise AgentError(f"the agent did not open {path} within {START_WAIT:g}s")
        await asyncio.sleep(0.02)
    return opened


async def request(message: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Send a status or stop request; the reply, or None when no agent runs."""
    opened = await connect()
    if opened is None:
        return None
    reader, writer = opened
    try:
        writer.write(encode(message))
        reply: tuple[Any, ...] = await read_frame(reader)
    except (EOFError, OSError) as exc:
        raise AgentError(f"the agent went away: {exc}") from None
    finally:
        writer.close()
    if reply[0] == "error":
        raise AgentError(reply[1])
    return reply


@dataclass
class AgentRun:
    """What a run through the agent gave: results and the hosts it had to reconnect."""

    results: dict[str, HostResult]
    reconnected: list[str]


async def _receive(
    reader: asyncio.StreamReader, emit: Callable[[Event], None], note: Callable[[str], None]
) -> list[str]:
    while True:
        try:
            reply = await read_frame(reader)
        except (EOFError, OSError) as exc:
            raise AgentError(f"the agent went away during the run ({exc})") from None
        if reply[0] == "events":
            for event in reply[1]:
                emit(event)
        elif reply[0] == "done":
            return list(reply[1])
        elif reply[0] == "waiting":
            note(reply[1])
        else:
            raise AgentError(reply[1] if reply[0] == "error" else "the run was cancelled")


async def _await_cancel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Ask the agent to cancel the run and wait (bounded) until it has cleaned up."""
    with contextlib.suppress(OSError):
        writer.write(b"c")
        await writer.drain()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CANCEL_WAIT):
            while (await read_frame(reader))[0] in ("events", "waiting"):
                pass


async def run_in_agent(
    plan: Plan,
    emit: Callable[[Event], None],
    idle: float,
    note: Callable[[str], None] = lambda text: None,
) -> AgentRun:
    """Run *plan* in this user's agent (started when none runs), events to *emit*, and to
    *note* why the run waits, when it does. Cancelling this coroutine cancels the run in
    the agent (waiting or not); its connections stay open."""
    opened = await connect(start_idle=idle)
    assert opened is not None
    reader, writer = opened
    finished: dict[str, HostResult] = {}

    def collect(event: Event) -> None:
        if isinstance(event, Finished):
            finished[event.host] = event.result
        emit(event)

    env = {name: os.environ[name] for name in ENV_PASSED if name in os.environ}
    try:
        writer.write(encode(("run", plan, idle, os.getcwd(), env, agent_version())))
        await writer.drain()
        reconnected = await _receive(reader, collect, note)
    except asyncio.CancelledError:
        await _await_cancel(reader, writer)
        raise
    finally:
        writer.close()
    return AgentRun({h.name: finished[h.name] for h in plan.hosts}, reconnected)


def wait_stopped(timeout: float = CANCEL_WAIT) -> None:
    """Return once the agent process has ended (its lock is free), or raise."""
    directory = agent_dir()
    deadline = time.monotonic() + timeout
    while (fd := _lock(directory)) is None:
        if time.monotonic() > deadline:
            raise AgentError(f"the agent did not end within {timeout:g}s")
        time.sleep(0.02)
    os.close(fd)


if __name__ == "__main__":
    _daemon_main(sys.argv[1:])
