"""Tables and target verdicts for ``bench/fanout.py``."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from common import Sample

LABELS = {
    "hostbatch": "a) hostbatch (defaults)",
    "hostbatch-paramiko": "b) hostbatch transport=paramiko",
    "hostbatch-1proc": "c) hostbatch workers=1",
    "seed-sequential": "d) paramiko, sequential loop",
    "seed-threads": "e) paramiko, thread per host",
    "seed-processes": "f) paramiko, process per host",
}
TARGET_HOSTS = 300
TARGET_CPU_MS = 3.0
TARGET_RATIO = 1.3
HOSTBATCH = ("hostbatch", "hostbatch-paramiko", "hostbatch-1proc")


@dataclass
class Row:
    """One approach on one case: its samples (one per repeat) or why it was skipped."""

    command: str
    hosts: int
    approach: str
    cores: int
    samples: list[Sample] = field(default_factory=list)
    skipped: str | None = None

    def median(self, name: str) -> float:
        return statistics.median(float(getattr(s, name)) for s in self.samples)

    @property
    def floor(self) -> float:
        """Server-side floor: the sshd's CPU spread over every core."""
        return self.median("sshd_cpu") / self.cores

    @property
    def ratio(self) -> float:
        return self.median("wall") / self.floor if self.floor > 0 else float("inf")

    @property
    def cpu_ms_per_host(self) -> float:
        return 1000 * self.median("cpu") / self.hosts

    @property
    def process_cpu_ms_per_host(self) -> float:
        return 1000 * self.median("process_cpu") / self.hosts

    @property
    def status(self) -> str:
        worst = max(self.samples, key=lambda s: s.failed)
        if worst.failed:
            return f"FAIL {worst.ok}/{self.hosts}"
        return f"{worst.ok}/{self.hosts}"


HEADER = (
    "| command | N | approach | ok | wall s | floor s | wall/floor | client CPU s "
    "| CPU ms/host | CPU s incl. start-up | ms/host incl. start-up | peak RSS MB (max proc) "
    "| peak PSS MB (tree) | sshd CPU s | other CPU s | process wall s |"
)


def _line(row: Row) -> str:
    head = f"| `{row.command}` | {row.hosts} | {LABELS[row.approach]} "
    if row.skipped is not None:
        return head + f"| skipped: {row.skipped} |" + " |" * 12
    cells = [
        row.status,
        f"{row.median('wall'):.2f}",
        f"{row.floor:.2f}",
        f"{row.ratio:.2f}",
        f"{row.median('cpu'):.2f}",
        f"{row.cpu_ms_per_host:.1f}",
        f"{row.median('process_cpu'):.2f}",
        f"{row.process_cpu_ms_per_host:.1f}",
        f"{row.median('max_rss_mb'):.0f}",
        f"{row.median('tree_pss_mb'):.0f}",
        f"{row.median('sshd_cpu'):.2f}",
        f"{row.median('other_cpu'):.2f}",
        f"{row.median('process_wall'):.2f}",
    ]
    return head + "| " + " | ".join(cells) + " |"


def table(rows: list[Row]) -> str:
    separator = "|" + "---|" * HEADER.count("|")
    return "\n".join([HEADER, separator[: -len("---|")], *(_line(r) for r in rows)])


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def targets(rows: list[Row]) -> str:
    """The README's targets, judged on the N=300 ``true`` rows of hostbatch."""
    lines = [
        f"Targets at N={TARGET_HOSTS} (`true`): hostbatch client CPU <= {TARGET_CPU_MS:g} "
        f"ms per host, wall <= {TARGET_RATIO:g} x server-side floor.",
    ]
    chosen = [
        r
        for r in rows
        if r.hosts == TARGET_HOSTS and r.command == "true" and r.approach in HOSTBATCH
    ]
    if not chosen:
        lines.append(f"- not measured (no N={TARGET_HOSTS} `true` case in this run)")
    for row in chosen:
        if row.skipped is not None or not row.samples:
            lines.append(f"- {LABELS[row.approach]}: skipped ({row.skipped})")
            continue
        cpu, whole, ratio = row.cpu_ms_per_host, row.process_cpu_ms_per_host, row.ratio
        lines.append(
            f"- {LABELS[row.approach]} [{row.status}]: client CPU {cpu:.2f} ms/host: "
            f"{_verdict(cpu <= TARGET_CPU_MS)} (with interpreter start-up and imports "
            f"{whole:.2f} ms/host: {_verdict(whole <= TARGET_CPU_MS)}); wall "
            f"{row.median('wall'):.2f}s = {ratio:.2f} x floor {row.floor:.2f}s: "
            f"{_verdict(ratio <= TARGET_RATIO)}"
        )
    return "\n".join(lines)


NOTES = """\
Columns: wall = median wall seconds of the run itself (timed in the client, after interpreter
start-up and imports; worker start-up included); floor = sshd CPU seconds / cores (how fast
the servers alone could go on this machine); client CPU = user+sys of the client process and
its workers during the run; "incl. start-up" = the whole client process from os.wait4;
peak RSS = the largest single client process (wait4 ru_maxrss); peak PSS = sampled sum over
the client process tree (shared pages split between processes); sshd CPU = all sshd
processes (listeners, sessions, shells) during the run; other CPU = the machine's busy CPU
(/proc/stat) in the same window minus client and sshd: other jobs, kernel work charged to
no process (loopback TCP, fork/exec); large values mean the machine was not quiet. Medians
over the repeats. Client and servers share the same cores, so client CPU also pushes the
wall above the floor."""
