"""Network devices (routers, switches, firewalls) through netmiko, over asyncssh.

netmiko drives the device's CLI (prompts, paging, enable, config mode, save) and is
blocking, so every netmiko call runs in a thread of one module-level pool (created on
first use, sized for a large fanout); results come back to the event loop, which feeds
each command's output to the run's sink. The SSH connection under it is asyncssh's, on
the event loop (the same login, host key checks and error messages as servers): netmiko
reads and writes the PTY session through :class:`_ShellChannel` instead of a paramiko
channel, so no session needs a paramiko transport thread of its own. 100 fake IOS
devices, 32 at once in one process (bench/devices.py --approaches hostbatch-w1-f32): 1.9 s
of client CPU this way, 3.3 s with paramiko, which also made 10x the context switches
(GIL hand-offs between the two threads each paramiko session had).

The device's CLI session is opened once per host (login, then ``enable`` when the host
has an enable secret) and every command of a :class:`~hostbatch.models.CommandSet` runs
in it. Host keys are verified by default, unlike netmiko's own default (AutoAddPolicy).

netmiko has no public way to run over another SSH library: this module replaces its private
``BaseConnection._build_ssh_client`` hook and calls its private ``_open``. Both are checked
when the module is first imported (:func:`check_netmiko_hooks`): a netmiko without them is
a :class:`~hostbatch.errors.MissingExtraError` naming :data:`SUPPORTED_NETMIKO`, the range
pyproject.toml pins and the device tests ran against, never a traceback mid-run.

Platform knowledge (the error lines each family prints) is data in :data:`PLATFORMS`.
Every netmiko, asyncssh and socket exception is translated here or in the asyncssh
transport; messages never carry a password or secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import inspect
import os
import re
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import asyncssh
import paramiko
from netmiko import BaseConnection, ConnectHandler
from netmiko import platforms as netmiko_platforms
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoParsingException,
    ReadException,
    ReadTimeout,
)
from netmiko.utilities import get_structured_data_textfsm

from hostbatch.errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    DeviceCommandError,
    MissingExtraError,
    RemoteFileError,
    TransportError,
    UsageError,
)
from hostbatch.models import CommandOutput, CommandSet, Host
from hostbatch.transport.asyncssh_ import AsyncsshTransport
from hostbatch.transport.base import (
    ConnectOptions,
    OutputSink,
    ProgressSink,
    RemoteStat,
    StdinSource,
)

T = TypeVar("T")

# The netmiko releases the device tests passed with: 4.5.0, 4.6.0, 4.7.0, 4.8.0 (4.4.0 has no
# NetmikoParsingException). pyproject.toml pins the same range for the netmiko, all and dev
# extras; a test checks that they agree.
SUPPORTED_NETMIKO = ">=4.5,<4.9"
# netmiko's private BaseConnection methods this module relies on, each called without
# arguments: _build_ssh_client is replaced per connection, _open is called.
NETMIKO_HOOKS = ("_build_ssh_client", "_open")


def _callable_without_arguments(method: object) -> bool:
    """Whether *method* (a plain function on a class) can be called with ``self`` only."""
    if not inspect.isfunction(method):
        return False
    params = list(inspect.signature(method).parameters.values())[1:]  # after self
    optional = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return all(p.default is not p.empty or p.kind in optional for p in params)


def check_netmiko_hooks(connection_class: type, version: str) -> None:
    """Raise MissingExtraError unless *connection_class* (netmiko's BaseConnection) has
    every hook in :data:`NETMIKO_HOOKS`, callable without arguments."""
    for name in NETMIKO_HOOKS:
        if not _callable_without_arguments(getattr(connection_class, name, None)):
            raise MissingExtraError(
                f"the netmiko transport (netmiko {version} has no usable "
                f"{connection_class.__name__}.{name})",
                "netmiko",
                f"netmiko{SUPPORTED_NETMIKO}",
            )


def _netmiko_version() -> str:
    try:
        return importlib.metadata.version("netmiko")
    except importlib.metadata.PackageNotFoundError:  # importable, yet not installed (a path)
        return "(unknown version)"


check_netmiko_hooks(BaseConnection, _netmiko_version())

POOL_SIZE = 512  # threads; a host holds one only while a netmiko call runs
DEFAULT_READ_TIMEOUT = 60.0  # seconds a command may take when the run sets no timeout
CLOSE_TIMEOUT = 5.0
# After asyncssh's defaults: what paramiko offers too and old IOS/NX-OS images still need.
DEVICE_CIPHERS = ("aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc")
# netmiko polls each session every 10 ms. A session that found nothing on its last read
# waits for its next data instead, up to READ_WAIT_PER_SESSION x the sessions open in the
# process (at most READ_WAIT_MAX): many sessions poll far less, one session loses nothing
# to reads that expect no data. bench/devices.py, 200 devices, 3 interleaved rounds: plain
# polling 4.89 s median, a fixed 10 ms wait 4.67 s, 50 ms 4.36 s (seed 8.69 s); but a fixed
# 50 ms made one device's two commands take 0.8 s instead of 0.4 s.
READ_WAIT_PER_SESSION = 0.0005
READ_WAIT_MAX = 0.05
NO_FILES = "file transfer is not supported on network devices (netmiko)"


@dataclass(frozen=True)
class Platform:
    """What hostbatch knows about one device family's CLI."""

    error_patterns: tuple[str, ...]  # a line matching any of them is a rejected command

    @functools.cached_property
    def error_regex(self) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{p})" for p in self.error_patterns), re.MULTILINE)

    def error_in(self, output: str) -> str | None:
        """The first error line the device printed in *output*, if any."""
        match = self.error_regex.search(output)
        if match is None:
            return None
        start = output.rfind("\n", 0, match.start()) + 1
        end = output.find("\n", match.end())
        return output[start : end if end >= 0 else len(output)].strip()


