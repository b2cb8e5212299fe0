"""What the run journal costs: ``true`` on N fleet hosts with and without a JournalSink.

The in-process fleet runs in its own process (so it does not share this one's GIL), the
runs go through ``hostbatch.api.run_plan`` exactly as the CLI does, and the two arms are
interleaved round by round (which one goes first alternates) so drift hits both alike.
"With" includes opening the journal, pruning, ``begin_run``, a committed row per host
and ``end_run``. CPU is this process plus its worker processes (``RUSAGE_CHILDREN``).

    .venv/bin/python bench/journal.py --hosts 1000 --rounds 5

``--cli`` measures the command line instead: ``hostbatch run -g fleet --json true`` as a
subprocess, default (journal on) against ``--no-journal``, interleaved the same way; CPU
is the CLI process and its workers. Start-up and imports are included, as a user sees.

    .venv/bin/python bench/journal.py --cli --hosts 1000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostbatch.api import RunOptions, make_plan, run_plan
from hostbatch.engine.limits import Limits
from hostbatch.engine.plan import Plan
from hostbatch.inventory import load_inventory
from hostbatch.journal import Journal, JournalSink
from hostbatch.models import Event, Status
from hostbatch.testing import FleetThread
from hostbatch.transport.base import ConnectOptions


def serve_fleet(hosts: int, folder: Path) -> None:
    """Child mode: start the fleet, describe it in folder/ready.json, serve until stdin ends."""
    with FleetThread(hosts) as fleet:
        inventory = fleet.write_inventory(folder / "inventory")
        ready = {"inventory": str(inventory), "known_hosts": str(fleet.known_hosts)}
        (folder / "ready.json").write_text(json.dumps(ready))
        sys.stdin.read()


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _TimedSink:
    """The JournalSink, with the time spent inside it summed (the journal's own cost,
    which the load of a shared machine does not blur as much as the run's wall time)."""

    def __init__(self, sink: JournalSink) -> None:
        self.sink = sink
        self.inside = 0.0

    def __call__(self, event: Event) -> None:
        began = time.perf_counter()
        self.sink(event)
        self.inside += time.perf_counter() - began


def _measure(plan: Plan, journal_path: Path | None) -> tuple[float, float, float]:
    """(wall, CPU, seconds inside the journal) of one run; with a journal its whole life
    (open, prune, begin_run, a row per host, end_run, close) is included."""
    wall, cpu = time.monotonic(), _cpu_seconds()
    if journal_path is None:
        results = asyncio.run(run_plan(plan))
        inside = 0.0
    else:
        began = time.perf_counter()
        journal = Journal.open(journal_path)
        names = [h.name for h in plan.hosts]
        sink = _TimedSink(JournalSink.begin(journal, "run", "true", "all", names))
        setup = time.perf_counter() - began
        results = asyncio.run(run_plan(plan, sink))
        began = time.perf_counter()
        sink.sink.end(exit_code=0)
        journal.close()
        inside = setup + sink.inside + time.perf_counter() - began
    bad = [r for r in results.values() if r.status is not Status.OK]
    if bad:
        raise SystemExit(f"{len(bad)} hosts failed, e.g. {bad[0].host}: {bad[0].error}")
    return time.monotonic() - wall, _cpu_seconds() - cpu, inside


def _report(name: str, rounds: list[tuple[float, float, float]]) -> tuple[float, float]:
    walls, cpus = [r[0] for r in rounds], [r[1] for r in rounds]
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(
        f"{name:<18} wall median {wall:.3f}s (min {min(walls):.3f}, max {max(walls):.3f})"
        f"   CPU median {cpu:.3f}s"
    )
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cli", action="store_true", help="time the hostbatch command")
    parser.add_argument("--serve-fleet", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fleet is not None:
        serve_fleet(args.hosts, args.serve_fleet)
        return
    with tempfile.TemporaryDirectory(prefix="hostbatch-bench-journal-") as scratch:
        folder = Path(scratch)
        child = subprocess.Popen(
            [sys.executable, __file__, "--hosts", str(args.hosts), "--serve-fleet", scratch],
            stdin=subprocess.PIPE,
        )
        try:
            (_bench_cli if args.cli else _bench)(folder, args.rounds, args.hosts)
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=120)


def _ready(folder: Path) -> dict[str, str]:
    """The fleet's inventory and known_hosts, once the child has started it."""
    deadline = time.monotonic() + 600
    while not (folder / "ready.json").exists():
        if time.monotonic() > deadline:
            raise SystemExit("the fleet did not start within 600 s")
        time.sleep(0.1)
    return dict(json.loads((folder / "ready.json").read_text()))


def _measure_cli(argv: list[str]) -> tuple[float, float, float]:
    """(wall, CPU of the CLI and its workers, 0) of one ``hostbatch run``."""
    wall, cpu = time.monotonic(), _cpu_seconds()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise SystemExit(f"hostbatch run failed ({done.returncode}): {done.stderr.decode()}")
    return time.monotonic() - wall, _cpu_seconds() - cpu, 0.0


def _bench_cli(folder: Path, rounds: int, hosts: int) -> None:
    ready = _ready(folder)
    journal_path = folder / "journal.sqlite"
    argv = [sys.executable, "-m", "hostbatch", "run", "-i", ready["inventory"]]
    argv += ["--known-hosts", ready["known_hosts"], "--connect-timeout", "60"]
    argv += ["--journal", str(journal_path), "-g", "fleet", "--json"]
    _measure_cli([*argv, "--no-journal", "true"])  # warm-up
    without: list[tuple[float, float, float]] = []
    with_journal: list[tuple[float, float, float]] = []
    for number in range(rounds):
        arms = [(without, [*argv, "--no-journal", "true"]), (with_journal, [*argv, "true"])]
        for results, command in arms if number % 2 == 0 else arms[::-1]:
            results.append(_measure_cli(command))
        print(f"round {number + 1}/{rounds} done", file=sys.stderr)
    print(f"hostbatch run on {hosts} hosts, `true`, {rounds} interleaved rounds")
    for number, (off, on) in enumerate(zip(without, with_journal, strict=True), 1):
        print(
            f"round {number}: wall {off[0]:.2f}s / {on[0]:.2f}s, "
            f"CPU {off[1]:.2f}s / {on[1]:.2f}s (--no-journal / journal)"
        )
    wall_off, cpu_off = _report("--no-journal", without)
    wall_on, cpu_on = _report("journal (default)", with_journal)
    print(
        f"journal cost: wall {100 * (wall_on - wall_off) / wall_off:+.1f}%, "
        f"CPU {100 * (cpu_on - cpu_off) / cpu_off:+.1f}%"
    )


def _bench(folder: Path, rounds: int, hosts: int) -> None:
    ready = _ready(folder)
    inventory = load_inventory([ready["inventory"]], ssh_config=None)
    connect = ConnectOptions(connect_timeout=60, known_hosts=ready["known_hosts"])
    plan = make_plan("true", list(inventory.hosts.values()), RunOptions(Limits(), connect))
    journal_path = folder / "journal.sqlite"
    _measure(plan, None)  # warm-up: imports, worker start-up paths, page cache
    without: list[tuple[float, float, float]] = []
    with_journal: list[tuple[float, float, float]] = []
    for number in range(rounds):
        arms = [(without, None), (with_journal, journal_path)]
        for results, path in arms if number % 2 == 0 else arms[::-1]:
            results.append(_measure(plan, path))
        print(f"round {number + 1}/{rounds} done", file=sys.stderr)
    print(f"{hosts} hosts, `true`, {rounds} interleaved rounds")
    wall_off, cpu_off = _report("without journal", without)
    wall_on, cpu_on = _report("with journal", with_journal)
    print(
        f"journal cost: wall {100 * (wall_on - wall_off) / wall_off:+.1f}%, "
        f"CPU {100 * (cpu_on - cpu_off) / cpu_off:+.1f}%"
    )
    inside = statistics.median(r[2] for r in with_journal)
    print(
        f"time inside the journal: {1000 * inside:.1f} ms per run "
        f"({1e6 * inside / hosts:.0f} us per host), {100 * inside / wall_off:.2f}% of the wall"
    )
    size = journal_path.stat().st_size
    print(f"journal file after {rounds} runs: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
