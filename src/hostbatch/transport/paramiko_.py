"""The paramiko transport: blocking paramiko calls run in a shared thread pool.

It keeps the same contract as the asyncssh transport (see :mod:`hostbatch.transport.base`):
the same host-key policies through :mod:`hostbatch.transport.hostkeys`, the same errors,
the same atomic transfers. Every paramiko and socket exception is translated here.

paramiko is blocking, so every call that may wait on the network runs in a module-level
:class:`~concurrent.futures.ThreadPoolExecutor` (sized for hundreds of hosts at once; the
event loop's default executor has only a handful of threads). Callbacks (output chunks,
transfer progress) are handed back to the event loop thread with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import select
import signal
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

from hostbatch.errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    HostKeyError,
    RemoteFileError,
    TransportError,
)
from hostbatch.models import Host, Stream
from hostbatch.transport import hostkeys
from hostbatch.transport.base import (
    ConnectOptions,
    OutputSink,
    ProgressSink,
    RemoteStat,
    StdinSource,
)

READ_SIZE = 65536
POLL_INTERVAL = 0.25  # how often a reading thread checks whether it should give up
PARAMIKO_TIMER_SLACK = 2.0  # seconds past connect_timeout for paramiko's timers
SEND_WAIT = 0.005  # stdin: how long a writing thread waits for channel window space
MAX_THREADS = 512
# A get reads this much per pipelined batch (64 of paramiko's 32 KiB requests): bytes in
# flight per file stay bounded, and a cancelled get stops within one batch.
GET_BATCH = 64 * 32768
CANCEL_GRACE = 2.0  # seconds a cancelled transfer's thread gets to stop by itself
_T = TypeVar("_T")

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_cache_lock = threading.Lock()
_key_cache: dict[tuple[str, str | None], paramiko.PKey] = {}
_key_locks: dict[tuple[str, str | None], threading.Lock] = {}


def _executor() -> ThreadPoolExecutor:
    """The shared pool for blocking paramiko calls, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="hostbatch-paramiko")
        return _pool


async def _in_thread(func: Callable[..., _T], *args: Any) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_executor(), func, *args)


def _load_key(path: str, passphrase: str | None, host: str) -> paramiko.PKey:
    """Read a private key once per process (many hosts share one key file): hosts that
    need it meanwhile wait for the same read, not decrypt it again each."""
    cache_key = (path, passphrase)
    with _cache_lock:
        lock = _key_locks.setdefault(cache_key, threading.Lock())
    with lock:
        with _cache_lock:
            if cache_key in _key_cache:
                return _key_cache[cache_key]
        key = _read_key(path, passphrase, host)
        with _cache_lock:
            _key_cache[cache_key] = key
        return key


def _read_key(path: str, passphrase: str | None, host: str) -> paramiko.PKey:
    try:
        # from_path hands the password straight to cryptography, which wants bytes
        # (the stubs say str): pass bytes.
        password: Any = passphrase.encode() if passphrase is not None else None
        key = paramiko.PKey.from_path(path, password)
    except paramiko.PasswordRequiredException:
        raise AuthenticationError(
            f"cannot load key file {path}: wrong or missing passphrase", host=host
        ) from None
    except (OSError, ValueError, TypeError, paramiko.SSHException) as exc:
        text = str(exc)
        reason = "wrong or missing passphrase" if _mentions_passphrase(text) else text
        raise AuthenticationError(f"cannot load key file {path}: {reason}", host=host) from None
    return key


