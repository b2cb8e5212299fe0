"""An in-process SSH fleet: N asyncssh servers on loopback that really run commands.

Each host listens on ``127.0.0.1`` on its own free port, has its own ed25519 host key and
its own directory under the fleet root. Exec requests run ``/bin/sh -c CMD`` in a new
process group with ``cwd`` and ``HOME`` set to that directory; closing the channel,
dropping the connection or sending a ``signal`` request kills the whole group.
SFTP and SCP start in the host's directory (relative paths resolve there).

Hosts can be told to misbehave (see :data:`BEHAVIOURS`)::

    async with Fleet(3, behaviours={"node02": "refuse_auth"}) as fleet:
        fleet.write_inventory(tmp_path / "inventory")

:class:`FleetThread` runs the same fleet on its own event loop in a daemon thread, for
synchronous code and for tests that bring their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import signal
import socket
import struct
import tempfile
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, cast

import asyncssh
from asyncssh.channel import SSHChannel

LOOPBACK = "127.0.0.1"
BEHAVIOURS = frozenset(
    {"ok", "hang_before_banner", "refuse_connect", "refuse_auth", "drop_mid_command", "slow_output"}
)
"""Per-host behaviours: ``ok`` (default); ``hang_before_banner`` (accepts TCP, never speaks
SSH); ``refuse_connect`` (nothing listens on the port); ``refuse_auth`` (every credential
fails); ``drop_mid_command`` (sends some output, then aborts the connection);
``slow_output`` (each stdout chunk is held back ``slow_delay`` seconds)."""

_KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of a command's process group
_DROP_AFTER = 0.2  # seconds between the output a dropping host sends and the abort
_CHUNK = 65536
_SFTP_VERSION = 3  # asyncssh's default; newer versions are opt-in


@dataclass(frozen=True)
class FleetHost:
    """One host of a started fleet: where it listens and where its files live."""

    name: str
    address: str
    port: int
    root: Path
    behaviour: str


@dataclass
class _FleetState:
    """What a running fleet must clean up: connections, subprocesses, background tasks."""

    username: str
    password: str
    client_keys: frozenset[bytes]
    slow_delay: float
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)
    processes: set[asyncio.subprocess.Process] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    sessions: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run *coro* in the background; the fleet awaits it on stop."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


@dataclass(frozen=True)
class _HostContext:
    """Everything a server-side session needs to know about its host."""

    name: str
    root: Path
    behaviour: str
    state: _FleetState


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, SIGKILL it after a grace period."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), _KILL_GRACE)
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


class _HomeSFTPServer(asyncssh.SFTPServer):
    """SFTP (and SCP) with the host's directory as its home: relative paths resolve there,
    absolute paths are real, exactly as for the host's shell commands (whose working
    directory is the same). A chroot would make ``put`` and ``sha256sum`` disagree."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], root: Path) -> None:
        super().__init__(chan)
        self._home = os.fsencode(root)

    def map_path(self, path: bytes) -> bytes:
        return path if path.startswith(b"/") else os.path.join(self._home, path)


