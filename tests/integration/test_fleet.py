"""The in-process fleet really is a fleet of SSH hosts: commands, auth, misbehaviour, SFTP."""

from __future__ import annotations

import asyncio
import configparser
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest

from hostbatch.inventory import load_inventory
from hostbatch.testing import BEHAVIOURS, Fleet, FleetHost, FleetThread
from tests.fixtures.fleet import MISBEHAVIOURS, host_with

T = TypeVar("T")
Session = Callable[[asyncssh.SSHClientConnection], Awaitable[T]]


async def connect(fleet: Fleet, host: FleetHost, **options: Any) -> asyncssh.SSHClientConnection:
    """Connect to *host*, verifying its key (password auth unless told otherwise)."""
    options.setdefault("password", fleet.password)
    options.setdefault("client_keys", None)
    options.setdefault("known_hosts", str(fleet.known_hosts))
    return await asyncssh.connect(
        host.address,
        host.port,
        username=fleet.username,
        config=None,
        **options,
    )


def on_host(fleet: Fleet, name: str, session: Session[T], **options: Any) -> T:
    """Connect to host *name*, run *session* on the connection, close it."""

    async def main() -> T:
        async with await connect(fleet, fleet.host(name), **options) as conn:
            result = await session(conn)
        return result

    return asyncio.run(main())


def run(fleet: Fleet, name: str, command: str, **options: Any) -> asyncssh.SSHCompletedProcess:
    """Run *command* on host *name*, bytes in and out."""

    async def session(conn: asyncssh.SSHClientConnection) -> asyncssh.SSHCompletedProcess:
        return await conn.run(command, encoding=None, **options)

    return on_host(fleet, name, session)