_IOS_LIKE = (
    r"^\s*% ?Invalid input",
    r"^\s*% ?Invalid command",
    r"^\s*% ?Incomplete command",
    r"^\s*% ?Ambiguous command",
    r"^\s*% ?Unknown command",
    r"^\s*% ?Unrecognized command",
)
# Keyed by the device_type's first word (cisco_ios -> cisco).
PLATFORMS: dict[str, Platform] = {
    "cisco": Platform(_IOS_LIKE),
    "arista": Platform((*_IOS_LIKE, r"^\s*% ?Unavailable command")),
    "dell": Platform((*_IOS_LIKE, r"^\s*% ?Error:")),
    "ruckus": Platform(_IOS_LIKE),
    "juniper": Platform((r"^\s*syntax error", r"^\s*unknown command", r"^\s*error:")),
    "huawei": Platform((r"^\s*Error: ", r"Unrecognized command", r"Incomplete command")),
    "hp": Platform((r"^\s*Invalid input:", r"^\s*% ?Unrecognized command", r"^\s*% ?Invalid")),
    "paloalto": Platform((r"^\s*Invalid syntax", r"^\s*Unknown command")),
}
DEFAULT_PLATFORM = Platform(_IOS_LIKE)


def platform_for(device_type: str | None) -> Platform:
    family = (device_type or "").split("_", 1)[0].lower()
    return PLATFORMS.get(family, DEFAULT_PLATFORM)


