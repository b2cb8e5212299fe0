"""``hostbatch shell``: a prompt for the current selection, with connections kept open.

The event loop (and every open connection) lives in a background thread; the prompt
stays in the main thread, so Ctrl-C there cancels the running command on every host
(the remote processes are signalled) and returns to the prompt. It never ends the shell.
SIGTERM and SIGHUP (the terminal closed) do: the running command is cancelled the same
way, its journal record ends as interrupted, the connections are closed, and the shell
exits 143 or 129, as a run does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from hostbatch.api import Session
from hostbatch.cli.common import EXIT_INTERRUPTED, exit_code_for, handle_errors, load_selection
from hostbatch.cli.execute import STOP_SIGNALS, RunStopped
from hostbatch.cli.hosts import format_table
from hostbatch.cli.options import EngineOptions, JournalOptions, SelectionOptions
from hostbatch.cli.recording import RunRecord, echo_note, fan_out
from hostbatch.errors import HostbatchError, UsageError
from hostbatch.inventory import Inventory
from hostbatch.inventory.patterns import fold_text
from hostbatch.journal import CRASHED, INTERRUPTED
from hostbatch.models import Event, HostResult, Transfer
from hostbatch.output.color import color_enabled
from hostbatch.output.gather import summary_lines
from hostbatch.output.live import LiveRenderer
from hostbatch.output.progress import terminal_progress

T = TypeVar("T")
Sink = Callable[[Event], None]
HISTORY_ENV = "HOSTBATCH_HISTORY"
CANCEL_WAIT = 10.0
HELP = """\
Type a command to run it on every selected host. Shell commands start with ':'.
  :hosts                    show the selected hosts
  :select SELECTION         e.g. :select -g db_servers   :select web[01-03] !web02
                            :select @run:last:failed (hosts of a recorded run)
  :put LOCAL... REMOTE      send files (-r recursive, -p preserve)
  :get REMOTE... LOCALDIR   fetch files into LOCALDIR/<host>/
  :menu                     the numbered menu (view hosts, run, send a file, exit)
  :help                     this text
  :exit                     leave (Ctrl-D too)
