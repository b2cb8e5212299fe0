"""Transfer benchmark: hostbatch put against N parallel OpenSSH scp, on real sshd.

Every host is its own loopback address and its own SFTP chroot (see transfer_fleet.py), so
each copy lands in a directory of its own; every approach runs in a process of its own
(transfer_clients.py) and is measured like fanout's (common.measure_client). Usage::

    .venv/bin/python bench/transfer.py                         # 20 hosts, 10 and 100 MiB
    .venv/bin/python bench/transfer.py --sftp-tuning 32768:64,261120:16,261120:64
    .venv/bin/python bench/transfer.py --memory                # 1 GiB to 10 hosts, RSS

Needs root (sshd chroots) and Linux. The markdown table goes to stdout and to
bench/results/transfer-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from pathlib import Path

from common import Sample, environment, measure_client, save_report
from transfer_fleet import ChrootFleet, chroot_fleet, sha256_of
from transfer_report import (
    LABELS,
    MIB,
    NOTES,
    Row,
    memory_targets,
    table,
    throughput_targets,
)

CLIENT = Path(__file__).with_name("transfer_clients.py")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _tunings(text: str) -> list[tuple[int, int]]:
    pairs = []
    for part in text.split(","):
        if part.strip():
            block, requests = part.split(":")
            pairs.append((int(block), int(requests)))
    return pairs


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="hostbatch put vs parallel scp (real sshd)")
    parser.add_argument("--hosts", type=int, default=20, help="host count (default 20)")
    parser.add_argument("--sizes", type=_ints, default=[10, 100], help="MiB (default 10,100)")
    parser.add_argument(
        "--repeat", type=int, help="runs per case, median kept (default 3; --memory: 1)"
    )
    parser.add_argument(
        "--approaches",
        help="comma list out of hostbatch,hostbatch-paramiko,scp "
        "(default all three; --memory: hostbatch)",
    )
    parser.add_argument(
        "--sftp-tuning",
        type=_tunings,
        default=[],
        metavar="B:R,...",
        help="also run asyncssh SFTPClient.put with block_size=B, max_requests=R "
        "(-1 = asyncssh's default) on a hostbatch asyncssh connection",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="instead: one --memory-mib file to --memory-hosts hosts, peak RSS",
    )
    parser.add_argument("--memory-mib", type=int, default=1024)
    parser.add_argument("--memory-hosts", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900.0, help="kill a client after this")
    args = parser.parse_args(argv)
    if args.memory:
        args.hosts, args.sizes = args.memory_hosts, [args.memory_mib]
    default = "hostbatch" if args.memory else "hostbatch,hostbatch-paramiko,scp"
    args.approaches = [a for a in (args.approaches or default).split(",") if a]
    unknown = sorted(set(args.approaches) - set(LABELS) - {"asyncssh-sftp"})
    if unknown:
        parser.error(f"unknown approaches: {', '.join(unknown)}")
    args.repeat = max(1, args.repeat or (1 if args.memory else 3))
    return args


def write_random(path: Path, size_mib: int) -> str:
    """*size_mib* MiB of random bytes (really written: no holes); its sha256."""
    with path.open("wb") as handle:
        for _ in range(size_mib):
            handle.write(os.urandom(MIB))
    return sha256_of(path)


def _one_run(fleet: ChrootFleet, row: Row, payload: Path, digest: str, timeout: float) -> Sample:
    spec = {
        "file": str(payload),
        "known_hosts": str(fleet.sshd.known_hosts),
        "timeout": timeout,
        "targets": fleet.sshd.targets(row.hosts),
        "block_size": row.tuning[0] if row.tuning else -1,
        "max_requests": row.tuning[1] if row.tuning else -1,
    }
    fleet.clean()
    try:
        argv = [sys.executable, str(CLIENT), row.approach]
        sample, _ = measure_client(argv, spec, fleet.sshd.sshd_cpu, row.hosts, timeout)
        problems = fleet.check(row.hosts, payload.name, row.size_mib * MIB, digest)
    finally:
        fleet.clean()
    if problems and not sample.failed:  # the client said OK, the files say otherwise
        failed = len({name for name, _ in problems})
        sample = Sample(**{**vars(sample), "ok": row.hosts - failed, "failed": failed})
        sample.failures.extend(problems)
    return sample


def _rows(args: argparse.Namespace, size_mib: int) -> list[Row]:
    rows = [Row(size_mib, args.hosts, a) for a in args.approaches if a != "asyncssh-sftp"]
    rows += [Row(size_mib, args.hosts, "asyncssh-sftp", t) for t in args.sftp_tuning]
    return rows


def _run_size(fleet: ChrootFleet, args: argparse.Namespace, size_mib: int, tmp: Path) -> list[Row]:
    payload = tmp / f"payload-{size_mib}MiB.bin"
    print(f"writing {size_mib} MiB of random data to {payload}", file=sys.stderr)
    digest = write_random(payload, size_mib)
    rows = _rows(args, size_mib)
    try:
        for attempt in range(args.repeat):
            for row in rows:  # interleaved: a noisy minute hurts every approach alike
                sample = _one_run(fleet, row, payload, digest, args.timeout)
                row.samples.append(sample)
                print(
                    f"{size_mib} MiB x {row.hosts} {row.label} #{attempt + 1}: "
                    f"{sample.ok}/{row.hosts} ok, wall {sample.wall:.2f}s, CPU "
                    f"{sample.cpu:.2f}s, RSS {sample.max_rss_mb:.0f} MB, sshd "
                    f"{sample.sshd_cpu:.2f}s, other {sample.other_cpu:.2f}s",
                    file=sys.stderr,
                )
                for name, reason in sample.failures[:5]:
                    print(f"    FAILED {name}: {reason}", file=sys.stderr)
    finally:
        payload.unlink(missing_ok=True)
    return rows


def _environment(args: argparse.Namespace, fleet: ChrootFleet) -> str:
    return (
        f"{environment()}\n"
        f"- {args.hosts} hosts on {len(fleet.sshd.servers)} sshd daemons "
        f"(one loopback address and one "
        f"SFTP chroot per host); repeats: {args.repeat} (approaches interleaved)\n"
        f"- sshd CPU measured by {fleet.sshd.sshd_cpu_method}"
    )


def _report(args: argparse.Namespace, fleet: ChrootFleet, rows: list[Row]) -> None:
    kind = "memory" if args.memory else "throughput"
    verdicts = memory_targets(rows) if args.memory else throughput_targets(rows)
    text = (
        f"# hostbatch transfer benchmark ({kind}), {datetime.datetime.now():%Y-%m-%d %H:%M}\n\n"
        f"{_environment(args, fleet)}\n\n{table(rows)}\n\n{verdicts}\n\n{NOTES}\n"
    )
    save_report(f"transfer-{kind}", text)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="hostbatch-bench-payload-", dir="/var/tmp") as tmp,
        chroot_fleet(args.hosts) as fleet,
    ):
        for size_mib in args.sizes:
            rows += _run_size(fleet, args, size_mib, Path(tmp))
        _report(args, fleet, rows)
    return 1 if any(s.failed for r in rows for s in r.samples) else 0


if __name__ == "__main__":
    sys.exit(main())
