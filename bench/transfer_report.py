"""Tables and target verdicts for ``bench/transfer.py``."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from common import Sample

MIB = 1024 * 1024
TARGET_RATIO = 1.1  # hostbatch wall <= 1.1 x parallel scp's
TARGET_RSS_MB = 150.0  # --memory: client peak RSS for 1 GiB to 10 hosts
HOSTBATCH = ("hostbatch", "hostbatch-paramiko")
LABELS = {
    "hostbatch": "a) hostbatch put (asyncssh)",
    "hostbatch-paramiko": "b) hostbatch put transport=paramiko",
    "scp": "c) OpenSSH scp x N in parallel",
    "asyncssh-sftp": "asyncssh SFTPClient.put",
}


@dataclass
class Row:
    """One approach (and SFTP tuning, if any) on one file size: its samples."""

    size_mib: int
    hosts: int
    approach: str
    tuning: tuple[int, int] | None = None  # (block_size, max_requests) of asyncssh-sftp
    samples: list[Sample] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.tuning is None:
            return LABELS[self.approach]
        block, requests = self.tuning
        return f"{LABELS[self.approach]} block_size={block} max_requests={requests}"

    def median(self, name: str) -> float:
        return statistics.median(float(getattr(s, name)) for s in self.samples)

    @property
    def throughput(self) -> float:
        """MiB/s over all hosts together."""
        wall = self.median("wall")
        return self.size_mib * self.hosts / wall if wall > 0 else 0.0

    @property
    def status(self) -> str:
        worst = max(self.samples, key=lambda s: s.failed)
        prefix = "FAIL " if worst.failed else ""
        return f"{prefix}{worst.ok}/{self.hosts}"


HEADER = (
    "| file | N | approach | ok | wall s | MiB/s (all hosts) | wall / scp | client CPU s "
    "| CPU s incl. start-up | peak RSS MB (max proc) | peak PSS MB (tree) | sshd CPU s "
    "| other CPU s |"
)


def _scp_wall(rows: list[Row], size_mib: int) -> float | None:
    for row in rows:
        if row.approach == "scp" and row.size_mib == size_mib and row.samples:
            return row.median("wall")
    return None


def _line(row: Row, rows: list[Row]) -> str:
    scp = _scp_wall(rows, row.size_mib)
    ratio = f"{row.median('wall') / scp:.2f}" if scp else "-"
    cells = [
        f"{row.size_mib} MiB",
        str(row.hosts),
        row.label,
        row.status,
        f"{row.median('wall'):.2f}",
        f"{row.throughput:.0f}",
        ratio,
        f"{row.median('cpu'):.2f}",
        f"{row.median('process_cpu'):.2f}",
        f"{row.median('max_rss_mb'):.0f}",
        f"{row.median('tree_pss_mb'):.0f}",
        f"{row.median('sshd_cpu'):.2f}",
        f"{row.median('other_cpu'):.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def table(rows: list[Row]) -> str:
    separator = "|" + "---|" * (HEADER.count("|") - 1)
    return "\n".join([HEADER, separator, *(_line(r, rows) for r in rows if r.samples)])


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def throughput_targets(rows: list[Row]) -> str:
    lines = [f"Target: hostbatch put wall <= {TARGET_RATIO:g} x parallel scp's (median walls)."]
    for row in rows:
        if row.approach not in HOSTBATCH or not row.samples:
            continue
        scp = _scp_wall(rows, row.size_mib)
        if scp is None:
            lines.append(f"- {row.size_mib} MiB {row.label}: no scp row to compare with")
            continue
        wall = row.median("wall")
        lines.append(
            f"- {row.size_mib} MiB {row.label} [{row.status}]: {wall:.2f}s = "
            f"{wall / scp:.2f} x scp {scp:.2f}s: {_verdict(wall <= TARGET_RATIO * scp)}"
        )
    return "\n".join(lines)


def memory_targets(rows: list[Row]) -> str:
    lines = [f"Target (--memory): hostbatch client peak RSS < {TARGET_RSS_MB:g} MB."]
    for row in rows:
        if row.approach in HOSTBATCH and row.samples:
            rss = max(s.max_rss_mb for s in row.samples)
            lines.append(
                f"- {row.size_mib} MiB to {row.hosts} hosts, {row.label} [{row.status}]: "
                f"peak RSS {rss:.0f} MB (max over runs): {_verdict(rss < TARGET_RSS_MB)}"
            )
    return "\n".join(lines)


NOTES = """\
Columns: wall = median wall seconds of the copy itself, timed inside the client after
interpreter start-up and imports (connect + authenticate + copy + close, all hosts); MiB/s =
file size x N / wall; client CPU = user+sys of the client process and its waited-for
children during the copy (for scp: the N scp processes and the ssh each one runs); "incl.
start-up" = the whole client process from os.wait4; peak RSS = the largest single client
process (ru_maxrss; for scp one scp or ssh process); peak PSS = sampled sum over the client
process tree (for scp: all 2N processes); sshd CPU = every sshd process of the daemons
(internal-sftp runs inside the session's sshd); other CPU = the machine's busy CPU
(/proc/stat) in the same window minus client and sshd: other jobs and kernel work charged
to no process (loopback TCP, page cache writes); large values mean the machine was not
quiet. Every copy's size is checked after each run (and host 0's sha256) and the targets
are emptied between runs. Client, sshd and the disk share this machine."""