def _mentions_passphrase(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in ("passphrase", "password", "decrypt", "encrypted"))


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Decides about host keys that known_hosts does not already trust.

    paramiko itself raises BadHostKeyException when known_hosts holds a different key
    of the same type; this handles "no key of this type known" (unknown, or changed to
    another key type) according to the run's policy.
    """

    def __init__(self, host: Host, options: ConnectOptions) -> None:
        self.host = host
        self.options = options

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if self.options.host_keys == "off":
            return
        path = self.options.known_hosts_path
        name, port = self.host.hostname, self.host.port
        if hostkeys.is_known(path, name, port):
            raise HostKeyError(hostkeys.changed_message(name, port, path), host=self.host.name)
        if self.options.host_keys == "accept-new":
            hostkeys.record(path, name, port, f"{key.get_name()} {key.get_base64()}")
            return
        raise HostKeyError(hostkeys.unknown_message(name, port, path), host=self.host.name)


def _key_type(line: str) -> str:
    """The key type of a known_hosts line (``ssh-ed25519``, ``ssh-rsa``...), "" if none."""
    fields = line.split()
    return fields[1] if len(fields) > 1 else ""


def trust_known_keys(client: paramiko.SSHClient, host: Host, options: ConnectOptions) -> None:
    """Give *client* the known_hosts keys for *host* only (policy 'off': none), and the
    policy for the keys it does not know. Only the host's own lines are parsed."""
    client.set_missing_host_key_policy(HostKeyPolicy(host, options))
    if options.host_keys == "off":
        return
    token = hostkeys.host_token(host.hostname, host.port)
    path = options.known_hosts_path
    # paramiko asks for the type of the first key it holds for the host: the cheapest for
    # the server (hostkeys.SERVER_CHEAPEST_FIRST), whatever the file's order
    lines = hostkeys.key_lines(path, host.hostname, host.port)
    for line in sorted(lines, key=lambda line: hostkeys.server_cost_rank(_key_type(line))):
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError) as exc:
            number = hostkeys.line_number(path, line)
            hostkeys.warn_malformed(path, number, f"paramiko cannot read the key: {exc}")
            continue  # skipped, as OpenSSH does
        if entry is not None and entry.key is not None:
            client.get_host_keys().add(token, entry.key.get_name(), entry.key)


def _send_signal(chan: paramiko.Channel, name: str) -> None:
    """Send an RFC 4254 section 6.9 ``signal`` request (e.g. ``TERM``) on *chan*.

    paramiko has no public API for it, so the channel request is built by hand and
    queued with the transport's (private) ``_send_user_message``. OpenSSH >= 7.9
    delivers it to the command; without it a command without a PTY survives the
    channel closing.
    """
    message = paramiko.Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(chan.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)  # want_reply
    message.add_string(name)
    cast(Any, chan.get_transport())._send_user_message(message)


def _watch_exit_signals(transport: paramiko.Transport, signals: dict[int, str]) -> None:
    """Remember ``exit-signal`` requests by channel id (paramiko ignores them).

    paramiko dispatches channel messages through ``Transport._channel_handler_table``;
    this instance-level copy peeks at each channel request, records the signal name of
    an ``exit-signal`` and hands the message, rewound, to paramiko's own handler.
    """
    default_table: dict[int, Any] = cast(Any, paramiko.Transport)._channel_handler_table
    original = default_table[paramiko.common.MSG_CHANNEL_REQUEST]

    def handle_request(chan: paramiko.Channel, message: paramiko.Message) -> None:
        position = message.packet.tell()
        with contextlib.suppress(Exception):
            if message.get_text() == "exit-signal":
                message.get_boolean()
                signals[chan.get_id()] = message.get_text()
        message.packet.seek(position)
        original(chan, message)

    table = dict(default_table)
    table[paramiko.common.MSG_CHANNEL_REQUEST] = handle_request
    cast(Any, transport)._channel_handler_table = table


@dataclass
class _Outcome:
    """How a command's channel ended, as seen by the reading thread."""

    exit_status: int
    stopped: bool  # the reader gave up (timeout or cancellation)


def _read_nowait(read: Callable[[int], bytes]) -> bytes | None:
    """Data if any is buffered, b"" at end of stream, None when nothing is there yet."""
    try:
        return read(READ_SIZE)
    except TimeoutError:
        return None


