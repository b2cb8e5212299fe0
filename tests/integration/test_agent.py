"""``--persist``: the per-user agent keeps connections warm (real OpenSSH sshd).

Logins are counted from sshd's own log ("Accepted" lines). Every test has a private
XDG_RUNTIME_DIR, so it talks to an agent of its own, stopped when the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostbatch.engine.executors.agent import REFUSED
from hostbatch.testing.plugin import SshdFactory
from hostbatch.testing.sshd import OpenSSHServer
from tests.fixtures.cli import cli_argv, cli_env, run_cli

Env = dict[str, str]
DEADLINE = 15.0


@pytest.fixture
def agent_env() -> Iterator[Env]:
    """A private runtime directory (enterable by others, as /run/user/UID is not, so the
    uid test reaches the socket); the agent started under it is stopped afterwards."""
    runtime = tempfile.mkdtemp(prefix="hb-agent-", dir="/tmp")
    os.chmod(runtime, 0o711)
    env = {"XDG_RUNTIME_DIR": runtime}
    try:
        yield env
    finally:
        stop = run_cli("agent", "stop", env=env)
        shutil.rmtree(runtime, ignore_errors=True)
        assert stop.returncode == 0, stop.stderr


def inventory(server: OpenSSHServer, path: Path, names: tuple[str, ...] = ("h1", "h2")) -> Path:
    path.write_text(
        "".join(
            f"[{name}]\nhostname = 127.0.0.1\nport = {server.port}\n"
            f"username = {server.username}\nkey_file = {server.client_key}\n\n"
            for name in names
        )
    )
    return path


def common(server: OpenSSHServer, inv: Path) -> tuple[str, ...]:
    return ("-i", str(inv), "--ssh-config", "", "--known-hosts", str(server.known_hosts))


def logins(server: OpenSSHServer) -> int:
    return server.log_text().count("Accepted ")


def wait_until(check: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_logins(server: OpenSSHServer, count: int) -> None:
    wait_until(lambda: logins(server) >= count, f"{count} logins")
    assert logins(server) == count


def normalized(result: subprocess.CompletedProcess[str]) -> tuple[int, list[str], list[str]]:
    """Exit code and sorted output lines, the summary's elapsed time taken out."""
    stderr = re.sub(r" in [0-9.]+s", " in Xs", result.stderr)
    stderr = re.sub(r"\brun \d+ recorded|--rerun \d+:", "run N", stderr)  # the journal's ids
    return result.returncode, sorted(result.stdout.splitlines()), sorted(stderr.splitlines())


