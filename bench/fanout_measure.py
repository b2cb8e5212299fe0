"""Measure one client run in its own process: wall, CPU, memory, and the sshd's CPU.

* client CPU and the largest single process's peak RSS come from ``os.wait4`` (Linux
  reports the child plus every descendant it waited for: worker processes included);
* the run's own wall and CPU (without interpreter start-up and imports) come from the
  client itself (fanout_clients.py);
* the memory of the whole client process tree is sampled: the sum of PSS
  (``/proc/PID/smaps_rollup``) over the client and its descendants, peak over the run;
* the sshd's CPU is the delta of a cgroup holding every sshd process (sessions included);
* "other" CPU is what the whole machine was busy with in the same window (/proc/stat) minus
  client and sshd: other people's jobs, this script's sampler, kernel work (network, process
  creation) not charged to any process. Large values mean the figures are disturbed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanout_fleet import Fleet

CLIENT = Path(__file__).with_name("fanout_clients.py")
SETTLE_SECONDS = 0.3  # let sshd reap its last sessions before reading its CPU


@dataclass(frozen=True)
class Sample:
    """One run of one approach on one case."""

    wall: float  # the run itself, timed inside the client
    process_wall: float  # spawn to exit: interpreter start-up and imports included
    cpu: float  # the run itself (client process and its workers)
    process_cpu: float  # everything, from wait4
    max_rss_mb: float  # peak RSS of the largest single client process
    tree_pss_mb: float  # sampled peak of summed PSS over the client process tree
    sshd_cpu: float
    other_cpu: float  # busy CPU of the whole machine in the same window, minus client and sshd
    ok: int
    failed: int
    failures: list[tuple[str, str]] = field(default_factory=list)


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat minus idle)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # up to steal, not guest


def _children(pid: int) -> list[int]:
    """Direct children of *pid* (forked by its main thread, which is where all ours are)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(each) for each in text.split()]


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreeMemory(threading.Thread):
    """Samples the summed PSS of a process tree until stopped; keeps the peak (kB)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_kb = 0
        self.stopped = threading.Event()
        self.interval = 0.2

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            began = time.perf_counter()
            todo, total = [self.root], 0
            while todo:
                pid = todo.pop()
                total += _pss_kb(pid)
                todo.extend(_children(pid))
            self.peak_kb = max(self.peak_kb, total)
            # sampling a thousand processes costs CPU: keep it under ~10% of one core
            self.interval = max(0.2, 10 * (time.perf_counter() - began))


def _wait(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any]:
    """wait4 the client; kill its whole process group (ours) after *timeout* seconds."""

    def kill() -> None:
        print(f"client timed out after {timeout:.0f}s: killing it", file=sys.stderr)
        os.killpg(process.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage


def _client_result(path: Path, code: int, hosts: int) -> dict[str, Any]:
    try:
        result: dict[str, Any] = json.loads(path.read_text())
        return result
    except (OSError, ValueError):
        reason = f"client process exited with {code} and wrote no result"
        return {"ok": 0, "failed": hosts, "failures": [["*", reason]], "wall": 0.0, "cpu": 0.0}


def _write_spec(fleet: Fleet, command: str, hosts: int, directory: str) -> tuple[Path, Path]:
    spec = {
        "command": command,
        "known_hosts": str(fleet.known_hosts),
        "timeout": 30.0,
        "targets": fleet.targets(hosts),
    }
    spec_path, result_path = Path(directory, "spec.json"), Path(directory, "result.json")
    spec_path.write_text(json.dumps(spec))
    return spec_path, result_path


def _argv(approach: str, spec: Path, result: Path, nice: int) -> list[str]:
    """The client's command line, under ``nice -n NICE`` when asked (same pid after exec)."""
    client = [sys.executable, str(CLIENT), approach, str(spec), str(result)]
    return ["nice", "-n", str(nice), *client] if nice else client


def measure(
    fleet: Fleet, approach: str, command: str, hosts: int, timeout: float, *, nice: int = 0
) -> Sample:
    """Run *approach* on the first *hosts* hosts of *fleet*, in a process of its own."""
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        spec_path, result_path = _write_spec(fleet, command, hosts, tmp)
        sshd_before = fleet.sshd_cpu(hosts)
        busy_before, started = machine_busy(), time.perf_counter()
        process = subprocess.Popen(
            _argv(approach, spec_path, result_path, nice),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a timeout kills all of it
        )
        sampler = TreeMemory(process.pid)
        sampler.start()
        code, usage = _wait(process, timeout)
        process_wall = time.perf_counter() - started
        sampler.stopped.set()
        sampler.join()
        busy = machine_busy() - busy_before
        time.sleep(SETTLE_SECONDS)
        sshd_cpu = fleet.sshd_cpu(hosts) - sshd_before
        result = _client_result(result_path, code, hosts)
    return Sample(
        wall=result["wall"],
        process_wall=process_wall,
        cpu=result["cpu"],
        process_cpu=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        tree_pss_mb=sampler.peak_kb / 1024,
        sshd_cpu=sshd_cpu,
        other_cpu=busy - (usage.ru_utime + usage.ru_stime) - sshd_cpu,
        ok=result["ok"],
        failed=result["failed"],
        failures=[(str(name), str(reason)) for name, reason in result["failures"]],
    )


def profile(
    fleet: Fleet, approach: str, hosts: int, out: Path, *, clock: str = "cpu", nice: int = 0
) -> None:
    """Run *approach* on ``true`` once under cProfile (in the client); stats to *out*."""
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        spec_path, result_path = _write_spec(fleet, "true", hosts, tmp)
        argv = [*_argv(approach, spec_path, result_path, nice), "--profile", str(out)]
        subprocess.run([*argv, "--profile-clock", clock], check=True, stdin=subprocess.DEVNULL)
        result = json.loads(result_path.read_text())
    print(
        f"profiled {approach} on {hosts} hosts ({clock} clock): {result['ok']} ok, "
        f"{result['failed']} failed, wall {result['wall']:.2f}s, CPU {result['cpu']:.2f}s "
        "(profiler overhead included)",
        file=sys.stderr,
    )
