"""Fan-out benchmark: one command on N hosts, hostbatch against the seeds' approaches.

Real OpenSSH sshd daemons on distinct loopback addresses (common.SshdFleet); every
approach runs in a process of its own (fanout_clients.py) so its CPU and memory are
measured alone (common.measure_client). Usage::

    .venv/bin/python bench/fanout.py --sizes 10,100,300,1000 --repeat 3
    .venv/bin/python bench/fanout.py --sizes 100,300 --repeat 3 \\
        --approaches hostbatch,hostbatch-cli,asyncssh-gather,parallel-ssh   # issue #16
    .venv/bin/python bench/fanout.py --quick
    .venv/bin/python bench/fanout.py --profile 300      # cProfile of hostbatch workers=1
    .venv/bin/python bench/fanout.py --client-nice -10  # clients ahead of the local sshds

The markdown table goes to stdout and to bench/results/fanout-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import io
import json
import os
import pstats
import re
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import (
    ADDRESSES_PER_DAEMON,
    RESULTS,
    Sample,
    SshdFleet,
    environment,
    measure_client,
    save_report,
    sshd_fleet,
)
from fanout_report import LABELS, NOTES, Row, table, targets

CLIENT = Path(__file__).with_name("fanout_clients.py")
SEQUENTIAL_GUESS = 0.05  # seconds per host before the sequential loop was measured


@dataclass(frozen=True)
class Settings:
    sizes: list[int]
    sleep_sizes: list[int]
    repeat: int
    approaches: list[str]
    max_seconds: float
    timeout: float
    cores: int
    nice: int


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="hostbatch fan-out benchmark (real sshd)")
    parser.add_argument(
        "--sizes",
        type=_ints,
        default=[10, 100, 300, 1000],
        help="host counts for `true` (default 10,100,300,1000)",
    )
    parser.add_argument(
        "--sleep-sizes",
        type=_ints,
        default=[100],
        help="host counts for `sleep 1` (default 100; empty: none)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median kept)")
    parser.add_argument(
        "--approaches", default=",".join(LABELS), help=f"comma list out of {','.join(LABELS)}"
    )
    parser.add_argument("--quick", action="store_true", help="sizes 10,50, sleep at 20, one repeat")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=120.0,
        help="skip the sequential loop when its estimate exceeds this",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="kill a client run after this many seconds"
    )
    parser.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="run the clients under nice -n N (negative needs root): on one machine the "
        "clients compete with hundreds of sshd processes for the cores",
    )
    parser.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        help="only profile hostbatch workers=1 on N hosts with cProfile",
    )
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Settings:
    approaches = [a for a in args.approaches.split(",") if a]
    unknown = sorted(set(approaches) - set(LABELS))
    if unknown:
        raise SystemExit(f"unknown approaches: {', '.join(unknown)}")
    if args.quick:
        args.sizes, args.sleep_sizes, args.repeat = [10, 50], [20], 1
    return Settings(
        sizes=args.sizes,
        sleep_sizes=args.sleep_sizes,
        repeat=max(1, args.repeat),
        approaches=approaches,
        max_seconds=args.max_seconds,
        timeout=args.timeout,
        cores=len(os.sched_getaffinity(0)),
        nice=args.client_nice,
    )


def _raise_file_limit() -> None:
    """Thousands of connections need thousands of descriptors (inherited by the clients)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# approach -> (module it needs, what installs it): peers live in the `bench` extra
NEEDS = {
    "parallel-ssh": ("pssh", "parallel-ssh"),
    "seed-sequential": ("paramiko", "paramiko"),
    "seed-threads": ("paramiko", "paramiko"),
    "seed-processes": ("paramiko", "paramiko"),
    "hostbatch-paramiko": ("paramiko", "paramiko"),
}


def _missing(approach: str) -> str | None:
    """Why *approach* cannot run here (a library not installed), or None."""
    if approach not in NEEDS:
        return None
    module, package = NEEDS[approach]
    if importlib.util.find_spec(module) is not None:
        return None
    return f"{package} is not installed: pip install -e '.[bench]'"


def _skip_reason(
    approach: str, command: str, hosts: int, rows: list[Row], limit: float
) -> str | None:
    missing = _missing(approach)
    if missing is not None:
        return missing
    if approach == "hostbatch-paramiko" and (
        importlib.util.find_spec("hostbatch.transport.paramiko_") is None
    ):
        return "src/hostbatch/transport/paramiko_.py does not exist yet"
    if approach == "seed-sequential":
        measured = [r for r in rows if r.approach == approach and r.command == "true" and r.samples]
        per_host = (
            measured[-1].median("wall") / measured[-1].hosts if measured else SEQUENTIAL_GUESS
        )
        match = re.fullmatch(r"sleep (\d+(?:\.\d+)?)", command)
        estimate = hosts * (per_host + (float(match.group(1)) if match else 0.0))
        if estimate > limit:
            return f"too slow (estimated {estimate:.0f}s > --max-seconds {limit:g})"
    return None


