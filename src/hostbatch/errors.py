"""Every error hostbatch raises, under one root.

::

    HostbatchError                 root; structured fields host, exit_status, stderr_tail
    ├── UsageError                 bad command-line or API arguments           (exit 2)
    ├── InventoryError             unreadable or invalid inventory; path, line (exit 2)
    ├── SelectionError             unknown host or group, empty selection      (exit 2)
    ├── MissingExtraError          an optional transport is not installed      (exit 2)
    ├── SinkError                  an output sink (terminal, file, journal) failed; the
    │                              run is stopped; never a host's result
    └── TransportError             one host's connection or command failed; never
        │                          escapes the engine: it becomes HostResult.error
        ├── ConnectError           refused, unreachable, DNS, closed during login
        │   ├── ConnectionRefused  nothing listening (never retried)
        │   ├── StartupDropped     closed before the SSH handshake ended (MaxStartups)
        │   └── ConnectionLost     dropped after login, mid-command or mid-transfer
        ├── AuthenticationError    every offered credential was refused
        ├── HostKeyError           unknown or changed host key
        ├── ConnectTimeout         no banner / handshake within --connect-timeout
        ├── CommandTimeout         the command ran longer than --timeout
        ├── DeviceCommandError     a network device rejected a command (% Invalid input)
        └── RemoteFileError        a remote file operation failed (permission, disk, path)

Library exceptions (asyncssh, paramiko, netmiko, OSError from sockets) are translated
into these at the transport boundary and never reach callers.
"""

from __future__ import annotations


class HostbatchError(Exception):
    """Root of every hostbatch error.

    ``host``, ``exit_status`` and ``stderr_tail`` are set where they apply, so callers
    can react without parsing messages. Messages never contain secrets.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        exit_status: int | None = None,
        stderr_tail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        if self.host is not None:
            return f"{self.host}: {self.message}"
        return self.message


class UsageError(HostbatchError):
    """The caller asked for something that cannot work (bad option, bad argument)."""

    exit_code = 2


class InventoryError(HostbatchError):
    """An inventory file is unreadable or invalid; names the file and, when known, the line."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__(message, host=host)
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return f"{where}{self.message}"


class SelectionError(HostbatchError):
    """The selection names a host or group that does not exist, or selects nothing."""

    exit_code = 2


class MissingExtraError(HostbatchError):
    """An optional dependency is missing; says which ``pip install`` fixes it."""

    exit_code = 2

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the '{module}' package: pip install 'hostbatch[{extra}]'"
        )
        self.feature = feature
        self.extra = extra
        self.module = module


class SinkError(HostbatchError):
    """An event sink (live output, JSON, files, journal) raised; the run was stopped.

    ``cause`` is the sink's exception (e.g. BrokenPipeError when stdout was closed by
    ``| head``): the CLI decides what that means, never a host's result."""

    exit_code = 1

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"output failed: {type(cause).__name__}: {cause}")
        self.cause = cause


class TransportError(HostbatchError):
    """One host's connection or command failed. Becomes that host's HostResult.error."""


class ConnectError(TransportError):
    """The host could not be reached, refused the connection, or dropped it."""


class ConnectionRefused(ConnectError):
    """Nothing listens at the address: a real refusal, never retried."""


class StartupDropped(ConnectError):
    """The server closed or reset the connection before the SSH handshake finished (before
    or during the banner or key exchange): the signature of sshd's ``MaxStartups``
    throttling. The engine's admission backs off and tries again."""


class ConnectionLost(ConnectError):
    """The connection dropped after login: mid-command or mid-transfer."""


class AuthenticationError(TransportError):
    """The host refused every credential offered."""


class HostKeyError(TransportError):
    """The host's key is unknown (and not accepted) or differs from known_hosts."""


class ConnectTimeout(TransportError):
    """No SSH banner or handshake within the connect timeout."""


class CommandTimeout(TransportError):
    """The command ran longer than its timeout and was terminated."""


class DeviceCommandError(TransportError):
    """A network device answered a command with an error such as ``% Invalid input``."""


class RemoteFileError(TransportError):
    """A remote file operation failed: permission, missing directory, full disk."""
