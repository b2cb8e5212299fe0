"""`hostbatch shell` driven as a person would: in tmux, with send-keys and capture-pane."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostbatch.journal import Journal, RunSummary, history
from hostbatch.testing import Fleet, FleetThread

# How long a screen, a remote command or its end may take to show up: generous, as the
# shell's start (an interpreter, four logins) and each step share 2 busy cores.
DEADLINE = 60.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    with FleetThread(4, behaviours={"node04": "drop_mid_command"}) as started:
        yield started, started.write_inventory(tmp_path_factory.mktemp("s") / "inv", auth="key")


class Tmux:
    def __init__(self, command: list[str]) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed (scripts/setup.sh installs it)")
        self.name = f"hb-{uuid.uuid4().hex[:8]}"
        # A tmux server of its own (-L): with one shared server, a session started just as
        # the previous test's last session ended could reach that server while it exited,
        # and new-session failed (exit 1) under load.
        self.tmux = ["tmux", "-L", self.name]
        subprocess.run(
            [
                *self.tmux,
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                "160",
                "-y",
                "50",
                " ".join(command),
            ],
            check=True,
        )

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def screen(self) -> str:
        return subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-S", "-200", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = DEADLINE) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.1)
        pytest.fail(f"screen never matched; it shows:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(
            [*self.tmux, "kill-session", "-t", self.name], check=False, capture_output=True
        )


@pytest.fixture
def shell(fleet: tuple[Fleet, Path], tmp_path: Path) -> Iterator[Tmux]:
    started, inventory = fleet
    command = [
        f"HOSTBATCH_HISTORY={tmp_path / 'history'}",
        f"HOSTBATCH_JOURNAL={tmp_path / 'journal.sqlite'}",
        sys.executable,
        "-m",
        "hostbatch",
        "shell",
        "-i",
        str(inventory),
        "--known-hosts",
        str(started.known_hosts),
        "--ssh-config",
        "''",
    ]
    session = Tmux(command)
    try:
        session.wait_for(lambda s: "hostbatch [node[01-04]]>" in s)
        yield session
    finally:
        session.close()


def test_commands_selection_and_dropped_host(shell: Tmux, tmp_path: Path) -> None:
    screen = shell.screen()
    assert "connected 3/4 hosts" in screen and "node04: connection lost" in screen
    shell.keys("echo hello-$HOSTBATCH_FLEET_HOST", "Enter")
    screen = shell.wait_for(lambda s: "3 ok, 1 connection lost" in s)
    for name in ("node01", "node02", "node03"):
        assert f"{name} | hello-{name}" in screen
    assert "reconnected: node04" in screen  # the dropped host was connected again
    shell.keys(":select -h node0[1-2]", "Enter")
    shell.wait_for(lambda s: "hostbatch [node[01-02]]>" in s)
    shell.keys("echo again", "Enter")
    screen = shell.wait_for(lambda s: "2 hosts in" in s)
    assert "node02 | again" in screen and "node03 | again" not in screen
    assert "run 1 recorded; rerun failures: :select @run:1:failed" in screen
    shell.keys(":select @run:1:failed", "Enter")  # the host that dropped, from the journal
    shell.wait_for(lambda s: "hostbatch [node04]>" in s)
    first, second = recorded(tmp_path)
    assert (first.kind, first.operation, first.selection) == (
        "shell",
        "echo hello-$HOSTBATCH_FLEET_HOST",
        "node[01-04]",
    )
    assert first.counts == {"ok": 3, "dropped": 1} and first.exit_code == 1
    assert second.selection == "node[01-02]" and second.counts == {"ok": 2}


def recorded(tmp_path: Path) -> list[RunSummary]:
    """The shell's recorded runs, oldest first."""
    with Journal.open(tmp_path / "journal.sqlite") as journal:
        return history(journal)[::-1]


