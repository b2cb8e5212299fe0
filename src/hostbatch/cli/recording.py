"""The CLI's side sinks: the run journal and per-host output files.

A side sink's failure is the CLI's business, never a host's result, and never stops the
run or the other sinks: :class:`SideSink` turns its first error into one warning line on
stderr and then leaves it out. :class:`RunRecord` is one command's row in the journal:
begun once the hosts are known, ended once with the run's real exit code and outcome.
A journal that cannot be opened is a warning and the run goes on unrecorded.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Mapping, Sequence

import click

from hostbatch.cli.common import warn
from hostbatch.cli.options import JournalOptions
from hostbatch.journal import FINISHED, Journal, JournalError, JournalSink
from hostbatch.models import CommandSet, Event, Host, HostResult, Transfer

Sink = Callable[[Event], None]
# What can go wrong writing the journal or files: a full disk, a lock held too long...
SINK_ERRORS = (OSError, sqlite3.Error, JournalError)


class SideSink:
    """*sink*, except that its first exception is one warning and it is then left out;
    *on_failure* tidies up after it (e.g. removes temporary files)."""

    def __init__(self, what: str, sink: Sink, on_failure: Callable[[], None] | None = None):
        self.what = what
        self.sink: Sink | None = sink
        self.on_failure = on_failure

    def __call__(self, event: Event) -> None:
        if self.sink is None:
            return
        try:
            self.sink(event)
        except Exception as exc:
            self.sink = None
            warn(f"{self.what} failed ({exc}); the run goes on without it")
            if self.on_failure is not None:
                self.on_failure()


def fan_out(side: Sequence[Sink], main: Sink) -> Sink:
    """One sink feeding every side sink (which never raise), then *main*."""

    def each(event: Event) -> None:
        for sink in side:
            sink(event)
        main(event)

    return each


def operation_text(operation: str | CommandSet | Transfer) -> str:
    """What ran, as the journal and ``hostbatch history`` show it."""
    if isinstance(operation, str):
        return operation
    if isinstance(operation, Transfer):
        return f"{' '.join(operation.sources)} -> {operation.destination}"
    lines = [*operation.commands, *(f"config: {line}" for line in operation.config)]
    return " ; ".join(lines + (["save"] if operation.save else []))


class RunRecord:
    """One run's row in the journal (or nothing, with --no-journal or no usable journal)."""

    def __init__(self, journal: Journal | None = None, sink: JournalSink | None = None):
        self.journal = journal
        self.sink = sink
        self.side = SideSink("the run journal", sink or (lambda _: None))
        self.ended = False

    @property
    def run_id(self) -> int | None:
        return None if self.sink is None else self.sink.run_id

    @classmethod
    def begin(
        cls,
        options: JournalOptions,
        kind: str,
        operation: str,
        selection: str,
        hosts: Sequence[Host],
        settings: Mapping[str, object],
    ) -> RunRecord:
        """Open the journal and record the run as running; a warning if that fails."""
        if options.no_journal:
            return cls()
        try:
            journal = Journal.open(options.path())
        except SINK_ERRORS as exc:
            warn(f"{exc}; this run is not recorded")
            return cls()
        try:
            names = [host.name for host in hosts]
            argv = options.pin_argv(sys.argv[1:])  # --rerun last: the run it meant
            sink = JournalSink.begin(
                journal, kind, operation, selection, names, argv=argv, options=settings
            )
        except SINK_ERRORS as exc:
            journal.close()
            warn(f"cannot record the run in the journal {journal.path} ({exc})")
            return cls()
        return cls(journal, sink)

    def __call__(self, event: Event) -> None:
        self.side(event)

    def end(self, exit_code: int | None, outcome: str = FINISHED) -> None:
        """Close the run with its exit code and outcome (once; later calls do nothing)."""
        if self.ended or self.sink is None:
            self.ended = True
            return
        self.ended = True
        try:
            self.sink.end(exit_code=exit_code, outcome=outcome)
        except SINK_ERRORS as exc:
            warn(f"cannot end the run in the journal ({exc})")

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def note(self, results: Mapping[str, HostResult], rerun: str) -> str | None:
        """``run 42 recorded; rerun failures: hostbatch run --rerun 42:failed ...``, where
        *rerun* is that hint with ``{run}`` for the id; None when nothing was recorded."""
        if self.run_id is None or self.side.sink is None:
            return None
        if all(result.ok for result in results.values()):
            return f"run {self.run_id} recorded (hostbatch show {self.run_id})"
        return f"run {self.run_id} recorded; rerun failures: {rerun.format(run=self.run_id)}"


def echo_note(note: str | None) -> None:
    if note:
        click.echo(note, err=True)
