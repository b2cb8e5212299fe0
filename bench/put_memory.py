"""Peak RSS of `hostbatch put` to fleet hosts whose SFTP server advertises 4 MiB writes.

The in-process fleet (asyncssh's own SFTP server, which advertises 4 MiB reads and
writes) runs in this process; the client is `hostbatch put` in a child process, whose
peak RSS (``ru_maxrss``) is reported. Usage::

    .venv/bin/python bench/put_memory.py                         # 200 MiB to 5 hosts
    .venv/bin/python bench/put_memory.py --transport paramiko --mebibytes 50
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostbatch.testing import FleetThread


def _dense(path: Path, mebibytes: int) -> None:
    block = os.urandom(1024 * 1024)
    with path.open("wb") as handle:
        for _ in range(mebibytes):
            handle.write(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--mebibytes", type=int, default=200)
    parser.add_argument("--transport", default="asyncssh", choices=["asyncssh", "paramiko"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, FleetThread(args.hosts) as fleet:
        source = Path(scratch) / "payload.bin"
        _dense(source, args.mebibytes)
        inventory = fleet.write_inventory(Path(scratch) / "inventory", auth="key")
        argv = [sys.executable, "-c", "from hostbatch.cli.app import main; main()", "put"]
        argv += ["-i", str(inventory), "--known-hosts", str(fleet.known_hosts)]
        argv += ["--ssh-config", "", "--transport", args.transport, "-h", "all"]
        argv += [str(source), "./"]
        started = time.monotonic()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.monotonic() - started
        copied = [host.root / "payload.bin" for host in fleet.hosts]
        complete = all(p.stat().st_size == source.stat().st_size for p in copied if p.exists())
    print(
        f"{args.mebibytes} MiB to {args.hosts} hosts ({args.transport}): "
        f"exit {os.waitstatus_to_exitcode(status)}, {elapsed:.1f} s, "
        f"peak RSS {usage.ru_maxrss / 1024:.0f} MB, all copies complete: {complete}"
    )


if __name__ == "__main__":
    main()
