"""Running a plan from the command line: sinks, signals, a closed stdout, summary, exit code.

Shared by ``run``, ``put``, ``get``, ``ping``, ``demo`` and the seed's ``batch_run`` /
``batch_scp``. Ctrl-C, SIGTERM and SIGHUP cancel the run: every host's task is
cancelled, so the transport signals its remote command (TERM, then KILL) and closes its
connection; the CLI then ends ``--events`` with its summary object (marked
interrupted), prints one line and exits 130 / 143 / 129. A reader that closes
our stdout (``| head``) stops the run the same way, quietly, with exit code 141.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict
from typing import Any, NoReturn, TypeVar

import click

from hostbatch.api import make_plan, run_plan
from hostbatch.cli.agent import AFTER_PERSIST, run_persisted
from hostbatch.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_HANGUP,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    end_broken_pipe,
    exit_code_for,
    is_broken_pipe,
    load_selection,
    silence_stdout,
)
from hostbatch.cli.options import (
    EngineOptions,
    JournalOptions,
    OutputOptions,
    PersistOptions,
    SelectionOptions,
    WorkflowOptions,
)
from hostbatch.cli.recording import RunRecord, SideSink, echo_note, fan_out, operation_text
from hostbatch.cli.workflow import applied
from hostbatch.engine import loop as event_loop
from hostbatch.engine.executors import runs_here
from hostbatch.engine.plan import Plan
from hostbatch.errors import HostbatchError, UsageError
from hostbatch.journal import CRASHED, FINISHED, INTERRUPTED
from hostbatch.logs import logger
from hostbatch.models import CommandSet, Event, Finished, Host, HostResult, Transfer
from hostbatch.output.gather import ThrottleNotes, digest_lines, summary_lines
from hostbatch.output.jsonl import event_line, result_line, summary_record
from hostbatch.output.live import LiveRenderer
from hostbatch.output.progress import terminal_progress

T = TypeVar("T")
Sink = Callable[[Event], None]

# Signals that stop a run like Ctrl-C does: exit code and the words for the message.
STOP_SIGNALS: dict[signal.Signals, tuple[int, str]] = {
    signal.SIGTERM: (EXIT_TERMINATED, "terminated (SIGTERM)"),
    signal.SIGHUP: (EXIT_HANGUP, "hung up (SIGHUP)"),
}
AFTER_COMMAND = "remote commands stopped, connections closed"
AFTER_TRANSFER = "partial files were left under temporary names only"


class RunStopped(Exception):
    """The run was cancelled from outside: a signal, Ctrl-C, or a closed stdout."""

    def __init__(self, exit_code: int, reason: str) -> None:
        super().__init__(reason)
        self.exit_code = exit_code
        self.reason = reason


class StoppableRun:
    """One coroutine under :func:`asyncio.run` that SIGTERM, SIGHUP and a closed stdout
    cancel (asyncio.run already turns Ctrl-C into a cancellation)."""

    def __init__(self) -> None:
        self.stopped: RunStopped | None = None
        self._task: asyncio.Task[Any] | None = None

    def stop(self, exit_code: int, reason: str) -> None:
        """Cancel the run (the first reason wins)."""
        if self.stopped is None:
            self.stopped = RunStopped(exit_code, reason)
        if self._task is not None:
            self._task.cancel()

    def guard(self, sink: Sink) -> Sink:
        """*sink*, except that a closed stdout stops the run instead of failing hosts."""

        def guarded(event: Event) -> None:
            if self.stopped is not None and self.stopped.exit_code == EXIT_BROKEN_PIPE:
                return
            try:
                sink(event)
            except BrokenPipeError:
                silence_stdout()
                self.stop(EXIT_BROKEN_PIPE, "output closed")

        return guarded

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        async def main() -> T:
            loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            for signum, (code, reason) in STOP_SIGNALS.items():
                loop.add_signal_handler(signum, self.stop, code, reason)
            try:
                return await coroutine
            finally:
                for signum in STOP_SIGNALS:
                    loop.remove_signal_handler(signum)

        try:
            result = event_loop.run(main())
        except asyncio.CancelledError:
            if self.stopped is None:
                raise
            raise self.stopped from None
        except KeyboardInterrupt:
            raise RunStopped(EXIT_INTERRUPTED, "interrupted") from None
        if self.stopped is not None:  # stopped while the last host was finishing
            raise self.stopped
        return result


def run_stoppable(
    coroutine_for: Callable[[StoppableRun], Coroutine[Any, Any, T]],
    *,
    after: str,
    record: RunRecord | None = None,
    summary: EventsSummary | None = None,
) -> T:
    """Run the coroutine; when stopped, end *record* as interrupted, write the --events
    *summary* marked interrupted (not for a closed stdout: nobody reads it), print one
    line (none for a closed stdout) and exit with the stop's code."""
    stoppable = StoppableRun()
    try:
        return stoppable.run(coroutine_for(stoppable))
    except RunStopped as stopped:
        if record is not None:
            record.end(stopped.exit_code, INTERRUPTED)
        if stopped.exit_code == EXIT_BROKEN_PIPE:
            end_broken_pipe()
        if summary is not None:
            summary.write(stopped.exit_code, interrupted=True)
        lead = "\n" if sys.stderr.isatty() else ""
        click.echo(f"{lead}hostbatch: {stopped.reason}; {after}", err=True)
        raise SystemExit(stopped.exit_code) from None


