"""Running a plan from the command line: sinks, signals, a closed stdout, summary, exit code.

Shared by ``run``, ``put``, ``get``, ``ping``, ``demo`` and the seed's ``batch_run`` /
``batch_scp``. Ctrl-C, SIGTERM and SIGHUP cancel the run: every host's task is
cancelled, so the transport signals its remote command (TERM, then KILL) and closes its
connection; the CLI then prints one line and exits 130 / 143 / 129. A reader that closes
our stdout (``| head``) stops the run the same way, quietly, with exit code 141.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Coroutine
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
    load_selection,
    silence_stdout,
)
from hostbatch.cli.options import (
    EngineOptions,
    OutputOptions,
    PersistOptions,
    SelectionOptions,
    WorkflowOptions,
)
from hostbatch.cli.workflow import applied
from hostbatch.engine.plan import Plan
from hostbatch.errors import UsageError
from hostbatch.logs import logger
from hostbatch.models import CommandSet, Event, Finished, Host, HostResult, Transfer
from hostbatch.output.gather import gathered, summary_lines
from hostbatch.output.jsonl import result_line
from hostbatch.output.live import LiveRenderer, display
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
            result = asyncio.run(main())
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
    coroutine_for: Callable[[StoppableRun], Coroutine[Any, Any, T]], *, after: str
) -> T:
    """Run the coroutine; when stopped, print one line (none for a closed stdout) and
    exit with the stop's code."""
    stoppable = StoppableRun()
    try:
        return stoppable.run(coroutine_for(stoppable))
    except RunStopped as stopped:
        if stopped.exit_code == EXIT_BROKEN_PIPE:
            end_broken_pipe()
        lead = "\n" if sys.stderr.isatty() else ""
        click.echo(f"{lead}hostbatch: {stopped.reason}; {after}", err=True)
        raise SystemExit(stopped.exit_code) from None


def run_plan_stoppable(
    plan: Plan, sink: Sink, *, after: str, persist: float | None = None
) -> dict[str, HostResult]:
    """Run *plan* feeding *sink*; see :func:`run_stoppable`. With *persist* (seconds),
    in the per-user agent over its warm connections (``--persist``)."""
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
    if persist is not None:
        after = AFTER_PERSIST if after == AFTER_COMMAND else after
        return run_stoppable(lambda run: run_persisted(plan, run.guard(sink), persist), after=after)
    return run_stoppable(lambda run: run_plan(plan, run.guard(sink)), after=after)


def command_sink(hosts: list[Host], output: OutputOptions) -> Sink:
    """JSON lines, or live prefixed lines (quiet when output is gathered)."""
    if output.as_json:

        def json_sink(event: Event) -> None:
            if isinstance(event, Finished):
                sys.stdout.write(result_line(event.result) + "\n")
                sys.stdout.flush()

        return json_sink
    width = max(len(h.name) for h in hosts)
    color = output.use_color(sys.stdout)
    return LiveRenderer(sys.stdout, sys.stderr, width=width, color=color, quiet=output.gather)


def print_gathered(results: dict[str, HostResult]) -> None:
    for hosts, text in gathered(results):
        click.echo(f"---------------- {hosts}")
        click.echo(display(text).rstrip("\n"))


def finish(results: dict[str, HostResult], began: float) -> NoReturn:
    """The summary on stderr, then exit with the run's code."""
    for line in summary_lines(results, time.monotonic() - began):
        click.echo(line, err=True)
    raise SystemExit(exit_code_for(results))


def execute_command(
    selection: SelectionOptions,
    command: str | CommandSet,
    engine: EngineOptions,
    output: OutputOptions,
    workflow: WorkflowOptions | None = None,
    persist: PersistOptions | None = None,
) -> NoReturn:
    """Shared body of ``hostbatch run``, ``batch_run`` and ``demo``; exits with the run's code."""
    script = workflow is not None and workflow.script is not None
    if isinstance(command, str) and not command.strip() and not script:
        raise UsageError("no command given (hostbatch run -g web -- uptime)")
    idle = persist.seconds() if persist is not None else None
    _, hosts = load_selection(selection)
    run_options = engine.run_options(output_limit=output.output_limit)
    with applied(workflow, command, run_options) as (operation, options):
        plan = make_plan(operation, hosts, options)
        sink = command_sink(hosts, output)
        began = time.monotonic()
        results = run_plan_stoppable(plan, sink, after=AFTER_COMMAND, persist=idle)
    if output.gather and not output.as_json:
        print_gathered(results)
    finish(results, began)


def execute_transfer(
    selection: SelectionOptions,
    transfer: Transfer,
    engine: EngineOptions,
    persist: PersistOptions | None = None,
) -> NoReturn:
    """Shared body of put, get and batch_scp; exits with the run's code."""
    idle = persist.seconds() if persist is not None else None
    _, hosts = load_selection(selection)
    plan = make_plan(transfer, hosts, engine.run_options())
    began = time.monotonic()
    sink = terminal_progress(hosts)
    results = run_plan_stoppable(plan, sink, after=AFTER_TRANSFER, persist=idle)
    finish(results, began)
