"""Warm connections: ``hostbatch run --persist`` against a cold ``hostbatch run`` and against
Ansible over OpenSSH ControlPersist, on N real sshd hosts (the fanout fleet, one loopback
address per host). Usage::

    .venv/bin/python bench/persist.py                     # 1000 hosts, 3 repeats
    .venv/bin/python bench/persist.py --hosts 100 --repeat 1
    .venv/bin/python bench/persist.py --hosts 1000 --repeat 2 --ansible-forks 50
    .venv/bin/python bench/persist.py --hosts 300 --repeat 3 --ansible-forks 10,50,200
    .venv/bin/python bench/persist.py --login-shell /bin/bash --ansible-forks ''

Each step is one whole CLI process, timed from spawn to exit. hostbatch
(``hostbatch run -i INV -h all -- true``): cold runs (every host connects and logs in), the
first ``--persist`` run (starts the agent, logs in), one untimed ``--persist`` run (after a
connection's first command its resident shell starts), then warm ``--persist`` runs, and
warm ones with ``HOSTBATCH_RESIDENT=0`` (a session per command, the agent's path without
the resident shell). Ansible
(``ansible all -i INV -m raw -a true -f FORKS`` with ``ansible_ssh_args='-o ControlMaster=auto
-o ControlPersist=10m -o ControlPath=DIR/%C'``, host keys checked strictly against the
fleet's known_hosts): one first run that opens a ControlMaster per host, then warm runs
through them (with several ``--ansible-forks``, a warm run for each). The warm runs
alternate round by round, their order rotating.

``--login-shell /bin/bash`` logs in as a user whose login shell is bash (as root,
``hostbatch-test-bash``, see hostbatch.testing.sshd.TEST_USERS; the default /bin/sh is dash
on Debian), whose resident shell execs a ``bash -c`` per command (engine/resident.py).

For each step: the client's CPU (the process and every descendant it waited for: hostbatch's
workers, Ansible's forks and their ssh mux clients), the sshd CPU (cgroup), the CPU of what
stays alive between runs (the hostbatch agent; the ssh ControlMaster processes), the logins
sshd logged ("Accepted" lines over every daemon; a warm run must show 0) and the hosts that
exited 0. The agent lives in a private XDG_RUNTIME_DIR and is stopped at the end; the
ControlMasters are told to exit (``ssh -O exit``) and any left is killed by pid. Ansible
runs with a private ANSIBLE_HOME, config and temp dir and a UTF-8 locale; it is skipped
(with the reason) when ansible-core is not installed (``pip install -e '.[bench]'``). The
table goes to stdout and to bench/results/persist-<date>.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pwd
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import TICKS, SshdFleet, environment, save_report, sshd_fleet
from hostbatch.testing.sshd import TEST_USERS, prepare_login_user

COMMAND = "true"
# Ansible's forks: on 2 cores the run is CPU-bound (Ansible's per-host Python work in a
# forked worker, plus one ssh mux client fork/exec per host), so forks past a few dozen
# only add processes; Ansible's default of 5 leaves the cores waiting on round trips.
# 50 is the common setting for large fleets; --ansible-forks changes it (a comma list
# measures each in the warm rounds).
ANSIBLE_FORKS = [50]
ANSIBLE_LINE = re.compile(r"^(\S+) \| ([A-Z]+!?) (?:\| rc=(\d+) >>|=>)")
HOSTBATCH_OK = re.compile(r" hosts in [\d.]+s: (\d+) ok")


def _logins(fleet: SshdFleet) -> int:
    return sum(server.log_text().count("Accepted ") for server in fleet.servers)


def _inventory(fleet: SshdFleet, hosts: int, path: Path, user: str | None = None) -> Path:
    """An inventory of the fleet's hosts, logging in as *user* when given (every daemon
    accepts the fleet's key for any user: AuthorizedKeysFile is one file)."""
    path.write_text(
        "".join(
            f"[{t['name']}]\nhostname = {t['hostname']}\nport = {t['port']}\n"
            f"username = {user or t['username']}\nkey_file = {t['key_file']}\n\n"
            for t in fleet.targets(hosts)
        )
    )
    return path