def _pump(
    chan: paramiko.Channel, emit: Callable[[Stream, bytes], None], stop: threading.Event
) -> _Outcome:
    """Read stdout and stderr until both end, then wait for the exit status (thread)."""
    readers: dict[Stream, Callable[[int], bytes]] = {
        "stdout": chan.recv,
        "stderr": chan.recv_stderr,
    }
    while readers:
        if stop.is_set():
            return _Outcome(-1, stopped=True)
        select.select([chan], [], [], POLL_INTERVAL)
        for stream, read in list(readers.items()):
            while (data := _read_nowait(read)) is not None:
                if not data:
                    del readers[stream]
                    break
                emit(stream, data)
    while not chan.status_event.wait(POLL_INTERVAL):
        if stop.is_set():
            return _Outcome(-1, stopped=True)
    return _Outcome(chan.exit_status, stopped=False)


def _send_blocking(chan: paramiko.Channel, data: bytes, stop: threading.Event) -> bool:
    """Send all of *data* on the non-blocking *chan*, waiting for window space; False
    when the channel closed or *stop* was set first (thread)."""
    offset = 0
    while offset < len(data):
        if stop.is_set() or chan.closed or chan.eof_received:
            return False
        try:
            sent = chan.send(data[offset : offset + READ_SIZE])
        except TimeoutError:  # no window space yet (the channel's timeout is 0)
            stop.wait(SEND_WAIT)
            continue
        if sent == 0:
            return False
        offset += sent
    return True


async def _feed(chan: paramiko.Channel, source: StdinSource, stop: threading.Event) -> None:
    """Write *source* to the command's stdin, then EOF; stop quietly once it is gone."""
    with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
        async for chunk in source:
            if not await _in_thread(_send_blocking, chan, chunk, stop):
                return
        await _in_thread(chan.shutdown_write)


def _terminate(chan: paramiko.Channel) -> None:
    """Ask the server to signal the command, then close the channel (thread)."""
    with contextlib.suppress(Exception):
        _send_signal(chan, "TERM")
        _send_signal(chan, "KILL")
    with contextlib.suppress(Exception):
        chan.close()


