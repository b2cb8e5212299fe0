"""Faults users hit in transfers and output, against real servers (the in-process fleet
and a real OpenSSH sshd): colliding host directories, endless output without newlines,
endless remote files, stale temporaries of killed puts, malformed known_hosts lines."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, get, put, run, transfer_async
from hostbatch.engine.limits import Limits
from hostbatch.logs import logger
from hostbatch.models import Credentials, Event, Host, OutputChunk, Status, Transfer
from hostbatch.output.live import LiveRenderer
from hostbatch.testing import Fleet, FleetThread
from hostbatch.testing.sshd import OpenSSHServer, _descendants
from hostbatch.transport.base import ConnectOptions, Transport
from hostbatch.transport.registry import get_transport


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with FleetThread(2) as started:
        yield started


def _fleet_host(fleet: Fleet, name: str, index: int = 0) -> Host:
    node = fleet.hosts[index]
    credentials = Credentials(fleet.username, key_file=str(fleet.client_key))
    return Host(name, node.address, node.port, credentials)


def _fleet_options(fleet: Fleet) -> RunOptions:
    return RunOptions(
        Limits(), ConnectOptions(connect_timeout=5, known_hosts=str(fleet.known_hosts))
    )


def test_get_from_hosts_named_alike_keeps_both(fleet: Fleet, tmp_path: Path) -> None:
    for index, node in enumerate(fleet.hosts):
        (node.root / "id.txt").write_text(f"host {index}")
    hosts = [_fleet_host(fleet, "a/b", 0), _fleet_host(fleet, "a_b", 1)]
    out = tmp_path / "out"
    results = get("id.txt", out, hosts=hosts, options=_fleet_options(fleet))
    assert all(r.ok for r in results.values()), results
    assert (out / "a%2Fb" / "id.txt").read_text() == "host 0"
    assert (out / "a_b" / "id.txt").read_text() == "host 1"
    assert sorted(p.name for p in out.iterdir()) == ["a%2Fb", "a_b"]


def test_megabytes_without_a_newline_are_held_at_most_the_cap(fleet: Fleet) -> None:
    out = io.StringIO()
    render = LiveRenderer(out, io.StringIO(), width=1)
    held: list[int] = []
    received = 0

    def sink(event: Event) -> None:
        nonlocal received
        render(event)
        if isinstance(event, OutputChunk):
            received += len(event.data)
            held.append(sum(map(len, render.partial.values())))

    size = 20 * 1024 * 1024
    command = f"head -c {size} /dev/zero | tr '\\0' x"
    result = run(
        command, hosts=[_fleet_host(fleet, "h")], options=_fleet_options(fleet), on_event=sink
    )["h"]
    assert result.ok, result.error
    assert received == size and held and max(held) <= render.cap
    lines = out.getvalue().split("\n")[:-1]
    assert len(lines) == -(-size // render.cap)
    assert sum(len(line) - len("h | ") for line in lines) == size


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warnings_logged() -> Iterator[list[logging.LogRecord]]:
    """Warnings of the ``hostbatch`` logger during the test."""
    handler = _Records()
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.WARNING
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("transport", ["asyncssh", "paramiko"])
def test_malformed_known_hosts_lines_are_skipped_with_one_warning_each(
    sshd: OpenSSHServer, tmp_path: Path, transport: str, warnings_logged: list[logging.LogRecord]
) -> None:
    known_hosts = tmp_path / "known_hosts"
    bad = ["single-field", "@bogus-marker 127.0.0.9 ssh-ed25519 AAAA", "|1|x|y ssh-ed25519 AAAA"]
    known_hosts.write_text("\n".join([*bad, sshd.known_hosts.read_text().strip(), ""]))
    credentials = Credentials(sshd.username, key_file=str(sshd.client_key))
    hosts = [Host(f"h{i}", sshd.host, sshd.port, credentials) for i in range(2)]
    connect = ConnectOptions(connect_timeout=5, known_hosts=str(known_hosts))
    options = RunOptions(Limits(), connect, transport=transport)
    for _ in range(2):
        results = run("echo in", hosts=hosts, options=options)
        assert all(r.ok and r.stdout == b"in\n" for r in results.values()), results
    # (fields, not the text: the log filter masks any registered secret, even "p")
    where = [
        (getattr(r, "known_hosts", None), getattr(r, "known_hosts_line", None))
        for r in warnings_logged
        if hasattr(r, "known_hosts")
    ]
    assert sorted(where) == [(str(known_hosts), n) for n in (1, 2, 3)]


def _sshd_options(sshd: OpenSSHServer, transport: str) -> RunOptions:
    connect = ConnectOptions(connect_timeout=5, known_hosts=str(sshd.known_hosts))
    return RunOptions(Limits(), connect, transport=transport)


def _sshd_host(sshd: OpenSSHServer, name: str = "h0") -> Host:
    return Host(
        name, sshd.host, sshd.port, Credentials(sshd.username, key_file=str(sshd.client_key))
    )


@pytest.mark.parametrize("transport", ["asyncssh", "paramiko"])
def test_get_of_a_device_or_fifo_fails_that_host_only(
    sshd: OpenSSHServer, sshd_remote_dir: Path, tmp_path: Path, transport: str
) -> None:
    os.mkfifo(sshd_remote_dir / "pipe")  # opening it would block the SFTP server
    (sshd_remote_dir / "plain.txt").write_text("fine")
    options = _sshd_options(sshd, transport)
    out = tmp_path / "out"
    for source in ("/dev/zero", str(sshd_remote_dir / "pipe")):
        result = asyncio.run(
            asyncio.wait_for(
                transfer_async(
                    Transfer("get", (source,), str(out)), [_sshd_host(sshd)], options=options
                ),
                30,
            )
        )["h0"]
        assert result.status is Status.TRANSFER_FAILED
        assert f"get {source}: not a regular file" in (result.error or "")
    assert not list(out.rglob("*zero*")) and not list(out.rglob("*pipe*"))
    fine = get(str(sshd_remote_dir / "plain.txt"), out, hosts=[_sshd_host(sshd)], options=options)
    assert fine["h0"].ok and (out / "h0" / "plain.txt").read_text() == "fine"


def _dense(path: Path, mebibytes: int) -> None:
    block = os.urandom(1024 * 1024)
    with path.open("wb") as handle:
        for _ in range(mebibytes):
            handle.write(block)


def _tasks_left() -> list[asyncio.Task[object]]:
    """Tasks of this loop but the current one and asyncssh's SFTP session reader."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    return [task for task in others if "recv_packets" not in repr(task.get_coro())]


