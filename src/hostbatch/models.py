"""Frozen records that flow through hostbatch: hosts, operations, events and results."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from hostbatch.logs import register_secret


class Secret:
    """A password, passphrase or enable secret that never shows itself.

    ``str()``, ``repr()`` and formatting all give ``********``; only :meth:`reveal`
    returns the value, and only transports call it.
    """

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str | None = None) -> None:
        self._value = value
        self.origin = origin  # where it came from, e.g. "password_env DB_PW", never the value
        register_secret(value)  # so no log record can carry it (hostbatch.logs)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str, str | None]]:
        # Worker processes receive hosts by pickle; the value must survive that.
        return (Secret, (self._value, self.origin))


@dataclass(frozen=True)
class Credentials:
    """How to log in to one host. Secrets are :class:`Secret`, never plain strings."""

    username: str | None = None
    password: Secret | None = None
    key_file: str | None = None
    passphrase: Secret | None = None
    secret: Secret | None = None  # enable secret for network devices
    become_password: Secret | None = None  # sudo's (inventory: become_password_env)

    @property
    def auth_kind(self) -> str:
        """``password``, ``key``, ``key+password``, or ``agent`` (agent and default keys)."""
        kinds = [k for k, v in (("key", self.key_file), ("password", self.password)) if v]
        return "+".join(kinds) if kinds else "agent"


@dataclass(frozen=True)
class Host:
    """One host or device, with every value resolved (host over group over defaults)."""

    name: str
    hostname: str
    port: int = 22
    credentials: Credentials = field(default_factory=Credentials)
    groups: tuple[str, ...] = ()
    transport: str | None = None  # asyncssh | paramiko | netmiko; None: the run's default
    device_type: str | None = None  # netmiko device type, e.g. cisco_ios
    proxy_jump: str | None = None  # as written: an inventory host or [user@]host[:port]
    # proxy_jump resolved at load: the host to tunnel through (the last hop); its own
    # ``jump`` is the hop before it (ProxyJump a,b: jump is b, b.jump is a)
    jump: Host | None = None
    source: str | None = None  # "path:line" where the host was defined

    @property
    def username(self) -> str | None:
        return self.credentials.username

    @property
    def jump_chain(self) -> tuple[Host, ...]:
        """The jump hosts in connection order: the one connected to directly first."""
        chain: list[Host] = []
        hop = self.jump
        while hop is not None:
            chain.insert(0, hop)
            hop = hop.jump
        return tuple(chain)


@dataclass(frozen=True)
class Sudo:
    """Run the command through ``sudo -S`` as ``user`` (None: root). The password, when
    sudo asks, is written on the command's stdin, never on its command line; ``password``
    is the run's (``--ask-become-pass`` or ``HOSTBATCH_BECOME_PASSWORD``); a host's own
    ``become_password_env`` wins over it."""

    user: str | None = None
    password: Secret | None = None


@dataclass(frozen=True)
class Command:
    """A shell command to run on every selected host.

    ``stdin``: a local file whose bytes every host's command reads on its standard input
    (streamed in chunks; without it stdin is at EOF at once). ``env``: (NAME, VALUE) pairs
    exported for the command by the remote shell (no AcceptEnv needed); values are not
    secrets but are kept out of errors and logs. ``script``: a local script uploaded to a
    private temporary directory on each host and run there, ``text`` being its arguments
    (words for the remote shell, like a command's); removed afterwards. ``sudo``: run
    through sudo."""

    text: str
    timeout: float | None = None
    stdin: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    script: str | None = None
    sudo: Sudo | None = None


@dataclass(frozen=True)
class CommandSet:
    """Several commands per host, each one's output kept apart. For network devices also a
    configuration set (sent in config mode), ``save`` (write it to startup) and ``parse``
    (TextFSM rows where a template exists)."""

    commands: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    save: bool = False
    parse: bool = False
    timeout: float | None = None

    @property
    def device_only(self) -> bool:
        """True when the set needs a network device (config mode, save, TextFSM)."""
        return bool(self.config or self.save or self.parse)


@dataclass(frozen=True)
class CommandOutput:
    """One command's answer within a CommandSet (``command`` is ``"config"`` or ``"save"``
    for those steps)."""

    command: str
    output: str
    exit_status: int | None = None
    error: str | None = None  # what the device rejected, e.g. "% Invalid input ..."
    parsed: tuple[dict[str, Any], ...] | None = None
    note: str | None = None  # e.g. "no TextFSM template for this command"


@dataclass(frozen=True)
class Transfer:
    """Files to copy to (put) or from (get) every selected host."""

    direction: Literal["put", "get"]
    sources: tuple[str, ...]
    destination: str
    recursive: bool = False
    preserve: bool = False
    verify: bool = False


class Status(enum.Enum):
    """How one host's operation ended. The order is the summary's order."""

    OK = "ok"
    FAILED = "command failed"  # ran, exited non-zero
    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth failed"
    HOSTKEY = "host key rejected"
    TRANSFER_FAILED = "transfer failed"  # a remote or local file operation failed
    TIMEOUT = "timed out"
    DROPPED = "connection lost"  # after login, mid-command or mid-transfer
    ERROR = "error"
    NOT_STARTED = "not started"  # --max-fail or a failed --canary stopped the run first

    @property
    def reached(self) -> bool:
        """True when the host was connected and authenticated."""
        return self not in (
            Status.UNREACHABLE,
            Status.AUTH_FAILED,
            Status.HOSTKEY,
            Status.NOT_STARTED,
        )


Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class HostResult:
    """What one host did: its exit status and output, or why it could not."""

    host: str
    status: Status
    exit_status: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    error: str | None = None
    started: float = 0.0
    ended: float = 0.0
    truncated: bool = False  # output exceeded the in-memory cap; the tail was kept
    files: int = 0  # transfers: files copied
    bytes_transferred: int = 0
    outputs: tuple[CommandOutput, ...] = ()  # CommandSet: each command's own output

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def elapsed(self) -> float:
        return max(0.0, self.ended - self.started)

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Started:
    """A host's operation began (connection attempt starts)."""

    host: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class OutputChunk:
    """Bytes a host wrote on stdout or stderr, as they arrived."""

    host: str
    stream: Stream
    data: bytes


@dataclass(frozen=True)
class Progress:
    """Transfer progress for one host."""

    host: str
    done: int
    total: int


@dataclass(frozen=True)
class Finished:
    """A host's operation ended; carries its result."""

    result: HostResult

    @property
    def host(self) -> str:
        return self.result.host


@dataclass(frozen=True)
class Throttled:
    """The server at ``address`` dropped connection starts before the SSH handshake (sshd's
    MaxStartups); the engine backed off, retried them, and ended the run admitting
    ``settled`` starts at once toward it. Sent once per address at the end of a run (by
    each worker process, for its own hosts)."""

    address: str  # host:port, "via JUMP" for hosts behind a jump host
    settled: int
    dropped: int


Event = Started | OutputChunk | Progress | Finished | Throttled
