"""The dask engine against ``--engine local`` on one machine: 1000 hosts, ``true``.

Both run the real CLI (``hostbatch run --json -- true``) against the sshd fleet
(bench/common.py). Local: the CLI's own worker processes (2 on this machine). Dask: a
``dask scheduler`` and two ``dask worker --nthreads 1`` processes started here, so 2
shards. Rounds are interleaved (local, dask, local, dask...). Reported per approach:
wall of the CLI process, CPU of the CLI process tree (wait4: for local this includes its
worker processes), CPU of the dask workers and scheduler (their /proc deltas), and the
CLI's CPU per host. Run::

    .venv/bin/python bench/dask_engine.py [--hosts 1000] [--rounds 3] [--command true]

The cost of one event on its way worker → scheduler → CLI: run once with ``true`` (2
events a host: started, finished) and once with a command printing N lines apart
(``--command 'for i in $(seq 20); do echo $i; sleep 0.02; done'``: ~N more events a
host, each its own output chunk); the difference in the CLI's and the scheduler's CPU,
divided by the extra events, is what an event costs each of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import environment, process_cpu, save_report, sshd_fleet, wait_measured

DASK = str(Path(sys.executable).with_name("dask"))
CLI = "from hostbatch.cli.app import main; main()"


def write_inventory(targets: list[dict[str, object]], path: Path) -> Path:
    lines = [
        f"[{t['name']}]\nhostname = {t['hostname']}\nport = {t['port']}\n"
        f"username = {t['username']}\nkey_file = {t['key_file']}\n"
        for t in targets
    ]
    path.mkdir(parents=True, exist_ok=True)
    (path / "bench.ini").write_text("\n".join(lines))
    return path


def start_cluster(workdir: Path) -> list[subprocess.Popen[bytes]]:
    scheduler_file = workdir / "scheduler.json"
    processes = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    deadline = time.monotonic() + 60
    while not scheduler_file.exists() or not scheduler_file.read_text().strip():
        if time.monotonic() > deadline:
            raise SystemExit("dask scheduler did not start")
        time.sleep(0.05)
    for name in ("w1", "w2"):
        processes.append(
            subprocess.Popen(
                [DASK, "worker", "--scheduler-file", str(scheduler_file), "--no-nanny",
                 "--nthreads", "1", "--name", name, "--host", "127.0.0.1",
                 "--no-dashboard"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
    from distributed import Client

    address = json.loads(scheduler_file.read_text())["address"]
    with Client(address, timeout=60) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(2, timeout=60)
    return processes


def one_run(argv: list[str], hosts: int, cluster: list[int]) -> dict[str, float]:
    cluster_before = sum(process_cpu(pid) for pid in cluster)
    scheduler_before = process_cpu(cluster[0])
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
    assert process.stdout is not None
    lines = process.stdout.read().decode().splitlines()
    code, usage = wait_measured(process, 600)
    wall = time.perf_counter() - started
    ok = sum('"status": "ok"' in line for line in lines)
    if code != 0 or ok != hosts:
        raise SystemExit(f"run failed: exit {code}, {ok}/{hosts} ok")
    return {
        "wall": wall,
        "cli_cpu": usage.ru_utime + usage.ru_stime,
        "cluster_cpu": sum(process_cpu(pid) for pid in cluster) - cluster_before,
        "scheduler_cpu": process_cpu(cluster[0]) - scheduler_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--command", default="true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sshd_fleet(args.hosts) as fleet:
        workdir = Path(tmp)
        inventory = write_inventory(fleet.targets(args.hosts), workdir / "inventory")
        cluster = start_cluster(workdir)
        try:
            address = json.loads((workdir / "scheduler.json").read_text())["address"]
            base = [sys.executable, "-c", CLI, "run", "-i", str(inventory),
                    "--known-hosts", str(fleet.known_hosts), "-h", "all", "--json"]  # fmt: skip
            argvs = {
                "local": [*base, "--engine", "local", "--", args.command],
                "dask": [*base, "--engine", "dask", "--scheduler", address, "--", args.command],
            }
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in argvs}
            pids = [p.pid for p in cluster]
            for number in range(args.rounds):
                for name, argv in argvs.items():
                    samples[name].append(one_run(argv, args.hosts, pids))
                    print(f"round {number + 1} {name}: {samples[name][-1]}", file=sys.stderr)
        finally:
            for process in cluster:
                process.terminate()
                process.wait()
    save_report("dask_engine", report(samples, args))


def report(samples: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    hosts, rounds = args.hosts, args.rounds
    median = {
        name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for name, runs in samples.items()
    }
    rows = [
        f"| {name} | {m['wall']:.2f} | {m['cli_cpu']:.2f} | {m['cluster_cpu']:.2f} | "
        f"{m['scheduler_cpu']:.2f} | {1000 * m['cli_cpu'] / hosts:.2f} |"
        for name, m in median.items()
    ]
    ratio = median["dask"]["wall"] / median["local"]["wall"]
    every = "\n".join(
        f"- round {n + 1}: local {samples['local'][n]['wall']:.2f} s, "
        f"dask {samples['dask'][n]['wall']:.2f} s"
        for n in range(rounds)
    )
    return (
        f"# dask engine vs local: {hosts} hosts, `{args.command}`, "
        f"median of {rounds} interleaved rounds\n\n"
        f"{environment()}\n\n"
        "| engine | wall s | CLI tree CPU s | dask workers+scheduler CPU s | of which "
        "scheduler | CLI ms/host |\n| --- | --- | --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + f"\n\ndask/local wall: {ratio:.2f}x\n\n{every}\n"
    )


if __name__ == "__main__":
    main()
