"""Where a warm ``--persist`` run's time goes: the CLI process and the agent under cProfile
(CPU clock). Usage::

    .venv/bin/python bench/resident_profile.py --hosts 300 --runs 3

On the fanout fleet: the agent is started by hand under ``python -m cProfile`` (the CLI
finds its socket and uses it), two warm-up runs open the connections and the resident
shells, then ``--runs`` warm ``hostbatch run --persist -- true`` CLI processes, the last
one under cProfile. The agent writes its profile when it is stopped. Both top-25 lists
(own time) go to stdout; the ``.prof`` files stay in bench/results/.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import save_report, sshd_fleet
from persist import COMMAND, _inventory

RESULTS = Path(__file__).resolve().parent / "results"


def _top(path: Path, title: str) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(25)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    return f"## {title} (total own time {total:.2f} s)\n\n```\n{out.getvalue()[-6000:]}\n```\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    agent_prof, cli_prof = RESULTS / "resident-agent.prof", RESULTS / "resident-cli.prof"
    with (
        tempfile.TemporaryDirectory(prefix="hostbatch-rprof-") as work,
        sshd_fleet(args.hosts, workdir=Path(work)) as fleet,
    ):
        runtime = Path(work) / "runtime"
        runtime.mkdir(mode=0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        env["HOSTBATCH_JOURNAL"] = str(Path(work) / "journal.sqlite")
        for name in ("HOSTBATCH_PERSIST", "HOSTBATCH_RESIDENT"):
            env.pop(name, None)
        python = [sys.executable, "-m", "cProfile", "-o"]
        agent = [*python, str(agent_prof), "-m", "hostbatch.engine.executors.agent", "600"]
        subprocess.run(agent, env=env, check=True)
        socket = runtime / "hostbatch" / "agent.sock"
        deadline = time.monotonic() + 30
        while not socket.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        inventory = _inventory(fleet, args.hosts, Path(work) / "inventory.ini")
        words = ["run", "-i", str(inventory), "--ssh-config", "", "--known-hosts"]
        words += [str(fleet.known_hosts), "-h", "all", "--persist", "--", COMMAND]
        for _ in range(1 + args.runs):
            subprocess.run([sys.executable, "-m", "hostbatch", *words], env=env, check=False)
        began = time.perf_counter()
        profiled = [*python, str(cli_prof), "-m", "hostbatch", *words]
        subprocess.run(profiled, env=env, check=False, capture_output=True)
        wall = time.perf_counter() - began
        subprocess.run([sys.executable, "-m", "hostbatch", "agent", "stop"], env=env, check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and agent_prof.stat().st_size == 0:
            time.sleep(0.1)
        time.sleep(1.0)  # the agent writes its profile as it exits
    text = (
        f"# warm --persist profile: {args.hosts} hosts, `{COMMAND}`\n\n"
        f"profiled CLI run wall {wall:.2f} s (under cProfile)\n\n"
        + _top(cli_prof, "CLI process")
        + "\n"
        + _top(agent_prof, f"agent, {2 + args.runs} warm runs and the first")
    )
    save_report("resident-profile", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
