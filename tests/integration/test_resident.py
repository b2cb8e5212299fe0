"""The agent's resident shell (engine/resident.py) against cold runs, on a real OpenSSH sshd.

Every case runs as ``hostbatch run`` (a new connection, a session) and as ``hostbatch run
--persist`` over the agent's warm connection, whose resident shell runs it when it can;
stdout and stderr bytes (``--outdir``/``--errdir``) and the exit status must be equal.
sshd logs each session ("Starting session:", LogLevel VERBOSE), which shows which warm
runs went through the resident shell (no new session) and which fell back to one.

Each test runs for a login user whose shell is dash (/bin/sh) and for one whose shell is
bash (one sshd per shell for the module). Not as root, the login user is the current user
with its own shell: the expectations follow the shell it has.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import pwd
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostbatch import api
from hostbatch.api import RunOptions, make_plan, select_hosts
from hostbatch.engine.executors.agent import run_in_agent
from hostbatch.engine.limits import Limits
from hostbatch.engine.resident import SHELLS, ResidentShell
from hostbatch.models import Command, HostResult
from hostbatch.testing.plugin import SshdFactory, owned_remote_dir
from hostbatch.testing.sshd import OpenSSHServer, find_sshd
from hostbatch.transport.asyncssh_ import AsyncsshTransport
from hostbatch.transport.base import ConnectOptions
from tests.fixtures.cli import cli_argv, cli_env, run_cli
from tests.integration.test_agent import (  # noqa: F401  (agent_env is a fixture)
    DEADLINE,
    Env,
    _processes,
    agent_env,
    common,
    inventory,
    wait_until,
)

pytestmark = pytest.mark.sshd

PYTHON_TERM = 'python3 -c "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"'
PYTHON_KILL = 'python3 -c "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"'


@dataclass(frozen=True)
class Case:
    name: str
    command: str
    resident: bool = True  # the warm run needs no session of its own (dash)
    retires: bool = False  # it leaves processes behind: the shell ends with them
    bash: bool | None = None  # for bash: resident (True/False, None: as for dash), or
    shells: tuple[str, ...] = ("dash", "bash")  # the login shells it is run for

    def runs_resident(self, shell: str | None) -> bool:
        if shell == "bash" and self.bash is not None:
            return self.bash
        return self.resident and shell is not None


CASES = [
    Case("no trailing newline", "printf 'no newline'"),
    Case("empty output", "true"),
    Case("binary and NUL bytes", r"printf '\000\001\377\376x\000'; printf '\000e' >&2"),
    Case("MBs of output", "head -c 3000000 /dev/zero | tr '\\000' x; seq 1 200000 >&2"),
    Case(
        "interleaved streams",
        "for i in 1 2 3 4 5 6; do echo out$i; echo err$i >&2; done; printf tail >&2",
    ),
    Case("exit 7", "echo before; echo to-stderr >&2; exit 7"),
    Case("syntax error", "echo never; if then", resident=False, bash=True),
    Case("syntax error on line 3", "echo one\necho two\nfi", resident=False, bash=True),
    Case("not found, multi-line", 'echo one\nno-such-command-x\necho "line $LINENO"'),
    Case("killed by a signal", f"echo about to die; exec {PYTHON_TERM}"),
    Case("child killed by a signal", f"{PYTHON_TERM}; echo status $?"),
    Case("last command killed by a signal", f"true; {PYTHON_KILL}"),
    Case("sets state", "cd /tmp; X=1; export Y=2; umask 077; alias ll=ls; set -- a b"),
    Case(
        "sees no state",
        'pwd; echo "X=${X-unset} Y=${Y-unset} umask=$(umask) args=$#"; alias; echo "$0 $-"',
    ),
    Case("quotes and backslashes", "echo 'single' \"double \\\"q\\\"\" back\\\\slash 'it'\\''s'"),
    Case(
        "marker-like text",
        "printf '\\036deadbeef:0:K\\n'; echo 'hb_t=x hb_c=y'; printf '\\036%s\\n' abc >&2; "
        'echo "$hb_c$hb_t$hb_n"',
    ),
    Case("reads stdin", 'cat; read line; echo "read status $?"; wc -c'),
    Case("exec", "exec echo replaced"),
    Case(
        "traps and signals", "trap; trap 'echo bye' EXIT; grep -E '^Sig(Ign|Blk)' /proc/self/status"
    ),
    Case("open files", "ls /proc/self/fd | wc -l; ulimit -n"),
    Case("environment", "env | grep -v -e '^SSH_CLIENT=' -e '^SSH_CONNECTION=' | sort"),
    Case("background process left running", "(sleep 1; echo late) & echo started", retires=True),
    Case(
        "detached background process", "sleep 2 >/dev/null 2>&1 </dev/null & echo ok", retires=True
    ),
    Case("after a retired shell", "echo fresh"),
    Case("pid of the shell", "test $$ -gt 1 && echo has-pid", resident=False, bash=True),
    Case("TERM to the shell", "echo before; kill -TERM $$; echo after", resident=False, bash=True),
    Case("here-document", "cat <<EOF\nhere $((1+1))\nEOF", resident=False, bash=True),
    # bash: what a subshell or an eval of the resident shell would give otherwise
    *(
        Case(name, command, shells=("bash",))
        for name, command in [
            ("bash: error line numbers", 'echo a; no-such-x\n\nno-such-y; echo "L$LINENO"'),
            ("bash: set -u exits 127", 'set -u; echo "$undefined_x"; echo after'),
            ("bash: ${x:?} exits 127", 'echo "${undefined_x:?is not set}"; echo after'),
            (
                "bash: its own variables",
                'echo "$BASH_SUBSHELL $SHLVL $0 $BASH_ARGV0 $- ${PIPESTATUS[*]-none}"\n'
                'echo "$BASH_COMMAND|$BASH_EXECUTION_STRING|$_"; [ "$BASHPID" = $$ ] && echo same',
            ),
            ("bash: xtrace", "set -x; echo hi; x=$(echo sub); ( echo in )"),
            (
                "bash: aliases and shopt",
                "shopt -s expand_aliases extdebug\nalias hi='echo from alias'\nhi\n"
                "f() { :; }; declare -F f; shopt -p extglob",
            ),
            ("bash: alias syntax error", "shopt -s expand_aliases\nalias x=if\nx then"),
            ("bash: return and exit at top level", "return; echo after-return; false; exit"),
            (
                "bash: traps it sets",
                "trap 'echo \"exit trap $?\"' EXIT; trap 'echo usr1' USR1; kill -USR1 $$; exit 3",
            ),
            (
                "bash: sets state",
                "set -eo pipefail; shopt -s nullglob; f() { echo fn; }; export -f f; X=1",
            ),
            (
                "bash: sees no state",
                'echo "$- ${X-unset}"; shopt -p nullglob; declare -F; set -o | grep pipefail',
            ),
            ("bash: last command exec'd", "true; printenv SHLVL _"),
            ("bash: a program, plain words", "printenv SHLVL _ HOME"),
            ("bash: plain words, an error", "ls -d / /nonexistent-x"),
            ("bash: plain words, a builtin", "cd /nonexistent-x"),
            ("bash: nested bash", "bash -c 'echo \"$SHLVL $0\"'"),
            (
                "bash: here-document with a bad substitution",
                "cat <<E\n$(echo $(fi) )\nE\necho after=$?",
            ),
        ]
    ),
    Case("bash: parent pid", "test $PPID -gt 1 && echo has-parent", bash=False, shells=("bash",)),
]


@dataclass(frozen=True)
class Outcome:
    exit_status: object
    stdout: bytes
    stderr: bytes


def sessions(server: OpenSSHServer) -> int:
    return server.log_text().count("Starting session:")


class Runner:
    """Cold runs (api) and warm runs (the agent) of one command on h1, in this process."""

    def __init__(self, server: OpenSSHServer, inv: Path) -> None:
        self.hosts = select_hosts(["h1"], None, str(inv))
        connect = ConnectOptions(known_hosts=str(server.known_hosts))
        self.options = RunOptions(limits=Limits(output_limit=8_000_000), connect=connect)

    def cold(self, command: str) -> Outcome:
        return self._outcome(api.run(command, hosts=self.hosts, options=self.options)["h1"])

    def warm(self, command: str) -> Outcome:
        plan = make_plan(command, self.hosts, self.options)
        ran = asyncio.run(run_in_agent(plan, lambda event: None, 600.0))
        return self._outcome(ran.results["h1"])

    @staticmethod
    def _outcome(result: HostResult) -> Outcome:
        assert not result.truncated and result.status.reached, result
        return Outcome(result.exit_status, result.stdout, result.stderr)


@pytest.fixture(scope="module", params=["/bin/sh", "/bin/bash"], ids=["dash", "bash"])
def verbose_sshd(request: pytest.FixtureRequest) -> Iterator[OpenSSHServer]:
    """One sshd per login shell for the module (as root, a login user with that shell)."""
    if find_sshd() is None:
        message = "OpenSSH sshd is not installed (scripts/setup.sh --with-sshd)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with OpenSSHServer(log_level="VERBOSE", login_shell=request.param) as server:
        yield server


def resident_shell(server: OpenSSHServer) -> str | None:
    """The resident shell the server's login user gets ("dash", "bash"), None for none."""
    return SHELLS.get(posixpath.basename(server.login_shell))


