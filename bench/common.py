"""What every benchmark shares: the sshd fleet, timing, CPU and memory sampling, reports.

**Fleet** (:func:`sshd_fleet`): real OpenSSH sshd daemons; host *i* lives on its own address
``127.0.X.Y`` (all of 127.0.0.0/8 is loopback on Linux), so every host looks distinct to the
client. One sshd can listen on at most 16 sockets (OpenSSH's ``MAX_LISTEN_SOCKS``), so N
hosts take ``ceil(N / 16)`` daemons. Every daemon's known_hosts lines go into one file,
checked strictly by every client.

**CPU.** A client times its own run with :func:`timed` (wall, and :func:`cpu_seconds`: user+
system of the process and its waited-for children, from ``getrusage``). The driver adds:

* whole-process CPU and the largest single process's peak RSS from ``os.wait4``
  (:func:`wait_measured`; Linux counts every descendant the client waited for);
* the sshd's CPU: the delta of a cgroup v1 ``cpuacct`` group holding every sshd process
  (:class:`SshdCgroup`). ``OpenSSHServer.cpu_seconds()`` adds up the listener and its live
  descendants including reaped children's ``cutime``/``cstime``, but OpenSSH's
  privilege-separation monitor does not reap the post-authentication session process, so a
  finished session's CPU (cipher, SFTP server, shell) is lost: one 500 MiB scp upload
  showed 0.05 s there against 2 s per-process. A cgroup counts every task, reaped or not.
  Without a writable cpuacct hierarchy the fleet falls back to ``cpu_seconds()`` and says so;
* "other" CPU: what the whole machine was busy with in the same window (/proc/stat,
  :func:`machine_busy`) minus client and sshd: other people's jobs, the sampler, kernel
  work not charged to any process. Large values mean the figures are disturbed.

**Memory** (:class:`TreeMemory`): the summed RSS and PSS (``/proc/PID/smaps_rollup``) of the
client and all its descendants, sampled until the client exits; the peaks are kept.

:func:`measure_client` puts it together for any client started as
``ARGV... SPEC.json RESULT.json`` that writes ``wall``, ``cpu``, ``ok``, ``failed`` and
``failures`` into RESULT.json (see :func:`client_result`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # imported when a fleet starts: clients import this module too
    from hostbatch.testing.sshd import OpenSSHServer

T = TypeVar("T")

RESULTS = Path(__file__).with_name("results")
ADDRESSES_PER_DAEMON = 16  # OpenSSH sshd's MAX_LISTEN_SOCKS
MAX_STARTUPS = "4000:30:8000"  # never refuse the benchmark's burst of handshakes
SETTLE_SECONDS = 0.3  # let sshd reap its last sessions before reading its CPU
CPUACCT = Path("/sys/fs/cgroup/cpuacct")
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")

Outcome = tuple[str, str | None]
"""(host name, None when the host did what was asked, else why not)."""


@dataclass(frozen=True)
class Target:
    """One host as a benchmark hands it to its clients."""

    name: str
    hostname: str
    port: int
    username: str
    key_file: str


# -- CPU and timing ------------------------------------------------------------------------


def cpu_seconds() -> float:
    """User+system CPU of this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(run: Callable[[], T]) -> tuple[T, float, float]:
    """``run()``'s value, wall seconds and CPU seconds (:func:`cpu_seconds`)."""
    cpu_before, started = cpu_seconds(), time.perf_counter()
    value = run()
    return value, time.perf_counter() - started, cpu_seconds() - cpu_before


def process_cpu(pid: int | None) -> float:
    """User+system CPU seconds of one live process (0 for None)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat minus idle)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICKS  # up to steal, not guest


class SshdCgroup:
    """A cgroup v1 cpuacct group (``/sys/fs/cgroup/cpuacct/hostbatch-bench-PID``) counting
    every process of the sshd listeners moved into it; :meth:`close` removes it."""

    def __init__(self) -> None:
        self.path = CPUACCT / f"hostbatch-bench-{os.getpid()}"
        self.available = False

    def open(self) -> None:
        """Create the group; :attr:`available` says whether that worked."""
        try:
            self.path.mkdir()
            self.available = (self.path / "cpuacct.usage").exists()
        except OSError:
            self.available = False

    def add(self, pid: int) -> None:
        """Move *pid* (a listener: before it has children) into the group."""
        if self.available:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def cpu_seconds(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def close(self) -> None:
        """Remove the group (its daemons stopped first; stragglers go to the root group)."""
        if not self.path.exists():
            return
        for _ in range(50):
            with contextlib.suppress(OSError):
                self.path.rmdir()
                return
            with contextlib.suppress(OSError):
                for pid in (self.path / "cgroup.procs").read_text().split():
                    (CPUACCT / "cgroup.procs").write_text(f"{pid}\n")
            time.sleep(0.1)


# -- memory --------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of *pid*, forked by any of its threads."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(each) for each in (task / "children").read_text().split())
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in kB; (0, 0) when it is gone."""
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE // 1024
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return rss, int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0, 0


