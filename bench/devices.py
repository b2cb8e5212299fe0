"""Device benchmark: ``show running-config`` on N emulated Cisco IOS devices.

hostbatch (``hostbatch.api.run`` with a Command: netmiko sessions in threads, at most 128
per worker process, one worker per core) against the seed's approach (one
``multiprocessing.Process`` per device running netmiko ``ConnectHandler`` + ``enable`` +
``send_command``, results on a ``multiprocessing.Queue``), in the same run against the
same emulator (fake-switches, see tests/devices/fake_ios.py).
Usage::

    .venv/bin/python bench/devices.py                  # 200 devices, both approaches, 3 rounds
    .venv/bin/python bench/devices.py --devices 50 --repeat 1 --approaches hostbatch,hostbatch-f128

Each approach runs as a client process of its own (``bench/devices.py --client ...``), the
approaches taking turns in each of ``--repeat`` rounds; ratios compare median runs:

* wall: the run inside the client (after imports), and spawn-to-exit;
* client CPU: user+sys of the client and every process it waited for (``os.wait4``);
* peak RSS, largest process: ``ru_maxrss`` from ``os.wait4``;
* peak RSS / PSS, all processes: the client's process tree sampled every 0.2 s, summed
  (RSS counts pages shared by forked processes once per process; PSS splits them);
* emulator CPU: the fake-switches server's CPU during the run (it shares the cores).

The seed verifies no host keys (netmiko's default AutoAddPolicy); hostbatch checks every
key against a known_hosts file, as it does by default.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.devices.fake_ios import ENABLE_SECRET, PASSWORD, USERNAME, FakeIOS  # noqa: E402

from common import TreeMemory, cpu_seconds, process_cpu, save_report, wait_measured  # noqa: E402

SEED = "seed-processes"
# hostbatch[-wN][-fN]: hostbatch with --workers N and/or --fanout N, else its defaults
_VARIANT = re.compile(r"hostbatch(?:-w(\d+))?(?:-f(\d+))?")
DEFAULT_APPROACHES = ("hostbatch", SEED)


def variant_limits(name: str) -> tuple[int | None, int | None]:
    """(workers, fanout) of a hostbatch variant such as ``hostbatch-w2-f16``; None: the
    default."""
    match = _VARIANT.fullmatch(name)
    if match is None:
        raise SystemExit(f"unknown approach {name!r}: use {SEED} or hostbatch[-wN][-fN]")
    workers, fanout = match.groups()
    return (int(workers) if workers else None, int(fanout) if fanout else None)


COMMAND = "show running-config"


@dataclass(frozen=True)
class Sample:
    approach: str
    ok: int
    total: int
    wall: float
    process_wall: float
    cpu: float
    max_rss_mb: float
    tree_rss_mb: float
    tree_pss_mb: float
    emulator_cpu: float
    failures: list[str]


# ---------------------------------------------------------------- clients (run in a process)


def _client_hostbatch(spec: dict[str, Any], variant: str) -> dict[str, Any]:
    from hostbatch.api import RunOptions, run
    from hostbatch.engine.limits import Limits
    from hostbatch.models import Command, Credentials, Host, Secret
    from hostbatch.transport.base import ConnectOptions

    creds = Credentials(USERNAME, Secret(PASSWORD), secret=Secret(ENABLE_SECRET))
    hosts = [
        Host(name, "127.0.0.1", port, creds, transport="netmiko", device_type="cisco_ios")
        for name, port in spec["devices"]
    ]
    connect = ConnectOptions(known_hosts=spec["known_hosts"])
    workers, fanout = variant_limits(variant)
    limits = Limits(fanout, workers=workers)
    options = RunOptions(limits=limits, connect=connect)
    results = run(Command(COMMAND), hosts=hosts, options=options)
    failures = [
        f"{name}: {r.error}"
        for name, r in results.items()
        if not (r.ok and f"hostname {name}" in r.stdout_text)
    ]
    return {"ok": len(results) - len(failures), "failures": failures}


def _seed_worker(device: dict[str, Any], name: str, queue: Any) -> None:
    """The seed: one process per device, netmiko with its defaults."""
    from netmiko import ConnectHandler

    try:
        conn = ConnectHandler(**device)
        conn.enable()
        output = conn.send_command(COMMAND)
        conn.disconnect()
        ok, detail = f"hostname {name}" in output, ""
    except Exception as exc:
        ok, detail = False, f"{type(exc).__name__}: {str(exc).strip()[:120]}"
    queue.put((name, ok, detail, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def _client_seed(spec: dict[str, Any]) -> dict[str, Any]:
    import netmiko  # noqa: F401  (imported once, before the forks, as the seed did)

    queue: Any = multiprocessing.Queue()
    processes = []
    for name, port in spec["devices"]:
        device = {
            "device_type": "cisco_ios",
            "host": "127.0.0.1",
            "port": port,
            "username": USERNAME,
            "password": PASSWORD,
            "secret": ENABLE_SECRET,
        }
        process = multiprocessing.Process(target=_seed_worker, args=(device, name, queue))
        process.start()
        processes.append(process)
    answers = [queue.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    failures = [f"{name}: {detail}" for name, ok, detail, _ in answers if not ok]
    worker_rss = sum(rss for *_, rss in answers) / 1024
    return {"ok": len(answers) - len(failures), "failures": failures, "worker_rss_mb": worker_rss}


def client_main(approach: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    began, cpu0 = time.monotonic(), cpu_seconds()
    outcome = _client_seed(spec) if approach == SEED else _client_hostbatch(spec, approach)
    outcome.update(wall=time.monotonic() - began, cpu=cpu_seconds() - cpu0)
    print(json.dumps(outcome), flush=True)


# ---------------------------------------------------------------- measuring (the driver)


def measure(approach: str, spec_path: Path, emulator_pid: int | None, timeout: float) -> Sample:
    argv = [sys.executable, __file__, "--client", approach, "--spec", str(spec_path)]
    emulator0, began = process_cpu(emulator_pid), time.monotonic()
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(argv, stdout=output, stderr=errors, start_new_session=True)
        sampler = TreeMemory(process.pid)
        sampler.start()
        _, usage = wait_measured(process, timeout)  # kills the client's group on timeout
        sampler.stop()
        output.seek(0)
        out = output.read()
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    process_wall = time.monotonic() - began
    if process.returncode != 0 or not out.strip():
        raise SystemExit(f"{approach} client failed ({process.returncode}):\n{stderr[-3000:]}")
    outcome = json.loads(out.decode().strip().splitlines()[-1])
    return Sample(
        approach=approach,
        ok=outcome["ok"],
        total=len(json.loads(spec_path.read_text())["devices"]),
        wall=outcome["wall"],
        process_wall=process_wall,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        tree_rss_mb=sampler.peak_rss_kb / 1024,
        tree_pss_mb=sampler.peak_pss_kb / 1024,
        emulator_cpu=process_cpu(emulator_pid) - emulator0,
        failures=outcome["failures"],
    )


# ---------------------------------------------------------------- report


def table(samples: list[Sample]) -> str:
    head = (
        "| approach | ok | wall s | process wall s | client CPU s (user+sys, incl. children) "
        "| peak RSS MB (largest process) | peak RSS MB (all processes) "
        "| peak PSS MB (all processes) | emulator CPU s |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = "".join(
        f"| {s.approach} | {s.ok}/{s.total} | {s.wall:.2f} | {s.process_wall:.2f} | {s.cpu:.2f} "
        f"| {s.max_rss_mb:.0f} | {s.tree_rss_mb:.0f} | {s.tree_pss_mb:.0f} "
        f"| {s.emulator_cpu:.2f} |\n"
        for s in samples
    )
    return head + rows


def _median_sample(samples: list[Sample]) -> Sample:
    """The sample with the median wall time (the lower middle one of an even count)."""
    ordered = sorted(samples, key=lambda s: s.wall)
    return ordered[(len(ordered) - 1) // 2]


def ratios(samples: list[Sample]) -> str:
    """Each hostbatch approach's median run against the seed's median run. Runs take turns
    (one of each approach per round), so a slow spell of the machine hits all of them."""
    by_approach: dict[str, list[Sample]] = {}
    for sample in samples:
        by_approach.setdefault(sample.approach, []).append(sample)
    if SEED not in by_approach:
        return ""
    seed = _median_sample(by_approach.pop(SEED))
    lines = []
    for approach, runs in by_approach.items():
        ours = _median_sample(runs)
        speed = seed.wall / ours.wall
        per_round = ", ".join(
            f"{s.wall / t.wall:.2f}"
            for s, t in zip([x for x in samples if x.approach == SEED], runs, strict=False)
        )
        memory = ours.tree_pss_mb / seed.tree_pss_mb
        lines.append(
            f"- {approach} vs seed (medians of {len(runs)}): {speed:.2f}x faster (wall; "
            f"target >= 2x: {'MET' if speed >= 2 else 'NOT MET'}; per round: {per_round}); "
            f"memory {memory:.2f} of the seed's (peak PSS, all processes; target < 0.5: "
            f"{'MET' if memory < 0.5 else 'NOT MET'}); client CPU {ours.cpu:.1f} s vs "
            f"{seed.cpu:.1f} s"
        )
    return "\n".join(lines) + "\n"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="hostbatch device benchmark (fake IOS)")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument(
        "--approaches",
        default=",".join(DEFAULT_APPROACHES),
        help=f"comma list: {SEED}, hostbatch (defaults), hostbatch-wN-fN (--workers/--fanout)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds; each round runs every approach once"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per client run")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.client:
        client_main(args.client, args.spec)
        return 0
    approaches = [a for a in args.approaches.split(",") if a]
    for approach in approaches:
        if approach != SEED:
            variant_limits(approach)  # an unknown name fails before the emulator starts
    with tempfile.TemporaryDirectory() as work, FakeIOS(args.devices, workdir=Path(work)) as fleet:
        known_hosts = Path(work) / "known_hosts"
        known_hosts.write_text(fleet.known_hosts_text())
        spec = Path(work) / "spec.json"
        devices = [[d.name, d.port] for d in fleet.devices]
        spec.write_text(json.dumps({"devices": devices, "known_hosts": str(known_hosts)}))
        samples = []
        for round_ in range(1, args.repeat + 1):
            for approach in approaches:
                sample = measure(approach, spec, fleet.pid, args.timeout)
                print(f"round {round_}: {approach} {sample.wall:.2f} s", file=sys.stderr)
                samples.append(sample)
    report = _report(args, samples)
    save_report("devices", report)
    return 0 if all(s.ok == s.total for s in samples) else 1


def _report(args: argparse.Namespace, samples: list[Sample]) -> str:
    command = f".venv/bin/python bench/devices.py --devices {args.devices} --repeat {args.repeat}"
    if args.approaches != ",".join(DEFAULT_APPROACHES):
        command += f" --approaches {args.approaches}"
    lines = [
        f"# Devices: `{COMMAND}` on {args.devices} fake IOS devices",
        "",
        f"`{command}` ({os.cpu_count()} cores, Python {sys.version.split()[0]})",
        "",
        table(samples),
        ratios(samples),
    ]
    for sample in samples:
        for failure in sample.failures[:10]:
            lines.append(f"- {sample.approach} failed: {failure}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
