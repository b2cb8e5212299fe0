"""The default transport: asyncssh, natively asynchronous.

Every asyncssh and socket exception is translated into hostbatch's errors here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import posixpath
import signal
import stat
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import asyncssh

from hostbatch.errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    HostKeyError,
    RemoteFileError,
    StartupDropped,
    TransportError,
)
from hostbatch.models import Host, Stream
from hostbatch.transport import hostkeys
from hostbatch.transport.base import (
    ConnectOptions,
    OutputSink,
    ProgressSink,
    RemoteProcess,
    RemoteStat,
    StdinSource,
)
from hostbatch.transport.jump import JumpHub, Lease, hop_key

READ_SIZE = 65536
# Bytes in flight per file: 2 MiB, sshd's channel window, as 8 requests of ~255 KiB (what
# OpenSSH advertises). More only queues in asyncssh's buffers (bench/transfer.py: 100 MiB
# to 20 hosts, 16 in flight 12.4 s and 222 MB RSS; 8 in flight 10.8 s and 116 MB). A server
# advertising larger requests (asyncssh's own: 4 MiB) still gets at most BLOCK_SIZE each:
# asyncssh's put used 8 x 4 MiB per host, 544 MB peak RSS for 200 MB to 5 hosts.
BLOCK_SIZE = 256 * 1024
IN_FLIGHT_PER_FILE = 2 * 1024 * 1024
MAX_REQUESTS_PER_FILE = 128  # servers advertising small blocks (16 KiB when none)
# Requests in flight across every transfer of a process: at most 64 MiB.
TOTAL_REQUESTS = 256
_closing: set[asyncio.Future[None]] = set()  # remote files closed in the background
_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)
# AES-GCM first: with AES-NI it costs a fraction of asyncssh's chacha20-poly1305, which
# builds three cipher contexts per packet (bench/fanout.py profile: 28% of client CPU).
# The rest of asyncssh's default list follows, so any server still negotiates.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
# Key exchange: the ML-KEM hybrids (post-quantum) first, then curve25519, the cheapest
# safe kex an OpenSSH 9.2 server offers (bench/algorithms.py: sntrup761x25519 costs sshd
# ~12 ms more per login; ecdh-sha2-nistp256 ~4 ms less, but NIST curves are not preferred;
# DH group16 about the same for sshd and ~5 ms more for us). asyncssh's own order today,
# pinned so that no release puts another ahead. Its other defaults follow, so any server
# still negotiates.
PREFERRED_KEX = (
    "mlkem768x25519-sha256",
    "mlkem768nistp256-sha256",
    "mlkem1024nistp384-sha384",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
)
CLOSE_TIMEOUT = 2.0
# A close or reset before the key exchange ended: sshd's MaxStartups drops connections
# right after accept (asyncssh reports EOF as ConnectionLost; a reset is an OSError).
_DROPPED = (
    asyncssh.ConnectionLost,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    asyncio.IncompleteReadError,
)
_KeyId = tuple[str, str | None]
_key_cache: dict[_KeyId, asyncssh.SSHKey] = {}
_keys_loading: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[_KeyId, asyncio.Future[asyncssh.SSHKey]]
] = weakref.WeakKeyDictionary()
_known_cache: dict[tuple[str, float], asyncssh.SSHKnownHosts] = {}


def _ahead(preferred: tuple[str, ...], defaults: list[bytes]) -> list[str]:
    """The *preferred* algorithms this asyncssh supports, then its other *defaults*."""
    supported = [name.decode() for name in defaults]
    ahead = [alg for alg in preferred if alg in supported]
    return ahead + [alg for alg in supported if alg not in ahead]


@functools.cache
def _cipher_preference() -> list[str]:
    return _ahead(PREFERRED_CIPHERS, asyncssh.encryption.get_default_encryption_algs())


@functools.cache
def _kex_preference() -> list[str]:
    return _ahead(PREFERRED_KEX, asyncssh.kex.get_default_kex_algs())


def _read_key(path: str, passphrase: str | None, host: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_private_key(path, passphrase)
    except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        reason = "wrong or missing passphrase" if "passphrase" in str(exc).lower() else exc
        raise AuthenticationError(f"cannot load key file {path}: {reason}", host=host) from None


async def _load_key(path: str, passphrase: str | None, host: str) -> asyncssh.SSHKey:
    """Read a private key once per process (many hosts share one key file), in a thread:
    decrypting a passphrase-protected key takes seconds of bcrypt rounds, which on the
    event loop stalled every other host's handshake past its connect timeout. Hosts that
    need the key meanwhile wait for the same read."""
    key_id = (path, passphrase)
    if key_id in _key_cache:
        return _key_cache[key_id]
    loading = _keys_loading.setdefault(asyncio.get_running_loop(), {})
    future = loading.get(key_id)
    if future is None:
        future = asyncio.ensure_future(asyncio.to_thread(_read_key, path, passphrase, host))
        loading[key_id] = future
        future.add_done_callback(lambda _: loading.pop(key_id, None))
    try:
        key = await asyncio.shield(future)
    except AuthenticationError as exc:
        raise AuthenticationError(exc.message, host=host) from None
    _key_cache[key_id] = key
    return key


def _known_hosts(path: Path) -> asyncssh.SSHKnownHosts | bytes:
    """known_hosts parsed once per process and file version, malformed lines skipped
    (asyncssh.read_known_hosts refuses the whole file for one; OpenSSH skips it)."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return b""  # no file: nothing is trusted, unknown keys go to the callback
    cache_key = (str(path), mtime)
    if cache_key not in _known_cache:
        text = hostkeys.usable_text(path)
        try:
            known = asyncssh.import_known_hosts(text)
        except ValueError:  # a line only asyncssh refuses: find it, skip it
            known = asyncssh.import_known_hosts(_lines_asyncssh_reads(path, text))
        _known_cache.clear()
        _known_cache[cache_key] = known
    return _known_cache[cache_key]


