"""The contract every transport keeps, and the options the engine hands it.

Transports are the only code that imports SSH libraries. They translate every library
exception into a :class:`~hostbatch.errors.TransportError` subclass.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Protocol, runtime_checkable

from hostbatch.errors import UsageError
from hostbatch.models import CommandOutput, CommandSet, Host, Stream
from hostbatch.transport.jump import JumpHub

HostKeyPolicy = Literal["strict", "accept-new", "off"]
OutputSink = Callable[[Stream, bytes], None]
ProgressSink = Callable[[int, int], None]
StdinSource = AsyncIterable[bytes]
"""Bytes for a command's stdin, written in order as they come; EOF when it ends."""

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class RemoteStat:
    """What a transfer needs to know about a remote path."""

    is_dir: bool
    size: int
    mode: int  # permission bits only
    mtime: float


@dataclass(frozen=True)
class ConnectOptions:
    """How to connect: the same for every host of a run. ``connect_timeout`` (seconds to
    connect, get the banner and log in) is the run's only connect timeout."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    host_keys: HostKeyPolicy = "strict"
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    use_agent: bool = True
    keepalive: float = 30.0

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0:
            raise UsageError(f"connect timeout must be positive (got {self.connect_timeout})")

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts).expanduser()


class Transport(Protocol):
    """One connection to one host. Created per host by a :data:`TransportFactory`.

    ``blocking`` says the transport drives a blocking library in threads (netmiko): the
    engine then gives such hosts fewer sessions per worker process. Keep it equal to the
    transport's entry in :mod:`hostbatch.transport.registry` (a test checks both).
    """

    blocking: ClassVar[bool]

    async def connect(self) -> None:
        """Open and authenticate. Raises ConnectError, AuthenticationError, HostKeyError,
        ConnectTimeout."""

    async def run(
        self,
        command: str,
        output: OutputSink,
        timeout: float | None,
        *,
        stdin: StdinSource | None = None,
    ) -> int:
        """Run *command*, feeding stdout/stderr bytes to *output* as they arrive; return the
        exit status. On timeout the remote process is terminated and CommandTimeout raised.
        The command's stdin gets *stdin*'s chunks, written as they come (with the channel's
        flow control: a slow reader slows the source), then EOF; without it, EOF at once.
        A command that exits without reading it all is fine."""

    async def stat(self, remote: str) -> RemoteStat | None:
        """The remote path's type, size, mode and mtime; None when it does not exist."""

    async def listdir(self, remote: str) -> list[tuple[str, RemoteStat]]:
        """Entries of a remote directory (without . and ..)."""

    async def mkdir(self, remote: str) -> None:
        """Create one remote directory (its parent must exist); exists already is fine."""

    async def put(
        self, local: Path, remote: str, progress: ProgressSink, *, preserve: bool = False
    ) -> None:
        """Copy one local file to exactly *remote*; *preserve* keeps mode and mtime. Bytes
        done/total go to *progress*. (engine/transfer.py picks temporary names, checks
        sizes and renames: atomicity is the engine's, the same for every transport.)"""

    async def get(
        self, remote: str, local: Path, progress: ProgressSink, *, preserve: bool = False
    ) -> None:
        """Copy one remote file to exactly *local*."""

    async def rename(self, source: str, target: str) -> None:
        """Rename a remote file, replacing *target* (POSIX rename)."""

    async def remove(self, remote: str) -> None:
        """Delete a remote file; a missing file is fine."""

    async def close(self) -> None:
        """Close the connection; never raises."""


@runtime_checkable
class DeviceTransport(Protocol):
    """A transport for network devices: runs a CommandSet in one CLI session."""

    async def run_commands(
        self, commands: CommandSet, output: OutputSink, results: list[CommandOutput]
    ) -> None:
        """Config set and save when asked, then each command; every step's output is
        streamed to *output* and appended to *results* as soon as the step ends, so what
        ran before a timeout or a lost connection is kept. A command the device rejects
        gives a CommandOutput with ``error`` and the rest still run; a step that times out
        or loses the connection gets one with ``error`` too, then the error is raised."""


@runtime_checkable
class SharesJumps(Protocol):
    """A transport that can reach jump hosts over a run's shared connections (asyncssh).
    Others (paramiko, netmiko) open their own connection to the jump host per host."""

    def share_jumps(self, hub: JumpHub) -> None:
        """Use *hub* for this host's jump hosts; called before connect()."""


class RemoteProcess(Protocol):
    """A command started with its stdin left open (the agent's resident shell): its
    stdout/stderr go to the *output* sink given to :meth:`StartsProcesses.start` as they
    arrive."""

    def write(self, data: bytes) -> None:
        """Queue *data* for the command's stdin."""

    def running(self) -> bool:
        """False once both output streams have ended (the channel is done)."""

    async def finished(self) -> int:
        """Wait until the output has ended; the exit status as :meth:`Transport.run`
        gives it (128+n for a signal). Raises ConnectionLost."""

    async def terminate(self) -> None:
        """Signal the command as a timed out run does (TERM, KILL), close the channel."""


@runtime_checkable
class StartsProcesses(Protocol):
    """A transport that can start a command and keep talking to it (asyncssh)."""

    async def start(self, command: str, output: OutputSink) -> RemoteProcess:
        """Start *command*; raises ConnectError when the channel cannot be opened."""


class TransportFactory(Protocol):
    """A transport class: ``factory(host, options)`` gives one host's Transport."""

    blocking: bool

    def __call__(self, host: Host, options: ConnectOptions) -> Transport: ...