Ctrl-C cancels the running command on every host and returns here."""
MENU = "1) view host info   2) run a command   3) send a file   4) exit"


def history_path() -> Path:
    if os.environ.get(HISTORY_ENV):
        return Path(os.environ[HISTORY_ENV])
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "hostbatch" / "shell_history"


class LoopThread:
    """An asyncio loop in a daemon thread; coroutines submitted from the prompt thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stopped: RunStopped | None = None  # SIGTERM/SIGHUP: the shell is ending

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run *coroutine* on the loop; Ctrl-C (or a stop signal) cancels it, waits for its
        clean-up, re-raises."""
        finished = threading.Event()

        async def guarded() -> T:
            try:
                return await coroutine
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(guarded(), self.loop)
        try:
            return future.result()
        except (KeyboardInterrupt, RunStopped) as exc:
            if isinstance(exc, RunStopped):
                self.stopped = exc
            future.cancel()
            finished.wait(CANCEL_WAIT)
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class Shell:
    """The prompt's state: inventory, selection, session, and how to print."""

    def __init__(
        self,
        inventory: Inventory,
        session: Session,
        loop: LoopThread,
        journal: JournalOptions | None = None,
    ) -> None:
        self.inventory = inventory
        self.session = session
        self.loop = loop
        self.journal = journal or JournalOptions()
        self.color = color_enabled("auto", sys.stdout)

    @property
    def prompt(self) -> str:
        names = [h.name for h in self.session.hosts]
        shown = fold_text(names) if len(names) <= 6 else f"{len(names)} hosts"
        return f"hostbatch [{shown}]> "

    def sink(self) -> Callable[[Event], None]:
        width = max(len(h.name) for h in self.session.hosts)
        return LiveRenderer(sys.stdout, sys.stderr, width=width, color=self.color)

    def report(self, results: dict[str, HostResult], began: float, note: str | None) -> None:
        reconnected = self.session.pool.reconnected & set(results)
        if reconnected:
            click.echo(f"reconnected: {fold_text(reconnected)}", err=True)
            self.session.pool.reconnected -= reconnected
        for line in summary_lines(results, time.monotonic() - began):
            click.echo(line, err=True)
        echo_note(note)

    async def recorded(
        self, kind: str, text: str, execute: Callable[[Sink], Awaitable[dict[str, HostResult]]]
    ) -> tuple[dict[str, HostResult], str | None]:
        """*execute* with the journal fed too (on the loop's thread, which owns the journal's
        connection); the results and the line naming the recorded run."""
        names = fold_text([host.name for host in self.session.hosts])
        record = RunRecord.begin(self.journal, kind, text, names, self.session.hosts, {})
        if record.run_id is None:  # warned once: the rest of the session goes unrecorded
            self.journal = replace(self.journal, no_journal=True)
        try:
            results = await execute(record)
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
            stopped = self.loop.stopped
            code = stopped.exit_code if stopped is not None else EXIT_INTERRUPTED
            record.end(code if cancelled else 1, INTERRUPTED if cancelled else CRASHED)
            record.close()
            raise
        record.end(exit_code_for(results))
        record.close()
        return results, record.note(results, ":select @run:{run}:failed")

    def run(self, command: str) -> None:
        began = time.monotonic()
        live = self.sink()
        execute = lambda record: self.session.run(command, fan_out([record], live))  # noqa: E731
        results, note = self.loop.call(self.recorded("shell", command, execute))
        self.report(results, began, note)

    def transfer(self, direction: Literal["put", "get"], words: list[str]) -> None:
        flags = {w for w in words if w in ("-r", "-p", "--verify")}
        paths = [w for w in words if w not in flags]
        if len(paths) < 2:
            raise UsageError(f":{direction} needs sources and a destination")
        transfer = Transfer(
            direction,
            tuple(paths[:-1]),
            paths[-1],
            "-r" in flags,
            "-p" in flags,
            "--verify" in flags,
        )
        progress = terminal_progress(self.session.hosts)
        began = time.monotonic()
        execute = lambda record: self.session.execute(transfer, fan_out([record], progress))  # noqa: E731
        text = f"{' '.join(transfer.sources)} -> {transfer.destination}"
        results, note = self.loop.call(self.recorded(direction, text, execute))
        self.report(results, began, note)

    def select(self, words: list[str]) -> None:
        hosts: list[str] = []
        groups: list[str] = []
        patterns: list[str] = []
        pending = iter(words)
        for word in pending:
            if word in ("-h", "-g"):
                (hosts if word == "-h" else groups).append(next(pending, ""))
            else:
                patterns.append(word)
        chosen = self.inventory.select(
            hosts or None, groups or None, patterns or None, runs=self.journal.run_hosts
        )
        self.session.select(chosen)
        click.echo(f"{len(chosen)} host(s) selected", err=True)

    def menu(self) -> bool:
        """The seed's numbered menu; False when the user chose to exit."""
        click.echo(MENU)
        choice = input("choice: ").strip()
        if choice == "1":
            click.echo(format_table(self.session.hosts))
        elif choice == "2":
            self.run(input("command: "))
        elif choice == "3":
            self.transfer("put", [input("local file: ").strip(), input("remote path: ").strip()])
        elif choice == "4":
            return False
        else:
            click.echo(f"no such choice: {choice!r}", err=True)
        return True

    def handle(self, line: str) -> bool:
        """Do one line; False to leave the shell."""
        if not line.startswith(":"):
            self.run(line)
            return True
        words = shlex.split(line[1:])
        name, args = (words[0], words[1:]) if words else ("help", [])
        actions: dict[str, Callable[[], object]] = {
            "hosts": lambda: click.echo(format_table(self.session.hosts)),
            "select": lambda: self.select(args),
            "put": lambda: self.transfer("put", args),
            "get": lambda: self.transfer("get", args),
            "help": lambda: click.echo(HELP),
        }
        if name in ("exit", "quit", "q"):
            return False
        if name == "menu":
            return self.menu()
        if name not in actions:
            click.echo(f"unknown shell command ':{name}' (:help lists them)", err=True)
            return True
        actions[name]()
        return True


