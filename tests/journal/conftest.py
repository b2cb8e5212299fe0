"""A small misbehaving fleet journalled through real runs, shared by the journal tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, run
from hostbatch.engine.limits import Limits
from hostbatch.inventory import Inventory, load_inventory
from hostbatch.journal import Journal, JournalSink
from hostbatch.models import Event, HostResult
from hostbatch.testing import Fleet, FleetThread
from hostbatch.transport.base import ConnectOptions

BEHAVIOURS = {"node02": "refuse_auth", "node03": "refuse_connect", "node04": "drop_mid_command"}
BLOB_BYTES = 200_000
# node05 exits 4; node06 prints BLOB_BYTES of random bytes (more than the kept tail).
MIXED_COMMAND = (
    'echo "out-$HOSTBATCH_FLEET_HOST"; echo "err-$HOSTBATCH_FLEET_HOST" >&2; '
    'case "$HOSTBATCH_FLEET_HOST" in node05) exit 4;; '
    f"node06) head -c {BLOB_BYTES} /dev/urandom > blob; cat blob;; esac"
)
OUTPUT_LIMIT = 4096


@dataclass(frozen=True)
class JournalledFleet:
    fleet: Fleet
    inventory: Inventory
    options: RunOptions

    def run(
        self,
        journal: Journal,
        command: str,
        patterns: str = "all",
        *,
        runs: Callable[[str], list[str]] | None = None,
        also: Callable[[Event], None] | None = None,
        argv: Sequence[str] = (),
        options: Mapping[str, object] | None = None,
    ) -> tuple[JournalSink, dict[str, HostResult]]:
        """Run *command* on *patterns* through a JournalSink (and *also*), then end the run."""
        hosts = self.inventory.select(patterns=patterns, runs=runs)
        names = [h.name for h in hosts]
        sink = JournalSink.begin(
            journal, "run", command, patterns, names, argv=argv, options=options
        )

        def on_event(event: Event) -> None:
            sink(event)
            if also is not None:
                also(event)

        results = run(command, hosts=hosts, options=self.options, on_event=on_event)
        sink.end(exit_code=3 if any(not r.ok for r in results.values()) else 0)
        return sink, results


@pytest.fixture(scope="module")
def journalled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JournalledFleet]:
    with FleetThread(7, behaviours=BEHAVIOURS) as fleet:
        path = fleet.write_inventory(tmp_path_factory.mktemp("inv") / "inventory")
        inventory = load_inventory([path], ssh_config=None)
        connect = ConnectOptions(connect_timeout=5, known_hosts=str(fleet.known_hosts))
        options = RunOptions(Limits(output_limit=OUTPUT_LIMIT), connect)
        yield JournalledFleet(fleet, inventory, options)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal.sqlite") as opened:
        yield opened
