"""A hostbatch run on its own fleet, journalled: the subprocess the crash and concurrency
tests start (and kill).

``python runner.py JOURNAL SIDE_FILE HOSTS COMMAND [--prefix P] [--go FILE]``: starts a
fleet of HOSTS hosts, writes ``ready`` into SIDE_FILE.ready, waits for FILE (when given),
then runs COMMAND on every host through a JournalSink. Each host's name is appended
(unbuffered) to SIDE_FILE.finished when its Finished event arrives, and to SIDE_FILE once
the sink has committed it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from hostbatch.api import RunOptions, run
from hostbatch.engine.limits import Limits
from hostbatch.inventory import load_inventory
from hostbatch.journal import Journal, JournalSink
from hostbatch.models import Event, Finished
from hostbatch.testing import FleetThread
from hostbatch.transport.base import ConnectOptions


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("side_file")
    parser.add_argument("hosts", type=int)
    parser.add_argument("command")
    parser.add_argument("--prefix", default="node")
    parser.add_argument("--go", default=None)
    return parser.parse_args()


def _wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            sys.exit(f"runner: {path} did not appear within {seconds}s")
        time.sleep(0.01)


def _append(descriptor: int, hosts: list[str]) -> None:
    os.write(descriptor, "".join(f"{host}\n" for host in hosts).encode())


def main() -> None:
    args = _arguments()
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    committed = os.open(args.side_file, flags, 0o600)
    finished = os.open(args.side_file + ".finished", flags, 0o600)
    with (
        tempfile.TemporaryDirectory() as scratch,
        FleetThread(args.hosts, prefix=args.prefix) as fleet,
    ):
        inventory = load_inventory(
            [fleet.write_inventory(Path(scratch) / "inventory", auth="key")], ssh_config=None
        )
        connect = ConnectOptions(connect_timeout=30, known_hosts=str(fleet.known_hosts))
        options = RunOptions(Limits(), connect)
        Path(args.side_file + ".ready").write_text("ready")
        if args.go:
            _wait_for(Path(args.go), 120)
        with Journal.open(args.journal) as journal:
            sink = JournalSink.begin(
                journal,
                "run",
                args.command,
                "all",
                list(inventory.hosts),
                on_commit=lambda hosts: _append(committed, hosts),
            )

            def on_event(event: Event) -> None:
                if isinstance(event, Finished):
                    os.write(finished, f"{event.host}\n".encode())
                sink(event)

            run(
                args.command,
                patterns="all",
                inventory=inventory,
                options=options,
                on_event=on_event,
            )
            sink.end(exit_code=0)
    os.close(committed)
    os.close(finished)


if __name__ == "__main__":
    main()