class TreeMemory(threading.Thread):
    """Samples the summed RSS and PSS of a process tree until stopped; keeps the peaks (kB).

    RSS counts pages shared by forked processes once per process; PSS splits them."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_rss_kb = self.peak_pss_kb = 0
        self.stopped = threading.Event()
        self.interval = 0.2

    def run(self) -> None:
        while not self.stopped.is_set():
            began = time.perf_counter()
            todo, rss, pss = [self.root], 0, 0
            while todo:
                pid = todo.pop()
                one_rss, one_pss = _memory_kb(pid)
                rss, pss = rss + one_rss, pss + one_pss
                todo.extend(_children(pid))
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_pss_kb = max(self.peak_pss_kb, pss)
            # sampling a thousand processes costs CPU: keep it under ~10% of one core
            self.interval = max(0.2, 10 * (time.perf_counter() - began))
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


# -- one client run ------------------------------------------------------------------------


def wait_measured(process: subprocess.Popen[Any], timeout: float) -> tuple[int, Any]:
    """wait4 a client started with ``start_new_session=True``: (exit code, rusage); its
    whole process group is killed after *timeout* seconds."""

    def kill() -> None:
        print(f"client timed out after {timeout:.0f}s: killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage


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


def client_result(
    outcomes: Sequence[Outcome], hosts: int, wall: float, cpu: float
) -> dict[str, Any]:
    """What a client writes to RESULT.json: counts, the first 20 failures, wall and CPU."""
    failures = [(name, reason) for name, reason in outcomes if reason is not None]
    return {
        "ok": len(outcomes) - len(failures),
        "failed": len(failures) + max(0, hosts - len(outcomes)),
        "failures": failures[:20],
        "wall": wall,
        "cpu": cpu,
    }


def _read_result(path: Path, code: int, hosts: int) -> dict[str, Any]:
    try:
        result: dict[str, Any] = json.loads(path.read_text())
        return result
    except (OSError, ValueError):
        reason = f"client process exited with {code} and wrote no result"
        return {"ok": 0, "failed": hosts, "failures": [["*", reason]], "wall": 0.0, "cpu": 0.0}


def measure_client(
    argv: Sequence[str],
    spec: dict[str, Any],
    sshd_cpu: Callable[[], float],
    hosts: int,
    timeout: float,
) -> tuple[Sample, dict[str, Any]]:
    """Run ``argv + [SPEC, RESULT]`` once in a process of its own; the Sample and the
    client's whole RESULT."""
    with tempfile.TemporaryDirectory(prefix="hostbatch-bench-client-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(spec))
        sshd_before = sshd_cpu()
        busy_before, started = machine_busy(), time.perf_counter()
        process = subprocess.Popen(
            [*argv, str(spec_path), str(result_path)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a timeout kills all of it
        )
        sampler = TreeMemory(process.pid)
        sampler.start()
        code, usage = wait_measured(process, timeout)
        process_wall = time.perf_counter() - started
        sampler.stop()
        busy = machine_busy() - busy_before
        time.sleep(SETTLE_SECONDS)
        sshd = sshd_cpu() - sshd_before
        result = _read_result(result_path, code, hosts)
    whole_cpu = usage.ru_utime + usage.ru_stime
    sample = Sample(
        wall=result["wall"],
        process_wall=process_wall,
        cpu=result["cpu"],
        process_cpu=whole_cpu,
        max_rss_mb=usage.ru_maxrss / 1024,
        tree_pss_mb=sampler.peak_pss_kb / 1024,
        sshd_cpu=sshd,
        other_cpu=busy - whole_cpu - sshd,
        ok=result["ok"],
        failed=result["failed"],
        failures=[(str(name), str(reason)) for name, reason in result["failures"]],
    )
    return sample, result


# -- the fleet -----------------------------------------------------------------------------


def address(index: int) -> str:
    """Loopback address of host *index*: 127.0.1.1, 127.0.1.2, ... (never 127.0.0.1)."""
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


ExtraConfig = Callable[[int, int], list[str]]
"""``(first, last) -> sshd_config lines`` for the daemon serving hosts first..last-1."""


@contextlib.contextmanager
def sshd_fleet(
    hosts: int, *, extra_config: ExtraConfig | None = None, workdir: Path | None = None
) -> Iterator[SshdFleet]:
    """A started :class:`SshdFleet` of *hosts* hosts; its known_hosts goes to *workdir*
    (a temporary directory unless given). Daemons, cgroup and files go away afterwards."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            made = stack.enter_context(tempfile.TemporaryDirectory(prefix="hostbatch-bench-"))
            workdir = Path(made)
        fleet = SshdFleet(hosts, workdir / "known_hosts")
        fleet.cgroup.open()
        stack.callback(fleet.cgroup.close)  # after the daemons are stopped
        fleet.start(stack, extra_config)
        yield fleet


class SshdFleet:
    """``ceil(hosts / 16)`` sshd daemons covering ``hosts`` loopback addresses, their sshd
    processes in one :class:`SshdCgroup`; started by :func:`sshd_fleet`."""

    def __init__(self, hosts: int, known_hosts: Path) -> None:
        self.size = hosts
        self.servers: list[OpenSSHServer] = []
        self.known_hosts = known_hosts
        self.cgroup = SshdCgroup()

    def start(self, stack: contextlib.ExitStack, extra_config: ExtraConfig | None) -> None:
        """Start the daemons, each stopped when *stack* closes; write the known_hosts."""
        from hostbatch.testing.sshd import OpenSSHServer

        count, started = math.ceil(self.size / ADDRESSES_PER_DAEMON), time.monotonic()
        for number in range(count):
            first = number * ADDRESSES_PER_DAEMON
            last = min(first + ADDRESSES_PER_DAEMON, self.size)
            server = OpenSSHServer(
                [address(i) for i in range(first, last)],
                max_startups=MAX_STARTUPS,
                extra_config=extra_config(first, last) if extra_config else (),
            )
            stack.enter_context(server)
            self.cgroup.add(server.pid)
            self.servers.append(server)
            print(f"\rstarting sshd daemons: {number + 1}/{count}", end="", file=sys.stderr)
        print(f" ({time.monotonic() - started:.1f}s)", file=sys.stderr)
        self.known_hosts.write_text("".join(s.known_hosts.read_text() for s in self.servers))

    def servers_for(self, hosts: int) -> list[OpenSSHServer]:
        """The daemons that serve the first *hosts* hosts."""
        return self.servers[: math.ceil(hosts / ADDRESSES_PER_DAEMON)]

    def targets(self, hosts: int) -> list[dict[str, Any]]:
        """The first *hosts* hosts, as :class:`Target` fields."""
        if hosts > self.size:
            raise ValueError(f"the fleet has {self.size} hosts, not {hosts}")
        result = []
        for index in range(hosts):
            server = self.servers[index // ADDRESSES_PER_DAEMON]
            target = Target(
                f"host{index:04d}",
                address(index),
                server.port,
                server.username,
                str(server.client_key),
            )
            result.append(asdict(target))
        return result

    @property
    def sshd_cpu_method(self) -> str:
        if self.cgroup.available:
            return f"cgroup cpuacct ({self.cgroup.path}): every sshd process, sessions included"
        return "OpenSSHServer.cpu_seconds(): no cgroup, finished sessions NOT counted"

    def sshd_cpu(self, hosts: int | None = None) -> float:
        """CPU seconds used so far by the daemons (all of them, from the cgroup; without
        one, those serving the first *hosts* hosts, finished sessions not counted)."""
        if self.cgroup.available:
            return self.cgroup.cpu_seconds()
        servers = self.servers if hosts is None else self.servers_for(hosts)
        return sum(server.cpu_seconds() for server in servers)


# -- reports -------------------------------------------------------------------------------


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> str:
    """Markdown lines: the command line, the machine, the versions that matter."""
    sshd = subprocess.run(["/usr/sbin/sshd", "-V"], capture_output=True, text=True, check=False)
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return (
        f"- command: `{shlex.join([sys.executable, *sys.argv])}`\n"
        f"- machine: {len(os.sched_getaffinity(0))} cores ({model}), "
        f"{int(memory) // 1024} MB RAM, Linux {platform.release()}\n"
        f"- Python {platform.python_version()}, hostbatch {version('hostbatch')}, "
        f"asyncssh {version('asyncssh')}, paramiko {version('paramiko')}, "
        f"{(sshd.stderr or sshd.stdout).strip()}"
    )


def save_report(stem: str, text: str) -> Path:
    """Print *text* and write it to ``bench/results/STEM-DATE.md``."""
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stem}-{datetime.datetime.now():%Y-%m-%d-%H%M}.md"
    out.write_text(text)
    print(f"written to {out}", file=sys.stderr)
    return out