class _CommandSession(asyncssh.SSHServerProcess[bytes]):
    """One session channel: runs the command as a subprocess and relays its streams."""

    def __init__(self, host: _HostContext) -> None:
        super().__init__(self._serve, self._make_sftp, _SFTP_VERSION, True)
        self._host = host
        self._proc: asyncio.subprocess.Process | None = None
        self._finished = False
        self._killing = False
        self._dropped = False
        self._kill_requested = False

    def _make_sftp(self, chan: SSHChannel[bytes]) -> asyncssh.SFTPServer:
        return _HomeSFTPServer(cast("asyncssh.SSHServerChannel[bytes]", chan), self._host.root)

    def signal_received(self, signal: str) -> None:
        """Any signal request kills the command's whole process group."""
        self._kill()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._finished:
            self._kill()

    def _kill(self) -> None:
        self._kill_requested = True  # honoured once the subprocess exists
        if self._proc is not None and not self._killing:
            self._killing = True
            self._host.state.spawn(_kill_group(self._proc))

    def _environment(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        env.update(self.env)
        env.update(
            HOME=str(self._host.root),
            USER=self._host.state.username,
            LOGNAME=self._host.state.username,
            SHELL="/bin/sh",
            HOSTBATCH_FLEET_HOST=self._host.name,
        )
        return env

    async def _serve(self, _process: asyncssh.SSHServerProcess[bytes]) -> None:
        """Run the command; the fleet waits for this on stop."""
        task = asyncio.current_task()
        assert task is not None
        self._host.state.sessions.add(task)
        try:
            await self._run_command()
        finally:
            self._host.state.sessions.discard(task)

    async def _run_command(self) -> None:
        """Start the subprocess, relay until it ends, report its exit status."""
        argv = ["/bin/sh"] if self.command is None else ["/bin/sh", "-c", self.command]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self._host.root,
                env=self._environment(),
                start_new_session=True,
            )
        except OSError as exc:
            self.stderr.write(f"fleet: cannot start command: {exc}\n".encode())
            self.exit(127)
            return
        self._proc = proc
        self._host.state.processes.add(proc)
        if self._kill_requested:  # closed or signalled while the subprocess was starting
            self._kill()
        try:
            await self._relay(proc)
            self._finished = True
        finally:
            if not self._finished:  # cancelled or failed: do not leave it running
                self._kill()
            self._host.state.processes.discard(proc)

    async def _relay(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        feeder = asyncio.get_running_loop().create_task(self._feed_stdin(proc))
        try:
            await asyncio.gather(
                self._forward(proc.stdout, self.stdout, stdout=True),
                self._forward(proc.stderr, self.stderr, stdout=False),
            )
            returncode = await proc.wait()
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        if self._host.behaviour == "drop_mid_command":
            self._drop()
        else:
            self._report(returncode)

    def _report(self, returncode: int) -> None:
        with contextlib.suppress(OSError):
            if returncode < 0:
                name = signal.Signals(-returncode).name.removeprefix("SIG")
                self.exit_with_signal(name)
            else:
                self.exit(returncode)

    def _drop(self) -> None:
        """Reset the TCP connection (RST) without any SSH goodbye."""
        if not self._dropped:
            self._dropped = True
            self._kill()
            conn = self.channel.get_connection()
            sock = conn.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST, like a dropped link
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.abort()

    async def _feed_stdin(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        try:
            while data := await self.stdin.read(_CHUNK):
                proc.stdin.write(data)
                await proc.stdin.drain()
        except (OSError, asyncssh.Error, asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
            pass  # the command stopped reading, or the channel went away
        finally:
            proc.stdin.close()

    async def _forward(
        self, source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes], *, stdout: bool
    ) -> None:
        """Copy one output stream to the channel (drop_mid_command: only the first chunk)."""
        behaviour = self._host.behaviour
        while chunk := await source.read(_CHUNK):
            if stdout and behaviour == "slow_output":
                await asyncio.sleep(self._host.state.slow_delay)
            try:
                sink.write(chunk)
                await sink.drain()
            except OSError:
                continue  # channel closed: keep draining the pipe until the kill lands
            if stdout and behaviour == "drop_mid_command":
                await asyncio.sleep(_DROP_AFTER)
                self._drop()
                return


class _FleetServer(asyncssh.SSHServer):
    """Authentication and session policy for one connection to one host."""

    def __init__(self, host: _HostContext) -> None:
        self._host = host
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._host.state.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._host.state.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def _accepts(self, username: str) -> bool:
        return self._host.behaviour != "refuse_auth" and username == self._host.state.username

    def validate_password(self, username: str, password: str) -> bool:
        expected = self._host.state.password
        return self._accepts(username) and secrets.compare_digest(password, expected)

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return self._accepts(username) and key.public_data in self._host.state.client_keys

    def session_requested(self) -> _CommandSession:
        return _CommandSession(self._host)


class _SilentProtocol(asyncio.Protocol):
    """Accepts a TCP connection and never says a word (hang_before_banner)."""

    def __init__(self, transports: set[asyncio.Transport]) -> None:
        self._transports = transports
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._transports.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._transports.discard(self._transport)


def _reserve_port() -> int:
    """A port number nothing listens on (refuse_connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def _raise_fd_limit(wanted: int) -> None:
    """Raise the soft open-files limit toward the hard one for big fleets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _host_names(prefix: str, count: int) -> list[str]:
    width = 2 if count <= 99 else 3 if count <= 999 else 4 if count <= 9999 else len(str(count))
    return [f"{prefix}{index:0{width}d}" for index in range(1, count + 1)]


def _write_private(path: Path, data: bytes) -> None:
    """Write *data* to a new file readable only by its owner."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _export_encrypted(key: asyncssh.SSHKey, passphrase: str) -> bytes:
    """OpenSSH-format encrypted key; PKCS#8 when bcrypt is not installed."""
    try:
        return bytes(key.export_private_key("openssh", passphrase=passphrase, rounds=50))
    except asyncssh.KeyExportError:
        return bytes(key.export_private_key("pkcs8-pem", passphrase=passphrase))


class _Listener:
    """Anything a fleet host listens with: an asyncssh acceptor or a plain asyncio server."""

    def __init__(self, server: asyncio.AbstractServer | asyncssh.SSHAcceptor) -> None:
        self.server = server

    def close(self) -> None:
        self.server.close()

    async def wait_closed(self) -> None:
        await self.server.wait_closed()


class Fleet:
    """N in-process SSH hosts on loopback; ``async with Fleet(20) as fleet: ...``.

    Host names are *prefix* plus a zero-padded index from 1 (``node01``..``node20``).
    *behaviours* maps host names to one of :data:`BEHAVIOURS`. Every host accepts
    *username* with *password* (random unless given) or the fleet's client key.
    """

    def __init__(
        self,
        count: int = 20,
        *,
        prefix: str = "node",
        behaviours: Mapping[str, str] | None = None,
        username: str = "hostbatch",
        password: str | None = None,
        root: Path | None = None,
        slow_delay: float = 0.2,
    ) -> None:
        if count < 1:
            raise ValueError("a fleet needs at least one host")
        self._names = _host_names(prefix, count)
        self._behaviours = dict(behaviours or {})
        unknown = set(self._behaviours) - set(self._names)
        bad = {b for b in self._behaviours.values() if b not in BEHAVIOURS}
        if unknown or bad:
            raise ValueError(f"unknown hosts {sorted(unknown)} or behaviours {sorted(bad)}")
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.key_passphrase = secrets.token_urlsafe(12)
        self.slow_delay = slow_delay
        self._given_root = root
        self._root: Path | None = None
        self.hosts: list[FleetHost] = []
        self._by_name: dict[str, FleetHost] = {}
        self._listeners: list[_Listener] = []
        self._silent: set[asyncio.Transport] = set()
        self._state: _FleetState | None = None

    @property
    def root(self) -> Path:
        """The fleet's directory: host directories, keys and ``known_hosts``."""
        if self._root is None:
            raise RuntimeError("the fleet is not started")
        return self._root

    @property
    def client_key(self) -> Path:
        """Unencrypted private client key accepted by every host."""
        return self.root / "client_key"

    @property
    def client_key_enc(self) -> Path:
        """The same client key, encrypted with :attr:`key_passphrase`."""
        return self.root / "client_key_enc"

    @property
    def known_hosts(self) -> Path:
        """``known_hosts`` with every host's key as ``[127.0.0.1]:PORT``."""
        return self.root / "known_hosts"

    def host(self, name: str) -> FleetHost:
        """The host called *name*; KeyError if the fleet has none."""
        return self._by_name[name]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Create the directories and keys, then start listening on every host."""
        if self._state is not None:
            raise RuntimeError("the fleet is already started")
        self._root = self._given_root or Path(tempfile.mkdtemp(prefix="hostbatch-fleet-"))
        self._root.mkdir(parents=True, exist_ok=True)
        _raise_fd_limit(len(self._names) * 2 + 1024)
        client_key = asyncssh.generate_private_key("ssh-ed25519", comment="hostbatch-fleet")
        self._state = _FleetState(
            username=self.username,
            password=self.password,
            client_keys=frozenset({client_key.public_data}),
            slow_delay=self.slow_delay,
        )
        try:
            # bcrypt makes the encrypted copy slow (~0.5 s): do it while the hosts start.
            _, started = await asyncio.gather(
                asyncio.to_thread(self._write_client_keys, client_key),
                asyncio.gather(*(self._start_host(name) for name in self._names)),
            )
        except BaseException:
            await self.stop()
            raise
        lines = []
        for fleet_host, host_key in started:
            self.hosts.append(fleet_host)
            self._by_name[fleet_host.name] = fleet_host
            public = host_key.export_public_key("openssh").decode().split()
            lines.append(f"[{LOOPBACK}]:{fleet_host.port} {public[0]} {public[1]}\n")
        self.known_hosts.write_text("".join(lines), encoding="ascii")

    def _write_client_keys(self, key: asyncssh.SSHKey) -> None:
        _write_private(self.client_key, bytes(key.export_private_key("openssh")))
        _write_private(self.client_key_enc, _export_encrypted(key, self.key_passphrase))
        key.write_public_key(str(self.client_key) + ".pub")

    async def _start_host(self, name: str) -> tuple[FleetHost, asyncssh.SSHKey]:
        assert self._state is not None
        behaviour = self._behaviours.get(name, "ok")
        root = self.root / name
        root.mkdir(exist_ok=True)
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        if behaviour == "refuse_connect":
            port = _reserve_port()
        elif behaviour == "hang_before_banner":
            port = await self._listen_silently()
        else:
            context = _HostContext(name, root, behaviour, self._state)
            acceptor = await asyncssh.create_server(
                lambda: _FleetServer(context),
                LOOPBACK,
                0,
                server_host_keys=[host_key],
                encoding=None,
                line_editor=False,  # else channels are wrapped in asyncssh's editor
                gss_host=None,
            )
            self._listeners.append(_Listener(acceptor))
            port = acceptor.get_port()
        return FleetHost(name, LOOPBACK, port, root, behaviour), host_key

    async def _listen_silently(self) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _SilentProtocol(self._silent), LOOPBACK, 0)
        self._listeners.append(_Listener(server))
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        """Stop listening, close connections, kill commands, remove the temporary root."""
        state, self._state = self._state, None
        for listener in self._listeners:
            listener.close()
        for transport in list(self._silent):
            transport.abort()
        if state is not None:
            await self._close_connections(state)
        await asyncio.gather(*(listener.wait_closed() for listener in self._listeners))
        self._listeners.clear()
        self.hosts.clear()
        self._by_name.clear()
        if self._root is not None and self._given_root is None:
            shutil.rmtree(self._root, ignore_errors=True)
        self._root = None

    @staticmethod
    async def _close_connections(state: _FleetState) -> None:
        connections = list(state.connections)
        for conn in connections:
            conn.close()
        for conn in connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.wait_closed(), 5)
        if state.sessions:  # their channels are closed: each kills its command and ends
            await asyncio.wait(state.sessions, timeout=10)
        for proc in list(state.processes):
            state.spawn(_kill_group(proc))
        while state.tasks:
            await asyncio.gather(*state.tasks, return_exceptions=True)

    def write_inventory(self, path: Path, *, auth: Literal["password", "key"] = "password") -> Path:
        """Write the folder-form INI inventory: *path*/``fleet.ini``, one section per host."""
        path.mkdir(parents=True, exist_ok=True)
        sections = []
        for fleet_host in self.hosts:
            credential = (
                f"password = {self.password}"
                if auth == "password"
                else f"key_file = {self.client_key}"
            )
            sections.append(
                f"[{fleet_host.name}]\nhostname = {fleet_host.address}\n"
                f"port = {fleet_host.port}\nusername = {self.username}\n{credential}\n"
            )
        _write_private(path / "fleet.ini", "\n".join(sections).encode())
        return path


class FleetThread:
    """A :class:`Fleet` on its own event loop in a daemon thread, for synchronous callers.

    ``with FleetThread(5) as fleet:`` gives the started :class:`Fleet`; talk to it from
    any thread or loop over the network only (its objects belong to its own loop).
    """

    def __init__(
        self,
        count: int = 20,
        *,
        prefix: str = "node",
        behaviours: Mapping[str, str] | None = None,
        username: str = "hostbatch",
        password: str | None = None,
        root: Path | None = None,
        slow_delay: float = 0.2,
    ) -> None:
        self.fleet = Fleet(
            count,
            prefix=prefix,
            behaviours=behaviours,
            username=username,
            password=password,
            root=root,
            slow_delay=slow_delay,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 300.0) -> Fleet:
        """Start the loop thread and the fleet; returns once every host is listening."""
        if self._thread is not None:
            raise RuntimeError("the fleet thread is already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="hostbatch-fleet", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.fleet.start(), loop).result(timeout)
        except BaseException:
            self.stop()
            raise
        return self.fleet

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the fleet, then the loop, and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.fleet.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = self._thread = None

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
