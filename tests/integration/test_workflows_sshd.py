"""--stdin, --script and --env against a real OpenSSH sshd (on this machine, so the remote
temporary directories can be checked from here) and the fleet, through the API and CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, run
from hostbatch.engine.limits import Limits
from hostbatch.models import Command, Credentials, Host, HostResult, Status
from hostbatch.testing import FleetThread
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions
from tests.fixtures.cli import cli_argv, cli_env, run_cli

pytestmark = pytest.mark.sshd
TRANSPORTS = ["asyncssh", "paramiko"]


def sshd_hosts(sshd: OpenSSHServer, count: int = 2) -> list[Host]:
    credentials = Credentials(username=sshd.username, key_file=str(sshd.client_key))
    return [Host(f"h{i}", sshd.host, sshd.port, credentials) for i in range(1, count + 1)]


def sshd_options(sshd: OpenSSHServer, transport: str = "asyncssh", **limits: object) -> RunOptions:
    connect = ConnectOptions(connect_timeout=10, known_hosts=str(sshd.known_hosts))
    return RunOptions(Limits(**limits), connect, transport)  # type: ignore[arg-type]


@pytest.fixture
def sshd_inventory(sshd: OpenSSHServer, tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "".join(
            f"[h{i}]\nhostname = 127.0.0.1\nport = {sshd.port}\nusername = {sshd.username}\n"
            f"key_file = {sshd.client_key}\n\n"
            for i in (1, 2)
        )
    )
    return inventory


def cli_common(sshd: OpenSSHServer, inventory: Path) -> tuple[str, ...]:
    return ("-i", str(inventory), "--ssh-config", "", "--known-hosts", str(sshd.known_hosts))


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


def printed_dirs(results: dict[str, HostResult]) -> list[Path]:
    """The remote script directories the scripts printed as their first line ($0)."""
    return [Path(r.stdout_text.splitlines()[0]).parent for r in results.values()]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stdin_bytes_arrive_identical_on_every_host(
    sshd: OpenSSHServer, payload: Path, transport: str
) -> None:
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    command = Command("sha256sum; cat >/dev/null", stdin=str(payload))
    results = run(command, sshd_hosts(sshd, 3), options=sshd_options(sshd, transport))
    for result in results.values():
        assert result.ok, result.error
        assert result.stdout_text.split()[0] == digest


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stdin_is_streamed_to_the_fleet_too(payload: Path, tmp_path: Path, transport: str) -> None:
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    with FleetThread(3) as fleet:
        inventory = fleet.write_inventory(tmp_path / "inventory", auth="key")
        connect = ConnectOptions(known_hosts=str(fleet.known_hosts))
        results = run(
            Command("sha256sum", stdin=str(payload)),
            patterns="all",
            inventory=inventory,
            options=RunOptions(connect=connect, transport=transport),
        )
    assert len(results) == 3
    assert all(r.ok for r in results.values())
    assert {r.stdout_text.split()[0] for r in results.values()} == {digest}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_command_may_stop_reading_stdin_early(
    sshd: OpenSSHServer, payload: Path, transport: str
) -> None:
    command = Command("head -c 10 | wc -c", stdin=str(payload))
    results = run(command, sshd_hosts(sshd, 2), options=sshd_options(sshd, transport))
    assert [r.stdout.strip() for r in results.values()] == [b"10", b"10"]
    assert all(r.ok for r in results.values())


def test_without_stdin_the_command_reads_eof(sshd: OpenSSHServer) -> None:
    results = run("cat; echo end", sshd_hosts(sshd, 1), options=sshd_options(sshd))
    assert results["h1"].stdout == b"end\n"


def test_cli_stdin_from_a_pipe(sshd: OpenSSHServer, sshd_inventory: Path) -> None:
    done = run_cli(
        "run",
        *cli_common(sshd, sshd_inventory),
        "-h",
        "all",
        "--stdin",
        "-",
        "--",
        "wc -c",
        input="x" * 100_000,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("100000") == 2


def test_script_runs_with_args_and_env_and_is_removed(sshd: OpenSSHServer, tmp_path: Path) -> None:
    script = tmp_path / "deploy.py"
    script.write_text(
        "#!/usr/bin/env python3\nimport os, sys\n"
        "print(sys.argv[0]); print(sys.argv[1:]); print(os.environ['GREETING'])\n"
    )
    command = Command("one 'two words'", script=str(script), env=(("GREETING", "it's $HOME"),))
    results = run(command, sshd_hosts(sshd), options=sshd_options(sshd))
    for result in results.values():
        assert result.ok, (result.error, result.stderr_text)
        lines = result.stdout_text.splitlines()
        assert lines[0].endswith("/deploy.py")
        assert lines[1:] == ["['one', 'two words']", "it's $HOME"]
    dirs = printed_dirs(results)
    assert len(set(dirs)) == 2  # a private directory per host
    assert not any(d.exists() for d in dirs)


def test_script_is_removed_after_failure_and_timeout(sshd: OpenSSHServer, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text('#!/bin/sh\necho "$0"\n[ "$1" = fail ] && exit 4\nexec sleep 60\n')
    hosts = sshd_hosts(sshd, 1)
    failed = run(Command("fail", script=str(script)), hosts, options=sshd_options(sshd))
    assert failed["h1"].status is Status.FAILED
    assert failed["h1"].exit_status == 4
    timed_out = run(
        Command("wait", script=str(script)), hosts, options=sshd_options(sshd, command_timeout=1)
    )
    assert timed_out["h1"].status is Status.TIMEOUT
    dirs = printed_dirs(failed) + printed_dirs(timed_out)
    assert not any(d.exists() for d in dirs)


def test_script_is_removed_after_ctrl_c(
    sshd: OpenSSHServer, sshd_inventory: Path, tmp_path: Path
) -> None:
    script = tmp_path / "long.sh"
    script.write_text('#!/bin/sh\necho "$0"\nexec sleep 60\n')
    argv = cli_argv("run", *cli_common(sshd, sshd_inventory), "-h", "h1", "--script", str(script))
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env()
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline()  # "h1 | /tmp/hostbatch.XXXX/long.sh"
        remote = Path(line.split("|", 1)[1].strip())
        assert remote.exists()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    deadline = time.monotonic() + 10
    while remote.parent.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not remote.parent.exists()


def test_env_is_visible_without_accept_env(sshd: OpenSSHServer, sshd_inventory: Path) -> None:
    done = run_cli(
        *("--debug", "run", *cli_common(sshd, sshd_inventory), "-h", "h1"),
        *("--env", "A=zq 7781", "--env", "B=x'y", "--", 'echo "$A|$B"'),
    )
    assert done.returncode == 0, done.stderr
    assert "h1 | zq 7781|x'y" in done.stdout
    assert "zq 7781" not in done.stderr  # values are kept out of logs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--env", "1A=x"), "bad --env name '1A'"),
        (("--env", "NOVALUE"), "--env takes NAME=VALUE"),
        (("--script", "/nonexistent/x.sh"), "--script /nonexistent/x.sh: not a readable file"),
        (("--stdin", "/nonexistent/in"), "--stdin /nonexistent/in: No such file"),
        (("--stdin", "-", "-c", "a", "-c", "b"), "take a single command"),
    ],
)
def test_bad_workflow_input_is_one_line_and_exit_2(
    sshd: OpenSSHServer, sshd_inventory: Path, args: tuple[str, ...], message: str
) -> None:
    command = () if "-c" in args else ("--", "true")
    done = run_cli("run", *cli_common(sshd, sshd_inventory), "-h", "h1", *args, *command)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