async def _cancel_a_get(transport: Transport, remote: Path, local: Path) -> float:
    """Start a get, cancel it once bytes arrived; seconds the cancellation took."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(transport.get(str(remote), local, lambda _d, _t: None))
    deadline = loop.time() + 30
    while not (local.exists() and local.stat().st_size > 0):
        assert loop.time() < deadline and not task.done(), "the get never started"
        await asyncio.sleep(0.002)
    task.cancel()
    started = loop.time()
    with pytest.raises(asyncio.CancelledError):
        await task
    return loop.time() - started


@pytest.mark.parametrize("transport_name", ["asyncssh", "paramiko"])
def test_a_cancelled_get_stops_copying_and_the_connection_still_works(
    sshd: OpenSSHServer, sshd_remote_dir: Path, tmp_path: Path, transport_name: str
) -> None:
    remote, local = sshd_remote_dir / "big.bin", tmp_path / "big.part"
    _dense(remote, 256)

    async def scenario() -> None:
        connect = ConnectOptions(connect_timeout=5, known_hosts=str(sshd.known_hosts))
        transport = get_transport(transport_name)(_sshd_host(sshd), connect)
        await transport.connect()
        try:
            assert await _cancel_a_get(transport, remote, local) < 2
            deadline = asyncio.get_running_loop().time() + 10
            while left := _tasks_left():  # asyncssh: requests cancelled, the file closed
                assert asyncio.get_running_loop().time() < deadline, left
                await asyncio.sleep(0.01)
            while transport_name == "paramiko" and local.exists():  # its thread gave up
                assert asyncio.get_running_loop().time() < deadline, "paramiko copies on"
                await asyncio.sleep(0.01)
            info = await transport.stat(str(remote))  # a new SFTP session if need be
            assert info is not None and info.size == 256 * 1024 * 1024
        finally:
            await transport.close()

    asyncio.run(scenario())


def test_put_memory_is_bounded_when_the_server_advertises_4_mib_writes(
    fleet: Fleet, tmp_path: Path
) -> None:
    """asyncssh's SFTP server (the fleet's) advertises 4 MiB writes; asyncssh's put then
    kept 8 x 4 MiB in flight per host (peak RSS ~530 MB here for 48 MiB to 5 hosts). The
    CLI's peak RSS, against the same CLI putting one byte (its imports, journal, etc.)."""
    inventory = fleet.write_inventory(tmp_path / "inventory", auth="key")
    baseline = _put_peak_rss(tmp_path, inventory, fleet, size_mib=0)
    peak = _put_peak_rss(tmp_path, inventory, fleet, size_mib=48)
    grown = (peak - baseline) // 1024
    assert grown < 100, f"peak RSS {peak // 1024} MB, {grown} MB over a 1-byte put"


