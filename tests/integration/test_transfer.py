"""put / get against a real OpenSSH sshd: files, trees, mode/mtime, atomicity, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, get, put
from hostbatch.engine.limits import Limits
from hostbatch.errors import UsageError
from hostbatch.models import Credentials, Host, Status
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions


@pytest.fixture
def remote_dir(sshd_remote_dir: Path) -> Path:
    return sshd_remote_dir


def hosts(sshd: OpenSSHServer, count: int = 2) -> list[Host]:
    creds = Credentials(sshd.username, key_file=str(sshd.client_key))
    return [Host(f"h{i}", sshd.host, sshd.port, creds) for i in range(count)]


def options(sshd: OpenSSHServer) -> RunOptions:
    return RunOptions(
        Limits(), ConnectOptions(connect_timeout=5, known_hosts=str(sshd.known_hosts))
    )


def test_put_file_into_directory(sshd: OpenSSHServer, remote_dir: Path, tmp_path: Path) -> None:
    local = tmp_path / "app.conf"
    local.write_bytes(b"\x00binary\xffcontent" * 1000)
    results = put(local, f"{remote_dir}/", hosts=hosts(sshd, 1), options=options(sshd))
    assert results["h0"].status is Status.OK, results["h0"].error
    assert (remote_dir / "app.conf").read_bytes() == local.read_bytes()
    assert results["h0"].files == 1 and results["h0"].bytes_transferred == 15000
    assert [p.name for p in remote_dir.iterdir()] == ["app.conf"]  # no temp file left


def test_put_tree_preserving_mode_and_mtime(
    sshd: OpenSSHServer, remote_dir: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "conf"
    (tree / "sub").mkdir(parents=True)
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o750)
    (tree / "sub" / "data").write_text("x" * 100)
    os.utime(tree / "sub" / "data", (1_600_000_000, 1_600_000_000))
    results = put(
        tree,
        str(remote_dir),
        hosts=hosts(sshd, 1),
        recursive=True,
        preserve=True,
        verify=True,
        options=options(sshd),
    )
    assert results["h0"].ok, results["h0"].error
    assert (remote_dir / "conf" / "run.sh").stat().st_mode & 0o777 == 0o750
    assert int((remote_dir / "conf" / "sub" / "data").stat().st_mtime) == 1_600_000_000
    assert results["h0"].files == 2


def test_get_writes_under_host_dirs(sshd: OpenSSHServer, remote_dir: Path, tmp_path: Path) -> None:
    (remote_dir / "logs").mkdir()
    (remote_dir / "logs" / "a.log").write_text("alpha")
    (remote_dir / "single.txt").write_text("one")
    out = tmp_path / "out"
    results = get(
        [str(remote_dir / "logs"), str(remote_dir / "single.txt")],
        out,
        hosts=hosts(sshd),
        recursive=True,
        verify=True,
        options=options(sshd),
    )
    assert all(r.ok for r in results.values()), results
    for name in ("h0", "h1"):
        assert (out / name / "logs" / "a.log").read_text() == "alpha"
        assert (out / name / "single.txt").read_text() == "one"


def test_get_directory_without_r_fails_that_host(
    sshd: OpenSSHServer, remote_dir: Path, tmp_path: Path
) -> None:
    results = get(str(remote_dir), tmp_path / "o", hosts=hosts(sshd, 1), options=options(sshd))
    assert results["h0"].status is Status.TRANSFER_FAILED
    assert "is a directory (use -r)" in (results["h0"].error or "")


def test_missing_local_file_fails_before_connecting(tmp_path: Path) -> None:
    unreachable = [Host("nowhere", "127.0.0.1", 1)]
    with pytest.raises(UsageError, match=r"missing.txt: No such file"):
        put(tmp_path / "missing.txt", "/tmp/", hosts=unreachable)
    (tmp_path / "d").mkdir()
    with pytest.raises(UsageError, match=r"is a directory \(use -r\)"):
        put(tmp_path / "d", "/tmp/", hosts=unreachable)


def test_unlistable_local_directory_fails_before_connecting(tmp_path: Path) -> None:
    # A tree deeper than PATH_MAX cannot be listed, even by root (chmod 0 would not do).
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(25):
        os.mkdir("d" * 200, dir_fd=fd)
        inner = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    with pytest.raises(UsageError, match="unreadable directory"):
        put(tmp_path / ("d" * 200), "/tmp/", hosts=[Host("x", "127.0.0.1", 1)], recursive=True)


def test_remote_errors_fail_only_that_host(
    sshd: OpenSSHServer, remote_dir: Path, tmp_path: Path
) -> None:
    local = tmp_path / "f.txt"
    local.write_text("data")
    (remote_dir / "ro").mkdir()
    (remote_dir / "ro").chmod(0o555)
    good, denied, missing = hosts(sshd, 3)
    results_ok = put(local, f"{remote_dir}/", hosts=[good], options=options(sshd))
    results_denied = put(local, f"{remote_dir}/ro/", hosts=[denied], options=options(sshd))
    results_missing = put(local, f"{remote_dir}/nope/", hosts=[missing], options=options(sshd))
    assert results_ok["h0"].ok
    assert results_denied["h1"].status is Status.TRANSFER_FAILED
    assert "ermission denied" in (results_denied["h1"].error or "")
    assert "no such directory" in (results_missing["h2"].error or "")


def test_host_names_and_remote_names_cannot_escape(tmp_path: Path) -> None:
    from hostbatch.engine.transfer import host_directory, safe_name
    from hostbatch.errors import RemoteFileError

    assert host_directory(tmp_path, "../../etc").parent == tmp_path
    assert host_directory(tmp_path, "..").parent == tmp_path
    assert host_directory(tmp_path, "a/b").name == "a_b"
    for bad in ("..", ".", "", "a/b", "x\0y"):
        with pytest.raises(RemoteFileError, match="unsafe"):
            safe_name(bad)


def _write_dense(path: Path, mebibytes: int) -> None:
    """Real (not sparse) data: a sparse file would be copied as holes, in no time."""
    block = os.urandom(1024 * 1024)
    with path.open("wb") as handle:
        for _ in range(mebibytes):
            handle.write(block)


def _kill_when(path_glob: Path, pattern: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(p.stat().st_size > 1_000_000 for p in path_glob.glob(pattern)):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            return
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the transfer never started")


def _cli(sshd: OpenSSHServer, inventory: Path, *args: str) -> subprocess.Popen[bytes]:
    code = "from hostbatch.cli.app import main; main()"
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            *args[:1],
            "-i",
            str(inventory),
            "--known-hosts",
            str(sshd.known_hosts),
            "--ssh-config",
            "",
            *args[1:],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_killed_transfers_leave_no_final_name_file(
    sshd: OpenSSHServer, remote_dir: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.img"
    _write_dense(big, 512)
    inventory = tmp_path / "inv.ini"
    inventory.write_text(
        f"[h0]\nhostname = 127.0.0.1\nport = {sshd.port}\n"
        f"username = {sshd.username}\nkey_file = {sshd.client_key}\n"
    )
    putter = _cli(sshd, inventory, "put", str(big), f"{remote_dir}/")
    _kill_when(remote_dir, "big.img.hostbatch-*.tmp", putter)
    assert not (remote_dir / "big.img").exists()
    # get: the remote file is complete; kill the download midway
    _write_dense(remote_dir / "whole.img", 512)
    out = tmp_path / "out"
    getter = _cli(sshd, inventory, "get", str(remote_dir / "whole.img"), str(out))
    _kill_when(out / "h0", ".whole.img.hostbatch-*.tmp", getter)
    assert not (out / "h0" / "whole.img").exists()


@pytest.fixture
def tiny_disk(remote_dir: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs inside the remote dir: a real full disk (needs root to mount)."""
    mount = remote_dir / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_remote_disk_fails_that_host_with_its_message(
    sshd: OpenSSHServer, tiny_disk: Path, remote_dir: Path, tmp_path: Path
) -> None:
    local = tmp_path / "large.bin"
    _write_dense(local, 4)
    small = tmp_path / "small.txt"
    small.write_text("fits")
    full = put(local, f"{tiny_disk}/", hosts=hosts(sshd, 1), options=options(sshd))["h0"]
    assert full.status is Status.TRANSFER_FAILED
    assert "put" in (full.error or "") and "large.bin" in (full.error or "")
    assert "no space left on the remote filesystem" in (full.error or "")
    assert not (tiny_disk / "large.bin").exists()
    assert list(tiny_disk.iterdir()) == []  # the temporary file was removed too
    fits = put(small, f"{remote_dir}/", hosts=hosts(sshd, 1), options=options(sshd))["h0"]
    assert fits.ok
