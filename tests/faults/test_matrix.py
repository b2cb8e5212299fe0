"""The fault matrix (issue #11): every fault that hostbatch handles today, against real
servers, each time checking that every OTHER host's result is intact and that nothing
hangs (each run is timed against a deadline derived from the timeouts it sets).

Servers: the in-process fleet with its misbehaving hosts and the real OpenSSH sshd (see
conftest.py). Processes are watched through /proc, always with a deadline.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest

import hostbatch
from hostbatch import ConnectOptions, HostResult, Limits, RunOptions, Status
from hostbatch.inventory import Inventory, load_inventory
from tests.faults.conftest import GOOD_FLEET_HOSTS, SLOW_DELAY, Mixed, write_private

pytestmark = pytest.mark.timeout(60)

CONNECT_TIMEOUT = 2.0  # covers good hosts' logins too, on a busy machine
SLACK = 8.0  # scheduling on 2 cores shared with other test runs
CLI_STARTUP = 6.0  # interpreter and imports of a CLI subprocess, on a busy machine
GOOD = (*GOOD_FLEET_HOSTS, "real01")
# One command for both kinds of host: the fleet names itself, the sshd does not.
BY_KIND = 'case "$HOSTBATCH_FLEET_HOST" in "") {real};; *) {fleet};; esac'
ECHO = "echo ok-$HOSTBATCH_FLEET_HOST"


def expected_ok(name: str) -> bytes:
    return f"ok-{'' if name == 'real01' else name}\n".encode()


def by_kind(real: str, fleet: str = ECHO) -> str:
    return BY_KIND.format(real=real, fleet=fleet)


# --- running hostbatch ----------------------------------------------------------------


def inventory_of(mixed: Mixed) -> Inventory:
    return load_inventory([mixed.inventory], environ={}, ssh_config=None)


def run_options(
    mixed: Mixed,
    *,
    command_timeout: float | None = None,
    output_limit: int = 1 << 20,
    known_hosts: Path | None = None,
) -> RunOptions:
    limits = Limits(command_timeout=command_timeout, output_limit=output_limit)
    connect = ConnectOptions(
        connect_timeout=CONNECT_TIMEOUT,
        known_hosts=str(known_hosts or mixed.known_hosts),
        use_agent=False,
    )
    return RunOptions(limits, connect)


def api_run(
    mixed: Mixed, command: str, hosts: Sequence[str], options: RunOptions | None = None
) -> tuple[dict[str, HostResult], float]:
    began = time.monotonic()
    results = hostbatch.run(
        command,
        hosts=list(hosts),
        inventory=inventory_of(mixed),
        options=options or run_options(mixed),
    )
    return results, time.monotonic() - began


def cli_argv(mixed: Mixed, *args: str, inventory: Path | None = None) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from hostbatch.cli.app import main; main()",
        *args,
        "-i",
        str(inventory or mixed.inventory),
        "--ssh-config",
        "",
        *(("--known-hosts", str(mixed.known_hosts)) if args[0] != "hosts" else ()),
    ]


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "HOSTBATCH_INVENTORY"}


def cli(
    mixed: Mixed, *args: str, inventory: Path | None = None
) -> tuple[subprocess.CompletedProcess[bytes], float]:
    began = time.monotonic()
    done = subprocess.run(
        cli_argv(mixed, *args, inventory=inventory),
        capture_output=True,
        timeout=50,
        check=False,
        env=cli_env(),
    )
    return done, time.monotonic() - began


def assert_good(results: dict[str, HostResult], names: Sequence[str] = GOOD) -> None:
    for name in names:
        result = results[name]
        assert result.status is Status.OK, (name, result.error)
        assert (result.exit_status, result.stdout, result.truncated) == (
            0,
            expected_ok(name),
            False,
        ), name


# --- watching processes ---------------------------------------------------------------


def alive(pid: int) -> bool:
    """True while *pid* runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds}s: {what}")
        time.sleep(0.02)


def wait_gone(pids: Sequence[int], seconds: float, what: str) -> None:
    wait_until(lambda: not any(alive(pid) for pid in pids), seconds, f"{what} {list(pids)}")