def _spec(fleet: SshdFleet, command: str, hosts: int) -> dict[str, object]:
    return {
        "command": command,
        "known_hosts": str(fleet.known_hosts),
        "timeout": 30.0,
        "targets": fleet.targets(hosts),
        # kept for the whole benchmark: hostbatch-cli's inventories and run journal
        "workdir": str(fleet.known_hosts.parent),
    }


def _argv(approach: str, nice: int) -> list[str]:
    """The client's command line, under ``nice -n NICE`` when asked (same pid after exec)."""
    client = [sys.executable, str(CLIENT), approach]
    return ["nice", "-n", str(nice), *client] if nice else client


def measure(
    fleet: SshdFleet, approach: str, command: str, hosts: int, timeout: float, *, nice: int = 0
) -> Sample:
    """Run *approach* on the first *hosts* hosts of *fleet*, in a process of its own."""
    spec = _spec(fleet, command, hosts)
    sample, _ = measure_client(
        _argv(approach, nice), spec, lambda: fleet.sshd_cpu(hosts), hosts, timeout
    )
    return sample


def profile(
    fleet: SshdFleet, approach: str, hosts: int, out: Path, *, clock: str = "cpu", nice: int = 0
) -> None:
    """Run *approach* on ``true`` once under cProfile (in the client); stats to *out*."""
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(_spec(fleet, "true", hosts)))
        argv = [*_argv(approach, nice), str(spec_path), str(result_path), "--profile", str(out)]
        subprocess.run([*argv, "--profile-clock", clock], check=True, stdin=subprocess.DEVNULL)
        result = json.loads(result_path.read_text())
    print(
        f"profiled {approach} on {hosts} hosts ({clock} clock): {result['ok']} ok, "
        f"{result['failed']} failed, wall {result['wall']:.2f}s, CPU {result['cpu']:.2f}s "
        "(profiler overhead included)",
        file=sys.stderr,
    )


def _run_case(
    fleet: SshdFleet, settings: Settings, command: str, hosts: int, rows: list[Row]
) -> None:
    """Every approach once per round, rounds interleaved (the order rotates each round), so
    the machine's drift spreads over all approaches alike."""
    case: list[Row] = []
    for approach in settings.approaches:
        row = Row(command, hosts, approach, settings.cores)
        row.skipped = _skip_reason(approach, command, hosts, rows, settings.max_seconds)
        rows.append(row)
        if row.skipped is not None:
            print(f"{command!r} N={hosts} {approach}: skipped: {row.skipped}", file=sys.stderr)
            continue
        case.append(row)
    for attempt in range(settings.repeat):
        shift = attempt % len(case) if case else 0
        for row in case[shift:] + case[:shift]:
            sample = measure(
                fleet, row.approach, command, hosts, settings.timeout, nice=settings.nice
            )
            row.samples.append(sample)
            print(
                f"{command!r} N={hosts} {row.approach} #{attempt + 1}: {sample.ok}/{hosts} ok, "
                f"wall {sample.wall:.2f}s (process {sample.process_wall:.2f}s), "
                f"CPU {sample.cpu:.2f}s (process {sample.process_cpu:.2f}s), "
                f"sshd {sample.sshd_cpu:.2f}s",
                file=sys.stderr,
            )
            for name, reason in sample.failures[:5]:
                print(f"    FAILED {name}: {reason}", file=sys.stderr)


def _environment(settings: Settings, fleet: SshdFleet) -> str:
    return (
        f"{environment()}\n"
        f"- {len(fleet.servers)} sshd daemons "
        f"(at most {ADDRESSES_PER_DAEMON} listen addresses each), "
        f"one loopback address per host; repeats per case: {settings.repeat}; "
        f"client nice: {settings.nice}; sshd CPU measured by {fleet.sshd_cpu_method}"
    )


def _report(settings: Settings, fleet: SshdFleet, rows: list[Row]) -> None:
    text = (
        f"# hostbatch fan-out benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}\n\n"
        f"{_environment(settings, fleet)}\n\n{table(rows)}\n\n"
        f"{targets(rows)}\n\n{NOTES}\n"
    )
    save_report("fanout", text)


def _profile(hosts: int, args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fanout-profile-{datetime.datetime.now():%Y-%m-%d-%H%M}.prof"
    with sshd_fleet(hosts) as fleet:
        measure(fleet, "hostbatch-1proc", "true", min(hosts, 10), args.timeout)  # warm-up
        profile(
            fleet, "hostbatch-1proc", hosts, out, clock=args.profile_clock, nice=args.client_nice
        )
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(str(out), stream=buffer).sort_stats(order).print_stats(30)
        print(f"## top 30 by {order}\n{buffer.getvalue()}")
    print(f"stats in {out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _raise_file_limit()
    if args.profile:
        _profile(args.profile, args)
        return 0
    settings = _settings(args)
    cases = [("true", n) for n in settings.sizes] + [("sleep 1", n) for n in settings.sleep_sizes]
    rows: list[Row] = []
    with sshd_fleet(max(n for _, n in cases)) as fleet:
        measure(fleet, "hostbatch-1proc", "true", min(10, fleet.size), settings.timeout)  # warm-up
        for command, hosts in cases:
            _run_case(fleet, settings, command, hosts, rows)
        _report(settings, fleet, rows)
    failed = any(s.failed for r in rows for s in r.samples)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