def run_plan_stoppable(
    plan: Plan,
    sink: Sink,
    *,
    after: str,
    record: RunRecord,
    side: Sequence[Sink] = (),
    persist: float | None = None,
    summary: EventsSummary | None = None,
) -> dict[str, HostResult]:
    """Run *plan* feeding *record* (the journal), the *side* sinks, the --events
    *summary* and *sink* (what is shown); see :func:`run_stoppable`. A closed stdout
    stops only *sink*: the side sinks and the journal still get every event. With
    *persist* (seconds), in the per-user agent over its warm connections (``--persist``)."""
    limits = plan.limits
    logger.info(
        "%s on %d host(s): transport %s, fanout %s, workers %s, connect timeout %gs",
        type(plan.operation).__name__,
        len(plan.hosts),
        plan.transport,
        limits.fanout or "default",
        limits.workers or "auto",
        plan.options.connect_timeout,
    )
    if persist is not None and after == AFTER_COMMAND:
        after = AFTER_PERSIST
    event_loop.warm_up(plan, transports=persist is None and runs_here(plan))

    def start(run: StoppableRun) -> Coroutine[Any, Any, dict[str, HostResult]]:
        kept: list[Sink] = [record, *side, *([summary] if summary is not None else [])]
        every = fan_out(kept, run.guard(sink))
        return run_plan(plan, every) if persist is None else run_persisted(plan, every, persist)

    return run_stoppable(start, after=after, record=record, summary=summary)


def command_sink(hosts: list[Host], output: OutputOptions) -> Sink:
    """NDJSON events, JSON lines, or live prefixed lines (quiet when output is gathered)."""
    if output.events:
        return _json_sink(event_line)
    if output.as_json:
        return _json_sink(lambda e: result_line(e.result) if isinstance(e, Finished) else None)
    width = max(len(h.name) for h in hosts)
    color = output.use_color(sys.stdout)
    return LiveRenderer(sys.stdout, sys.stderr, width=width, color=color, quiet=output.gather)


def _json_sink(line_for: Callable[[Event], str | None]) -> Sink:
    def json_sink(event: Event) -> None:
        line = line_for(event)
        if line is not None:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    return json_sink


class EventsSummary:
    """The ``--events`` closing record (``"event": "summary"``), written once: after a
    finished run, or marked ``"interrupted": true`` with the stop's exit code after a
    signal (Ctrl-C, SIGTERM, SIGHUP). As a sink it keeps the finished hosts' results, so
    a stopped run still counts them; ``unfinished`` counts the selected hosts that never
    finished (0 for a finished run)."""

    def __init__(self, hosts: Sequence[Host], began: float, record: RunRecord) -> None:
        self.names = [host.name for host in hosts]
        self.began = began
        self.record = record
        self.results: dict[str, HostResult] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Finished):
            self.results[event.host] = event.result

    def write(
        self,
        exit_code: int,
        results: dict[str, HostResult] | None = None,
        *,
        interrupted: bool = False,
    ) -> None:
        finished = self.results if results is None else results
        elapsed = time.monotonic() - self.began
        closing = summary_record(finished, elapsed, exit_code, self.record.run_id)
        closing["hosts"] = len(self.names)
        closing["interrupted"] = interrupted
        closing["unfinished"] = sum(name not in finished for name in self.names)
        sys.stdout.write(json.dumps(closing, ensure_ascii=False) + "\n")
        sys.stdout.flush()