def _load_history() -> None:
    with contextlib.suppress(ImportError, OSError):
        import readline

        readline.read_history_file(history_path())


def _save_history() -> None:
    with contextlib.suppress(ImportError, OSError):
        import readline

        history_path().parent.mkdir(parents=True, exist_ok=True)
        readline.set_history_length(5000)
        readline.write_history_file(history_path())


def repl(shell: Shell) -> None:
    """Read lines until :exit or Ctrl-D; Ctrl-C never leaves."""
    while True:
        try:
            line = input(shell.prompt).strip()
        except EOFError:
            click.echo()
            return
        except KeyboardInterrupt:
            click.echo()
            continue
        if not line:
            continue
        try:
            if not shell.handle(line):
                return
        except KeyboardInterrupt:
            click.echo("\ncancelled on every host; back at the prompt", err=True)
        except HostbatchError as exc:
            click.echo(f"error: {exc}", err=True)
        finally:
            _save_history()


def _raise_stop(signum: int, _frame: object) -> None:
    """The handler of SIGTERM and SIGHUP: end the shell from wherever the main thread is
    (at the prompt, or waiting for a command)."""
    raise RunStopped(*STOP_SIGNALS[signal.Signals(signum)])


def _end_stopped(stopped: RunStopped) -> None:
    """One line (the terminal may be gone: then none), and the signal's exit code."""
    with contextlib.suppress(OSError):
        click.echo(f"\nhostbatch: {stopped.reason}; connections closed", err=True)
    raise SystemExit(stopped.exit_code)


def _connect_report(shell: Shell) -> None:
    """Connect every selected host up front, so the first command is as quick as the rest."""
    began = time.monotonic()
    results = shell.loop.call(shell.session.run("true"))
    failed = {n: r for n, r in results.items() if not r.ok}
    ok = len(results) - len(failed)
    click.echo(f"connected {ok}/{len(results)} hosts in {time.monotonic() - began:.2f}s", err=True)
    for name, result in failed.items():
        click.echo(f"  {name}: {result.status.value}: {result.error}", err=True)


@click.command("shell")
@SelectionOptions.options
@EngineOptions.options
@JournalOptions.options
@handle_errors
def shell_command(
    selection: SelectionOptions, engine: EngineOptions, journal: JournalOptions
) -> None:
    """An interactive prompt for the selected hosts, with connections kept open.

    Each line runs on every selected host with live, prefixed output; ':select' changes
    the selection without leaving, ':put'/':get' move files, ':menu' shows the numbered
    menu. Ctrl-C cancels the running command everywhere and returns to the prompt.
    History is kept across sessions (~/.local/state/hostbatch/shell_history, or
    $HOSTBATCH_HISTORY). Each command line and :put/:get is recorded in the run journal
    ('hostbatch history'; --no-journal: not recorded).

    \b
    Examples:
      hostbatch shell -g web_clusters
      hostbatch shell -h 'db[01-04]' --timeout 60
      hostbatch shell --rerun last:failed
    """
    inventory, hosts = load_selection(selection, journal)
    options = replace(engine, workers=1).run_options()  # connections stay in this process
    loop = LoopThread()
    shell = Shell(inventory, Session(hosts, options), loop, journal)
    _load_history()
    click.echo(
        f"hostbatch shell: {len(hosts)} host(s). :help for commands, Ctrl-D to leave.", err=True
    )
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stop)
    stopped: RunStopped | None = None
    try:
        try:
            _connect_report(shell)
        except KeyboardInterrupt:
            click.echo("\nconnecting cancelled; hosts connect on first use", err=True)
        repl(shell)
    except RunStopped as exc:
        for signum in STOP_SIGNALS:  # a second signal must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        stopped = exc
    finally:
        with contextlib.suppress(Exception):
            loop.call(shell.session.close())
        loop.stop()
    if stopped is not None:
        _end_stopped(stopped)