_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The shared pool; a new one in a forked worker (the parent's threads are not there)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="hostbatch-netmiko")
            _pool_pid = os.getpid()
        return _pool


async def _in_thread(func: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(func, *args))


class _Shell(asyncssh.SSHClientSession[bytes]):
    """The device's CLI session on the event loop: what arrives waits here until
    netmiko's thread reads it."""

    open_count = 0  # sessions open in this process (changed on the event loop only)

    def __init__(self) -> None:
        self.lock = threading.Condition(threading.Lock())
        self.chunks: list[bytes] = []
        self.closed = False

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        with self.lock:
            self.chunks.append(data)
            self.lock.notify()

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        _Shell.open_count += 1

    def connection_lost(self, exc: Exception | None) -> None:
        _Shell.open_count -= 1
        with self.lock:
            self.closed = True
            self.lock.notify()

    def ready(self) -> bool:
        return bool(self.chunks) or self.closed


class _SSHState:
    """What netmiko reads from ``channel.transport`` (``is_active()``, in ``is_alive()``):
    whether the asyncssh connection and the session on it are both still open."""

    def __init__(self, conn: asyncssh.SSHClientConnection, shell: _Shell) -> None:
        self._conn = conn
        self._shell = shell

    def is_active(self) -> bool:
        return not (self._shell.closed or self._conn.is_closed())


class _ShellChannel(paramiko.Channel):
    """The part of a paramiko Channel that netmiko uses (``recv_ready``, ``recv``,
    ``sendall``, ``settimeout``, ``close``, ``transport.is_active``), over an asyncssh
    session. Called from netmiko's thread; writes and the close go to the event loop.

    A paramiko Channel subclass because netmiko's ``is_alive()`` asserts one before it asks
    ``transport.is_active()``; paramiko's own constructor only sets up bookkeeping (no
    Transport, no thread) and none of its I/O methods are used. ``transport`` is a
    :class:`_SSHState`, not a paramiko Transport, so netmiko's own ``keepalive`` (which
    asserts one) is never passed: the asyncssh connection sends the keepalives
    (``ConnectOptions.keepalive``)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: asyncssh.SSHClientConnection,
        channel: asyncssh.SSHClientChannel[bytes],
        shell: _Shell,
    ) -> None:
        super().__init__(0)
        self._loop = loop
        self._channel = channel
        self._shell = shell
        self.transport = cast(paramiko.Transport, _SSHState(conn, shell))
        self._drained = True  # the last recv_ready() found nothing

    def recv_ready(self) -> bool:
        """Whether recv() returns at once (closed: it returns b"").

        netmiko polls: read everything there is, sleep 10 ms, again. When the last call
        found nothing, this one waits a little for data to arrive (longer the more
        sessions share the process, see :data:`READ_WAIT_PER_SESSION`), so a waiting
        session wakes when its data comes rather than 100 times a second."""
        shell = self._shell
        if not shell.ready() and self._drained:
            wait = min(READ_WAIT_MAX, READ_WAIT_PER_SESSION * _Shell.open_count)
            with shell.lock:
                shell.lock.wait_for(shell.ready, wait)
        self._drained = not shell.ready()
        return not self._drained

    def recv(self, nbytes: int) -> bytes:
        with self._shell.lock:
            data = b"".join(self._shell.chunks)
            self._shell.chunks.clear()
            if len(data) > nbytes:
                self._shell.chunks.append(data[nbytes:])
                data = data[:nbytes]
        return data

    def sendall(self, s: bytes | bytearray) -> None:
        if self._shell.closed:
            raise OSError("the device closed the session")
        self._on_loop(self._write, bytes(s))

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(Exception):  # closed meanwhile: the next read says so
            self._channel.write(data)

    def settimeout(self, timeout: float | None) -> None:
        """Reads never block here; netmiko polls."""

    def close(self) -> None:
        self._on_loop(self._channel.close)

    def _on_loop(self, func: Callable[..., object], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nothing left to do
            self._loop.call_soon_threadsafe(func, *args)


class _LoggedIn:
    """Stands in for the paramiko SSHClient that netmiko would build: the SSH login has
    already happened on the event loop (asyncssh), so ``connect`` has nothing to do and
    ``invoke_shell`` opens the PTY session netmiko asks for."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, conn: asyncssh.SSHClientConnection, timeout: float
    ) -> None:
        self._loop = loop
        self._conn = conn
        self._timeout = timeout

    def connect(self, **_: Any) -> None:
        """Logged in already."""

    def invoke_shell(self, term: str = "vt100", width: int = 80, height: int = 24) -> _ShellChannel:
        opened = asyncio.run_coroutine_threadsafe(self._open(term, width, height), self._loop)
        return opened.result(self._timeout)

    async def _open(self, term: str, width: int, height: int) -> _ShellChannel:
        shell = _Shell()
        channel, _ = await self._conn.create_session(
            lambda: shell, term_type=term, term_size=(width, height), encoding=None
        )
        return _ShellChannel(self._loop, self._conn, channel, shell)

    def close(self) -> None:
        """The transport closes the SSH connection."""