def _lines_asyncssh_reads(path: Path, text: str) -> str:
    """*text* with every line that asyncssh refuses blanked, each reported once."""
    kept = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            asyncssh.import_known_hosts(line)
            kept.append(line)
        except ValueError as exc:
            hostkeys.warn_malformed(path, number, str(exc).split(":", 1)[0])
            kept.append("")
    return "\n".join(kept)


@functools.lru_cache(maxsize=4096)
def _algorithms_of(line: str) -> tuple[str, ...]:
    """The host key algorithms that can verify the key on a known_hosts *line*."""
    fields = line.split()
    try:
        key = asyncssh.import_public_key(" ".join(fields[1:3]))
    except (asyncssh.KeyImportError, ValueError):
        return ()
    return tuple(alg.decode() for alg in key.sig_algorithms)


def _host_key_algorithms(path: Path, host: str, port: int) -> list[str] | None:
    """The types of the host's known keys first, then every other default, as OpenSSH
    does. (asyncssh alone offers only the known types, so a host whose key changed to
    another type fails key exchange instead of being reported as changed.) None: no
    plain key is known, asyncssh's default applies."""
    known: list[str] = []
    for line in hostkeys.key_lines(path, host, port):
        known += [alg for alg in _algorithms_of(line) if alg not in known]
    return list(_known_first(tuple(known))) if known else None


@functools.lru_cache(maxsize=64)
def _known_first(known: tuple[str, ...]) -> tuple[str, ...]:
    """*known*, the cheapest for the server first (hostkeys.SERVER_CHEAPEST_FIRST), then
    asyncssh's other default host key algorithms (once per key-type set: every connection
    asks)."""
    known = tuple(sorted(known, key=hostkeys.server_cost_rank))
    # a new list: asyncssh returns its own module-level lists (+= grew them on every call)
    defaults = [
        *asyncssh.public_key.get_default_certificate_algs(),
        *asyncssh.public_key.get_default_public_key_algs(),
    ]
    return known + tuple(name for alg in defaults if (name := alg.decode()) not in known)


