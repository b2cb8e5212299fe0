"""Device benchmark: ``show running-config`` on N emulated Cisco IOS devices.

hostbatch (``hostbatch.api.run`` with a Command; netmiko in a thread pool, one process)
against the seed's approach (one ``multiprocessing.Process`` per device running netmiko
``ConnectHandler`` + ``enable`` + ``send_command``, results on a ``multiprocessing.Queue``),
in the same run against the same emulator (fake-switches, see tests/devices/fake_ios.py).
Usage::

    .venv/bin/python bench/devices.py                  # 200 devices, both approaches
    .venv/bin/python bench/devices.py --devices 50 --approaches hostbatch

Each approach runs as a client process of its own (``bench/devices.py --client ...``):

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
import datetime
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.devices.fake_ios import ENABLE_SECRET, PASSWORD, USERNAME, FakeIOS  # noqa: E402

RESULTS = Path(__file__).with_name("results")
# hostbatch variants: (workers, fanout); None: hostbatch's defaults
VARIANTS: dict[str, tuple[int | None, int | None]] = {
    "hostbatch": (None, None),  # defaults: 200 hosts -> one process, fanout 256
    "hostbatch-w2-f64": (2, 64),  # --workers 2 --fanout 64: 2 processes, 32 hosts each
    "hostbatch-f32": (None, 32),  # --fanout 32, one process
}
APPROACHES = (*VARIANTS, "seed-processes")
DEFAULT_APPROACHES = ("hostbatch", "hostbatch-w2-f64", "seed-processes")
COMMAND = "show running-config"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


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
    workers, fanout = VARIANTS[variant]
    limits = Limits(workers=workers) if fanout is None else Limits(fanout, workers=workers)
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
    began, cpu0 = time.monotonic(), _own_cpu()
    if approach == "seed-processes":
        outcome = _client_seed(spec)
    else:
        outcome = _client_hostbatch(spec, approach)
    outcome.update(wall=time.monotonic() - began, cpu=_own_cpu() - cpu0)
    print(json.dumps(outcome), flush=True)


def _own_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ---------------------------------------------------------------- measuring (the driver)


def _process_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; (0, 0) when it is gone."""
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        pss = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        return 0, 0
    return rss, pss


class TreeSampler(threading.Thread):
    """Peak of the summed RSS and PSS over a process and its descendants."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            sizes = [_memory(pid) for pid in _process_tree(self.pid)]
            self.peak_rss = max(self.peak_rss, sum(r for r, _ in sizes))
            self.peak_pss = max(self.peak_pss, sum(p for _, p in sizes))
            self.done.wait(self.interval)


def _cpu_of(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(approach: str, spec_path: Path, emulator_pid: int | None, timeout: float) -> Sample:
    argv = [sys.executable, __file__, "--client", approach, "--spec", str(spec_path)]
    emulator0, began = _cpu_of(emulator_pid), time.monotonic()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
        sampler = TreeSampler(process.pid)
        sampler.start()
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        assert process.stdout is not None
        out = process.stdout.read()
        process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        timer.cancel()
        sampler.done.set()
        sampler.join()
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
        tree_rss_mb=sampler.peak_rss / 2**20,
        tree_pss_mb=sampler.peak_pss / 2**20,
        emulator_cpu=_cpu_of(emulator_pid) - emulator0,
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


def ratios(samples: list[Sample]) -> str:
    seed = next((s for s in samples if s.approach == "seed-processes"), None)
    if seed is None:
        return ""
    lines = []
    for ours in (s for s in samples if s is not seed):
        speed = seed.wall / ours.wall
        memory = ours.tree_pss_mb / seed.tree_pss_mb
        lines.append(
            f"- {ours.approach} vs seed: {speed:.1f}x faster (wall; target >= 2x: "
            f"{'MET' if speed >= 2 else 'NOT MET'}); memory {memory:.2f} of the seed's "
            f"(peak PSS, all processes; target < 0.5: {'MET' if memory < 0.5 else 'NOT MET'}); "
            f"client CPU {ours.cpu:.1f} s vs {seed.cpu:.1f} s"
        )
    return "\n".join(lines) + "\n"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="hostbatch device benchmark (fake IOS)")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument(
        "--approaches",
        default=",".join(DEFAULT_APPROACHES),
        help=f"comma list out of {','.join(APPROACHES)}",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per client run")
    parser.add_argument("--client", choices=APPROACHES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.client:
        client_main(args.client, args.spec)
        return 0
    approaches = [a for a in args.approaches.split(",") if a]
    with tempfile.TemporaryDirectory() as work, FakeIOS(args.devices, workdir=Path(work)) as fleet:
        known_hosts = Path(work) / "known_hosts"
        known_hosts.write_text(fleet.known_hosts_text())
        spec = Path(work) / "spec.json"
        devices = [[d.name, d.port] for d in fleet.devices]
        spec.write_text(json.dumps({"devices": devices, "known_hosts": str(known_hosts)}))
        samples = [measure(a, spec, fleet.pid, args.timeout) for a in approaches]
    report = _report(args, samples)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    (RESULTS / f"devices-{stamp}.md").write_text(report)
    return 0 if all(s.ok == s.total for s in samples) else 1


def _report(args: argparse.Namespace, samples: list[Sample]) -> str:
    command = f".venv/bin/python bench/devices.py --devices {args.devices}"
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