class _DeviceSSH(AsyncsshTransport):
    """The SSH layer under netmiko. Network gear is often old: after asyncssh's default
    ciphers come the CBC ones paramiko (netmiko's own SSH library) also offers."""

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs = super()._connect_kwargs()
        kwargs["encryption_algs"] = [*kwargs["encryption_algs"], *DEVICE_CIPHERS]
        return kwargs


class NetmikoTransport:
    """One netmiko CLI session to one network device, over an asyncssh connection."""

    blocking = True  # netmiko polls its channel in a thread per session

    def __init__(self, host: Host, options: ConnectOptions) -> None:
        self.host = host
        self.options = options
        self.platform = platform_for(host.device_type)
        self._ssh: AsyncsshTransport | None = None
        self._conn: Any = None  # netmiko BaseConnection (untyped library)

    @property
    def where(self) -> str:
        return f"{self.host.hostname}:{self.host.port}"

    def _netmiko_kwargs(self) -> dict[str, Any]:
        creds = self.host.credentials
        return {  # no SSH timeouts: netmiko passes them only to paramiko's connect
            "device_type": self.host.device_type,
            "host": self.host.hostname,
            "port": self.host.port,
            "username": creds.username or "",
            "password": creds.password.reveal() if creds.password else None,  # in-band logins
            "secret": creds.secret.reveal() if creds.secret else "",
            "fast_cli": True,
            "auto_connect": False,
        }

    def _open_blocking(self, logged_in: _LoggedIn) -> None:
        """Runs in a pool thread: open the CLI session, find the prompt, enable."""
        conn: Any = ConnectHandler(**self._netmiko_kwargs())
        self._conn = conn
        conn._build_ssh_client = lambda: logged_in  # netmiko's hook for the SSH client
        conn._open()  # netmiko's own login sequence: establish_connection, session prep
        if self.host.credentials.secret is not None:
            conn.enable()

    async def connect(self) -> None:
        device_type = self.host.device_type
        if not device_type:
            raise TransportError(
                "the netmiko transport needs a device_type (e.g. device_type = cisco_ios)",
                host=self.host.name,
            )
        if device_type not in netmiko_platforms:
            raise TransportError(f"unsupported device_type '{device_type}'", host=self.host.name)
        await self.close()  # a retry starts afresh
        self._ssh = _DeviceSSH(self.host, self.options)
        await self._ssh.connect()  # translated errors: refused, timeout, host key, auth
        loop = asyncio.get_running_loop()
        timeout = self.options.connect_timeout
        logged_in = _LoggedIn(loop, self._ssh.conn, timeout)
        future = loop.run_in_executor(_executor(), self._open_blocking, logged_in)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            await self._ssh.close()  # netmiko's next read in the thread fails: it returns soon
            with contextlib.suppress(Exception):
                await future
            message = f"logged in, but no CLI prompt within {timeout:g}s ({self.where})"
            raise ConnectTimeout(message, host=self.host.name) from None
        except Exception as exc:
            raise self._translate_session(exc) from None

    def _translate_session(self, exc: BaseException) -> TransportError:
        """An error after the SSH login: the CLI prompt, enable, the session itself."""
        name, text = self.host.name, str(exc).strip()
        if isinstance(exc, NetmikoAuthenticationException):  # an in-band login prompt
            kind = self.host.credentials.auth_kind
            return AuthenticationError(f"authentication failed (offered: {kind})", host=name)
        if isinstance(exc, ValueError) and "enable mode" in text:
            return AuthenticationError("enable failed: the enable secret was refused", host=name)
        if isinstance(exc, ReadTimeout) or (isinstance(exc, ValueError) and "prompt" in text):
            return ConnectTimeout(f"logged in, but no CLI prompt came ({self.where})", host=name)
        if isinstance(exc, ReadException | OSError | EOFError):
            return ConnectionLost(f"the device closed the session during login: {text}", host=name)
        first = text.splitlines()[0] if text else type(exc).__name__
        return ConnectError(f"CLI session to {self.where} failed: {first}", host=name)

    @property
    def conn(self) -> Any:
        if self._conn is None:
            raise ConnectError("not connected", host=self.host.name)
        return self._conn

    async def is_alive(self) -> bool:
        """netmiko's own ``is_alive()``: a NUL byte is written to the session (failing
        when the device closed it), then the SSH connection's state is asked."""
        conn = self._conn
        if conn is None:
            return False
        return bool(await _in_thread(conn.is_alive))

    def _command_failed(self, command: str, exc: BaseException, timeout: float) -> NoReturn:
        if isinstance(exc, ReadTimeout):
            raise CommandTimeout(
                f"'{command}': no prompt within {timeout:g}s "
                "(the command is slow, or the device waits for input)",
                host=self.host.name,
            ) from None
        closed = isinstance(exc, ReadException)  # netmiko read b"": the channel is closed
        reason = "the device closed the session" if closed else type(exc).__name__
        raise ConnectionLost(
            f"connection lost during '{command}': {reason}", host=self.host.name
        ) from None

    def _send_blocking(self, command: str, timeout: float) -> str:
        output = self.conn.send_command(command, read_timeout=timeout)
        return str(output)

    async def _send(self, command: str, timeout: float, output: OutputSink) -> str:
        try:
            text = await _in_thread(self._send_blocking, command, timeout)
        except (ReadException, OSError, EOFError) as exc:
            self._command_failed(command, exc, timeout)
        if text:
            output("stdout", (text if text.endswith("\n") else text + "\n").encode())
        return text

    async def run(
        self,
        command: str,
        output: OutputSink,
        timeout: float | None,
        *,
        stdin: StdinSource | None = None,
    ) -> int:
        if stdin is not None:
            raise UsageError(f"{self.host.name}: a network device's CLI takes no --stdin")
        text = await self._send(command, timeout or DEFAULT_READ_TIMEOUT, output)
        error = self.platform.error_in(text)
        if error is not None:
            raise DeviceCommandError(f"'{command}': {error}", host=self.host.name)
        return 0

    async def run_commands(
        self, commands: CommandSet, output: OutputSink, results: list[CommandOutput]
    ) -> None:
        """Configuration set first, then save, then each command, each appended to
        *results* when it ends; a command the device rejects gets ``error`` and the next
        one still runs. The configuration is not saved when the device rejected part of it.
        A step that times out or loses the connection is recorded, then the error raised."""
        timeout = commands.timeout or DEFAULT_READ_TIMEOUT
        steps: list[tuple[str, Callable[[], Awaitable[CommandOutput]]]] = []
        if commands.config:
            steps.append(("config", lambda: self._configure(commands.config, timeout, output)))
        if commands.save:
            steps.append(("save", lambda: self._save_unless_rejected(results, timeout, output)))
        for text in commands.commands:
            steps.append(
                (text, functools.partial(self._command, text, commands.parse, timeout, output))
            )
        for name, step in steps:
            try:
                results.append(await step())
            except TransportError as exc:
                results.append(CommandOutput(name, "", error=exc.message))
                raise

    async def _save_unless_rejected(
        self, done: list[CommandOutput], timeout: float, output: OutputSink
    ) -> CommandOutput:
        if done and done[-1].error:
            return CommandOutput("save", "", note="not saved: the configuration was rejected")
        return await self._save(timeout, output)

    async def _command(
        self, command: str, parse: bool, timeout: float, output: OutputSink
    ) -> CommandOutput:
        text = await self._send(command, timeout, output)
        error = self.platform.error_in(text)
        if error is not None or not parse:
            return CommandOutput(command, text, error=error)
        rows, note = await _in_thread(self._parse_blocking, command, text)
        return CommandOutput(command, text, parsed=rows, note=note)

    def _parse_blocking(
        self, command: str, text: str
    ) -> tuple[tuple[dict[str, Any], ...] | None, str | None]:
        try:
            rows = get_structured_data_textfsm(
                text, platform=self.host.device_type, command=command, raise_parsing_error=True
            )
        except NetmikoParsingException as exc:
            if exc.__context__ is not None:  # CliTableError / FileNotFoundError: no template
                return None, f"no TextFSM template for '{command}'"
            return None, f"the TextFSM template for '{command}' matched nothing"
        if not isinstance(rows, list):
            return None, f"no TextFSM template for '{command}'"
        return tuple(dict(row) for row in rows), None

    def _configure_blocking(self, lines: tuple[str, ...], timeout: float) -> tuple[str, str | None]:
        """Config mode, each line in turn until the device rejects one, then back out.

        The platform's error lines are looked for here, not through netmiko's
        ``error_pattern``: netmiko before 4.7 does not say which line matched."""
        conn = self.conn
        output = conn.config_mode()
        error: str | None = None
        try:
            for line in lines:
                answer = str(
                    conn.send_config_set(
                        [line],
                        enter_config_mode=False,
                        exit_config_mode=False,
                        read_timeout=timeout,
                    )
                )
                output += answer
                rejected = self.platform.error_in(answer)
                if rejected is not None:
                    error = f"'{line}': {rejected}"
                    break
        finally:
            output += conn.exit_config_mode()
        return str(output), error

    async def _configure(
        self, lines: tuple[str, ...], timeout: float, output: OutputSink
    ) -> CommandOutput:
        try:
            text, error = await _in_thread(self._configure_blocking, lines, timeout)
        except (ReadException, OSError, EOFError) as exc:
            self._command_failed("configuration", exc, timeout)
        except ValueError as exc:  # "Failed to enter/exit configuration mode"
            text, error = "", f"configuration mode: {exc}"
        if text:
            output("stdout", (text if text.endswith("\n") else text + "\n").encode())
        return CommandOutput("config", text, error=error)

    async def _save(self, timeout: float, output: OutputSink) -> CommandOutput:
        try:
            text = str(await _in_thread(self.conn.save_config))
        except NotImplementedError:
            unsupported = f"saving is not supported for device_type {self.host.device_type}"
            return CommandOutput("save", "", error=unsupported)
        except (ReadException, OSError, EOFError) as exc:
            self._command_failed("save", exc, timeout)
        if text:
            output("stdout", (text if text.endswith("\n") else text + "\n").encode())
        return CommandOutput("save", text, error=self.platform.error_in(text))

    def _no_files(self) -> NoReturn:
        raise RemoteFileError(NO_FILES, host=self.host.name)

    async def stat(self, remote: str) -> RemoteStat | None:
        self._no_files()

    async def listdir(self, remote: str) -> list[tuple[str, RemoteStat]]:
        self._no_files()

    async def mkdir(self, remote: str) -> None:
        self._no_files()

    async def put(
        self, local: Path, remote: str, progress: ProgressSink, *, preserve: bool = False
    ) -> None:
        self._no_files()

    async def get(
        self, remote: str, local: Path, progress: ProgressSink, *, preserve: bool = False
    ) -> None:
        self._no_files()

    async def rename(self, source: str, target: str) -> None:
        self._no_files()

    async def remove(self, remote: str) -> None:
        self._no_files()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            future = asyncio.get_running_loop().run_in_executor(_executor(), conn.disconnect)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(future), CLOSE_TIMEOUT)
        ssh, self._ssh = self._ssh, None
        if ssh is not None:
            await ssh.close()