@pytest.fixture
def remote_dir(verbose_sshd: OpenSSHServer) -> Iterator[Path]:
    """A fresh directory the login user owns (see the plugin's openssh_remote_dir)."""
    with owned_remote_dir(verbose_sshd) as path:
        yield path


@pytest.fixture
def runner(
    verbose_sshd: OpenSSHServer,
    agent_env: Env,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Runner:
    monkeypatch.setenv("XDG_RUNTIME_DIR", agent_env["XDG_RUNTIME_DIR"])  # the test's agent
    monkeypatch.delenv("HOSTBATCH_RESIDENT", raising=False)
    return Runner(verbose_sshd, inventory(verbose_sshd, tmp_path / "inv.ini", ("h1",)))


def settle(server: OpenSSHServer, warm_true: Callable[[], bool]) -> None:
    """Log in, then wait until the resident shell (started in the background after the
    connection's first command) runs commands: a warm ``true`` that opens no session."""

    def no_new_session() -> bool:
        before = sessions(server)
        assert warm_true()
        return sessions(server) == before

    assert warm_true()
    wait_until(no_new_session, "the resident shell to take commands")


def test_warm_runs_through_the_resident_shell_equal_cold_runs(
    verbose_sshd: OpenSSHServer, runner: Runner
) -> None:
    shell = resident_shell(verbose_sshd)
    settle(verbose_sshd, lambda: runner.warm("true").exit_status == 0)
    retired = False
    for case in CASES:
        if (shell or "dash") not in case.shells:
            continue
        cold = runner.cold(case.command)
        before = sessions(verbose_sshd)
        hot = runner.warm(case.command)
        assert hot == cold, case.name
        expected = 0 if case.runs_resident(shell) and not retired else 1
        assert sessions(verbose_sshd) - before == expected, case.name
        retired = case.retires
    assert cold.stdout and cold.exit_status == 0  # the cases really ran
    big = next(c for c in CASES if c.name == "MBs of output")
    assert len(runner.warm(big.command).stdout) == 3_000_000


def test_switched_off_and_for_stdin_it_uses_sessions(
    verbose_sshd: OpenSSHServer, runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settle(verbose_sshd, lambda: runner.warm("true").exit_status == 0)
    before = sessions(verbose_sshd)
    assert runner.warm("echo a").stdout == b"a\n"
    assert sessions(verbose_sshd) == before  # the resident shell ran it
    monkeypatch.setenv("HOSTBATCH_RESIDENT", "0")  # the client's: the agent applies it
    assert runner.warm("echo b").stdout == b"b\n"
    assert sessions(verbose_sshd) == before + 1
    monkeypatch.delenv("HOSTBATCH_RESIDENT")
    (tmp_path / "input").write_bytes(b"from stdin\n")
    fed = Command("cat", stdin=str(tmp_path / "input"))
    plan = make_plan(fed, runner.hosts, runner.options)
    ran = asyncio.run(run_in_agent(plan, lambda event: None, 600.0)).results["h1"]
    assert ran.stdout == b"from stdin\n" and sessions(verbose_sshd) == before + 2


def cli_settled(server: OpenSSHServer, env: Env, tmp_path: Path) -> tuple[str, ...]:
    """``hostbatch run`` arguments for h1, its resident shell running commands."""
    args = (*common(server, inventory(server, tmp_path / "inv.ini", ("h1",))), "-h", "h1")
    settle(
        server,
        lambda: run_cli("run", *args, "--persist", "--", "true", env=env).returncode == 0,
    )
    return args


def test_live_output_arrives_before_the_command_ends(
    verbose_sshd: OpenSSHServer,
    agent_env: Env,  # noqa: F811
    tmp_path: Path,
    remote_dir: Path,
) -> None:
    args = cli_settled(verbose_sshd, agent_env, tmp_path)
    marker = remote_dir / "go"
    command = f"echo first-line; while [ ! -e {marker} ]; do sleep 0.05; done; echo second"
    argv = cli_argv("run", *args, "--persist", "--", command)
    process = subprocess.Popen(
        argv, env=cli_env(agent_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # streamed while the command still runs
        assert b"first-line" in line and process.poll() is None
        marker.touch()
        rest, _ = process.communicate(timeout=DEADLINE)
    finally:
        process.kill()
    assert b"second" in rest and process.returncode == 0


def _remote_gone(text: bytes) -> bool:
    return text not in _processes()


@pytest.mark.parametrize("how", ["timeout", "ctrl-c"])
def test_timeout_and_ctrl_c_kill_the_remote_tree_and_the_next_run_works(
    verbose_sshd: OpenSSHServer,
    agent_env: Env,  # noqa: F811
    tmp_path: Path,
    remote_dir: Path,
    how: str,
) -> None:
    args = cli_settled(verbose_sshd, agent_env, tmp_path)
    started = remote_dir / "started"
    seconds = 418 if how == "timeout" else 419
    command = f"sleep {seconds} & sleep {seconds}; touch {started}-never"
    command = f"touch {started}; {command}"
    before = sessions(verbose_sshd)
    if how == "timeout":
        began = time.monotonic()
        result = run_cli("run", *args, "--persist", "--timeout", "1", "--", command, env=agent_env)
        assert result.returncode != 0 and "timed out after 1s" in result.stdout + result.stderr
        assert time.monotonic() - began < DEADLINE
    else:
        argv = cli_argv("run", *args, "--persist", "--", command)
        process = subprocess.Popen(
            argv, env=cli_env(agent_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            wait_until(started.exists, "the remote command to start")
            process.send_signal(2)
            _, stderr = process.communicate(timeout=DEADLINE)
        finally:
            process.kill()
        assert process.returncode == 130 and b"Traceback" not in stderr
    # both sleeps (the foreground one and the one in the background) are gone
    wait_until(lambda: _remote_gone(f"sleep {seconds}".encode()), "the remote sleeps to end")
    assert not Path(f"{started}-never").exists()
    assert sessions(verbose_sshd) == before  # it ran in the resident shell
    again = run_cli("run", *args, "--persist", "--", "echo still-works", env=agent_env)
    assert again.returncode == 0 and "h1 | still-works" in again.stdout


def test_bashrc_is_read_per_command_and_an_exported_change_means_sessions(
    sshd_factory: SshdFactory,
    agent_env: Env,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bash started by sshd reads ~/.bashrc (Debian's SSH_SOURCE_BASHRC), every cold run
    again: so does the ``bash -c`` the resident shell execs per command. A .bashrc that
    exports what sshd did not give makes the resident shell refuse to start (its
    children would get another environment): sessions run the commands."""
    if os.geteuid() != 0:
        pytest.skip("changes the login user's ~/.bashrc: only as root (a test user's)")
    server = sshd_factory(log_level="VERBOSE", login_shell="/bin/bash")
    bashrc = Path(pwd.getpwnam(server.username).pw_dir) / ".bashrc"
    saved = bashrc.read_bytes() if bashrc.exists() else None
    try:
        bashrc.write_text('from_bashrc=1\nf() { echo "f from .bashrc $from_bashrc"; }\n')
        monkeypatch.setenv("XDG_RUNTIME_DIR", agent_env["XDG_RUNTIME_DIR"])
        monkeypatch.delenv("HOSTBATCH_RESIDENT", raising=False)
        runner = Runner(server, inventory(server, tmp_path / "inv.ini", ("h1",)))
        settle(server, lambda: runner.warm("true").exit_status == 0)
        command = 'f; echo "${FROM_BASHRC-unset}"'
        before = sessions(server)
        assert runner.warm(command) == runner.cold(command)
        assert runner.warm(command).stdout == b"f from .bashrc 1\nunset\n"
        assert sessions(server) - before == 1  # the cold run's only
        bashrc.write_text("export FROM_BASHRC=yes\n")  # read by each command's bash -c
        assert runner.warm(command).stdout.endswith(b"yes\n")
        assert runner.warm(command) == runner.cold(command)

        # a new shell (on a new connection) refuses: its children would get FROM_BASHRC
        host = runner.hosts[0]
        options = ConnectOptions(known_hosts=str(server.known_hosts))

        async def start() -> bool:
            transport = AsyncsshTransport(host, options)
            await transport.connect()
            shell = ResidentShell("h1", "bash")
            try:
                return await shell.start(transport)
            finally:
                await shell.kill()
                await transport.close()

        assert asyncio.run(start()) is False
        bashrc.write_text("from_bashrc=1\n")
        assert asyncio.run(start()) is True  # the same, unexported: it starts
    finally:
        if saved is None:
            bashrc.unlink(missing_ok=True)
        else:
            bashrc.write_bytes(saved)
