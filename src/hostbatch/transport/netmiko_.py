"""Network devices (routers, switches, firewalls) through netmiko.

netmiko is blocking, so every call runs in a thread of one module-level pool (created on
first use, sized for a large fanout); results come back to the event loop, which feeds
each command's output to the run's sink. The device's CLI session is opened once per host
(login, then ``enable`` when the host has an enable secret) and every command of a
:class:`~hostbatch.models.CommandSet` runs in it.

Host keys are verified by default, unlike netmiko's own default (AutoAddPolicy):
``strict`` trusts only keys in known_hosts, ``accept-new`` records a host's first key,
``off`` checks nothing. A changed key always fails.

Platform knowledge (the error lines each family prints) is data in :data:`PLATFORMS`.
Every netmiko, paramiko and socket exception is translated here; messages never carry a
password or secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import paramiko
from netmiko import ConnectHandler
from netmiko.exceptions import (
    ConfigInvalidException,
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
    HostKeyError,
    RemoteFileError,
    TransportError,
)
from hostbatch.models import CommandOutput, CommandSet, Host
from hostbatch.transport import hostkeys
from hostbatch.transport.base import ConnectOptions, OutputSink, ProgressSink, RemoteStat
from hostbatch.transport.paramiko_ import trust_known_keys

T = TypeVar("T")

POOL_SIZE = 512  # threads; a host holds one only while a netmiko call runs
DEFAULT_READ_TIMEOUT = 60.0  # seconds a command may take when the run sets no timeout
CLOSE_TIMEOUT = 5.0
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


def _chain(exc: BaseException) -> list[BaseException]:
    """*exc* and the exceptions it was raised from or during (netmiko wraps paramiko's)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _refused(exc: BaseException) -> bool:
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return all(isinstance(e, ConnectionRefusedError) for e in exc.errors.values())
    return isinstance(exc, ConnectionRefusedError)


class NetmikoTransport:
    """One netmiko CLI session to one network device."""

    def __init__(self, host: Host, options: ConnectOptions) -> None:
        self.host = host
        self.options = options
        self.platform = platform_for(host.device_type)
        self._conn: Any = None  # netmiko BaseConnection (untyped library)

    @property
    def where(self) -> str:
        return f"{self.host.hostname}:{self.host.port}"

    def _connect_kwargs(self) -> dict[str, Any]:
        creds = self.host.credentials
        timeout = self.options.connect_timeout
        checking = self.options.host_keys != "off"
        kwargs: dict[str, Any] = {
            "device_type": self.host.device_type,
            "host": self.host.hostname,
            "port": self.host.port,
            "username": creds.username or "",
            "password": creds.password.reveal() if creds.password else None,
            "secret": creds.secret.reveal() if creds.secret else "",
            "conn_timeout": timeout,
            "auth_timeout": timeout,
            "banner_timeout": timeout,
            "keepalive": int(self.options.keepalive),
            "fast_cli": True,
            "ssh_strict": checking,
            "system_host_keys": False,
            "alt_host_keys": False,  # _ssh_client() gives paramiko this host's known keys
            "allow_agent": self.options.use_agent and creds.password is None,
            "auto_connect": False,  # our host key policy goes in before connecting
        }
        if creds.key_file is not None:
            kwargs["use_keys"] = True
            kwargs["key_file"] = creds.key_file
            kwargs["passphrase"] = creds.passphrase.reveal() if creds.passphrase else None
        return kwargs

    def _ssh_client(self) -> paramiko.SSHClient:
        """The paramiko client netmiko connects with: this host's known keys and the same
        host key policy as the paramiko transport."""
        client = paramiko.SSHClient()
        trust_known_keys(client, self.host, self.options)
        return client

    def _open_blocking(self) -> None:
        """Runs in a pool thread: connect, log in, find the prompt, enable."""
        conn = ConnectHandler(**self._connect_kwargs())
        self._conn = conn
        conn._build_ssh_client = self._ssh_client  # type: ignore[method-assign]  # netmiko's hook
        conn._open()
        if self.host.credentials.secret is not None:
            conn.enable()

    async def connect(self) -> None:
        if not self.host.device_type:
            raise TransportError(
                "the netmiko transport needs a device_type (e.g. device_type = cisco_ios)",
                host=self.host.name,
            )
        await self.close()  # a retry starts afresh
        future = asyncio.get_running_loop().run_in_executor(_executor(), self._open_blocking)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.options.connect_timeout)
        except TimeoutError:
            raise await self._watchdog(future) from None
        except Exception as exc:
            raise self._translate_connect(exc) from None

    async def _watchdog(self, future: asyncio.Future[None]) -> TransportError:
        """Login took longer than the connect timeout: close the socket (the blocked thread
        then returns soon), wait for the thread, say how far the login got."""
        shell = getattr(self._conn, "remote_conn", None) is not None
        channel = getattr(self._conn, "channel", None)
        if channel is not None:
            channel.remote_conn = None  # netmiko's next read raises instead of polling on
        client = getattr(self._conn, "remote_conn_pre", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        with contextlib.suppress(Exception):
            await future
        timeout, where = self.options.connect_timeout, self.where
        if shell:
            message = f"logged in, but no CLI prompt within {timeout:g}s ({where})"
        else:
            message = f"no SSH login within {timeout:g}s ({where})"
        return ConnectTimeout(message, host=self.host.name)

    def _translate_connect(self, exc: BaseException) -> TransportError:
        name = self.host.name
        chain = _chain(exc)
        decided = next((e for e in chain if isinstance(e, HostKeyError)), None)
        if decided is not None:  # unknown or changed key type: HostKeyPolicy said why
            return decided
        if any(isinstance(e, paramiko.BadHostKeyException) for e in chain):
            path = self.options.known_hosts_path
            return HostKeyError(hostkeys.changed_message(*self._key_target(), path), host=name)
        if any(
            isinstance(e, NetmikoAuthenticationException | paramiko.AuthenticationException)
            for e in chain
        ):
            kind = self.host.credentials.auth_kind
            return AuthenticationError(f"authentication failed (offered: {kind})", host=name)
        if isinstance(exc, ValueError) and "enable mode" in str(exc):
            return AuthenticationError("enable failed: the enable secret was refused", host=name)
        if isinstance(exc, ValueError) and "device_type" in str(exc):
            return TransportError(f"unsupported device_type '{self.host.device_type}'", host=name)
        return self._translate_network(exc, chain)

    def _translate_network(self, exc: BaseException, chain: list[BaseException]) -> TransportError:
        name, where = self.host.name, self.where
        timeout = self.options.connect_timeout
        text = str(exc).strip()
        if any(_refused(e) for e in chain):
            return ConnectError(f"connection refused ({where})", host=name)
        if any(isinstance(e, socket.gaierror) for e in chain) or "not resolvable" in text:
            return ConnectError(f"cannot resolve {self.host.hostname}", host=name)
        if any(isinstance(e, TimeoutError) for e in chain):
            return ConnectTimeout(f"no TCP connection within {timeout:g}s ({where})", host=name)
        if "banner" in text.lower():
            return ConnectTimeout(f"no SSH banner within {timeout:g}s ({where})", host=name)
        if isinstance(exc, ReadTimeout) or (isinstance(exc, ValueError) and "prompt" in text):
            return ConnectTimeout(f"logged in, but no CLI prompt came ({where})", host=name)
        oserror = next((e for e in chain if isinstance(e, OSError)), None)
        if oserror is not None:
            reason = oserror.strerror or oserror
            return ConnectError(f"cannot connect to {where}: {reason}", host=name)
        first = text.splitlines()[0] if text else type(exc).__name__
        return ConnectError(f"cannot connect to {where}: {first}", host=name)

    def _key_target(self) -> tuple[str, int]:
        return self.host.hostname, self.host.port

    @property
    def conn(self) -> Any:
        if self._conn is None:
            raise ConnectError("not connected", host=self.host.name)
        return self._conn

    def _command_failed(self, command: str, exc: BaseException, timeout: float) -> NoReturn:
        if isinstance(exc, ReadTimeout):
            raise CommandTimeout(
                f"'{command}': no prompt within {timeout:g}s "
                "(the command is slow, or the device waits for input)",
                host=self.host.name,
            ) from None
        raise ConnectionLost(
            f"connection lost during '{command}': {type(exc).__name__}", host=self.host.name
        ) from None

    def _send_blocking(self, command: str, timeout: float) -> str:
        output = self.conn.send_command(command, read_timeout=timeout)
        return str(output)

    async def _send(self, command: str, timeout: float, output: OutputSink) -> str:
        try:
            text = await _in_thread(self._send_blocking, command, timeout)
        except (ReadException, OSError, EOFError, paramiko.SSHException) as exc:
            self._command_failed(command, exc, timeout)
        if text:
            output("stdout", (text if text.endswith("\n") else text + "\n").encode())
        return text

    async def run(self, command: str, output: OutputSink, timeout: float | None) -> int:
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
        """Config mode, each line in turn until the device rejects one, then back out."""
        conn = self.conn
        pattern = f"(?:{self.platform.error_regex.pattern}).*"  # the whole error line
        output = conn.config_mode()
        error: str | None = None
        try:
            for line in lines:
                try:
                    output += conn.send_config_set(
                        [line],
                        enter_config_mode=False,
                        exit_config_mode=False,
                        error_pattern=pattern,
                        read_timeout=timeout,
                    )
                except ConfigInvalidException as exc:
                    found = re.search(r"matched error: (.*)", str(exc))
                    matched = found.group(1).strip() if found else "rejected by the device"
                    error = f"'{line}': {matched}"
                    output += f"{line}\n{matched}\n"
                    break
        finally:
            output += conn.exit_config_mode()
        return str(output), error

    async def _configure(
        self, lines: tuple[str, ...], timeout: float, output: OutputSink
    ) -> CommandOutput:
        try:
            text, error = await _in_thread(self._configure_blocking, lines, timeout)
        except (ReadException, OSError, EOFError, paramiko.SSHException) as exc:
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
        except (ReadException, OSError, EOFError, paramiko.SSHException) as exc:
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
        if conn is None:
            return
        future = asyncio.get_running_loop().run_in_executor(_executor(), conn.disconnect)
        try:
            await asyncio.wait_for(asyncio.shield(future), CLOSE_TIMEOUT)
        except Exception:
            with contextlib.suppress(Exception):
                conn.paramiko_cleanup()