def test_second_run_makes_no_login_and_equals_a_cold_run(
    sshd: OpenSSHServer, agent_env: Env, tmp_path: Path
) -> None:
    args = (*common(sshd, inventory(sshd, tmp_path / "inv.ini")), "-h", "all")
    command = ("--", "echo out-$((6*7)); echo err >&2; exit 3")
    before = logins(sshd)
    cold = run_cli("run", *args, *command, env=agent_env)
    wait_logins(sshd, before + 2)
    first = run_cli("run", *args, "--persist", *command, env=agent_env)
    wait_logins(sshd, before + 4)
    second = run_cli("run", *args, "--persist", *command, env=agent_env)
    assert logins(sshd) == before + 4  # the second --persist run logged in nowhere
    assert cold.returncode == 1 and "h1 | out-42" in cold.stdout and "h2 ! err" in cold.stderr
    assert normalized(first) == normalized(cold) == normalized(second)
    journal = tmp_path / "journal.sqlite"
    rows = [
        journal_rows(
            run_cli("run", *args, "--journal", str(journal), *flag, *command, env=agent_env)
        )
        for flag in ((), ("--persist",))
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 2  # the journal keeps the same rows
    status = run_cli("agent", "status", env=agent_env)
    assert status.returncode == 0 and "2 open connection(s)" in status.stdout
    assert re.search(rf"^h1 +127\.0\.0\.1:{sshd.port} +{sshd.username} ", status.stdout, re.M)
    json_cold = run_cli("run", *args, "--json", "--", "hostname", env=agent_env)
    json_warm = run_cli("run", *args, "--json", "--persist", "--", "hostname", env=agent_env)
    assert normalized_json(json_warm.stdout) == normalized_json(json_cold.stdout)


def journal_rows(result: subprocess.CompletedProcess[str]) -> list[tuple[object, ...]]:
    """The journal's host rows of the run *result* recorded (times left out)."""
    run_id = re.search(r"\brun (\d+) recorded", result.stderr)
    assert run_id is not None, result.stderr
    journal = result.args[result.args.index("--journal") + 1]
    shown = run_cli("show", run_id[1], "--journal", journal, "--json")
    hosts = json.loads(shown.stdout)["hosts"]
    keep = ("host", "status", "exit_status", "stdout", "stderr", "error")
    assert hosts and all(set(keep) <= set(host) for host in hosts), hosts
    return sorted(tuple(host.get(key) for key in keep) for host in hosts)


def normalized_json(text: str) -> list[str]:
    return sorted(
        re.sub(r'"(started|ended|elapsed)": [0-9.e+-]+', "", line) for line in text.splitlines()
    )


def test_stop_then_restart_and_idle_expiry(
    sshd: OpenSSHServer, agent_env: Env, tmp_path: Path, sshd_remote_dir: Path
) -> None:
    args = (*common(sshd, inventory(sshd, tmp_path / "inv.ini", ("h1",))), "-h", "h1")
    before = logins(sshd)
    assert run_cli("run", *args, "--persist", "--", "true", env=agent_env).returncode == 0
    pid = run_cli("agent", "status", env=agent_env).stdout.split()[2]
    stopped = run_cli("agent", "stop", env=agent_env)
    assert stopped.returncode == 0 and "agent stopped" in stopped.stderr
    assert "no agent is running" in run_cli("agent", "status", env=agent_env).stdout
    # a new agent (another pid) logs in again; HOSTBATCH_PERSIST sets a 2 s idle limit.
    # Its run waits for a file, so the agent is in use while its status is read: a CLI
    # started after the run ended could come later than 2 s on a busy machine.
    env = {**agent_env, "HOSTBATCH_PERSIST": "2s"}
    release = sshd_remote_dir / "release"
    argv = cli_argv("run", *args, "--", f"until [ -e {release} ]; do sleep 0.05; done")
    process = subprocess.Popen(
        argv, env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_logins(sshd, before + 2)
        status = run_cli("agent", "status", env=agent_env).stdout
        assert "idle limit 2s" in status and status.split()[2] != pid
        began = time.monotonic()  # the agent's last use ends after this
        release.touch()
        _, stderr = process.communicate(timeout=DEADLINE)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    wait_until(lambda: "no agent" in run_cli("agent", "status", env=agent_env).stdout, "idle exit")
    assert time.monotonic() - began > 2.0  # it waited out its idle limit first


def test_an_idle_connection_closes_while_the_agent_serves_others(
    sshd: OpenSSHServer, agent_env: Env, tmp_path: Path
) -> None:
    args = common(sshd, inventory(sshd, tmp_path / "inv.ini"))
    env = {**agent_env, "HOSTBATCH_PERSIST": "2s"}
    assert run_cli("run", *args, "-h", "h1", "--", "true", env=env).returncode == 0
    began = time.monotonic()
    status = ""

    def h1_expired() -> bool:
        nonlocal status
        assert run_cli("run", *args, "-h", "h2", "--", "true", env=env).returncode == 0
        status = run_cli("agent", "status", env=agent_env).stdout
        return not re.search(r"^h1 ", status, re.M)

    wait_until(h1_expired, "h1's connection to expire")
    assert time.monotonic() - began > 2.0
    assert "1 open connection(s)" in status and re.search(r"^h2 ", status, re.M)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def drop_sessions(server: OpenSSHServer) -> None:
    """Kill every sshd session process: the server drops the connections."""
    for pid in _descendants(server.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _descendants(server.pid), "sessions gone")


@pytest.mark.parametrize("transport", ["asyncssh", "paramiko"])
def test_dropped_connection_is_reopened_and_named_with_host_key_checks(
    sshd_factory: SshdFactory, agent_env: Env, tmp_path: Path, transport: str
) -> None:
    server = sshd_factory()
    args = (*common(server, inventory(server, tmp_path / "inv.ini", ("h1",))), "-h", "h1")
    args = (*args, "--transport", transport)
    run = ("run", *args, "--persist", "--", "echo", "alive")
    assert run_cli(*run, env=agent_env).returncode == 0
    wait_logins(server, 1)
    drop_sessions(server)
    again = run_cli(*run, env=agent_env)
    assert again.returncode == 0 and "h1 | alive" in again.stdout
    assert "reconnected: h1" in again.stderr
    wait_logins(server, 2)
    # the key known_hosts holds for the host changes: the warm connection is not reused
    # and the new login is checked, as a cold run's would be
    other = sshd_factory()
    known = server.known_hosts.read_text()
    server.known_hosts.write_text(
        known.replace(server.host_key_line.split()[1], other.host_key_line.split()[1])
    )
    rejected = run_cli(*run, env=agent_env)
    assert rejected.returncode == 3 and "host key" in (rejected.stdout + rejected.stderr).lower()
    assert logins(server) == 2


def test_ctrl_c_cancels_in_the_agent_and_keeps_connections(
    sshd: OpenSSHServer, agent_env: Env, tmp_path: Path, sshd_remote_dir: Path
) -> None:
    args = (*common(sshd, inventory(sshd, tmp_path / "inv.ini", ("h1",))), "-h", "h1")
    marker = sshd_remote_dir / "started"
    before = logins(sshd)
    assert run_cli("run", *args, "--persist", "--", "true", env=agent_env).returncode == 0
    argv = cli_argv("run", *args, "--persist", "--", f"touch {marker}; exec sleep 417")
    process = subprocess.Popen(
        argv, env=cli_env(agent_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(marker.exists, "the remote command to start")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=DEADLINE)
    finally:
        process.kill()
    assert process.returncode == 130 and "interrupted" in stderr
    assert "Traceback" not in stderr
    wait_until(lambda: b"sleep 417" not in _processes(), "the remote sleep to end")
    status = run_cli("agent", "status", env=agent_env).stdout
    assert "1 open connection(s)" in status
    assert run_cli("run", *args, "--persist", "--", "true", env=agent_env).returncode == 0
    assert logins(sshd) == before + 1  # still the first login


def _processes() -> bytes:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, check=True).stdout


REFUSAL_PROBE = """
import pickle, socket, struct, sys
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
if sys.argv[2] == "send":
    data = pickle.dumps(("status",))
    sock.sendall(struct.pack("!I", len(data)) + data)
reply = b""
while chunk := sock.recv(65536):
    reply += chunk
print(pickle.loads(reply[4:]))
"""


def test_another_uid_is_refused_by_the_peer_check(
    sshd: OpenSSHServer, agent_env: Env, tmp_path: Path
) -> None:
    args = (*common(sshd, inventory(sshd, tmp_path / "inv.ini", ("h1",))), "-h", "h1")
    assert run_cli("run", *args, "--persist", "--", "true", env=agent_env).returncode == 0
    directory = Path(agent_env["XDG_RUNTIME_DIR"]) / "hostbatch"
    socket_file = directory / "agent.sock"
    assert directory.stat().st_mode & 0o777 == 0o700
    assert socket_file.stat().st_mode & 0o777 == 0o600
    # open the way, so what stops the other uid is the agent's SO_PEERCRED check
    directory.chmod(0o711)
    socket_file.chmod(0o666)
    try:
        other, mine = _probe_as_nobody_and_as_me(socket_file)
    finally:
        directory.chmod(0o700)  # private again, so the fixture can stop the agent
    assert other.returncode == 0, other.stderr
    assert REFUSED in other.stdout and "open connection" not in other.stdout
    assert "'status'" in mine.stdout  # the same request from this uid is answered


def _probe_as_nobody_and_as_me(
    socket_file: Path,
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    probe = [python, "-I", "-c", REFUSAL_PROBE, str(socket_file)]
    # the agent answers another uid at once, before reading (what it sends is not read)
    other = subprocess.run(
        [*probe, "listen"],
        user="nobody",
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    mine = subprocess.run(
        [*probe, "send"], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    return other, mine


def test_bad_duration_is_one_line_exit_2(agent_env: Env) -> None:
    result = run_cli("run", "-h", "x", "--persist", "soon", "--", "true", env=agent_env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "hostbatch: error: --persist needs a positive duration like 90s, 10m or 1h "
        "(got 'soon'); a bare --persist goes before -- or last"
    ]


def test_put_and_get_persist_use_the_clients_relative_paths(
    sshd: OpenSSHServer, agent_env: Env, tmp_path: Path, sshd_remote_dir: Path
) -> None:
    inventory(sshd, tmp_path / "inv.ini", ("h1",))
    shutil.copy(sshd.known_hosts, tmp_path / "kh")
    (tmp_path / "payload.txt").write_text("warm payload\n")
    args = ("-i", "inv.ini", "--ssh-config", "", "--known-hosts", "kh", "-h", "h1")
    remote = str(sshd_remote_dir / "payload.txt")

    def run(*words: str) -> subprocess.CompletedProcess[str]:
        argv = cli_argv(*words)
        return subprocess.run(
            argv, cwd=tmp_path, env=cli_env(agent_env), capture_output=True, text=True, check=False
        )

    before = logins(sshd)
    taken = run("put", *args, "--persist", "payload.txt", remote)  # the path as DURATION
    assert taken.returncode == 2 and "(got 'payload.txt'); a bare --persist goes" in taken.stderr
    put = run("put", *args, "payload.txt", remote, "--persist")
    assert put.returncode == 0, put.stderr
    got = run("get", *args, "--persist=5m", remote, "fetched")
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "fetched" / "h1" / "payload.txt").read_text() == "warm payload\n"
    assert logins(sshd) == before + 1  # the get went over the put's connection