def _agent_cpu(env: dict[str, str]) -> float:
    """CPU seconds the running agent has used so far (0 when none runs)."""
    status = subprocess.run(
        [sys.executable, "-m", "hostbatch", "agent", "status"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    words = status.stdout.split()
    if len(words) < 3 or words[0] != "agent":
        return 0.0
    fields = Path(f"/proc/{words[2].rstrip(',')}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Arm:
    """One way to run the command: its command line, environment, how to count the hosts
    that exited 0 from its output, and the CPU of what it keeps alive between runs."""

    name: str
    argv: list[str]
    env: dict[str, str]
    hosts_ok: Callable[[str, str], int]
    resident_cpu: Callable[[], float]


def _step(arm: Arm, fleet: SshdFleet, expected_logins: int) -> dict[str, Any]:
    before, sshd, resident = _logins(fleet), fleet.sshd_cpu(), arm.resident_cpu()
    children, began = _children_cpu(), time.perf_counter()
    done = subprocess.run(arm.argv, env=arm.env, capture_output=True, text=True, check=False)
    wall, client = time.perf_counter() - began, _children_cpu() - children
    sshd, resident = fleet.sshd_cpu() - sshd, arm.resident_cpu() - resident
    deadline = time.monotonic() + 5  # sshd writes its log line as the login completes
    while _logins(fleet) - before < expected_logins and time.monotonic() < deadline:
        time.sleep(0.05)
    summary = [line for line in done.stderr.splitlines() if " hosts in " in line] or [""]
    step = {
        "wall": wall,
        "client": client,
        "code": done.returncode,
        "logins": _logins(fleet) - before,
        "ok": arm.hosts_ok(done.stdout, done.stderr),
        "summary": summary[0],
        "sshd": sshd,
        "resident": resident,
    }
    if done.returncode != 0:
        step["tail"] = (done.stderr or done.stdout).strip()[-500:]
    print(
        f"{arm.name}: wall {wall:.2f}s, "
        f"client CPU {client:.2f}s, ok {step['ok']}, logins {step['logins']}, "
        f"exit {done.returncode}",
        file=sys.stderr,
    )
    return step


def _row(label: str, steps: list[dict[str, Any]]) -> str:
    if not steps:
        return f"| {label} | not run | | | | | | |"
    walls = [s["wall"] for s in steps]
    spread = f"{min(walls):.2f}–{max(walls):.2f}" if len(walls) > 1 else f"{walls[0]:.2f}"
    logins = "/".join(str(s["logins"]) for s in steps)
    ok = "/".join(str(s["ok"]) for s in steps)
    codes = "/".join(str(s["code"]) for s in steps)
    client = statistics.median(s["client"] for s in steps)
    sshd = statistics.median(s["sshd"] for s in steps)
    resident = statistics.median(s["resident"] for s in steps)
    median = statistics.median(walls)
    return (
        f"| {label} | {median:.2f} ({spread}) | {client:.2f} | {sshd:.2f} | {resident:.2f} "
        f"| {logins} | {ok} | {codes} |"
    )


# -- hostbatch ------------------------------------------------------------------------------


def _hostbatch_ok(stdout: str, stderr: str) -> int:
    found = HOSTBATCH_OK.search(stderr)
    return int(found.group(1)) if found else 0


def _hostbatch_arms(work: Path, fleet: SshdFleet, hosts: int, user: str) -> tuple[Arm, Arm, Arm]:
    """(cold run, --persist run, --persist run with a session per command)."""
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    env["HOSTBATCH_JOURNAL"] = str(work / "journal.sqlite")  # runs are journaled
    env.pop("HOSTBATCH_PERSIST", None)
    env.pop("HOSTBATCH_RESIDENT", None)
    inventory = _inventory(fleet, hosts, work / "inventory.ini", user)
    base = [sys.executable, "-m", "hostbatch", "run", "-i", str(inventory)]
    base += ["--ssh-config", "", "--known-hosts", str(fleet.known_hosts), "-h", "all"]
    agent = lambda: _agent_cpu(env)  # noqa: E731
    cold = Arm("hostbatch run", [*base, "--", COMMAND], env, _hostbatch_ok, agent)
    persist = [*base, "--persist", "--", COMMAND]
    sessions = {**env, "HOSTBATCH_RESIDENT": "0"}  # the agent's old path: a session each
    return (
        cold,
        Arm("hostbatch run --persist", persist, env, _hostbatch_ok, agent),
        Arm("--persist, sessions", persist, sessions, _hostbatch_ok, agent),
    )


# -- Ansible over ControlPersist ------------------------------------------------------------


def _ansible_missing() -> str | None:
    if shutil.which("ssh") is None:
        return "OpenSSH's ssh client is not installed"
    if _ansible_executable() is None:
        return "ansible-core is not installed: pip install -e '.[bench]'"
    return None


def _ansible_executable() -> str | None:
    """The ``ansible`` next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("ansible")
    return str(beside) if beside.exists() else shutil.which("ansible")


def _ansible_ok(stdout: str, stderr: str) -> int:
    """Hosts whose ``raw`` command exited 0 (``host | CHANGED | rc=0 >>`` lines)."""
    ok = set()
    for line in stdout.splitlines():
        found = ANSIBLE_LINE.match(line)
        if found and found.group(3) == "0" and found.group(2) in ("CHANGED", "SUCCESS"):
            ok.add(found.group(1))
    return len(ok)


def _masters(control: Path) -> list[int]:
    """Pids of the ControlMaster processes whose sockets live in *control* (OpenSSH
    titles them ``ssh: CONTROLPATH [mux]``)."""
    needle = str(control).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if needle in cmdline and b"[mux]" in cmdline:
                found.append(int(entry.name))
    return found


def _masters_cpu(control: Path) -> float:
    """CPU seconds of the ControlMasters so far, from ``/proc/PID/schedstat`` (nanoseconds):
    a master spends well under one clock tick per warm run, and /proc/PID/stat's ticks
    would round each of them down to nothing."""
    total = 0.0
    for pid in _masters(control):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    return total


def _ansible_arm(
    work: Path, fleet: SshdFleet, hosts: int, forks: int, ansible: str, *, user: str
) -> Arm:
    control = work / "cp"  # short: a unix socket path has at most 107 bytes
    control.mkdir(mode=0o700)
    home = work / "ansible"
    (home / "tmp").mkdir(parents=True)
    lines = ["[fleet]"] + [
        f"{t['name']} ansible_host={t['hostname']} ansible_port={t['port']} "
        f"ansible_user={user} ansible_ssh_private_key_file={t['key_file']}"
        for t in fleet.targets(hosts)
    ]
    lines += [
        "",
        "[all:vars]",
        "ansible_connection=ssh",
        "ansible_ssh_args='-o ControlMaster=auto -o ControlPersist=10m "
        f"-o ControlPath={control}/%C'",
        f"ansible_ssh_extra_args='-o UserKnownHostsFile={fleet.known_hosts} "
        "-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes'",
    ]
    inventory = work / "ansible-inventory.ini"
    inventory.write_text("\n".join(lines) + "\n")
    config = home / "ansible.cfg"
    config.write_text("[defaults]\nhost_key_checking = True\nretry_files_enabled = False\n")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(config),  # never a ./ansible.cfg or ~/.ansible.cfg
        "ANSIBLE_HOME": str(home),  # not ~/.ansible
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "LC_ALL": "C.UTF-8",  # ansible-core refuses to start without a UTF-8 locale
        "LANG": "C.UTF-8",
    }
    argv = [ansible, "all", "-i", str(inventory), "-m", "raw", "-a", COMMAND, "-f", str(forks)]
    return Arm("ansible", argv, env, _ansible_ok, lambda: _masters_cpu(control))


@contextlib.contextmanager
def _masters_closed(control: Path) -> Iterator[None]:
    """On the way out: ``ssh -O exit`` on every socket in *control*, then kill (by pid)
    any ControlMaster still alive."""
    try:
        yield
    finally:
        sockets = sorted(control.glob("*")) if control.exists() else []
        for start in range(0, len(sockets), 50):
            exits = [
                subprocess.Popen(
                    ["ssh", "-o", f"ControlPath={path}", "-O", "exit", "bench-master"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for path in sockets[start : start + 50]
            ]
            for process in exits:
                process.wait()
        deadline = time.monotonic() + 5
        while _masters(control) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _masters(control)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        print(f"ControlMasters: {len(sockets)} told to exit, {len(left)} killed", file=sys.stderr)


# -- the benchmark --------------------------------------------------------------------------


@dataclass
class Steps:
    cold: list[dict[str, Any]]
    first: list[dict[str, Any]]
    warm: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    ansible_first: list[dict[str, Any]]
    ansible_warm: dict[int, list[dict[str, Any]]]
    masters: str = ""


def _measure(
    args: argparse.Namespace, work: Path, fleet: SshdFleet, stack: contextlib.ExitStack
) -> Steps:
    user = prepare_login_user(args.login_shell)[0]
    cold_arm, persist_arm, sessions_arm = _hostbatch_arms(work, fleet, args.hosts, user)
    steps = Steps([], [], [], [], [], {})
    steps.cold = [_step(cold_arm, fleet, args.hosts) for _ in range(args.repeat)]
    steps.first = [_step(persist_arm, fleet, args.hosts)]
    _step(persist_arm, fleet, 0)  # not timed: a connection's resident shell starts after it
    ansible = _ansible_executable()
    skipped = _ansible_missing()
    arms: dict[int, Arm] = {}
    if not args.ansible_forks:
        skipped = "not asked for (--ansible-forks '')"
    if skipped is None and ansible is not None:
        stack.enter_context(_masters_closed(work / "cp"))
        arm = _ansible_arm(work, fleet, args.hosts, args.ansible_forks[0], ansible, user=user)
        for forks in args.ansible_forks:
            argv = [*arm.argv[:-1], str(forks)]
            arms[forks] = dataclasses.replace(arm, name=f"ansible -f {forks}", argv=argv)
            steps.ansible_warm[forks] = []
        steps.ansible_first = [_step(arm, fleet, args.hosts)]
        steps.masters = f"{len(_masters(work / 'cp'))} ControlMasters alive after the first run"
    else:
        steps.masters = f"Ansible skipped: {skipped}"
        print(steps.masters, file=sys.stderr)
    arms_in_round: list[int | None] = [None, 0, *arms]  # None: --persist, 0: its sessions
    for round_ in range(args.repeat):
        shift = round_ % len(arms_in_round)
        for forks in arms_in_round[shift:] + arms_in_round[:shift]:
            if forks is None:
                steps.warm.append(_step(persist_arm, fleet, 0))
            elif forks == 0:
                steps.sessions.append(_step(sessions_arm, fleet, 0))
            else:
                steps.ansible_warm[forks].append(_step(arms[forks], fleet, 0))
    if arms:
        steps.masters += f", {len(_masters(work / 'cp'))} after the warm runs"
    return steps


def _report(args: argparse.Namespace, steps: Steps) -> str:
    repeat, forks = args.repeat, (args.ansible_forks or [0])[0]
    user = prepare_login_user(args.login_shell)[0]
    lines = [
        f"# --persist and Ansible ControlPersist: {args.hosts} hosts, `{COMMAND}`, "
        "whole CLI process timed",
        "",
        environment(),
        f"- login user: `{user}`, login shell `{pwd.getpwnam(user).pw_shell}`",
        f"- Ansible: `ansible all -i INV -m raw -a {COMMAND} -f FORKS`, ControlPersist=10m",
        "",
        "| step | wall s, median (range) | client CPU s | sshd CPU s "
        "| agent / ControlMaster CPU s | sshd logins per run | hosts ok per run | exit codes |",
        "|---|---|---|---|---|---|---|---|",
        _row(f"cold `hostbatch run` ×{repeat}", steps.cold),
        _row("first `--persist` run (starts the agent)", steps.first),
        _row(f"warm `--persist` run ×{repeat}", steps.warm),
        _row(
            f"warm `--persist`, session per command (HOSTBATCH_RESIDENT=0) ×{repeat}",
            steps.sessions,
        ),
        *(
            [
                _row(
                    f"first `ansible -f {forks}` run (opens the ControlMasters)",
                    steps.ansible_first,
                )
            ]
            if steps.ansible_first
            else []
        ),
        *(
            _row(f"warm `ansible -f {each}` run (ControlPersist) ×{repeat}", warm)
            for each, warm in steps.ansible_warm.items()
        ),
        "",
        f"last summaries: cold `{steps.cold[-1]['summary']}`; warm `{steps.warm[-1]['summary']}`",
        f"{steps.masters}.",
    ]
    every = [*steps.cold, *steps.first, *steps.warm, *steps.sessions, *steps.ansible_first]
    every += [step for warm in steps.ansible_warm.values() for step in warm]
    for step in every:
        if "tail" in step:
            lines.append(f"\na failed step's output ends with:\n```\n{step['tail']}\n```")
            break
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--ansible-forks",
        type=lambda text: [int(part) for part in text.split(",") if part.strip()],
        default=ANSIBLE_FORKS,
        help="ansible -f (default 50); a comma list runs a warm Ansible run for each; "
        "'' leaves Ansible out",
    )
    parser.add_argument(
        "--login-shell",
        choices=sorted(TEST_USERS),
        default="/bin/sh",
        help="the login user's shell (as root: the hostbatch.testing.sshd.TEST_USERS user; "
        "default /bin/sh, dash on Debian)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="hb-persist-") as work,
        sshd_fleet(args.hosts, workdir=Path(work)) as fleet,
        contextlib.ExitStack() as stack,
    ):
        try:
            steps = _measure(args, Path(work), fleet, stack)
        finally:
            stop = [sys.executable, "-m", "hostbatch", "agent", "stop"]
            env = {**os.environ, "XDG_RUNTIME_DIR": str(Path(work) / "runtime")}
            subprocess.run(stop, env=env, check=False)
    save_report("persist", _report(args, steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