def read_pid(path: Path, seconds: float = 15.0) -> int:
    """The pid a remote command wrote to *path* (``echo $$ > path``)."""
    wait_until(lambda: path.exists() and path.read_text().endswith("\n"), seconds, f"{path}")
    return int(path.read_text())


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Lines:
    """Reads a pipe line by line in a thread, so a test can wait for a line mid-run."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.lines: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        for line in pipe:
            self.lines.append(line)

    def text(self) -> str:
        return b"".join(self.lines).decode("utf-8", errors="replace")

    def finish(self, seconds: float) -> str:
        self._thread.join(seconds)
        assert not self._thread.is_alive(), "pipe still open"
        return self.text()


StartCli = Callable[[list[str]], tuple[subprocess.Popen[bytes], Lines, Lines]]


@pytest.fixture
def started_cli() -> Iterator[StartCli]:
    """Start CLI subprocesses that the test signals; kill them if the test fails first."""
    started: list[tuple[subprocess.Popen[bytes], Lines, Lines]] = []

    def start(argv: list[str]) -> tuple[subprocess.Popen[bytes], Lines, Lines]:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env()
        )
        assert process.stdout is not None and process.stderr is not None
        started.append((process, Lines(process.stdout), Lines(process.stderr)))
        return started[-1]

    yield start
    for process, out, err in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        out.finish(10)
        err.finish(10)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()


# --- every misbehaviour at once -------------------------------------------------------


def test_every_misbehaviour_in_one_run_api(mixed: Mixed) -> None:
    results, elapsed = api_run(mixed, "echo ok-$HOSTBATCH_FLEET_HOST", ["@fleet", "real01"])
    assert_good(results)
    assert results["node02"].status is Status.UNREACHABLE  # hung before the banner
    assert f"no SSH handshake within {CONNECT_TIMEOUT:g}s" in (results["node02"].error or "")
    assert CONNECT_TIMEOUT * 0.9 <= results["node02"].elapsed < CONNECT_TIMEOUT + SLACK
    assert results["node03"].status is Status.UNREACHABLE  # refused
    assert "refused" in (results["node03"].error or "").lower()
    assert results["node04"].status is Status.AUTH_FAILED
    assert results["node05"].status is Status.DROPPED
    assert results["node05"].stdout == b"ok-node05\n"  # what came before the drop is kept
    slow = results["node06"]
    assert (slow.status, slow.stdout) == (Status.OK, b"ok-node06\n")
    assert slow.elapsed >= SLOW_DELAY
    assert elapsed < CONNECT_TIMEOUT + SLACK


def test_every_misbehaviour_in_one_run_cli(mixed: Mixed) -> None:
    command = "echo ok-$HOSTBATCH_FLEET_HOST"
    done, elapsed = cli(
        mixed, "run", "-g", "fleet,real", "--connect-timeout", f"{CONNECT_TIMEOUT:g}", "-c", command
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 3, err
    for name in GOOD:
        assert f"{name} | {expected_ok(name).decode().strip()}" in out.splitlines(), out
    assert "node06 | ok-node06" in out  # slow, yet complete
    assert re.search(
        r"^9 hosts in \d+\.\d\ds: 5 ok, 2 unreachable, 1 auth failed, 1 connection lost$",
        err,
        re.MULTILINE,
    ), err
    assert re.search(r"^  unreachable +node\[02-03\]$", err, re.MULTILINE), err
    assert re.search(r"^  auth failed +node04$", err, re.MULTILINE), err
    assert re.search(r"^  connection lost +node05$", err, re.MULTILINE), err
    assert "Traceback" not in err
    assert elapsed < CONNECT_TIMEOUT + CLI_STARTUP + SLACK


# --- huge and binary output -----------------------------------------------------------

HUGE = 50_000_000
LIMIT = 65536


def test_huge_output_keeps_a_bounded_tail_api(mixed: Mixed) -> None:
    command = by_kind(f"head -c {HUGE} /dev/zero; printf END")
    options = run_options(mixed, output_limit=LIMIT)
    results, elapsed = api_run(mixed, command, GOOD, options)
    assert_good(results, GOOD_FLEET_HOSTS)
    huge = results["real01"]
    assert (huge.status, huge.truncated) == (Status.OK, True), huge.error
    assert huge.stdout == b"\0" * (LIMIT - 3) + b"END"  # the tail, exactly LIMIT bytes
    assert elapsed < CONNECT_TIMEOUT + SLACK + 10  # 50 MB on a shared machine


def test_huge_output_keeps_a_bounded_tail_cli_json(mixed: Mixed) -> None:
    command = by_kind(f"head -c {HUGE} /dev/zero; printf END")
    selection = ",".join(GOOD)
    done, elapsed = cli(
        mixed, "run", "-h", selection, "--json", "--output-limit", str(LIMIT), "-c", command
    )
    assert done.returncode == 0, done.stderr.decode()
    records = {r["host"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert sorted(records) == sorted(GOOD)
    for name in GOOD_FLEET_HOSTS:
        assert (records[name]["status"], records[name]["stdout"]) == ("ok", f"ok-{name}\n")
        assert records[name]["truncated"] is False
    huge = records["real01"]
    assert (huge["status"], huge["truncated"]) == ("ok", True)
    assert huge["stdout"] == "\0" * (LIMIT - 3) + "END"
    assert "output truncated  real01" in done.stderr.decode()
    assert elapsed < CONNECT_TIMEOUT + CLI_STARTUP + SLACK + 10


BLOB = bytes(range(256))


@pytest.fixture
def blob_path(sshd_remote_dir: Path) -> Path:
    """All 256 byte values in a file both kinds of host can read."""
    path = sshd_remote_dir / "blob.bin"
    path.write_bytes(BLOB * 2)
    path.chmod(0o644)
    return path


def test_binary_output_round_trips_api_and_json(mixed: Mixed, blob_path: Path) -> None:
    command = by_kind(f"cat {blob_path}")
    results, elapsed = api_run(mixed, command, GOOD, run_options(mixed))
    assert_good(results, GOOD_FLEET_HOSTS)
    assert (results["real01"].status, results["real01"].stdout) == (Status.OK, BLOB * 2)
    assert elapsed < CONNECT_TIMEOUT + SLACK

    done, _ = cli(mixed, "run", "-h", ",".join(GOOD), "--json", "-c", command)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    records = {r["host"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert records["real01"]["stdout"] is None
    assert base64.b64decode(records["real01"]["stdout_base64"]) == BLOB * 2
    assert [records[n]["stdout"] for n in GOOD_FLEET_HOSTS] == [
        f"ok-{n}\n" for n in GOOD_FLEET_HOSTS
    ]


# --- host keys --------------------------------------------------------------------------


def test_changed_and_unknown_host_keys_fail_only_those_hosts(mixed: Mixed, tmp_path: Path) -> None:
    fleet = mixed.fleet
    lines = mixed.known_hosts.read_text().splitlines()
    token = {name: f"[127.0.0.1]:{fleet.host(name).port} " for name in ("node07", "node08")}
    other_key = next(
        line for line in lines if line.startswith(f"[127.0.0.1]:{fleet.host('node01').port} ")
    )
    edited = []
    for line in lines:
        if line.startswith(token["node07"]):  # changed: node01's key under node07's name
            edited.append(token["node07"] + other_key.split(" ", 1)[1])
        elif not line.startswith(token["node08"]):  # unknown: node08 left out
            edited.append(line)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("\n".join(edited) + "\n")
    options = run_options(mixed, known_hosts=known_hosts)
    results, elapsed = api_run(mixed, ECHO, GOOD, options)
    assert_good(results, ("node01", "real01"))
    changed, unknown = results["node07"], results["node08"]
    assert changed.status is Status.HOSTKEY and "HOST KEY CHANGED" in (changed.error or "")
    assert unknown.status is Status.HOSTKEY and "not in" in (unknown.error or "")
    assert changed.stdout == unknown.stdout == b""
    assert elapsed < CONNECT_TIMEOUT + SLACK


# --- the remote process is ended: command timeout, Ctrl-C --------------------------------


def test_command_timeout_kills_the_remote_process(mixed: Mixed, sshd_remote_dir: Path) -> None:
    pid_file = sshd_remote_dir / "timeout.pid"
    command = by_kind(f"echo $$ > {pid_file}; exec sleep 300")
    options = run_options(mixed, command_timeout=1.0)
    results, elapsed = api_run(mixed, command, GOOD, options)
    assert_good(results, GOOD_FLEET_HOSTS)
    stuck = results["real01"]
    assert stuck.status is Status.TIMEOUT, stuck.error
    assert elapsed < CONNECT_TIMEOUT + 1.0 + SLACK
    pid = read_pid(pid_file, seconds=1)
    wait_gone([pid], 10, "remote sleep ended after the timeout")


def test_ctrl_c_exits_130_and_ends_remote_commands(
    mixed: Mixed, sshd_remote_dir: Path, started_cli: StartCli
) -> None:
    real_pid = sshd_remote_dir / "int.pid"
    fleet_pid = mixed.fleet.host("node07").root / "int.pid"
    fleet_pid.unlink(missing_ok=True)
    command = by_kind(
        f"echo $$ > {real_pid}; exec sleep 300",
        'if [ "$HOSTBATCH_FLEET_HOST" = node07 ]; then echo $$ > int.pid; exec sleep 300; fi; '
        + ECHO,
    )
    argv = cli_argv(mixed, "run", "-h", "node01,node07,node08,real01", "-c", command)
    process, out, err = started_cli(argv)
    pids = [read_pid(real_pid), read_pid(fleet_pid)]
    # node01 and node08 finish in either order: wait for both lines
    wait_until(
        lambda: all(f"{n} | ok-{n}" in out.text() for n in ("node01", "node08")),
        15,
        "node01's and node08's output",
    )
    assert process.poll() is None
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=SLACK) == 130
    assert time.monotonic() - interrupted < SLACK
    stderr = err.finish(5)
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert out.finish(5).count("ok-node01") == 1
    wait_gone(pids, 10, "remote sleeps ended after Ctrl-C")


# --- a worker process dies ---------------------------------------------------------------


def live_workers(parent: int) -> list[int]:
    return [pid for pid in children(parent) if "spawn_main" in cmdline(pid) and alive(pid)]


def test_killed_worker_fails_only_its_hosts(mixed: Mixed, started_cli: StartCli) -> None:
    # Two shards take every other host: node01 and node08 (shard 0) sleep, node07 and
    # real01 (shard 1) finish at once, so shard 1's worker exits and shard 0's is killed.
    for name in ("node01", "node08"):
        (mixed.fleet.host(name).root / "worker.pid").unlink(missing_ok=True)
    command = by_kind(
        ECHO,
        'case "$HOSTBATCH_FLEET_HOST" in node01|node08) echo $$ > worker.pid; '
        f"exec sleep 300;; esac; {ECHO}",
    )
    selection = "node01,node07,node08,real01"
    argv = cli_argv(mixed, "run", "-h", selection, "--workers", "2", "--json", "-c", command)
    process, out, err = started_cli(argv)
    pids = [read_pid(mixed.fleet.host(n).root / "worker.pid") for n in ("node01", "node08")]
    wait_until(lambda: len(live_workers(process.pid)) == 1, 15, "shard 1's worker exits")
    [worker] = live_workers(process.pid)
    killed = time.monotonic()
    os.kill(worker, signal.SIGKILL)
    assert process.wait(timeout=SLACK) == 1  # every host reached; two ended in error
    assert time.monotonic() - killed < SLACK
    records = {r["host"]: r for r in map(json.loads, out.finish(5).splitlines())}
    assert sorted(records) == sorted(selection.split(","))
    for name in ("node07", "real01"):
        assert records[name]["status"] == "ok"
        assert records[name]["stdout"] == expected_ok(name).decode()
    for name in ("node01", "node08"):
        assert records[name]["status"] == "error"
        assert records[name]["error"].startswith("worker process died (exit code -9)")
    assert "Traceback" not in err.finish(5)
    wait_gone(pids, 10, "the fleet ended the sleeps of the dead worker's connections")


# --- secrets ------------------------------------------------------------------------------

ENABLE_SECRET = "enable-Zq8vW3xK5pR2"


def secrets_inventory(mixed: Mixed, folder: Path) -> Path:
    """node01 by password, node07 by passphrase-protected key, node04 refuses the login,
    node08 runs into the command timeout; all have an enable secret."""
    fleet = mixed.fleet
    by_password = f"password = {fleet.password}"
    by_key = f"key_file = {fleet.client_key_enc}\npassphrase = {fleet.key_passphrase}"
    logins = {
        "node01": by_password,
        "node07": by_key,
        "node04": by_password,
        "node08": by_password,
    }
    sections = [f"[DEFAULT]\nusername = {fleet.username}\nsecret = {ENABLE_SECRET}\n"]
    for name, login in logins.items():
        port = fleet.host(name).port
        sections.append(f"[{name}]\nhostname = 127.0.0.1\nport = {port}\n{login}\n")
    folder.mkdir()
    write_private(folder / "secrets.ini", "\n".join(sections))
    return folder


def test_secrets_are_never_printed(mixed: Mixed, tmp_path: Path) -> None:
    fleet = mixed.fleet
    inventory = secrets_inventory(mixed, tmp_path / "inventory")
    command = 'if [ "$HOSTBATCH_FLEET_HOST" = node08 ]; then exec sleep 30; fi; ' + ECHO
    # The default connect timeout: decrypting the key blocks this client for a while.
    run = ("run", "-g", "secrets", "--connect-timeout", "10", "--timeout", "1", "-c", command)
    outputs = {}
    for args in (run, (*run, "--json"), ("hosts", "-g", "secrets", "--json"), ("hosts", "all")):
        done, elapsed = cli(mixed, *args, inventory=inventory)
        outputs[args[0] + str(len(args))] = done
        assert elapsed < 1.0 + CLI_STARTUP + SLACK
        for secret in (fleet.password, fleet.key_passphrase, ENABLE_SECRET):
            assert secret.encode() not in done.stdout + done.stderr, (args, secret)
    plain, as_json, hosts_json = (outputs[k] for k in ("run9", "run10", "hosts4"))
    assert plain.returncode == as_json.returncode == 3
    assert {"node01 | ok-node01", "node07 | ok-node07"} <= set(plain.stdout.decode().splitlines())
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    statuses = {r["host"]: r["status"] for r in records}
    assert statuses == {
        "node01": "ok",
        "node07": "ok",
        "node04": "auth_failed",
        "node08": "timeout",
    }
    listed = json.loads(hosts_json.stdout)
    assert {h["name"]: (h["password"], h["passphrase"], h["secret"]) for h in listed}["node07"] == (
        None,
        "********",
        "********",
    )


# --- get never writes outside LOCALDIR ------------------------------------------------------


def files_under(root: Path) -> set[Path]:
    return {Path(top, name) for top, dirs, names in os.walk(root) for name in [*dirs, *names]}


def fleet_dict(mixed: Mixed, name: str, node: str) -> dict[str, str | int]:
    fleet = mixed.fleet
    return {
        "name": name,
        "host": "127.0.0.1",
        "port": fleet.host(node).port,
        "username": fleet.username,
        "key_file": str(fleet.client_key),
    }


def test_get_writes_nothing_outside_localdir(mixed: Mixed, tmp_path: Path) -> None:
    hosts = [
        fleet_dict(mixed, "../evil", "node01"),
        fleet_dict(mixed, "a/b", "node07"),
        fleet_dict(mixed, "good", "node08"),
    ]
    for node in ("node01", "node07", "node08"):
        tree = mixed.fleet.host(node).root / "tree"
        (tree / "up").mkdir(parents=True, exist_ok=True)
        (tree / "f.txt").write_text(f"from {node}\n")
    local = tmp_path / "one" / "two" / "three" / "local"  # escapes would land in tmp_path
    local.mkdir(parents=True)
    before = files_under(tmp_path)
    options = run_options(mixed)
    began = time.monotonic()
    fetched = hostbatch.get(["tree/f.txt"], local, hosts=hosts, options=options)
    climbing = hostbatch.get(["tree/up/..", ".."], local, hosts=hosts, options=options)
    assert time.monotonic() - began < 2 * (CONNECT_TIMEOUT + SLACK)
    assert {name: r.status for name, r in fetched.items()} == dict.fromkeys(
        ("../evil", "a/b", "good"), Status.OK
    )
    for name, node in (("../evil", "node01"), ("a/b", "node07"), ("good", "node08")):
        [copy] = [p for p in files_under(local) if p.name == "f.txt" and node in p.read_text()]
        assert copy.parent.parent == local, (name, copy)  # LOCALDIR/<one safe component>/
    for result in climbing.values():  # '..' as a remote name is refused, never followed
        assert result.status is Status.TRANSFER_FAILED and "unsafe" in (result.error or "")
    assert {p for p in files_under(tmp_path) - before if local not in p.parents} == set()
    assert not (tmp_path / "one" / "two" / "three" / "evil").exists()
