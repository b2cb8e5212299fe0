"""The transport contract, kept by every SSH transport against every test server.

Each test runs for both transports (asyncssh, paramiko); most also for both servers (a
real OpenSSH sshd and the in-process asyncssh fleet). Transports are used directly,
through the registry, as the engine uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import asyncssh
import pytest

from hostbatch.errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    HostbatchError,
    HostKeyError,
    RemoteFileError,
)
from hostbatch.models import Credentials, Host, Secret, Stream
from hostbatch.testing.fleet import Fleet, FleetThread
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions, HostKeyPolicy, Transport
from hostbatch.transport.registry import get_transport

TRANSPORTS = ["asyncssh", "paramiko"]
SERVERS = ["sshd", "fleet"]
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0
_T = TypeVar("_T")

# the contract fleet: one good host and one per misbehaviour
GOOD, HANG, REFUSE_CONNECT, REFUSE_AUTH, DROP = (f"contract0{i}" for i in range(1, 6))
_BEHAVIOURS = {
    HANG: "hang_before_banner",
    REFUSE_CONNECT: "refuse_connect",
    REFUSE_AUTH: "refuse_auth",
    DROP: "drop_mid_command",
}


@dataclass(frozen=True)
class Server:
    """Where and how to log in to one test server, whichever kind it is."""

    kind: str
    address: str
    port: int
    username: str
    password: str | None
    client_key: Path
    client_key_enc: Path
    key_passphrase: str
    known_hosts: Path


@pytest.fixture(scope="module")
def contract_fleet() -> Iterator[Fleet]:
    with FleetThread(5, prefix="contract", behaviours=_BEHAVIOURS) as fleet:
        yield fleet


def _fleet_server(fleet: Fleet, name: str = GOOD) -> Server:
    host = fleet.host(name)
    return Server(
        "fleet",
        host.address,
        host.port,
        fleet.username,
        fleet.password,
        fleet.client_key,
        fleet.client_key_enc,
        fleet.key_passphrase,
        fleet.known_hosts,
    )


def _sshd_server(sshd: OpenSSHServer) -> Server:
    return Server(
        "sshd",
        sshd.host,
        sshd.port,
        sshd.username,
        sshd.password,
        sshd.client_key,
        sshd.client_key_enc,
        sshd.key_passphrase,
        sshd.known_hosts,
    )


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Server:
    """Each server kind, with a private copy of its known_hosts (tests may change it)."""
    if request.param == "sshd":
        found = _sshd_server(request.getfixturevalue("sshd"))
    else:
        found = _fleet_server(request.getfixturevalue("contract_fleet"))
    known_hosts = tmp_path / "known_hosts"
    shutil.copyfile(found.known_hosts, known_hosts)
    return replace(found, known_hosts=known_hosts)


@pytest.fixture
def fleet_server(contract_fleet: Fleet, tmp_path: Path) -> Server:
    known_hosts = tmp_path / "known_hosts"
    shutil.copyfile(contract_fleet.known_hosts, known_hosts)
    return replace(_fleet_server(contract_fleet), known_hosts=known_hosts)


@pytest.fixture(params=TRANSPORTS)
def transport_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# -- helpers ---------------------------------------------------------------------------


def _host(server: Server, credentials: Credentials | None = None, port: int | None = None) -> Host:
    """The server as a Host; key authentication unless *credentials* say otherwise."""
    creds = credentials or Credentials(username=server.username, key_file=str(server.client_key))
    return Host(
        name=f"{server.kind}-host",
        hostname=server.address,
        port=server.port if port is None else port,
        credentials=creds,
    )


def _options(
    server: Server,
    host_keys: HostKeyPolicy = "strict",
    known_hosts: Path | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> ConnectOptions:
    return ConnectOptions(
        connect_timeout=connect_timeout,
        host_keys=host_keys,
        known_hosts=str(known_hosts or server.known_hosts),
        use_agent=False,
    )


def _password(server: Server) -> str:
    if server.password is None:
        pytest.skip("password login to sshd needs root (the hostbatch-test user)")
    return server.password


async def _with_transport(
    name: str, host: Host, options: ConnectOptions, body: Callable[[Transport], Awaitable[_T]]
) -> _T:
    """Connect, run *body*, always close."""
    transport = get_transport(name)(host, options)
    try:
        await transport.connect()
        return await body(transport)
    finally:
        await transport.close()


def _connect(name: str, host: Host, options: ConnectOptions) -> None:
    async def nothing(_transport: Transport) -> None:
        return None

    asyncio.run(_with_transport(name, host, options, nothing))


@dataclass
class Ran:
    exit_status: int
    stdout: bytes
    stderr: bytes


class Collector:
    """An output sink that keeps both streams and checks it runs on the loop thread."""

    def __init__(self) -> None:
        self.streams: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.loop = asyncio.get_running_loop()

    def __call__(self, stream: Stream, data: bytes) -> None:
        assert asyncio.get_running_loop() is self.loop
        assert isinstance(data, bytes)
        self.streams[stream].extend(data)


def _run(
    name: str,
    host: Host,
    options: ConnectOptions,
    command: str,
    timeout: float | None = COMMAND_TIMEOUT,
) -> Ran:
    async def body(transport: Transport) -> Ran:
        output = Collector()
        status = await transport.run(command, output, timeout)
        return Ran(status, bytes(output.streams["stdout"]), bytes(output.streams["stderr"]))

    return asyncio.run(_with_transport(name, host, options, body))


def _process_gone(pid: int) -> bool:
    """True when *pid* no longer exists (or is a zombie about to be reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return fields[0] in ("Z", "X")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- commands --------------------------------------------------------------------------


def test_exit_status_and_separate_streams(transport_name: str, server: Server) -> None:
    ran = _run(transport_name, _host(server), _options(server), "echo out; echo err >&2; exit 3")
    assert ran.exit_status == 3
    assert ran.stdout == b"out\n"
    assert ran.stderr == b"err\n"


def test_success_is_zero(transport_name: str, server: Server) -> None:
    assert _run(transport_name, _host(server), _options(server), "true").exit_status == 0


def test_killed_by_signal_is_128_plus_signal(transport_name: str, server: Server) -> None:
    ran = _run(transport_name, _host(server), _options(server), "kill -TERM $$")
    assert ran.exit_status == 128 + 15


def test_binary_output_survives(transport_name: str, server: Server) -> None:
    command = r"printf '\377\376\000\201x'; printf '\200\000' >&2"
    ran = _run(transport_name, _host(server), _options(server), command)
    assert ran.stdout == b"\xff\xfe\x00\x81x"
    assert ran.stderr == b"\x80\x00"


def test_large_output_streams_completely(transport_name: str, server: Server) -> None:
    size = 5_000_000
    ran = _run(
        transport_name,
        _host(server),
        _options(server),
        f"yes 0123456789abcdef | head -c {size}; echo done >&2",
    )
    expected = (b"0123456789abcdef\n" * (size // 17 + 1))[:size]
    assert len(ran.stdout) == size
    assert ran.stdout == expected
    assert ran.stderr == b"done\n"


def test_command_timeout_kills_remote_process(transport_name: str, server: Server) -> None:
    output = bytearray()

    async def body(transport: Transport) -> None:
        await transport.run("echo $$; exec sleep 60", lambda _s, d: output.extend(d), 1.0)

    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="timed out after 1s"):
        asyncio.run(_with_transport(transport_name, _host(server), _options(server), body))
    assert time.monotonic() - started < 10
    pid = int(output.decode().split()[0])
    deadline = time.monotonic() + 5
    while not _process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _process_gone(pid), f"remote process {pid} survived the timeout"


# -- authentication --------------------------------------------------------------------


def test_password_auth(transport_name: str, server: Server) -> None:
    creds = Credentials(username=server.username, password=Secret(_password(server)))
    ran = _run(transport_name, _host(server, creds), _options(server), "echo pw")
    assert ran.stdout == b"pw\n"


def test_key_auth(transport_name: str, server: Server) -> None:
    creds = Credentials(username=server.username, key_file=str(server.client_key))
    assert _run(transport_name, _host(server, creds), _options(server), "true").exit_status == 0


def test_encrypted_key_with_passphrase(transport_name: str, server: Server) -> None:
    creds = Credentials(
        username=server.username,
        key_file=str(server.client_key_enc),
        passphrase=Secret(server.key_passphrase),
    )
    assert _run(transport_name, _host(server, creds), _options(server), "true").exit_status == 0


def test_encrypted_key_wrong_passphrase(transport_name: str, server: Server) -> None:
    creds = Credentials(
        username=server.username,
        key_file=str(server.client_key_enc),
        passphrase=Secret("not-the-passphrase"),
    )
    with pytest.raises(AuthenticationError, match="key file") as caught:
        _connect(transport_name, _host(server, creds), _options(server))
    assert "not-the-passphrase" not in str(caught.value)


class LateKeyFile:
    """A key file (a symlink to a FIFO) whose content arrives only after *late* seconds:
    a key that takes longer to load than the connect timeout, as a passphrase-protected
    key's bcrypt rounds can on a busy machine. Each read gets the key once (paramiko
    reads the file twice): before closing the FIFO of one read, the link moves on to a
    new FIFO, so the reader's next open cannot join the read before it."""

    def __init__(self, folder: Path, key: bytes, late: float) -> None:
        self.folder, self.key, self.late = folder, key, late
        self.path = folder / "slow_key"
        self.fifo = self._fifo(0)
        self.path.symlink_to(self.fifo)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _fifo(self, number: int) -> Path:
        fifo = self.folder / f"fifo{number}"
        os.mkfifo(fifo, 0o600)
        return fifo

    def _serve(self) -> None:
        if self.stopped.wait(self.late):  # the fault itself: the key is late
            return
        number = 0
        while not self.stopped.is_set():
            with self.fifo.open("wb") as pipe:  # waits for a reader
                with contextlib.suppress(BrokenPipeError):
                    pipe.write(self.key)
                    pipe.flush()
                number += 1
                self.fifo = self._fifo(number)
                moved = self.folder / "moved"
                moved.symlink_to(self.fifo)
                moved.replace(self.path)

    def stop(self) -> None:
        self.stopped.set()
        opened = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)  # frees a waiting open
        try:
            self.thread.join(COMMAND_TIMEOUT)
        finally:
            os.close(opened)
        assert not self.thread.is_alive()


def test_reading_the_key_is_no_part_of_the_connect_timeout(
    transport_name: str, fleet_server: Server, tmp_path: Path
) -> None:
    """The connect timeout starts once the key is loaded: a key that takes longer than
    the timeout to read is not reported as "no SSH handshake"."""
    late = CONNECT_TIMEOUT + 1.0
    key_file = LateKeyFile(tmp_path, fleet_server.client_key_enc.read_bytes(), late)
    creds = Credentials(
        username=fleet_server.username,
        key_file=str(key_file.path),
        passphrase=Secret(fleet_server.key_passphrase),
    )
    began = time.monotonic()
    try:
        ran = _run(transport_name, _host(fleet_server, creds), _options(fleet_server), "echo in")
    finally:
        key_file.stop()
    assert (ran.exit_status, ran.stdout) == (0, b"in\n")
    assert time.monotonic() - began >= late


def test_wrong_password(transport_name: str, server: Server) -> None:
    _password(server)
    creds = Credentials(username=server.username, password=Secret("wrong-password-xyz"))
    with pytest.raises(AuthenticationError, match=r"offered: password") as caught:
        _connect(transport_name, _host(server, creds), _options(server))
    assert "wrong-password-xyz" not in str(caught.value)


def test_refuse_auth(transport_name: str, contract_fleet: Fleet, tmp_path: Path) -> None:
    server = _fleet_server(contract_fleet, REFUSE_AUTH)
    creds = Credentials(username=server.username, password=Secret(contract_fleet.password))
    with pytest.raises(AuthenticationError):
        _connect(transport_name, _host(server, creds), _options(server))


# -- host keys -------------------------------------------------------------------------


def test_strict_unknown_host_key(transport_name: str, server: Server, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="not in"):
        _connect(transport_name, _host(server), _options(server, "strict", empty))


def test_accept_new_records_then_strict_passes(
    transport_name: str, server: Server, tmp_path: Path
) -> None:
    fresh = tmp_path / "ssh" / "known_hosts"  # neither the file nor its directory exist
    _connect(transport_name, _host(server), _options(server, "accept-new", fresh))
    assert f"[{server.address}]:{server.port} " in fresh.read_text()
    _connect(transport_name, _host(server), _options(server, "strict", fresh))
    assert len(fresh.read_text().splitlines()) == 1


@pytest.mark.parametrize("key_type", ["ssh-ed25519", "ecdsa-sha2-nistp256"])
def test_changed_host_key(
    transport_name: str, server: Server, tmp_path: Path, key_type: str
) -> None:
    """A different key of the server's own type, or a key of a type the server does not
    have (its key changed type): both are a changed key, not a failed handshake."""
    other = asyncssh.generate_private_key(key_type).export_public_key().decode()
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(f"[{server.address}]:{server.port} {other}")
    with pytest.raises(HostKeyError, match="CHANGED"):
        _connect(transport_name, _host(server), _options(server, "strict", changed))
    with pytest.raises(HostKeyError, match="CHANGED"):
        _connect(transport_name, _host(server), _options(server, "accept-new", changed))


def test_host_keys_off_accepts_anything(
    transport_name: str, server: Server, tmp_path: Path
) -> None:
    missing = tmp_path / "none" / "known_hosts"
    _connect(transport_name, _host(server), _options(server, "off", missing))
    assert not missing.exists()


# -- connection failures ---------------------------------------------------------------


def test_refused_port(transport_name: str, contract_fleet: Fleet) -> None:
    server = _fleet_server(contract_fleet, REFUSE_CONNECT)
    with pytest.raises(ConnectError, match="refused"):
        _connect(transport_name, _host(server), _options(server))


def test_refused_port_anywhere(transport_name: str, server: Server) -> None:
    port = _free_port()
    with pytest.raises(ConnectError, match="refused"):
        _connect(transport_name, _host(server, port=port), _options(server))


def test_hang_before_banner_times_out(transport_name: str, contract_fleet: Fleet) -> None:
    server = _fleet_server(contract_fleet, HANG)
    started = time.monotonic()
    with pytest.raises(ConnectTimeout):
        _connect(transport_name, _host(server), _options(server, connect_timeout=1.0))
    assert time.monotonic() - started < 2.0


def test_drop_mid_command(transport_name: str, contract_fleet: Fleet) -> None:
    server = _fleet_server(contract_fleet, DROP)
    with pytest.raises(ConnectionLost, match="connection lost"):
        _run(transport_name, _host(server), _options(server), "echo start; sleep 5")


# -- files -----------------------------------------------------------------------------


def test_put_get_round_trip(transport_name: str, server: Server, tmp_path: Path) -> None:
    payload = os.urandom(300_000) + b"\x00\xff end"
    local = tmp_path / "upload.bin"
    local.write_bytes(payload)
    back = tmp_path / "back" / "download.bin"
    back.parent.mkdir()
    remote = f"contract-{uuid.uuid4().hex[:8]}.bin"
    put_progress: list[tuple[int, int]] = []
    get_progress: list[tuple[int, int]] = []

    async def body(transport: Transport) -> int:
        try:
            await transport.put(local, remote, lambda d, t: put_progress.append((d, t)))
            await transport.get(remote, back, lambda d, t: get_progress.append((d, t)))
            return await transport.run(f"ls {remote}*", Collector(), COMMAND_TIMEOUT)
        finally:
            with contextlib.suppress(HostbatchError):  # keep the real failure visible
                await transport.run(f"rm -f {remote}", Collector(), COMMAND_TIMEOUT)

    listed = asyncio.run(_with_transport(transport_name, _host(server), _options(server), body))
    assert listed == 0
    assert back.read_bytes() == payload
    assert os.listdir(back.parent) == ["download.bin"]  # no temporary left behind
    assert put_progress[-1] == (len(payload), len(payload))
    assert get_progress[-1] == (len(payload), len(payload))


def test_get_missing_remote_file(transport_name: str, server: Server, tmp_path: Path) -> None:
    local = tmp_path / "missing.bin"

    async def body(transport: Transport) -> None:
        await transport.get(f"no-such-{uuid.uuid4().hex}.bin", local, lambda _d, _t: None)

    with pytest.raises(RemoteFileError, match="get no-such-"):
        asyncio.run(_with_transport(transport_name, _host(server), _options(server), body))
    assert os.listdir(tmp_path) == ["known_hosts"]


def test_put_into_missing_directory(transport_name: str, server: Server, tmp_path: Path) -> None:
    local = tmp_path / "small.txt"
    local.write_text("hello\n")

    async def body(transport: Transport) -> None:
        await transport.put(local, "no-such-dir/x/small.txt", lambda _d, _t: None)

    with pytest.raises(RemoteFileError, match="put no-such-dir"):
        asyncio.run(_with_transport(transport_name, _host(server), _options(server), body))


# -- many at once ----------------------------------------------------------------------


def test_many_concurrent_connections(transport_name: str, fleet_server: Server) -> None:
    """Blocking transports must not serialise hosts (paramiko: its own thread pool)."""
    count = 40

    async def one(index: int) -> bytes:
        async def body(transport: Transport) -> bytes:
            output = Collector()
            await transport.run(f"sleep 0.5; echo {index}", output, COMMAND_TIMEOUT)
            return bytes(output.streams["stdout"])

        return await _with_transport(
            transport_name, _host(fleet_server), _options(fleet_server), body
        )

    async def all_of_them() -> list[bytes]:
        return await asyncio.gather(*(one(i) for i in range(count)))

    started = time.monotonic()
    outputs = asyncio.run(all_of_them())
    assert outputs == [f"{i}\n".encode() for i in range(count)]
    assert time.monotonic() - started < 8


# -- jump hosts ------------------------------------------------------------------------


def test_through_jump_host(transport_name: str, sshd: OpenSSHServer, tmp_path: Path) -> None:
    """sshd tunnels to itself: the jump host is logged in to with its own record."""
    server = _sshd_server(sshd)
    target = replace(_host(server), jump=replace(_host(server), name="jump"))
    ran = _run(transport_name, target, _options(server), "echo via; echo $SSH_CLIENT >&2")
    assert ran.stdout == b"via\n"
    assert ran.stderr.startswith(b"127.0.0.1 ")


def test_jump_host_failure_names_the_jump(transport_name: str, sshd: OpenSSHServer) -> None:
    server = _sshd_server(sshd)
    jump = replace(_host(server, port=_free_port()), name="jumpbox")
    with pytest.raises(ConnectError, match="via jump host jumpbox: connection refused"):
        _connect(transport_name, replace(_host(server), jump=jump), _options(server))
