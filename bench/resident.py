"""Warm ``--persist`` runs with the resident shell against sessions per command, rounds
interleaved on one fleet and one agent. Usage::

    .venv/bin/python bench/resident.py --hosts 1000 --rounds 3

After a cold run and the first ``--persist`` run (which start the agent and its
connections), each round runs ``hostbatch run --persist -- true`` twice, once with
``HOSTBATCH_RESIDENT=0`` (a session per command, the old path) and once without (the
resident shell), the order alternating. Steps are measured as bench/persist.py does
(its ``_step``: whole CLI process wall, sshd CPU from the cgroup, the agent's CPU, sshd
logins). The table goes to stdout and bench/results/resident-<date>.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import environment, save_report, sshd_fleet
from persist import COMMAND, _inventory, _step


def _row(label: str, steps: list[dict[str, Any]]) -> str:
    walls = ", ".join(f"{s['wall']:.2f}" for s in steps)
    med = {key: statistics.median(s[key] for s in steps) for key in ("wall", "sshd", "agent")}
    logins = "/".join(str(s["logins"]) for s in steps)
    codes = "/".join(str(s["code"]) for s in steps)
    return (
        f"| {label} | {med['wall']:.2f} ({walls}) | {med['sshd']:.2f} | {med['agent']:.2f} "
        f"| {logins} | {codes} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="hostbatch-resident-") as work,
        sshd_fleet(args.hosts, workdir=Path(work)) as fleet,
    ):
        runtime = Path(work) / "runtime"
        runtime.mkdir(mode=0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        env["HOSTBATCH_JOURNAL"] = str(Path(work) / "journal.sqlite")
        env.pop("HOSTBATCH_PERSIST", None)
        env.pop("HOSTBATCH_RESIDENT", None)
        sessions = {**env, "HOSTBATCH_RESIDENT": "0"}
        inventory = _inventory(fleet, args.hosts, Path(work) / "inventory.ini")
        base = [sys.executable, "-m", "hostbatch", "run", "-i", str(inventory)]
        base += ["--ssh-config", "", "--known-hosts", str(fleet.known_hosts), "-h", "all"]
        persist = [*base, "--persist", "--", COMMAND]
        cold = _step([*base, "--", COMMAND], env, fleet, args.hosts)
        first = _step(persist, env, fleet, args.hosts)
        _step(persist, env, fleet, 0)  # starts the resident shells (second command)
        arms: dict[str, list[dict[str, Any]]] = {"sessions": [], "resident": []}
        for round_ in range(args.rounds):
            order = ["sessions", "resident"] if round_ % 2 == 0 else ["resident", "sessions"]
            for arm in order:
                step = _step(persist, sessions if arm == "sessions" else env, fleet, 0)
                arms[arm].append(step)
                print(f"round {round_ + 1} {arm}: {step['wall']:.2f}s", flush=True)
        subprocess.run([sys.executable, "-m", "hostbatch", "agent", "stop"], env=env, check=False)
    lines = [
        f"# resident shell: {args.hosts} hosts, `{COMMAND}`, whole CLI process timed",
        "",
        environment(),
        "",
        "| step | wall s, median (each) | sshd CPU s | agent CPU s | logins | exit codes |",
        "|---|---|---|---|---|---|",
        _row("cold `hostbatch run`", [cold]),
        _row("first `--persist` run", [first]),
        _row(
            f"warm, session per command (`HOSTBATCH_RESIDENT=0`) ×{args.rounds}", arms["sessions"]
        ),
        _row(f"warm, resident shell ×{args.rounds}", arms["resident"]),
        "",
        f"summaries: sessions `{arms['sessions'][-1]['summary']}`; "
        f"resident `{arms['resident'][-1]['summary']}`",
    ]
    save_report("resident", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
