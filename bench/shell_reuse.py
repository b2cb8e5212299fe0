"""Connections kept open: two commands through one ``hostbatch.api.Session`` against two
plain ``hostbatch.api.run`` calls, on N real sshd hosts (the fanout fleet). Usage::

    .venv/bin/python bench/shell_reuse.py                  # 100 hosts, 3 repeats
    .venv/bin/python bench/shell_reuse.py --hosts 300 --repeat 1

Each approach runs in a process of its own (this file with ``--client``), which times each
of its two ``true`` commands and reports after each: ``session.pool.opened`` (logins the
Session made so far) and the logins sshd itself logged (``Accepted publickey`` lines in the
daemons' logs), so the reuse is checked on both sides. The table goes to stdout and to
bench/results/shell-reuse-<date>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common import SshdFleet, cpu_seconds, measure_client, save_report, sshd_fleet, timed

COMMAND = "true"
STEPS = ("first", "second")
LABELS = {
    "session": "Session, run() twice",
    "run": "api.run() twice",
}

# -- client side -------------------------------------------------------------------------


def _logins(logs: list[str]) -> int:
    """Successful logins sshd has logged so far, over every daemon."""
    return sum(Path(log).read_text(errors="replace").count("Accepted publickey") for log in logs)


async def _timed_steps(
    run_once: Callable[[], Awaitable[dict[str, Any]]],
    opened: Callable[[], int | None],
    logs: list[str],
) -> list[dict[str, Any]]:
    steps = []
    for _ in STEPS:
        logins, cpu, started = _logins(logs), cpu_seconds(), time.perf_counter()
        results = await run_once()
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        await asyncio.sleep(0.2)  # let sshd write its log lines
        steps.append(
            {
                "wall": wall,
                "cpu": cpu,
                "ok": sum(1 for r in results.values() if r.ok and r.exit_status == 0),
                "opened": opened(),
                "sshd_logins": _logins(logs) - logins,
            }
        )
    return steps


async def _client(mode: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    from hostbatch.api import RunOptions, Session, run_async
    from hostbatch.models import Credentials, Host
    from hostbatch.transport.base import ConnectOptions

    hosts = [
        Host(
            name=t["name"],
            hostname=t["hostname"],
            port=t["port"],
            credentials=Credentials(username=t["username"], key_file=t["key_file"]),
        )
        for t in spec["targets"]
    ]
    options = RunOptions(connect=ConnectOptions(known_hosts=spec["known_hosts"]))
    if mode == "run":
        return await _timed_steps(
            lambda: run_async(COMMAND, hosts=hosts, options=options), lambda: None, spec["logs"]
        )
    async with Session(hosts, options) as session:
        return await _timed_steps(
            lambda: session.run(COMMAND), lambda: session.pool.opened, spec["logs"]
        )


def client_main(mode: str, spec_path: str, result_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    # the Session is closed inside: in the total wall
    steps, wall, cpu = timed(lambda: asyncio.run(_client(mode, spec)))
    hosts = len(spec["targets"])
    ok = min(step["ok"] for step in steps)
    result = {
        "steps": steps,
        "wall": wall,
        "cpu": cpu,
        "ok": ok,
        "failed": hosts - ok,
        "failures": [],
    }
    Path(result_path).write_text(json.dumps(result))
    return 0


# -- benchmark side ----------------------------------------------------------------------


def _measure(
    fleet: SshdFleet, sshd_cpu: Callable[[], float], mode: str, hosts: int, timeout: float
) -> dict[str, Any]:
    spec = {
        "known_hosts": str(fleet.known_hosts),
        "targets": fleet.targets(hosts),
        "logs": [str(server.log_path) for server in fleet.servers_for(hosts)],
    }
    argv = [sys.executable, __file__, "--client", mode]
    sample, result = measure_client(argv, spec, sshd_cpu, hosts, timeout)
    result["sample"] = sample
    return result


def _median(runs: list[dict[str, Any]], step: int, name: str) -> float:
    return statistics.median(float(run["steps"][step][name]) for run in runs)


def _table(runs: dict[str, list[dict[str, Any]]], hosts: int) -> str:
    lines = [
        "| approach | command | ok | wall s | client CPU s | pool.opened after | "
        "logins sshd logged during it | whole client: wall s, sshd CPU s, peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, mode_runs in runs.items():
        whole = statistics.median(r["wall"] for r in mode_runs)
        sshd = statistics.median(r["sample"].sshd_cpu for r in mode_runs)
        rss = max(r["sample"].max_rss_mb for r in mode_runs)
        for index, step in enumerate(STEPS):
            ok = min(r["steps"][index]["ok"] for r in mode_runs)
            opened = {r["steps"][index]["opened"] for r in mode_runs}
            logins = sorted({r["steps"][index]["sshd_logins"] for r in mode_runs})
            tail = f"{whole:.2f}, {sshd:.2f}, {rss:.0f}" if index == 0 else ""
            lines.append(
                f"| {LABELS[mode]} | {step} `{COMMAND}` | {ok}/{hosts} "
                f"| {_median(mode_runs, index, 'wall'):.2f} "
                f"| {_median(mode_runs, index, 'cpu'):.2f} "
                f"| {'/'.join('-' if o is None else str(o) for o in sorted(opened, key=str))} "
                f"| {'/'.join(map(str, logins))} | {tail} |"
            )
    return "\n".join(lines)


def _verdicts(runs: dict[str, list[dict[str, Any]]], hosts: int) -> str:
    session = runs.get("session", [])
    opened = [step["opened"] for r in session for step in r["steps"]]
    second = [r["steps"][1]["sshd_logins"] for r in session]
    met = bool(session) and all(o == hosts for o in opened) and all(s == 0 for s in second)
    return (
        f"Session: pool.opened after each command {sorted(set(opened))} (must stay {hosts}), "
        f"logins sshd logged during the second command {sorted(set(second))} (must be 0): "
        f"{'MET' if met else 'NOT MET'}"
    )


NOTES = """\
wall and client CPU: each command alone, timed in the client process (after imports);
for Session the first command pays connect + key exchange + authentication for every host,
the second only opens a channel per host on the open connections. "whole client" = both
commands plus closing (median), the sshd CPU of the whole client run and the largest peak
RSS. pool.opened is the Session's login count ("-" for api.run, which keeps no pool);
logins sshd logged counts "Accepted publickey" lines the daemons wrote during the command.
Medians over the repeats; the machine is shared, so see the CPU noise note in fanout."""


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Session connection reuse (real sshd)")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs per approach (median)")
    parser.add_argument("--timeout", type=float, default=300.0)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--client"]:
        return client_main(*argv[1:4])
    args = _parse(argv)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in LABELS}
    with sshd_fleet(args.hosts) as fleet:
        sshd_cpu = fleet.sshd_cpu
        for attempt in range(max(1, args.repeat)):
            for mode, mode_runs in runs.items():
                mode_runs.append(_measure(fleet, sshd_cpu, mode, args.hosts, args.timeout))
                walls = ", ".join(f"{s['wall']:.2f}s" for s in mode_runs[-1]["steps"])
                print(f"{LABELS[mode]} #{attempt + 1}: walls {walls}", file=sys.stderr)
    now = datetime.datetime.now()
    method = fleet.sshd_cpu_method
    text = (
        f"# hostbatch connection reuse, {now:%Y-%m-%d %H:%M}\n\n"
        f"- command: `{shlex.join([sys.executable, *sys.argv])}`\n"
        f"- {args.hosts} hosts on {len(fleet.servers)} sshd daemons, repeats: "
        f"{args.repeat}; sshd CPU from {method}\n\n"
        f"{_table(runs, args.hosts)}\n\n{_verdicts(runs, args.hosts)}\n\n{NOTES}\n"
    )
    save_report("shell-reuse", text)
    failed = any(r["failed"] for mode_runs in runs.values() for r in mode_runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