def alive(pid: int) -> bool:
    """True while *pid* runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc, or the process vanished while being read
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


async def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def read_pids(path: Path) -> list[int]:
    """Wait for a command to write its pids to *path*; return them."""
    deadline = time.monotonic() + 30  # a deadline, not a count of polls: a busy machine
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n"):
            return [int(pid) for pid in text.split()]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never written")


# --- commands ---------------------------------------------------------------------------


def test_command_runs_in_its_host_directory(fleet: Fleet) -> None:
    host = fleet.host("node02")
    result = run(fleet, "node02", "pwd; echo $HOME $HOSTBATCH_FLEET_HOST; echo oops >&2; exit 3")
    assert result.stdout == f"{host.root}\n{host.root} node02\n".encode()
    assert result.stderr == b"oops\n"
    assert result.exit_status == 3


def test_binary_output_and_stdin_survive(fleet: Fleet) -> None:
    blob = bytes(range(256)) * 64
    (fleet.host("node01").root / "blob.bin").write_bytes(blob)
    assert run(fleet, "node01", "cat blob.bin").stdout == blob
    assert run(fleet, "node01", "cat", input=blob[::-1]).stdout == blob[::-1]


def test_hosts_are_separate(fleet: Fleet) -> None:
    assert [host.name for host in fleet.hosts] == [f"node0{i}" for i in range(1, 6)]
    assert len({host.port for host in fleet.hosts}) == 5
    assert len({host.root for host in fleet.hosts}) == 5
    lines = fleet.known_hosts.read_text().splitlines()
    assert sorted(lines) == sorted(set(lines)) and len(lines) == 5
    assert all(line.startswith("[127.0.0.1]:") for line in lines)
    assert len({line.split()[2] for line in lines}) == 5  # one host key each
    assert run(fleet, "node03", "echo $HOSTBATCH_FLEET_HOST").stdout == b"node03\n"


def test_host_names_widen_with_count() -> None:
    assert Fleet(3, prefix="web").hosts == []  # nothing happens before start
    with pytest.raises(ValueError, match="behaviours"):
        Fleet(2, behaviours={"node01": "explode"})
    with pytest.raises(ValueError, match="hosts"):
        Fleet(2, behaviours={"node03": "ok"})


# --- authentication ---------------------------------------------------------------------


def whoami(conn: asyncssh.SSHClientConnection) -> Awaitable[asyncssh.SSHCompletedProcess]:
    return conn.run("echo $USER")


def test_password_auth(fleet: Fleet) -> None:
    assert on_host(fleet, "node01", whoami).stdout == "hostbatch\n"


def test_key_auth(fleet: Fleet) -> None:
    result = on_host(fleet, "node01", whoami, password=None, client_keys=[str(fleet.client_key)])
    assert result.exit_status == 0
    assert stat.S_IMODE(fleet.client_key.stat().st_mode) == 0o600


def test_encrypted_key_needs_its_passphrase(fleet: Fleet) -> None:
    key_options = {"password": None, "client_keys": [str(fleet.client_key_enc)]}
    result = on_host(fleet, "node01", whoami, passphrase=fleet.key_passphrase, **key_options)
    assert result.exit_status == 0
    with pytest.raises(asyncssh.KeyImportError):
        on_host(fleet, "node01", whoami, **key_options)


def test_wrong_password_is_refused(fleet: Fleet) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        on_host(fleet, "node01", whoami, password="not-" + fleet.password)


def test_unknown_host_key_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    other = tmp_path / "known_hosts"
    port = fleet.host("node02").port
    lines = fleet.known_hosts.read_text().splitlines()
    other.write_text("".join(f"[127.0.0.1]:{port} {line.split(' ', 1)[1]}\n" for line in lines[:1]))
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        on_host(fleet, "node02", whoami, known_hosts=str(other))


# --- inventory --------------------------------------------------------------------------


def test_write_inventory_password_and_key(fleet: Fleet, tmp_path: Path) -> None:
    folder = fleet.write_inventory(tmp_path / "by-password")
    ini = folder / "fleet.ini"
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ini)
    assert parser.sections() == [host.name for host in fleet.hosts]
    assert parser["node04"]["port"] == str(fleet.host("node04").port)
    assert parser["node04"]["password"] == fleet.password

    inventory = load_inventory([folder], environ={}, ssh_config=None)
    node = inventory.hosts["node04"]
    assert (node.hostname, node.port, node.username) == (
        "127.0.0.1",
        fleet.host("node04").port,
        "hostbatch",
    )
    assert node.credentials.password is not None
    assert node.credentials.password.reveal() == fleet.password

    keyed = load_inventory(
        [fleet.write_inventory(tmp_path / "by-key", auth="key")], environ={}, ssh_config=None
    )
    assert keyed.hosts["node01"].credentials.key_file == str(fleet.client_key)
    assert keyed.hosts["node01"].credentials.password is None


# --- misbehaviour -----------------------------------------------------------------------


def test_misbehaving_fleet_has_one_host_of_each(misbehaving_fleet: Fleet) -> None:
    behaviours = [host.behaviour for host in misbehaving_fleet.hosts]
    assert behaviours == ["ok", *MISBEHAVIOURS]
    assert set(behaviours) == BEHAVIOURS


def test_hang_before_banner_times_out(misbehaving_fleet: Fleet) -> None:
    host = host_with(misbehaving_fleet, "hang_before_banner")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        on_host(misbehaving_fleet, host.name, whoami, connect_timeout=0.5)
    assert time.monotonic() - started < 5


def test_refuse_connect(misbehaving_fleet: Fleet) -> None:
    host = host_with(misbehaving_fleet, "refuse_connect")
    with pytest.raises(ConnectionRefusedError):
        on_host(misbehaving_fleet, host.name, whoami)


def test_refuse_auth_refuses_good_password_and_key(misbehaving_fleet: Fleet) -> None:
    name = host_with(misbehaving_fleet, "refuse_auth").name
    with pytest.raises(asyncssh.PermissionDenied):
        on_host(misbehaving_fleet, name, whoami)
    with pytest.raises(asyncssh.PermissionDenied):
        on_host(misbehaving_fleet, name, whoami, client_keys=[str(misbehaving_fleet.client_key)])


def test_drop_mid_command_loses_the_connection(misbehaving_fleet: Fleet) -> None:
    async def session(conn: asyncssh.SSHClientConnection) -> tuple[bytes, float]:
        process = await conn.create_process("echo first; sleep 5; echo second", encoding=None)
        received = b""
        started = time.monotonic()
        with pytest.raises(ConnectionResetError):
            while chunk := await process.stdout.read(1024):
                received += chunk
        await conn.wait_closed()
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.run("true")
        return received, time.monotonic() - started

    received, elapsed = on_host(
        misbehaving_fleet, host_with(misbehaving_fleet, "drop_mid_command").name, session
    )
    assert received == b"first\n"
    assert elapsed < 4


def test_slow_output_arrives_over_time(misbehaving_fleet: Fleet) -> None:
    async def session(conn: asyncssh.SSHClientConnection) -> list[float]:
        started = time.monotonic()
        process = await conn.create_process("for i in 1 2 3; do echo $i; sleep 0.05; done")
        arrivals = [time.monotonic() - started async for line in process.stdout if line]
        await process.wait()
        return arrivals

    arrivals = on_host(misbehaving_fleet, host_with(misbehaving_fleet, "slow_output").name, session)
    assert len(arrivals) == 3
    assert arrivals[0] >= 0.2  # every chunk is held back 0.2 s
    assert arrivals[-1] - arrivals[0] >= 0.15


def test_ok_host_of_misbehaving_fleet_works(misbehaving_fleet: Fleet) -> None:
    assert run(misbehaving_fleet, "node01", "echo fine").stdout == b"fine\n"


# --- killing ----------------------------------------------------------------------------

BACKGROUNDED = "sleep 300 & echo $$ $! > {pidfile}; wait"


@pytest.mark.parametrize("how", ["close", "signal", "disconnect"])
def test_interrupted_command_is_killed(fleet: Fleet, how: str) -> None:
    pidfile = fleet.host("node05").root / f"pids-{how}"

    async def main() -> tuple[list[int], bool]:
        async with await connect(fleet, fleet.host("node05")) as conn:
            process = await conn.create_process(BACKGROUNDED.format(pidfile=pidfile.name))
            with pytest.raises(asyncssh.TimeoutError):
                await process.wait(timeout=0.3)  # asyncssh leaves the command running
            pids = await read_pids(pidfile)
            assert all(alive(pid) for pid in pids)
            if how == "close":
                process.close()
            elif how == "signal":
                process.send_signal("TERM")
                await process.wait()
                assert process.exit_signal is not None
                assert process.exit_signal[0] == "TERM"
            process.close()
        return pids, await gone_within(pids, 30)

    pids, gone = asyncio.run(main())
    assert len(pids) == 2
    assert gone


# --- file transfer ----------------------------------------------------------------------


def test_sftp_put_get_from_the_host_home(fleet: Fleet, tmp_path: Path) -> None:
    local = tmp_path / "up.bin"
    local.write_bytes(b"\x00payload\xff")
    root = fleet.host("node03").root

    async def session(conn: asyncssh.SSHClientConnection) -> list[str]:
        async with conn.start_sftp_client() as sftp:
            await sftp.put(str(local), "up.bin")  # relative: the host's directory
            await sftp.get(str(root / "up.bin"), str(tmp_path / "down.bin"))  # absolute: real
            assert await sftp.realpath(".") == str(root)
            return sorted(await sftp.listdir("."))

    listing = on_host(fleet, "node03", session)
    assert (root / "up.bin").read_bytes() == b"\x00payload\xff"
    assert (tmp_path / "down.bin").read_bytes() == b"\x00payload\xff"
    assert "up.bin" in listing


def test_scp_put(fleet: Fleet, tmp_path: Path) -> None:
    local = tmp_path / "scp.txt"
    local.write_text("by scp\n")

    async def session(conn: asyncssh.SSHClientConnection) -> None:
        await asyncssh.scp(str(local), (conn, "scp.txt"))

    on_host(fleet, "node04", session)
    assert (fleet.host("node04").root / "scp.txt").read_text() == "by scp\n"


# --- lifecycle --------------------------------------------------------------------------


def test_stop_kills_commands_closes_ports_and_removes_root() -> None:
    async def main() -> None:
        async with Fleet(2, prefix="web") as fleet:
            host = fleet.host("web02")
            root = fleet.root
            conn = await connect(fleet, host)
            process = await conn.create_process(BACKGROUNDED.format(pidfile="pids"))
            pids = await read_pids(host.root / "pids")
        assert await gone_within(pids, 30)
        assert not root.exists()
        await conn.wait_closed()
        process.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host.address, host.port)

    asyncio.run(main())


def test_given_root_is_kept(tmp_path: Path) -> None:
    async def main() -> None:
        async with Fleet(1, root=tmp_path / "fleet", password="pw") as fleet:
            assert fleet.root == tmp_path / "fleet"
            assert fleet.host("node01").root == tmp_path / "fleet" / "node01"
            assert fleet.password == "pw"

    asyncio.run(main())
    assert (tmp_path / "fleet" / "node01").is_dir()


def test_a_thousand_hosts_start_quickly() -> None:
    started = time.monotonic()
    with FleetThread(1000) as fleet:
        assert time.monotonic() - started < 30
        assert (fleet.hosts[0].name, fleet.hosts[-1].name) == ("node0001", "node1000")
        assert len(fleet.known_hosts.read_text().splitlines()) == 1000
        assert run(fleet, "node0777", "echo $HOSTBATCH_FLEET_HOST").stdout == b"node0777\n"
