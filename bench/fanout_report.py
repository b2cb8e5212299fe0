"""Tables and target verdicts for ``bench/fanout.py``."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from common import Sample

LABELS = {
    "hostbatch": "a) hostbatch (defaults)",
    "hostbatch-cli": "a2) hostbatch CLI process (`hostbatch run --json`)",
    "hostbatch-paramiko": "b) hostbatch transport=paramiko",
    "hostbatch-1proc": "c) hostbatch workers=1",
    "seed-sequential": "d) paramiko, sequential loop",
    "seed-threads": "e) paramiko, thread per host",
    "seed-processes": "f) paramiko, process per host",
    "asyncssh-gather": "g) asyncssh, connect+run per host under gather",
    "parallel-ssh": "h) parallel-ssh ParallelSSHClient (libssh2)",
}
HOSTBATCH = ("hostbatch", "hostbatch-cli", "hostbatch-paramiko", "hostbatch-1proc")
PEERS = ("asyncssh-gather", "parallel-ssh", "seed-sequential", "seed-threads", "seed-processes")
WHOLE_PROCESS = ("hostbatch-cli",)  # wall and CPU already span the whole CLI process
TARGET_CPU_HOSTS = 300
TARGET_CPU_MS = 5.0  # client CPU per host, interpreter start-up and imports included
TARGET_FLOOR = {300: 1.3}  # N -> wall <= this x server-side floor
TARGET_PEER = {300: 0.8, 100: 0.9}  # N -> wall <= this x the best peer's


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


def _spread(row: Row, name: str) -> str:
    values = [float(getattr(s, name)) for s in row.samples]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{row.median(name):.2f} ({min(values):.2f}–{max(values):.2f})"


def _line(row: Row) -> str:
    head = f"| `{row.command}` | {row.hosts} | {LABELS[row.approach]} "
    if row.skipped is not None:
        return head + f"| skipped: {row.skipped} |" + " |" * 12
    cells = [
        row.status,
        _spread(row, "wall"),
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
        _spread(row, "process_wall"),
    ]
    return head + "| " + " | ".join(cells) + " |"


def table(rows: list[Row]) -> str:
    separator = "|" + "---|" * HEADER.count("|")
    return "\n".join([HEADER, separator[: -len("---|")], *(_line(r) for r in rows)])


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def _measured(row: Row) -> bool:
    return row.skipped is None and bool(row.samples)


def _wall(row: Row) -> float:
    """Wall comparable across approaches: for a whole-process approach its own wall (spawn
    to exit), for the others the in-client wall (``_peer_wall`` picks the matching one)."""
    return row.median("wall")


def _peer_wall(peer: Row, hostbatch: Row) -> float:
    """The peer's wall measured like *hostbatch*'s: spawn to exit for the CLI process."""
    return peer.median("process_wall" if hostbatch.approach in WHOLE_PROCESS else "wall")


def _cpu_with_start_up(row: Row) -> float:
    """Client CPU ms per host, interpreter start-up and imports included."""
    if row.approach in WHOLE_PROCESS:
        return row.cpu_ms_per_host  # the CLI process alone (not the wrapper starting it)
    return row.process_cpu_ms_per_host


def _against(value: float, limit: float | None) -> str:
    return "no target" if limit is None else f"{_verdict(value <= limit)} (<= {limit:g})"


def _budget(row: Row, peer_wall: float) -> str:
    """What the peer target leaves the client: client and servers share the cores, so no
    run is shorter than (sshd CPU + client CPU) / cores. The target wall times the cores,
    less the sshd CPU this run's logins cost, is all the client may spend, start-up and
    all (a lower bound on what it takes: it assumes both cores busy from start to end)."""
    limit = TARGET_PEER.get(row.hosts)
    if limit is None:
        return ""
    sshd = row.median("sshd_cpu")
    cpu = _cpu_with_start_up(row) * row.hosts / 1000
    bound = (sshd + cpu) / row.cores
    left = limit * peer_wall * row.cores - sshd
    return (
        f" [CPU bound of this run (sshd {sshd:.2f}s + client {cpu:.2f}s) / {row.cores} cores"
        f" = {bound:.2f}s; the target wall {limit * peer_wall:.2f}s leaves the client"
        f" {max(left, 0.0) * 1000 / row.hosts:.2f} ms/host at most]"
    )


def _judge(row: Row, peers: list[Row]) -> str:
    wall = _wall(row)
    parts = [f"- {LABELS[row.approach]} [{row.status}]: wall {wall:.2f}s"]
    ok_peers = [p for p in peers if not any(s.failed for s in p.samples)]
    if ok_peers:
        best = min(ok_peers, key=lambda p: _peer_wall(p, row))
        ratio = wall / _peer_wall(best, row)
        kind = "process wall" if row.approach in WHOLE_PROCESS else "wall"
        parts.append(
            f"= {ratio:.2f} x best peer {LABELS[best.approach]} ({kind} "
            f"{_peer_wall(best, row):.2f}s): {_against(ratio, TARGET_PEER.get(row.hosts))}"
            + _budget(row, _peer_wall(best, row))
        )
    else:
        parts.append("(no peer measured without failures)")
    parts.append(
        f"= {row.ratio:.2f} x floor {row.floor:.2f}s: "
        f"{_against(row.ratio, TARGET_FLOOR.get(row.hosts))}"
    )
    cpu = _cpu_with_start_up(row)
    limit = TARGET_CPU_MS if row.hosts == TARGET_CPU_HOSTS else None
    parts.append(f"client CPU incl. start-up {cpu:.2f} ms/host: {_against(cpu, limit)}")
    return " ".join(parts[:2]) + "; " + "; ".join(parts[2:])


def targets(rows: list[Row]) -> str:
    """Issue #16's targets, for each N of the ``true`` case and each hostbatch row."""
    lines = [
        "Targets (`true`): hostbatch wall <= 0.8 x the best peer and <= 1.3 x the server-side "
        f"floor at N=300, <= 0.9 x the best peer at N=100; client CPU <= {TARGET_CPU_MS:g} "
        f"ms/host at N={TARGET_CPU_HOSTS} including interpreter start-up and imports. Peers: "
        + ", ".join(PEERS)
        + " (those measured without failures). The CLI row is compared by process wall "
        "(spawn to exit) with the peers' process wall; the API rows by in-client wall.",
    ]
    sizes = sorted({r.hosts for r in rows if r.command == "true"})
    for hosts in sizes:
        case = [r for r in rows if r.hosts == hosts and r.command == "true"]
        peers = [r for r in case if r.approach in PEERS and _measured(r)]
        lines.append(f"\nN={hosts}:")
        for row in case:
            if row.approach not in HOSTBATCH:
                continue
            if not _measured(row):
                lines.append(f"- {LABELS[row.approach]}: skipped ({row.skipped})")
                continue
            lines.append(_judge(row, peers))
    if TARGET_CPU_HOSTS not in sizes:
        lines.append(f"\nN={TARGET_CPU_HOSTS} not measured in this run: no verdict on CPU.")
    return "\n".join(lines)


NOTES = """\
Columns: wall = median wall seconds of the run itself (timed in the client, after interpreter
start-up and imports; worker start-up included), range of the repeats in brackets; for the CLI
row (a2) the whole `python -m hostbatch run` process, start-up included, and its "incl.
start-up" columns add the small wrapper process that starts it; process wall = spawn to exit;
floor = sshd CPU seconds / cores (how fast the servers alone could go on this machine); client
CPU = user+sys of the client process and its workers during the run; "incl. start-up" = the
whole client process from os.wait4; peak RSS = the largest single client process (wait4
ru_maxrss); peak PSS = sampled sum over the client process tree (shared pages split between
processes); sshd CPU = all sshd processes (listeners, sessions, shells) during the run; other
CPU = the machine's busy CPU (/proc/stat) in the same window minus client and sshd: other jobs,
kernel work charged to no process (loopback TCP, fork/exec); large values mean the machine was
not quiet. Medians over the repeats. Client and servers share the same cores, so client CPU
also pushes the wall above the floor."""
