"""Warm connections: ``hostbatch run --persist`` against a cold ``hostbatch run``, on N
real sshd hosts (the fanout fleet, one loopback address per host). Usage::

    .venv/bin/python bench/persist.py                     # 1000 hosts, 3 repeats
    .venv/bin/python bench/persist.py --hosts 100 --repeat 1

Each step is one whole CLI process (``hostbatch run -i INV -h all -- true``), timed from
spawn to exit: cold runs (every host connects and logs in), the first ``--persist`` run
(starts the agent, logs in), then warm ``--persist`` runs. For each step the logins sshd
logged ("Accepted" lines over every daemon) are counted: a warm run must show 0. The
agent lives in a private XDG_RUNTIME_DIR and is stopped at the end; the runs are journaled
in a temporary journal. The table goes to
stdout and to bench/results/persist-<date>.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import TICKS, SshdFleet, environment, save_report, sshd_fleet

COMMAND = "true"


def _logins(fleet: SshdFleet) -> int:
    return sum(server.log_text().count("Accepted ") for server in fleet.servers)


def _inventory(fleet: SshdFleet, hosts: int, path: Path) -> Path:
    path.write_text(
        "".join(
            f"[{t['name']}]\nhostname = {t['hostname']}\nport = {t['port']}\n"
            f"username = {t['username']}\nkey_file = {t['key_file']}\n\n"
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


def _step(
    argv: list[str], env: dict[str, str], fleet: SshdFleet, expected_logins: int
) -> dict[str, Any]:
    before, sshd, agent = _logins(fleet), fleet.sshd_cpu(), _agent_cpu(env)
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    sshd, agent = fleet.sshd_cpu() - sshd, _agent_cpu(env) - agent
    deadline = time.monotonic() + 5  # sshd writes its log line as the login completes
    while _logins(fleet) - before < expected_logins and time.monotonic() < deadline:
        time.sleep(0.05)
    summary = [line for line in done.stderr.splitlines() if " hosts in " in line] or [""]
    return {
        "wall": wall,
        "code": done.returncode,
        "logins": _logins(fleet) - before,
        "summary": summary[0],
        "sshd": sshd,
        "agent": agent,
    }


def _row(label: str, steps: list[dict[str, Any]]) -> str:
    walls = [s["wall"] for s in steps]
    spread = f"{min(walls):.2f}–{max(walls):.2f}" if len(walls) > 1 else f"{walls[0]:.2f}"
    logins = "/".join(str(s["logins"]) for s in steps)
    codes = "/".join(str(s["code"]) for s in steps)
    sshd = statistics.median(s["sshd"] for s in steps)
    agent = statistics.median(s["agent"] for s in steps)
    median = statistics.median(walls)
    return f"| {label} | {median:.2f} ({spread}) | {sshd:.2f} | {agent:.2f} | {logins} | {codes} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="hostbatch-persist-") as work,
        sshd_fleet(args.hosts, workdir=Path(work)) as fleet,
    ):
        runtime = Path(work) / "runtime"
        runtime.mkdir(mode=0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        env["HOSTBATCH_JOURNAL"] = str(Path(work) / "journal.sqlite")  # runs are journaled
        env.pop("HOSTBATCH_PERSIST", None)
        inventory = _inventory(fleet, args.hosts, Path(work) / "inventory.ini")
        base = [sys.executable, "-m", "hostbatch", "run", "-i", str(inventory)]
        base += ["--ssh-config", "", "--known-hosts", str(fleet.known_hosts), "-h", "all"]
        cold = [_step([*base, "--", COMMAND], env, fleet, args.hosts) for _ in range(args.repeat)]
        persist = [*base, "--persist", "--", COMMAND]
        first = [_step(persist, env, fleet, args.hosts)]
        warm = [_step(persist, env, fleet, 0) for _ in range(args.repeat)]
        subprocess.run([sys.executable, "-m", "hostbatch", "agent", "stop"], env=env, check=False)
    lines = [
        f"# --persist: {args.hosts} hosts, `{COMMAND}`, whole CLI process timed",
        "",
        environment(),
        "",
        "| step | wall s, median (range) | sshd CPU s | agent CPU s | sshd logins per run "
        "| exit codes |",
        "|---|---|---|---|---|---|",
        _row(f"cold `hostbatch run` ×{args.repeat}", cold),
        _row("first `--persist` run (starts the agent)", first),
        _row(f"warm `--persist` run ×{args.repeat}", warm),
        "",
        f"last summaries: cold `{cold[-1]['summary']}`; warm `{warm[-1]['summary']}`",
    ]
    save_report("persist", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