async def _feed(process: asyncssh.SSHClientProcess[bytes], source: StdinSource) -> None:
    """Write *source* to the command's stdin, then EOF; stop quietly once the command is
    gone (it need not read everything)."""
    with contextlib.suppress(asyncssh.Error, OSError):
        async for chunk in source:
            process.stdin.write(chunk)
            await process.stdin.drain()
        process.stdin.write_eof()


def _remote_stat(attrs: asyncssh.SFTPAttrs) -> RemoteStat:
    mode = attrs.permissions or 0
    return RemoteStat(
        is_dir=stat.S_ISDIR(mode) or attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY,
        size=attrs.size or 0,
        mode=stat.S_IMODE(mode),
        mtime=float(attrs.mtime or 0),
    )


def _is_regular(attrs: asyncssh.SFTPAttrs) -> bool:
    if attrs.permissions is not None and stat.S_IFMT(attrs.permissions):
        return stat.S_ISREG(attrs.permissions)
    return attrs.type == asyncssh.FILEXFER_TYPE_REGULAR


def _budget() -> asyncio.Semaphore:
    """The running loop's TOTAL_REQUESTS slots (a semaphore belongs to one loop)."""
    loop = asyncio.get_running_loop()
    budget = _budgets.get(loop)
    if budget is None:
        budget = _budgets[loop] = asyncio.Semaphore(TOTAL_REQUESTS)
    return budget