@contextlib.contextmanager
def recorded(record: RunRecord) -> Iterator[RunRecord]:
    """Ends *record* however the command ends (unless it was ended already): a closed
    stdout or Ctrl-C while printing is interrupted, a bug is crashed; closes the journal."""
    try:
        yield record
    except BaseException as exc:
        record.end(*_ending(exc))
        raise
    finally:
        record.close()


def _ending(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, INTERRUPTED
    if isinstance(exc, BrokenPipeError) or is_broken_pipe(exc):
        return EXIT_BROKEN_PIPE, INTERRUPTED
    if isinstance(exc, SystemExit):
        return (exc.code if isinstance(exc.code, int) else 1), FINISHED
    return (exc.exit_code if isinstance(exc, HostbatchError) else 1), CRASHED


def finish(
    results: dict[str, HostResult],
    began: float,
    record: RunRecord,
    notes: ThrottleNotes | None = None,
    *,
    events: EventsSummary | None = None,
) -> NoReturn:
    """The summary on stderr (with where the servers throttled; and the --events summary
    object), the journal's run closed, then exit with the run's code."""
    elapsed = time.monotonic() - began
    code = exit_code_for(results)
    for line in summary_lines(results, elapsed):
        click.echo(line, err=True)
    for line in notes.lines() if notes is not None else ():
        click.echo(line, err=True)
    if events is not None:
        events.write(code, results)
    record.end(code, FINISHED)
    command_path = click.get_current_context().command_path
    echo_note(record.note(results, command_path + " --rerun {run}:failed ..."))
    raise SystemExit(code)


def execute_command(
    selection: SelectionOptions,
    command: str | CommandSet,
    engine: EngineOptions,
    output: OutputOptions,
    journal: JournalOptions,
    workflow: WorkflowOptions | None = None,
    persist: PersistOptions | None = None,
) -> NoReturn:
    """Shared body of ``hostbatch run``, ``batch_run`` and ``demo``; exits with the run's code."""
    script = workflow is not None and workflow.script is not None
    if isinstance(command, str) and not command.strip() and not script:
        raise UsageError("no command given (hostbatch run -g web -- uptime)")
    masks = output.checked_masks()
    idle = persist.seconds() if persist is not None else None
    _, hosts = load_selection(selection, journal)
    files = output.output_files()
    side = [] if files is None else [SideSink("writing --outdir files", files, files.close)]
    settings = {**asdict(engine), **asdict(output), **_workflow_settings(workflow)}
    run_options = engine.run_options(output_limit=output.output_limit)
    with applied(workflow, command, run_options) as (operation, options):
        plan = make_plan(operation, hosts, options)
        text = operation_text(command)
        record = RunRecord.begin(journal, "run", text, selection.describe(journal), hosts, settings)
        notes = ThrottleNotes(command_sink(hosts, output))
        began = time.monotonic()
        summary = EventsSummary(hosts, began, record) if output.events else None
        with recorded(record):
            try:
                results = run_plan_stoppable(
                    plan,
                    notes,
                    after=AFTER_COMMAND,
                    record=record,
                    side=side,
                    persist=idle,
                    summary=summary,
                )
            finally:
                if files is not None:
                    files.close()
            if (output.gather or output.gather_after) and not output.as_json:
                for line in digest_lines(results, masks):
                    click.echo(line)
            finish(results, began, record, notes, events=summary)


def _workflow_settings(workflow: WorkflowOptions | None) -> dict[str, object]:
    """What the journal records of the workflow options: --env values are left out."""
    if workflow is None:
        return {}
    return {key: value for key, value in asdict(workflow).items() if key != "env"}


def execute_transfer(
    selection: SelectionOptions,
    transfer: Transfer,
    engine: EngineOptions,
    journal: JournalOptions,
    *,
    color: bool = False,
    persist: PersistOptions | None = None,
) -> NoReturn:
    """Shared body of put, get and batch_scp; exits with the run's code."""
    idle = persist.seconds() if persist is not None else None
    _, hosts = load_selection(selection, journal)
    plan = make_plan(transfer, hosts, engine.run_options())
    settings = {**asdict(engine), "recursive": transfer.recursive, "verify": transfer.verify}
    text = operation_text(transfer)
    record = RunRecord.begin(
        journal, transfer.direction, text, selection.describe(journal), hosts, settings
    )
    began = time.monotonic()
    notes = ThrottleNotes(terminal_progress(hosts, color=color))
    with recorded(record):
        results = run_plan_stoppable(plan, notes, after=AFTER_TRANSFER, record=record, persist=idle)
        finish(results, began, record, notes)