def test_ctrl_c_cancels_everywhere_and_keeps_the_shell(
    shell: Tmux, fleet: tuple[Fleet, Path], tmp_path: Path
) -> None:
    pids = _hold_two(shell, fleet[0])
    shell.keys("C-c")
    shell.wait_for(lambda s: "cancelled on every host; back at the prompt" in s)
    _wait_gone(pids)
    shell.keys("echo still-here", "Enter")
    screen = shell.wait_for(lambda s: "node01 | still-here" in s)
    assert "2 hosts in" in screen
    shell.wait_for(lambda s: "run 2 recorded (hostbatch show 2)" in s)
    cancelled, after = recorded(tmp_path)
    assert (cancelled.outcome, cancelled.exit_code) == ("interrupted", 130)
    assert (after.outcome, after.exit_code, after.counts) == ("finished", 0, {"ok": 2})


def test_menu_history_and_exit(shell: Tmux, tmp_path: Path) -> None:
    shell.keys(":menu", "Enter")
    shell.wait_for(lambda s: "1) view host info" in s)
    shell.keys("1", "Enter")
    screen = shell.wait_for(lambda s: "NAME" in s and "ADDRESS" in s)
    assert "node03" in screen
    shell.keys("echo remembered", "Enter")
    shell.wait_for(lambda s: "node01 | remembered" in s)
    shell.keys("C-d")
    deadline = time.monotonic() + DEADLINE
    history = tmp_path / "history"
    while not (history.exists() and "echo remembered" in history.read_text()):
        assert time.monotonic() < deadline, "history was not written"
        time.sleep(0.1)


def _hold_two(shell: Tmux, started: Fleet) -> list[int]:
    """Select node01 and node02, start a long command on both; its remote pids."""
    for name in ("node01", "node02"):
        (started.host(name).root / "shell-pid").unlink(missing_ok=True)
    shell.keys(":select node01,node02", "Enter")
    shell.wait_for(lambda s: "hostbatch [node[01-02]]>" in s)
    shell.keys("echo $$ > shell-pid; exec sleep 300", "Enter")
    return _remote_pids(started, ("node01", "node02"))


def _remote_pids(started: Fleet, names: tuple[str, ...]) -> list[int]:
    """The pids the hosts wrote to shell-pid once the command runs (waited for)."""
    pid_files = [started.host(n).root / "shell-pid" for n in names]
    deadline = time.monotonic() + DEADLINE
    while not all(p.exists() and p.read_text().strip() for p in pid_files):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.1)
    return [int(p.read_text()) for p in pid_files]


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + DEADLINE
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_closed_terminal_stops_the_command_and_records_the_hangup(
    shell: Tmux, fleet: tuple[Fleet, Path], tmp_path: Path
) -> None:
    pids = _hold_two(shell, fleet[0])
    shell.close()  # tmux kill-session: SIGHUP, as when the terminal window is closed
    _wait_gone(pids)
    deadline = time.monotonic() + DEADLINE
    while not (runs := recorded(tmp_path)) or runs[-1].outcome == "running":
        assert time.monotonic() < deadline, "the shell never ended its journal record"
        time.sleep(0.1)
    assert (runs[-1].outcome, runs[-1].exit_code) == ("interrupted", 129)


def test_sigterm_ends_the_shell_with_143(fleet: tuple[Fleet, Path], tmp_path: Path) -> None:
    started, inventory = fleet
    for name in ("node03",):
        (started.host(name).root / "shell-pid").unlink(missing_ok=True)
    env = {**os.environ, "HOSTBATCH_HISTORY": str(tmp_path / "history")}
    env["HOSTBATCH_JOURNAL"] = str(tmp_path / "journal.sqlite")
    argv = [sys.executable, "-m", "hostbatch", "shell", "-i", str(inventory), "-h", "node03"]
    argv += ["--known-hosts", str(started.known_hosts), "--ssh-config", ""]
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdin is not None
    process.stdin.write(b"echo $$ > shell-pid; exec sleep 300\n")
    process.stdin.flush()
    pids = _remote_pids(started, ("node03",))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 143
    assert b"terminated (SIGTERM); connections closed" in stderr
    assert b"Traceback" not in stderr
    _wait_gone(pids)
    runs = recorded(tmp_path)
    assert (runs[-1].outcome, runs[-1].exit_code) == ("interrupted", 143)