async def _pipelined(
    size: int, block: int, step: Callable[[int, int], Awaitable[None]], progress: ProgressSink
) -> None:
    """``step(offset, length)`` over ``[0, size)`` in *block* pieces, several at once: at
    most IN_FLIGHT_PER_FILE bytes of this file and TOTAL_REQUESTS requests of the process.
    Cancelling it (a deadline, Ctrl-C) cancels every request it started."""
    budget, limit = _budget(), max(1, min(MAX_REQUESTS_PER_FILE, IN_FLIGHT_PER_FILE // block))
    pending: set[asyncio.Task[int]] = set()
    offset = done = 0

    async def piece(at: int, length: int) -> int:
        await step(at, length)
        return length

    try:
        while offset < size or pending:
            while offset < size and len(pending) < limit:
                await budget.acquire()
                length = min(block, size - offset)
                task = asyncio.ensure_future(piece(offset, length))
                task.add_done_callback(lambda _task: budget.release())  # also if cancelled
                pending.add(task)
                offset += length
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            errors = [error for task in finished if (error := task.exception()) is not None]
            if errors:
                raise errors[0]
            done += sum(task.result() for task in finished)
            progress(done, size)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


@contextlib.asynccontextmanager
async def _remote_file(
    sftp: asyncssh.SFTPClient, path: str, mode: str
) -> AsyncIterator[asyncssh.SFTPClientFile]:
    """An open remote file, closed on the way out; after a failure or a cancellation
    the close is not awaited (a server gone silent would hold the cancellation up)."""
    handle = await sftp.open(path, mode, block_size=0)
    try:
        yield handle
    except BaseException:
        closing = asyncio.ensure_future(_close_quietly(handle))
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)
        raise
    await handle.close()


async def _close_quietly(handle: asyncssh.SFTPClientFile) -> None:
    with contextlib.suppress(Exception):  # failed or timed out: no news after a failure
        await asyncio.wait_for(handle.close(), CLOSE_TIMEOUT)


async def _upload(
    sftp: asyncssh.SFTPClient, local: Path, remote: str, progress: ProgressSink, *, preserve: bool
) -> None:
    block = min(BLOCK_SIZE, sftp.limits.max_write_len or BLOCK_SIZE)
    with local.open("rb") as source:
        info = os.fstat(source.fileno())
        async with _remote_file(sftp, remote, "wb") as target:

            async def step(offset: int, length: int) -> None:
                await target.write(os.pread(source.fileno(), length, offset), offset)

            await _pipelined(info.st_size, block, step, progress)
    if preserve:
        attrs = asyncssh.SFTPAttrs(
            permissions=stat.S_IMODE(info.st_mode),
            atime=int(info.st_atime),
            mtime=int(info.st_mtime),
        )
        await sftp.setstat(remote, attrs)


async def _download(
    sftp: asyncssh.SFTPClient,
    remote: str,
    attrs: asyncssh.SFTPAttrs,
    local: Path,
    progress: ProgressSink,
    *,
    preserve: bool,
) -> None:
    """Read the *attrs.size* bytes the file had when stat'ed (a file growing meanwhile
    is cut there; one shrinking comes out short, and the engine's size check says so)."""
    block = min(BLOCK_SIZE, sftp.limits.max_read_len or BLOCK_SIZE)
    fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        async with _remote_file(sftp, remote, "rb") as source:

            async def step(offset: int, length: int) -> None:
                while length > 0:  # a server may return less than asked: ask again
                    data = cast(bytes, await source.read(length, offset))
                    if not data:
                        return  # the file shrank: the size check reports it
                    os.pwrite(fd, data, offset)
                    offset, length = offset + len(data), length - len(data)

            await _pipelined(attrs.size or 0, block, step, progress)
    finally:
        os.close(fd)
    if preserve:
        if attrs.permissions is not None:
            os.chmod(local, stat.S_IMODE(attrs.permissions))
        if attrs.mtime is not None:
            os.utime(local, (attrs.atime or attrs.mtime, attrs.mtime))


class _Client(asyncssh.SSHClient):
    """Decides about host keys that known_hosts does not already trust."""

    def __init__(self, host: Host, options: ConnectOptions) -> None:
        self.host = host
        self.options = options
        self.verdict: str | None = None  # "unknown" | "changed"
        self.key_exchanged = False  # auth began: the banner and key exchange are done

    def begin_auth(self, username: str) -> None:
        self.key_exchanged = True

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        path = self.options.known_hosts_path
        if hostkeys.is_known(path, self.host.hostname, self.host.port):
            self.verdict = "changed"
            return False
        if self.options.host_keys == "accept-new":
            line = key.export_public_key("openssh").decode().strip()
            hostkeys.record(path, self.host.hostname, self.host.port, line)
            return True
        self.verdict = "unknown"
        return False


class AsyncsshTransport:
    """One asyncssh connection to one host."""

    blocking = False

    def __init__(self, host: Host, options: ConnectOptions) -> None:
        self.host = host
        self.options = options
        self._conn: asyncssh.SSHClientConnection | None = None
        self._jump: AsyncsshTransport | None = None
        self._hub: JumpHub | None = None
        self._lease: Lease[AsyncsshTransport] | None = None
        self._sftp_client: asyncssh.SFTPClient | None = None
        self._key: asyncssh.SSHKey | None = None  # the host's key file, loaded by connect()

    def share_jumps(self, hub: JumpHub) -> None:
        """Reach this host's jump hosts over *hub*'s shared connections."""
        self._hub = hub

    def alive(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def _connect_kwargs(self) -> dict[str, Any]:
        creds = self.host.credentials
        kwargs: dict[str, Any] = {
            "port": self.host.port,
            "username": creds.username,
            "config": None,  # ~/.ssh/config was applied when the inventory was resolved
            "keepalive_interval": self.options.keepalive,
            "login_timeout": self.options.connect_timeout,
            "encryption_algs": _cipher_preference(),
            "kex_algs": _kex_preference(),
        }
        if self.options.host_keys == "off":
            kwargs["known_hosts"] = None
        else:
            path = self.options.known_hosts_path
            kwargs["known_hosts"] = _known_hosts(path)
            algorithms = _host_key_algorithms(path, self.host.hostname, self.host.port)
            if algorithms is not None:
                kwargs["server_host_key_algs"] = algorithms
        if creds.password is not None:
            kwargs["password"] = creds.password.reveal()
        if creds.key_file is not None:
            kwargs["client_keys"] = [self._key]
        elif creds.password is not None:
            kwargs["client_keys"] = None  # password only: no default keys, no agent
            kwargs["agent_path"] = None
        elif not self.options.use_agent:
            kwargs["agent_path"] = None
        return kwargs

    async def connect(self) -> None:
        client = _Client(self.host, self.options)
        creds = self.host.credentials
        if creds.key_file is not None:
            passphrase = creds.passphrase.reveal() if creds.passphrase else None
            self._key = await _load_key(creds.key_file, passphrase, self.host.name)
        kwargs = self._connect_kwargs()
        await self._leave_jump()  # a retry starts afresh
        if self.host.jump is not None:
            kwargs["tunnel"] = await self._tunnel(self.host.jump)
        try:
            self._conn = await asyncio.wait_for(
                asyncssh.connect(self.host.hostname, client_factory=lambda: client, **kwargs),
                timeout=self.options.connect_timeout,
            )
        except TransportError:
            raise
        except TimeoutError:
            raise ConnectTimeout(
                f"no SSH handshake within {self.options.connect_timeout:g}s "
                f"({self.host.hostname}:{self.host.port})",
                host=self.host.name,
            ) from None
        except Exception as exc:
            raise self._translate(exc, client) from None

    async def _tunnel(self, jump: Host) -> asyncssh.SSHClientConnection:
        """The connection to tunnel through: shared over the hub, else this host's own."""
        try:
            if self._hub is None:
                self._jump = AsyncsshTransport(jump, self.options)
                await self._jump.connect()
                return self._jump.conn
            self._lease = await self._hub.lease(
                hop_key(jump), jump.name, functools.partial(self._open_jump, jump, self._hub)
            )
            return self._lease.connection.conn
        except TransportError as exc:
            raise type(exc)(
                f"via jump host {jump.name}: {exc.message}", host=self.host.name
            ) from None

    async def _open_jump(self, jump: Host, hub: JumpHub) -> AsyncsshTransport:
        """A connection to *jump* for the hub to share (its own jumps shared as well)."""
        transport = AsyncsshTransport(jump, self.options)
        transport.share_jumps(hub)
        try:
            await transport.connect()
        except BaseException:
            await transport.close()
            raise
        return transport

    def _jump_note(self) -> str:
        """Why a connection through a shared jump host was lost, when the jump was."""
        if self._lease is not None and not self._lease.connection.alive():
            return f" (the connection to jump host {self._lease.connection.host.name} was lost)"
        return ""

    def _translate(self, exc: BaseException, client: _Client) -> TransportError:
        name, where = self.host.name, f"{self.host.hostname}:{self.host.port}"
        path = self.options.known_hosts_path
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            if client.verdict == "changed":
                return HostKeyError(hostkeys.changed_message(*self._key_target(), path), host=name)
            return HostKeyError(hostkeys.unknown_message(*self._key_target(), path), host=name)
        if isinstance(exc, asyncssh.PermissionDenied):
            kind = self.host.credentials.auth_kind
            return AuthenticationError(f"authentication failed (offered: {kind})", host=name)
        if isinstance(exc, ConnectionRefusedError):
            return ConnectionRefused(f"connection refused ({where})", host=name)
        if not client.key_exchanged and isinstance(exc, _DROPPED):
            return StartupDropped(
                f"connection closed by the server before the SSH handshake ({where})", host=name
            )
        if isinstance(exc, asyncssh.DisconnectError | asyncssh.ConnectionLost):
            return ConnectError(f"connection closed during login: {exc.reason}", host=name)
        if isinstance(exc, OSError):
            return ConnectError(f"cannot connect to {where}: {exc.strerror or exc}", host=name)
        return ConnectError(f"cannot connect to {where}: {type(exc).__name__}: {exc}", host=name)

    def _key_target(self) -> tuple[str, int]:
        return self.host.hostname, self.host.port

    @property
    def conn(self) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            raise ConnectError("not connected", host=self.host.name)
        return self._conn

    async def run(
        self,
        command: str,
        output: OutputSink,
        timeout: float | None,
        *,
        stdin: StdinSource | None = None,
    ) -> int:
        try:
            process = await self.conn.create_process(command, encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise ConnectError(f"cannot start command: {exc}", host=self.host.name) from None
        if stdin is None:
            process.stdin.write_eof()
            feeder = None
        else:
            feeder = asyncio.ensure_future(_feed(process, stdin))
        try:
            return await asyncio.wait_for(self._collect(process, output), timeout)
        except TimeoutError:
            await self._terminate(process)
            raise CommandTimeout(
                f"command timed out after {timeout:g}s; remote process terminated",
                host=self.host.name,
            ) from None
        except (asyncssh.Error, OSError) as exc:
            raise ConnectionLost(
                f"connection lost during command: {exc}{self._jump_note()}", host=self.host.name
            ) from None
        except asyncio.CancelledError:  # Ctrl-C in the shell: stop the remote command too
            await asyncio.shield(self._terminate(process))
            raise
        finally:
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder

    async def _collect(self, process: asyncssh.SSHClientProcess[bytes], output: OutputSink) -> int:
        await _pumped(process, output)
        return _exit_code(await process.wait(check=False), self.host.name)

    async def _terminate(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        """Ask the server to signal the command, then close the channel."""
        with contextlib.suppress(Exception):
            process.send_signal("TERM")
            process.send_signal("KILL")
        with contextlib.suppress(Exception):
            process.close()
            await asyncio.wait_for(process.wait_closed(), CLOSE_TIMEOUT)

    async def start(self, command: str, output: OutputSink) -> RemoteProcess:
        """*command* with its stdin left open (engine/resident.py's shell)."""
        try:
            process = await self.conn.create_process(command, encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise ConnectError(f"cannot start command: {exc}", host=self.host.name) from None
        return _Process(self, process, output)

    async def _sftp(self) -> asyncssh.SFTPClient:
        if self._sftp_client is None:
            try:
                self._sftp_client = await self.conn.start_sftp_client()
            except (asyncssh.Error, OSError) as exc:
                raise RemoteFileError(f"cannot start SFTP: {exc}", host=self.host.name) from None
        return self._sftp_client

    def _file_error(self, action: str, exc: BaseException) -> TransportError:
        if isinstance(exc, asyncssh.SFTPError):
            return RemoteFileError(f"{action}: {exc.reason}", host=self.host.name)
        if isinstance(exc, OSError):
            return RemoteFileError(f"{action}: {exc.strerror or exc}", host=self.host.name)
        return ConnectionLost(f"connection lost during {action}: {exc}", host=self.host.name)

    async def stat(self, remote: str) -> RemoteStat | None:
        sftp = await self._sftp()
        try:
            attrs = await sftp.stat(remote)
        except asyncssh.SFTPNoSuchFile:
            return None
        except (asyncssh.Error, OSError) as exc:
            raise self._file_error(f"stat {remote}", exc) from None
        return _remote_stat(attrs)

    async def listdir(self, remote: str) -> list[tuple[str, RemoteStat]]:
        sftp = await self._sftp()
        try:
            entries = await sftp.readdir(remote)
        except (asyncssh.Error, OSError) as exc:
            raise self._file_error(f"list {remote}", exc) from None
        return [
            (str(e.filename), _remote_stat(e.attrs))
            for e in entries
            if e.filename not in (".", "..")
        ]

    async def mkdir(self, remote: str) -> None:
        sftp = await self._sftp()
        try:
            await sftp.mkdir(remote)
        except (asyncssh.Error, OSError) as exc:
            with contextlib.suppress(asyncssh.Error, OSError):
                if isinstance(exc, asyncssh.SFTPFailure) and await sftp.isdir(remote):
                    return  # already there
            raise self._file_error(f"mkdir {remote}", exc) from None

    async def put(
        self, local: Path, remote: str, progress: ProgressSink, *, preserve: bool = False
    ) -> None:
        sftp = await self._sftp()
        try:
            await _upload(sftp, local, remote, progress, preserve=preserve)
        except (asyncssh.Error, OSError) as exc:
            error = self._file_error(f"put {remote}", exc)
            if isinstance(exc, asyncssh.SFTPFailure):
                error.message += await self._space_hint(sftp, remote, local)
            raise error from None

    async def get(
        self, remote: str, local: Path, progress: ProgressSink, *, preserve: bool = False
    ) -> None:
        sftp = await self._sftp()
        try:
            attrs = await sftp.stat(remote)
            if not _is_regular(attrs):  # a device or FIFO may never end: refuse it
                raise RemoteFileError(f"get {remote}: not a regular file", host=self.host.name)
            await _download(sftp, remote, attrs, local, progress, preserve=preserve)
        except (asyncssh.Error, OSError) as exc:
            raise self._file_error(f"get {remote}", exc) from None

    async def rename(self, source: str, target: str) -> None:
        sftp = await self._sftp()
        try:
            await sftp.posix_rename(source, target)
        except (asyncssh.Error, OSError) as exc:
            raise self._file_error(f"rename {source} -> {target}", exc) from None

    async def remove(self, remote: str) -> None:
        sftp = await self._sftp()
        try:
            await sftp.remove(remote)
        except asyncssh.SFTPNoSuchFile:
            return
        except (asyncssh.Error, OSError) as exc:
            raise self._file_error(f"remove {remote}", exc) from None

    async def _space_hint(self, sftp: asyncssh.SFTPClient, remote: str, local: Path) -> str:
        """OpenSSH says only 'Failure' for a full disk; say so when free space is short."""
        try:
            vfs = await asyncio.wait_for(sftp.statvfs(posixpath.dirname(remote) or "."), 5)
            free = vfs.bavail * vfs.frsize
            if free < local.stat().st_size:
                return f" (no space left on the remote filesystem: {free} bytes free)"
        except (asyncssh.Error, OSError, TimeoutError):
            pass
        return ""

    async def close(self) -> None:
        if self._sftp_client is not None:
            self._sftp_client.exit()
            self._sftp_client = None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
                await asyncio.wait_for(conn.wait_closed(), CLOSE_TIMEOUT)
        await self._leave_jump()

    async def _leave_jump(self) -> None:
        jump, self._jump = self._jump, None
        if jump is not None:
            await jump.close()
        if self._lease is not None:
            self._lease.release()
            self._lease = None


async def _pumped(process: asyncssh.SSHClientProcess[bytes], output: OutputSink) -> None:
    """Pass the command's stdout and stderr to *output* as they come, until both end."""

    async def pump(reader: asyncssh.SSHReader[bytes], stream: Stream) -> None:
        while chunk := await reader.read(READ_SIZE):
            output(stream, chunk)

    await asyncio.gather(pump(process.stdout, "stdout"), pump(process.stderr, "stderr"))


def _exit_code(completed: asyncssh.SSHCompletedProcess, host: str) -> int:
    """The exit status as Transport.run gives it: 128+n for a signal; ConnectionLost
    when the server sent neither."""
    if completed.exit_status is not None and completed.exit_status >= 0:
        return completed.exit_status
    if completed.exit_signal:
        number = getattr(signal, f"SIG{completed.exit_signal[0]}", None)
        return 128 + int(number) if number is not None else 255
    raise ConnectionLost("connection lost during command (no exit status)", host=host)


class _Process:
    """A started command (RemoteProcess) whose output is pumped to a sink as it comes."""

    def __init__(
        self,
        transport: AsyncsshTransport,
        process: asyncssh.SSHClientProcess[bytes],
        output: OutputSink,
    ) -> None:
        self._transport = transport
        self._process = process
        self._pumps = asyncio.ensure_future(_pumped(process, output))

    def write(self, data: bytes) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            self._process.stdin.write(data)

    def running(self) -> bool:
        return not self._pumps.done()

    async def finished(self) -> int:
        name = self._transport.host.name
        try:
            await asyncio.shield(self._pumps)
            completed = await self._process.wait(check=False)
        except (asyncssh.Error, OSError) as exc:
            raise ConnectionLost(f"connection lost during command: {exc}", host=name) from None
        return _exit_code(completed, name)

    async def terminate(self) -> None:
        await self._transport._terminate(self._process)
        self._pumps.cancel()
        with contextlib.suppress(BaseException):
            await self._pumps
