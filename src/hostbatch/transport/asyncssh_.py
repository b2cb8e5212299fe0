"""The default transport: asyncssh, natively asynchronous.

Every asyncssh and socket exception is translated into hostbatch's errors here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import posixpath
import signal
import stat
from pathlib import Path
from typing import Any

import asyncssh

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
from hostbatch.models import Host
from hostbatch.transport import hostkeys
from hostbatch.transport.base import (
    ConnectOptions,
    OutputSink,
    ProgressSink,
    RemoteStat,
    StdinSource,
)

READ_SIZE = 65536
# SFTP requests in flight per file: 8 x asyncssh's ~255 KiB blocks = 2 MiB, sshd's channel
# window. More only queues in asyncssh's buffers (bench/transfer.py: 100 MiB to 20 hosts,
# 16 in flight 12.4 s and 222 MB RSS; 8 in flight 10.8 s and 116 MB).
SFTP_REQUESTS = 8
# AES-GCM first: with AES-NI it costs a fraction of asyncssh's chacha20-poly1305, which
# builds three cipher contexts per packet (bench/fanout.py profile: 28% of client CPU).
# The rest of asyncssh's default list follows, so any server still negotiates.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
CLOSE_TIMEOUT = 2.0
_key_cache: dict[tuple[str, str | None], asyncssh.SSHKey] = {}
_known_cache: dict[tuple[str, float], asyncssh.SSHKnownHosts] = {}


_ciphers: list[str] = []


def _cipher_preference() -> list[str]:
    if not _ciphers:
        supported = [name.decode() for name in asyncssh.encryption.get_default_encryption_algs()]
        preferred = [c for c in PREFERRED_CIPHERS if c in supported]
        _ciphers.extend(preferred + [c for c in supported if c not in preferred])
    return _ciphers


def _load_key(path: str, passphrase: str | None, host: str) -> asyncssh.SSHKey:
    """Read a private key once per process (many hosts share one key file)."""
    cache_key = (path, passphrase)
    if cache_key not in _key_cache:
        try:
            _key_cache[cache_key] = asyncssh.read_private_key(path, passphrase)
        except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            reason = "wrong or missing passphrase" if "passphrase" in str(exc).lower() else exc
            raise AuthenticationError(f"cannot load key file {path}: {reason}", host=host) from None
    return _key_cache[cache_key]


def _known_hosts(path: Path) -> asyncssh.SSHKnownHosts | bytes:
    """known_hosts parsed once per process and file version."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return b""  # no file: nothing is trusted, unknown keys go to the callback
    cache_key = (str(path), mtime)
    if cache_key not in _known_cache:
        _known_cache.clear()
        _known_cache[cache_key] = asyncssh.read_known_hosts(str(path))
    return _known_cache[cache_key]


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
    """*known*, then asyncssh's other default host key algorithms (once per key-type set:
    every connection asks)."""
    defaults = asyncssh.public_key.get_default_certificate_algs()
    defaults += asyncssh.public_key.get_default_public_key_algs()
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


class _Client(asyncssh.SSHClient):
    """Decides about host keys that known_hosts does not already trust."""

    def __init__(self, host: Host, options: ConnectOptions) -> None:
        self.host = host
        self.options = options
        self.verdict: str | None = None  # "unknown" | "changed"

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
        self._sftp_client: asyncssh.SFTPClient | None = None

    def _connect_kwargs(self) -> dict[str, Any]:
        creds = self.host.credentials
        kwargs: dict[str, Any] = {
            "port": self.host.port,
            "username": creds.username,
            "config": None,  # ~/.ssh/config was applied when the inventory was resolved
            "keepalive_interval": self.options.keepalive,
            "login_timeout": self.options.connect_timeout,
            "encryption_algs": _cipher_preference(),
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
            passphrase = creds.passphrase.reveal() if creds.passphrase else None
            kwargs["client_keys"] = [_load_key(creds.key_file, passphrase, self.host.name)]
        elif creds.password is not None:
            kwargs["client_keys"] = None  # password only: no default keys, no agent
            kwargs["agent_path"] = None
        elif not self.options.use_agent:
            kwargs["agent_path"] = None
        return kwargs

    async def connect(self) -> None:
        client = _Client(self.host, self.options)
        kwargs = self._connect_kwargs()
        if self.host.jump is not None:
            self._jump = AsyncsshTransport(self.host.jump, self.options)
            try:
                await self._jump.connect()
            except TransportError as exc:
                raise type(exc)(
                    f"via jump host {self.host.jump.name}: {exc.message}", host=self.host.name
                ) from None
            kwargs["tunnel"] = self._jump.conn
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
            return ConnectError(f"connection refused ({where})", host=name)
        if isinstance(exc, asyncssh.DisconnectError | asyncssh.ConnectionLost):
            return ConnectError(f"connection closed during login: {exc.reason}", host=name)
        if isinstance(exc, OSError):
            return ConnectError(f"cannot connect to {where}: {exc.strerror or exc}", host=name)
        return ConnectError(f"cannot connect to {where}: {type(exc).__name__}: {exc}", host=name)

    def _key_target(self) -> tuple[str, int]:
        return self.host.hostname, self.host.port

    def is_alive(self) -> bool:
        """False once the connection was closed, by us or by the server (agent pool)."""
        return self._conn is not None and not self._conn.is_closed()

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
                f"connection lost during command: {exc}", host=self.host.name
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
        async def pump(reader: asyncssh.SSHReader[bytes], stream: str) -> None:
            while chunk := await reader.read(READ_SIZE):
                output("stdout" if stream == "stdout" else "stderr", chunk)

        await asyncio.gather(pump(process.stdout, "stdout"), pump(process.stderr, "stderr"))
        completed = await process.wait(check=False)
        if completed.exit_status is not None and completed.exit_status >= 0:
            return completed.exit_status
        if completed.exit_signal:
            signame = completed.exit_signal[0]
            number = getattr(signal, f"SIG{signame}", None)
            return 128 + int(number) if number is not None else 255
        raise ConnectionLost("connection lost during command (no exit status)", host=self.host.name)

    async def _terminate(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        """Ask the server to signal the command, then close the channel."""
        with contextlib.suppress(Exception):
            process.send_signal("TERM")
            process.send_signal("KILL")
        with contextlib.suppress(Exception):
            process.close()
            await asyncio.wait_for(process.wait_closed(), CLOSE_TIMEOUT)

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
            await sftp.put(
                str(local),
                remote,
                preserve=preserve,
                max_requests=SFTP_REQUESTS,
                progress_handler=lambda _s, _d, done, total: progress(done, total),
            )
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
            await sftp.get(
                remote,
                str(local),
                preserve=preserve,
                max_requests=SFTP_REQUESTS,
                progress_handler=lambda _s, _d, done, total: progress(done, total),
            )
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
        if self._jump is not None:
            await self._jump.close()