class ParamikoTransport:
    """One paramiko connection (optionally tunnelled through ``host.jump``) to one host."""

    blocking = False

    def __init__(self, host: Host, options: ConnectOptions) -> None:
        self.host = host
        self.options = options
        self._client: paramiko.SSHClient | None = None
        self._jump: ParamikoTransport | None = None
        self._sftp_client: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()
        self._closed = False  # set by close(): a connect still running in a thread gives up
        self._exit_signals: dict[int, str] = {}

    # -- connect -----------------------------------------------------------------------

    async def connect(self) -> None:
        creds = self.host.credentials
        if creds.key_file is not None:
            # Before the connect timeout starts, as the asyncssh transport does: decrypting a
            # passphrase-protected key takes seconds of bcrypt rounds on a busy machine,
            # which were counted as "no SSH handshake within ...s".
            passphrase = creds.passphrase.reveal() if creds.passphrase else None
            await _in_thread(_load_key, creds.key_file, passphrase, self.host.name)
        sock: paramiko.Channel | None = None
        if self.host.jump is not None:
            sock = await self._connect_jump(self.host.jump)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(_executor(), self._connect_blocking, sock)
        try:
            done, _ = await asyncio.wait({future}, timeout=self.options.connect_timeout)
            if not done:
                raise ConnectTimeout(
                    f"no SSH handshake within {self.options.connect_timeout:g}s "
                    f"({self.host.hostname}:{self.host.port})",
                    host=self.host.name,
                )
            future.result()
        except TransportError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise self._translate(exc) from None
        except BaseException:  # cancelled: the connecting thread notices close()
            await self.close()
            raise

    async def _connect_jump(self, jump_host: Host) -> paramiko.Channel:
        """Log in to the jump host and open a direct-tcpip channel to the target."""
        self._jump = ParamikoTransport(jump_host, self.options)
        try:
            await self._jump.connect()
            return await _in_thread(self._jump._open_tunnel, self.host.hostname, self.host.port)
        except TransportError as exc:
            await self.close()
            raise type(exc)(
                f"via jump host {jump_host.name}: {exc.message}", host=self.host.name
            ) from None

    def _open_tunnel(self, hostname: str, port: int) -> paramiko.Channel:
        try:
            return self._transport().open_channel(
                "direct-tcpip",
                (hostname, port),
                ("127.0.0.1", 0),
                timeout=self.options.connect_timeout,
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(
                f"cannot reach {hostname}:{port}: {exc}", host=self.host.name
            ) from None

    def _connect_blocking(self, sock: paramiko.Channel | None) -> None:
        """Connect and authenticate (thread). Closes the client if close() came first."""
        client = paramiko.SSHClient()
        with self._lock:
            if self._closed:
                return
            self._client = client
        trust_known_keys(client, self.host, self.options)
        client.connect(
            self.host.hostname,
            self.host.port,
            username=self.host.username,
            sock=sock,
            **self._auth_kwargs(),
        )
        transport = client.get_transport()
        with self._lock:
            abandoned = self._closed or transport is None
        if abandoned or transport is None:
            client.close()
            return
        transport.set_keepalive(max(1, int(self.options.keepalive)))
        _watch_exit_signals(transport, self._exit_signals)

    def _auth_kwargs(self) -> dict[str, Any]:
        """Credentials and timeouts, mirroring the asyncssh transport's choices."""
        creds = self.host.credentials
        # paramiko's own timers run a little past our deadline, so the deadline in
        # connect() always fires first and the host is reported as a connect timeout (a
        # banner timer firing first surfaced as "No existing session" under load).
        timeout = self.options.connect_timeout + PARAMIKO_TIMER_SLACK
        kwargs: dict[str, Any] = {
            "timeout": timeout,
            "banner_timeout": timeout,
            "auth_timeout": timeout,
            "channel_timeout": timeout,
            "look_for_keys": False,
            "allow_agent": False,
        }
        if creds.password is not None:
            kwargs["password"] = creds.password.reveal()
        if creds.key_file is not None:
            passphrase = creds.passphrase.reveal() if creds.passphrase else None
            kwargs["pkey"] = _load_key(creds.key_file, passphrase, self.host.name)
        elif creds.password is None:  # agent and default keys
            kwargs["look_for_keys"] = True
            kwargs["allow_agent"] = self.options.use_agent
        return kwargs

    def _translate(self, exc: BaseException) -> TransportError:
        name, where = self.host.name, f"{self.host.hostname}:{self.host.port}"
        if isinstance(exc, paramiko.BadHostKeyException):
            path = self.options.known_hosts_path
            message = hostkeys.changed_message(self.host.hostname, self.host.port, path)
            return HostKeyError(message, host=name)
        if isinstance(exc, paramiko.AuthenticationException):
            kind = self.host.credentials.auth_kind
            return AuthenticationError(f"authentication failed (offered: {kind})", host=name)
        if isinstance(exc, paramiko.SSHException) and "No authentication methods" in str(exc):
            return AuthenticationError(
                "authentication failed: nothing to offer (no password, key file, agent key "
                "or default key)",
                host=name,
            )
        if _is_timeout(exc):
            return ConnectTimeout(
                f"no SSH handshake within {self.options.connect_timeout:g}s ({where})", host=name
            )
        if _is_refused(exc):
            return ConnectError(f"connection refused ({where})", host=name)
        if isinstance(exc, EOFError):
            return ConnectError(f"connection closed during login ({where})", host=name)
        if isinstance(exc, OSError):
            return ConnectError(f"cannot connect to {where}: {exc.strerror or exc}", host=name)
        return ConnectError(f"cannot connect to {where}: {type(exc).__name__}: {exc}", host=name)

    def alive(self) -> bool:
        """False once the connection was closed, by us or by the server (agent pool)."""
        client = self._client
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    def _transport(self) -> paramiko.Transport:
        client = self._client
        transport = client.get_transport() if client is not None else None
        if transport is None or not transport.is_active():
            raise ConnectError("not connected", host=self.host.name)
        return transport

    # -- commands ----------------------------------------------------------------------

    def _start(self, command: str, *, close_stdin: bool) -> paramiko.Channel:
        """Open a session channel and start *command*, its stdin at EOF if asked (thread)."""
        chan = self._transport().open_session(timeout=self.options.connect_timeout)
        chan.exec_command(command)
        if close_stdin:
            chan.shutdown_write()
        chan.settimeout(0.0)
        return chan

    async def run(
        self,
        command: str,
        output: OutputSink,
        timeout: float | None,
        *,
        stdin: StdinSource | None = None,
    ) -> int:
        try:
            chan = await _in_thread(
                functools.partial(self._start, command, close_stdin=stdin is None)
            )
        except TransportError:
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"cannot start command: {exc}", host=self.host.name) from None
        stop_feeding = threading.Event()
        feeder = None if stdin is None else asyncio.ensure_future(_feed(chan, stdin, stop_feeding))
        try:
            outcome = await self._collect(chan, output, timeout)
        except asyncio.CancelledError:  # Ctrl-C in the shell: stop the remote command too
            with contextlib.suppress(Exception):
                _terminate(chan)
            raise
        finally:
            stop_feeding.set()
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            with contextlib.suppress(Exception):
                chan.close()
        return self._exit_status(chan, outcome)

    async def _collect(
        self, chan: paramiko.Channel, output: OutputSink, timeout: float | None
    ) -> _Outcome:
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def emit(stream: Stream, data: bytes) -> None:
            loop.call_soon_threadsafe(output, stream, data)

        future = loop.run_in_executor(_executor(), _pump, chan, emit, stop)
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
        finally:
            stop.set()  # also on cancellation: the reading thread gives up
        if not done:
            await _in_thread(_terminate, chan)
            with contextlib.suppress(Exception):
                await future
            raise CommandTimeout(
                f"command timed out after {timeout:g}s; remote process terminated",
                host=self.host.name,
            )
        try:
            return future.result()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectionLost(
                f"connection lost during command: {exc}", host=self.host.name
            ) from None

    def _exit_status(self, chan: paramiko.Channel, outcome: _Outcome) -> int:
        if outcome.exit_status >= 0:
            return outcome.exit_status
        signame = self._exit_signals.pop(chan.get_id(), None)
        if signame is not None:
            number = getattr(signal, f"SIG{signame}", None)
            return 128 + int(number) if number is not None else 255
        raise ConnectionLost("connection lost during command (no exit status)", host=self.host.name)

    # -- files -------------------------------------------------------------------------

    def _sftp(self) -> paramiko.SFTPClient:
        """The connection's SFTP session, started on first use (thread)."""
        with self._lock:
            if self._sftp_client is not None:
                return self._sftp_client
        try:
            sftp = paramiko.SFTPClient.from_transport(self._transport())
        except TransportError:
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise RemoteFileError(f"cannot start SFTP: {exc}", host=self.host.name) from None
        if sftp is None:
            raise RemoteFileError("cannot start SFTP", host=self.host.name)
        with self._lock:
            if self._sftp_client is None:
                self._sftp_client = sftp
                return sftp
        sftp.close()  # another thread won the race
        return self._sftp_client

    async def _file_op(
        self,
        action: str,
        func: Callable[..., _T],
        *args: Any,
        stop: threading.Event | None = None,
    ) -> _T:
        """Run one blocking SFTP operation in a thread, translating its errors.

        Cancelled (a deadline, Ctrl-C), it sets *stop* (a transfer's callback then ends
        its copy at the next batch) and hands the SFTP session over to be closed once the
        thread ends, or after CANCEL_GRACE seconds: a thread waiting on a silent server
        then fails instead of waiting forever. The next operation starts a new session."""
        future = _executor().submit(func, *args)
        try:
            return await asyncio.wrap_future(future)
        except TransportError:
            raise
        except asyncio.CancelledError:
            if stop is not None:
                stop.set()
            with self._lock:
                sftp, self._sftp_client = self._sftp_client, None
            if sftp is not None:
                _executor().submit(_close_when_done, future, sftp)
            raise
        except Exception as exc:
            raise self._file_error(action, exc) from None

    def _file_error(self, action: str, exc: BaseException) -> TransportError:
        client = self._client
        transport = client.get_transport() if client is not None else None
        alive = transport is not None and transport.is_active()
        if isinstance(exc, paramiko.SSHException | EOFError) or not alive:
            return ConnectionLost(f"connection lost during {action}: {exc}", host=self.host.name)
        if isinstance(exc, OSError) and exc.strerror:
            return RemoteFileError(f"{action}: {exc.strerror}", host=self.host.name)
        return RemoteFileError(f"{action}: {exc}", host=self.host.name)

    async def stat(self, remote: str) -> RemoteStat | None:
        return await self._file_op(f"stat {remote}", self._stat_blocking, remote)

    def _stat_blocking(self, remote: str) -> RemoteStat | None:
        try:
            return _remote_stat(self._sftp().stat(remote))
        except FileNotFoundError:
            return None

    async def listdir(self, remote: str) -> list[tuple[str, RemoteStat]]:
        entries = await self._file_op(f"list {remote}", self._listdir_blocking, remote)
        return [(e.filename, _remote_stat(e)) for e in entries if e.filename not in (".", "..")]

    def _listdir_blocking(self, remote: str) -> list[paramiko.SFTPAttributes]:
        return self._sftp().listdir_attr(remote)

    async def mkdir(self, remote: str) -> None:
        await self._file_op(f"mkdir {remote}", self._mkdir_blocking, remote)

    def _mkdir_blocking(self, remote: str) -> None:
        sftp = self._sftp()
        try:
            sftp.mkdir(remote)
        except OSError:
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(sftp.stat(remote).st_mode or 0):
                    return  # already there
            raise

    async def put(
        self, local: Path, remote: str, progress: ProgressSink, *, preserve: bool = False
    ) -> None:
        stop = threading.Event()
        callback = _progress_callback(asyncio.get_running_loop(), progress, stop)
        await self._file_op(
            f"put {remote}", self._put_blocking, local, remote, callback, preserve, stop=stop
        )

    def _put_blocking(
        self, local: Path, remote: str, callback: Callable[[int, int], None], preserve: bool
    ) -> None:
        """paramiko's pipelined writes block once the channel window (2 MiB) is full:
        memory stays bounded whatever the server advertises."""
        sftp = self._sftp()
        sftp.put(str(local), remote, callback=callback, confirm=True)
        if preserve:
            info = local.stat()
            sftp.chmod(remote, stat.S_IMODE(info.st_mode))
            sftp.utime(remote, (info.st_atime, info.st_mtime))

    async def get(
        self, remote: str, local: Path, progress: ProgressSink, *, preserve: bool = False
    ) -> None:
        stop = threading.Event()
        callback = _progress_callback(asyncio.get_running_loop(), progress, stop)
        await self._file_op(
            f"get {remote}", self._get_blocking, remote, local, callback, preserve, stop=stop
        )

    def _get_blocking(
        self, remote: str, local: Path, callback: Callable[[int, int], None], preserve: bool
    ) -> None:
        sftp = self._sftp()
        attrs = sftp.stat(remote)
        if not stat.S_ISREG(attrs.st_mode or 0):  # a device or FIFO may never end
            raise RemoteFileError(f"get {remote}: not a regular file", host=self.host.name)
        try:
            with sftp.open(remote, "rb") as source, local.open("wb") as target:
                _copy_batches(source, target, attrs.st_size or 0, callback)
        except BaseException:
            local.unlink(missing_ok=True)
            raise
        if preserve:
            if attrs.st_mode is not None:
                os.chmod(local, stat.S_IMODE(attrs.st_mode))
            if attrs.st_mtime is not None:
                os.utime(local, (attrs.st_atime or attrs.st_mtime, attrs.st_mtime))

    async def rename(self, source: str, target: str) -> None:
        await self._file_op(
            f"rename {source} -> {target}", lambda: self._sftp().posix_rename(source, target)
        )

    async def remove(self, remote: str) -> None:
        await self._file_op(f"remove {remote}", self._remove_blocking, remote)

    def _remove_blocking(self, remote: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._sftp().remove(remote)

    # -- close -------------------------------------------------------------------------

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            sftp, self._sftp_client = self._sftp_client, None
            client, self._client = self._client, None
        if sftp is not None or client is not None:
            with contextlib.suppress(BaseException):
                await _in_thread(_close_quietly, sftp, client)
        jump, self._jump = self._jump, None
        if jump is not None:
            await jump.close()


def _close_quietly(sftp: paramiko.SFTPClient | None, client: paramiko.SSHClient | None) -> None:
    for closeable in (sftp, client):
        if closeable is not None:
            with contextlib.suppress(Exception):
                closeable.close()


def _remote_stat(attrs: paramiko.SFTPAttributes) -> RemoteStat:
    mode = attrs.st_mode or 0
    return RemoteStat(
        is_dir=stat.S_ISDIR(mode),
        size=attrs.st_size or 0,
        mode=stat.S_IMODE(mode),
        mtime=float(attrs.st_mtime or 0),
    )


class _Stopped(Exception):
    """Raised in a transfer's thread by its callback once the transfer was cancelled."""


def _progress_callback(
    loop: asyncio.AbstractEventLoop, progress: ProgressSink, stop: threading.Event
) -> Callable[[int, int], None]:
    """A paramiko transfer callback that reports on the event loop thread, and ends the
    transfer (paramiko calls it after every block) once *stop* is set."""

    def callback(done: int, total: int) -> None:
        if stop.is_set():
            raise _Stopped("transfer cancelled")
        loop.call_soon_threadsafe(progress, done, total)

    return callback


def _copy_batches(
    source: paramiko.SFTPFile, target: BinaryIO, size: int, callback: Callable[[int, int], None]
) -> None:
    """The first *size* bytes of *source* (the size stat'ed: a file growing meanwhile is
    cut there), GET_BATCH at a time, each batch's requests pipelined by ``readv``."""
    block = paramiko.SFTPFile.MAX_REQUEST_SIZE
    for start in range(0, size, GET_BATCH):
        end = min(size, start + GET_BATCH)
        for data in source.readv([(at, min(block, end - at)) for at in range(start, end, block)]):
            target.write(data)
        callback(end, size)


def _close_when_done(future: Future[Any], sftp: paramiko.SFTPClient) -> None:
    """Close a cancelled operation's SFTP session once its thread ends (or gives up)."""
    wait([future], timeout=CANCEL_GRACE)
    _close_quietly(sftp, None)


def _is_timeout(exc: BaseException) -> bool:
    """A socket timeout, or paramiko's banner/handshake timeout wrapping one."""
    if isinstance(exc, TimeoutError):
        return True
    if isinstance(exc, paramiko.SSHException):
        text = str(exc).lower()
        cause = exc.__cause__ or exc.__context__
        return isinstance(cause, TimeoutError) or "timed out" in text or "timeout" in text
    return False


def _is_refused(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionRefusedError):
        return True
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return all(isinstance(e, ConnectionRefusedError) for e in exc.errors.values())
    return False
