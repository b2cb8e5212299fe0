"""Cold CLI runs: ``hostbatch run -i INV -h all -- true`` as a user types it, on N real sshd
hosts (the fanout fleet, ``common.sshd_fleet``), two or more code trees interleaved. Usage::

    .venv/bin/python bench/coldcpu.py --sizes 100,300 --rounds 5 \\
        --arm old=/tmp/main-src --arm new=src
    .venv/bin/python bench/coldcpu.py --sizes 300 --arm base=src --arm uv=src,HOSTBATCH_LOOP=uvloop

An arm is ``LABEL=SRC[,NAME=VALUE...]``: the run's interpreter gets ``PYTHONPATH=SRC`` (a
``src`` directory holding ``hostbatch``; e.g. ``git archive main src | tar -x -C DIR``) and
the environment variables given. Each round runs every arm once per size, the order of the
arms alternating from round to round, so the machine's drift falls on all of them alike.

Per run, from ``os.wait4`` (``common.wait_measured``): the CPU of the whole CLI process tree
with interpreter start-up and imports (worker processes included), wall from spawn to exit;
the sshd CPU from the fleet's cpuacct cgroup, the floor (sshd CPU / cores) and wall/floor;
*other* is the machine's busy CPU in the window minus client and sshd. Medians per arm and
size, then every round's figures. Bytecode is compiled for each tree first and
``PYTHONDONTWRITEBYTECODE`` is dropped, so start-up is what an installed copy costs. The
runs are journaled (the default), each arm in a journal file of its own.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    SETTLE_SECONDS,
    SshdFleet,
    environment,
    machine_busy,
    save_report,
    sshd_fleet,
    wait_measured,
)
from persist import _inventory


@dataclass(frozen=True)
class Arm:
    label: str
    src: Path
    env: dict[str, str]


@dataclass(frozen=True)
class Run:
    cpu: float  # whole process tree, start-up included (wait4)
    wall: float  # spawn to exit
    sshd: float
    other: float
    rss_mb: float
    code: int


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)

    def median(self, name: str) -> float:
        return statistics.median(float(getattr(run, name)) for run in self.runs)


def _arm(text: str) -> Arm:
    label, _, rest = text.partition("=")
    src, *pairs = rest.split(",")
    if not label or not src or not Path(src, "hostbatch").is_dir():
        raise SystemExit(f"--arm {text}: want LABEL=SRC[,NAME=VALUE...], SRC holding hostbatch/")
    env = dict(pair.split("=", 1) for pair in pairs)
    return Arm(label, Path(src).resolve(), env)


def _one(argv: list[str], env: dict[str, str], fleet: SshdFleet, timeout: float) -> Run:
    sshd_before, busy_before = fleet.sshd_cpu(), machine_busy()
    began = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True,
        )  # fmt: skip
        code, usage = wait_measured(process, timeout)
        wall = time.perf_counter() - began
        busy = machine_busy() - busy_before
        time.sleep(SETTLE_SECONDS)
        sshd = fleet.sshd_cpu() - sshd_before
        if code != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            print(f"    exit {code}: {' / '.join(tail)}", file=sys.stderr)
    cpu = usage.ru_utime + usage.ru_stime
    return Run(cpu, wall, sshd, busy - cpu - sshd, usage.ru_maxrss / 1024, code)


def _env(arm: Arm, journal: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("HOSTBATCH_PERSIST", None)
    env.update(PYTHONPATH=str(arm.src), HOSTBATCH_JOURNAL=str(journal), **arm.env)
    return env


def _table(arms: list[Arm], sizes: list[int], cells: dict[tuple[str, int], Cell]) -> list[str]:
    cores = len(os.sched_getaffinity(0))
    lines = [
        "| N | arm | runs ok | CPU ms/host incl. start-up | client CPU s | wall s | sshd CPU s "
        "| floor s | wall/floor | other CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for hosts in sizes:
        for arm in arms:
            cell = cells[arm.label, hosts]
            floor = cell.median("sshd") / cores
            ok = sum(run.code == 0 for run in cell.runs)
            lines.append(
                f"| {hosts} | {arm.label} | {ok}/{len(cell.runs)} "
                f"| {1000 * cell.median('cpu') / hosts:.2f} | {cell.median('cpu'):.3f} "
                f"| {cell.median('wall'):.3f} | {cell.median('sshd'):.3f} | {floor:.3f} "
                f"| {cell.median('wall') / floor if floor else float('inf'):.2f} "
                f"| {cell.median('other'):.2f} | {cell.median('rss_mb'):.0f} |"
            )
    return lines


def _rounds(arms: list[Arm], sizes: list[int], cells: dict[tuple[str, int], Cell]) -> list[str]:
    lines = ["", "Every round (client CPU s / wall s):", ""]
    for hosts in sizes:
        runs = zip(*(cells[arm.label, hosts].runs for arm in arms), strict=True)
        for number, each in enumerate(runs, 1):
            pairs = ", ".join(
                f"{arm.label} {run.cpu:.3f}/{run.wall:.2f}"
                for arm, run in zip(arms, each, strict=True)
            )
            lines.append(f"- N={hosts} round {number}: {pairs}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300", help="host counts (default 100,300)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--arm", action="append", type=_arm, required=True, help="LABEL=SRC,...")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    arms: list[Arm] = args.arm
    for arm in arms:
        compileall.compile_dir(str(arm.src), quiet=1)
    cells = {(arm.label, hosts): Cell() for arm in arms for hosts in sizes}
    with (
        tempfile.TemporaryDirectory(prefix="hostbatch-coldcpu-") as work,
        sshd_fleet(max(sizes), workdir=Path(work)) as fleet,
    ):
        # the console script, as a user types it (PYTHONPATH picks the arm's tree)
        hostbatch = [str(Path(sys.executable).with_name("hostbatch")), "run", "--ssh-config", ""]
        hostbatch += ["--known-hosts", str(fleet.known_hosts), "-h", "all"]
        for number in range(args.rounds):
            order = arms if number % 2 == 0 else arms[::-1]
            for hosts in sizes:
                inventory = _inventory(fleet, hosts, Path(work, f"inventory-{hosts}.ini"))
                argv = [*hostbatch[:2], "-i", str(inventory), *hostbatch[2:], "--", "true"]
                for arm in order:
                    env = _env(arm, Path(work, f"journal-{arm.label}.sqlite"))
                    run = _one(argv, env, fleet, args.timeout)
                    cells[arm.label, hosts].runs.append(run)
                    print(
                        f"round {number + 1} N={hosts} {arm.label}: exit {run.code}, "
                        f"CPU {run.cpu:.3f}s ({1000 * run.cpu / hosts:.2f} ms/host), "
                        f"wall {run.wall:.2f}s, sshd {run.sshd:.2f}s, other {run.other:.2f}s",
                        file=sys.stderr,
                    )
    arm_lines = [f"- arm `{a.label}`: PYTHONPATH={a.src} {a.env or ''}" for a in arms]
    text = "\n".join(
        [
            f"# cold `hostbatch run -h all -- true`, {args.rounds} interleaved rounds",
            "",
            environment(),
            *arm_lines,
            "",
            *_table(arms, sizes, cells),
            *_rounds(arms, sizes, cells),
        ]
    )
    save_report("coldcpu", text + "\n")
    failed = any(run.code != 0 for cell in cells.values() for run in cell.runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