def _put_peak_rss(tmp_path: Path, inventory: Path, fleet: Fleet, *, size_mib: int) -> int:
    """Peak RSS (KiB) of ``hostbatch put`` of a *size_mib* MiB file (0: one byte) to every
    fleet host."""
    source = tmp_path / f"payload-{size_mib}.bin"
    if size_mib:
        _dense(source, size_mib)
    else:
        source.write_bytes(b"x")
    argv = [sys.executable, "-c", "from hostbatch.cli.app import main; main()", "put"]
    argv += ["-i", str(inventory), "--known-hosts", str(fleet.known_hosts), "--ssh-config", ""]
    argv += ["-h", "all", str(source), f"rss-{uuid.uuid4().hex[:8]}.bin"]
    # Two malloc arenas: the figure is our buffers, not glibc's per-thread arenas.
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    with (tmp_path / "stderr").open("w+") as errors:
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        assert child.returncode == 0, (tmp_path / "stderr").read_text()
    return int(usage.ru_maxrss)


def _inventory(sshd: OpenSSHServer, path: Path) -> Path:
    path.write_text(
        f"[h0]\nhostname = {sshd.host}\nport = {sshd.port}\nusername = {sshd.username}\n"
        f"key_file = {sshd.client_key}\n"
    )
    return path


def _kill_once_growing(directory: Path, pattern: str, child: subprocess.Popen[bytes]) -> Path:
    """SIGKILL *child* once a file matching *pattern* has data; that file."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        for candidate in directory.glob(pattern):
            with contextlib.suppress(OSError):
                if candidate.stat().st_size > 0:
                    child.kill()
                    child.wait(timeout=10)
                    return candidate
        time.sleep(0.005)
    child.kill()
    child.wait(timeout=10)
    pytest.fail(f"no growing {pattern} (exit code {child.returncode})")


def test_a_killed_puts_temporary_is_removed_by_the_next_put_there(
    sshd: OpenSSHServer, sshd_remote_dir: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.img"
    _dense(big, 128)
    argv = [sys.executable, "-c", "from hostbatch.cli.app import main; main()", "put"]
    argv += ["-i", str(_inventory(sshd, tmp_path / "inv.ini")), "--known-hosts"]
    argv += [str(sshd.known_hosts), "--ssh-config", "", str(big), f"{sshd_remote_dir}/"]
    putter = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    left = _kill_once_growing(sshd_remote_dir, "big.img.hostbatch-*.tmp", putter)
    assert left.exists() and not (sshd_remote_dir / "big.img").exists()  # kill -9 leaves it
    two_hours_ago = time.time() - 7200
    os.utime(left, (two_hours_ago, two_hours_ago))
    running = sshd_remote_dir / "other.bin.hostbatch-0123abcd.tmp"  # a put running now
    running.write_bytes(b"x")
    unrelated = sshd_remote_dir / "notes.hostbatch-backup.tmp"  # not a name of ours
    unrelated.write_bytes(b"y")
    os.utime(unrelated, (two_hours_ago, two_hours_ago))
    small = tmp_path / "small.txt"
    small.write_text("next")
    options = _sshd_options(sshd, "asyncssh")
    result = put(small, f"{sshd_remote_dir}/", hosts=[_sshd_host(sshd)], options=options)["h0"]
    assert result.ok, result.error
    names = sorted(p.name for p in sshd_remote_dir.iterdir())
    assert names == sorted(["small.txt", running.name, unrelated.name])


def _signal_sessions(sshd: OpenSSHServer, number: signal.Signals) -> None:
    """Send *number* to every connection process of *sshd* (not to its listener)."""
    for pid in _descendants(sshd.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)


@pytest.mark.parametrize("transport_name", ["asyncssh", "paramiko"])
def test_a_get_from_a_server_gone_silent_can_be_cancelled(
    sshd: OpenSSHServer, sshd_remote_dir: Path, tmp_path: Path, transport_name: str
) -> None:
    remote, local = sshd_remote_dir / "big.bin", tmp_path / "big.part"
    _dense(remote, 256)

    async def scenario() -> None:
        connect = ConnectOptions(connect_timeout=5, known_hosts=str(sshd.known_hosts))
        transport = get_transport(transport_name)(_sshd_host(sshd), connect)
        await transport.connect()
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(transport.get(str(remote), local, lambda _d, _t: None))
        try:
            deadline = loop.time() + 30
            while not (local.exists() and local.stat().st_size > 0):
                assert loop.time() < deadline and not task.done(), "the get never started"
                await asyncio.sleep(0.002)
            _signal_sessions(sshd, signal.SIGSTOP)  # the server stops answering
            task.cancel()
            started = loop.time()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert loop.time() - started < 1
            deadline = loop.time() + 10
            while transport_name == "paramiko" and local.exists():  # its thread gave up
                assert loop.time() < deadline, "paramiko's thread still waits on the server"
                await asyncio.sleep(0.01)
        finally:
            _signal_sessions(sshd, signal.SIGCONT)
            await transport.close()

    asyncio.run(scenario())
