"""Pieces every command shares: exit codes, error handling, inventory loading.

Options live in :mod:`hostbatch.cli.options`; running a plan (sinks, signals, summary,
exit code) in :mod:`hostbatch.cli.execute`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from hostbatch.errors import HostbatchError, SinkError, UsageError
from hostbatch.inventory import Inventory
from hostbatch.inventory.hostfile import STDIN, complete_selection, load_with_adhoc
from hostbatch.logs import logger
from hostbatch.models import Host, HostResult, Secret, Status

if TYPE_CHECKING:
    from hostbatch.cli.options import JournalOptions, SelectionOptions

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["--help"], "max_content_width": 100}

# Exit codes (documented in the README and in `hostbatch --help`).
EXIT_OK = 0
EXIT_COMMAND_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_HANGUP = 129  # 128 + SIGHUP
EXIT_INTERRUPTED = 130  # 128 + SIGINT (Ctrl-C)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: stdout closed by the reader (| head)
EXIT_TERMINATED = 143  # 128 + SIGTERM


def exit_code_for(results: dict[str, HostResult]) -> int:
    """3 if any host was not reached (unreachable, auth, host key), else 1 if any failed
    or was not started (the run stopped early: --max-fail, a failed --canary)."""
    statuses = {r.status for r in results.values()}
    if any(not s.reached for s in statuses - {Status.NOT_STARTED}):
        return EXIT_UNREACHABLE
    if statuses - {Status.OK}:
        return EXIT_COMMAND_FAILED
    return EXIT_OK


def warn(message: str) -> None:
    click.echo(f"hostbatch: warning: {message}", err=True)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so flushing what is still buffered for a closed pipe
    cannot fail again (no "Exception ignored ... BrokenPipeError" at exit)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def end_broken_pipe() -> NoReturn:
    """The reader of our stdout went away (``| head``): end quietly, like other tools."""
    silence_stdout()
    raise SystemExit(EXIT_BROKEN_PIPE)


def is_broken_pipe(exc: BaseException) -> bool:
    """A closed stdout, raised directly or as the cause of a SinkError."""
    if isinstance(exc, SinkError):
        exc = exc.cause
    return isinstance(exc, BrokenPipeError)


def handle_errors(func: F) -> F:
    """Turn HostbatchError into one clear line on stderr and its exit code; no traceback.
    A closed stdout ends the command quietly with exit code 141."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            end_broken_pipe()
        except HostbatchError as exc:
            if is_broken_pipe(exc):
                end_broken_pipe()
            click.echo(f"hostbatch: error: {exc}", err=True)
            raise SystemExit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


class _WholeWrites(io.BufferedWriter):
    """Unbuffered, as ``python -u`` asks, yet every write whole or an error."""

    def write(self, data: Any) -> int:
        written = super().write(data)
        self.flush()
        return written


def whole_stdout_writes() -> None:
    """Under ``python -u`` (PYTHONUNBUFFERED) sys.stdout writes to the raw file, whose
    write() may take only part of a large text (a pipe's reader closing it mid-write, a
    signal) and TextIOWrapper drops the rest without an error: ``| head`` on a gathered
    digest then ended with exit 0 instead of 141, and output could be cut silently. Put a
    writer between them that writes it all (or raises), and flushes every write."""
    stream = sys.stdout
    raw = getattr(stream, "buffer", None)
    # only the interpreter's own stdout, still referenced as sys.__stdout__ (the GC must
    # not close it and the file with it)
    original = stream is sys.__stdout__
    if original and isinstance(stream, io.TextIOWrapper) and isinstance(raw, io.RawIOBase):
        sys.stdout = io.TextIOWrapper(
            _WholeWrites(raw),
            encoding=stream.encoding,
            errors=stream.errors,
            line_buffering=stream.line_buffering,
            write_through=True,
        )


def run_main(command: click.Command, prog_name: str) -> NoReturn:
    """Run a click command as a program: click's own usage errors in hostbatch's one-line
    style (exit 2), a closed stdout quiet (exit 141)."""
    whole_stdout_writes()
    try:
        code = command.main(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"hostbatch: error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"hostbatch: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(EXIT_COMMAND_FAILED)
    except BrokenPipeError:
        end_broken_pipe()
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def ask_password(text: str) -> str:
    """Prompt without echo (works on a terminal and with piped input)."""
    return str(click.prompt(text, hide_input=True, prompt_suffix="", err=True))


def load_selection(
    selection: SelectionOptions,
    journal: JournalOptions | None = None,
    *,
    prompt: Callable[[str], str] = ask_password,
) -> tuple[Inventory, list[Host]]:
    """Load the inventory (with the ad-hoc hosts and host files of the selection), print
    its warnings, apply --ask-pass, and select hosts (``--rerun`` and ``@run:`` terms
    looked up in *journal*'s file)."""
    if selection.ask_pass and STDIN in selection.hosts:
        raise UsageError("-h - reads hosts from standard input; --ask-pass cannot prompt there")
    inventory, adhoc = load_with_adhoc(
        selection.inventory,
        hosts=selection.host_terms(),
        patterns=selection.patterns,
        groups=selection.groups,
        hostfiles=selection.hostfile,
        ssh_config=selection.ssh_config or None,
        stdin=sys.stdin,
    )
    for message in inventory.warnings:
        warn(message)
    if selection.ask_pass:
        inventory = inventory.with_password(Secret(prompt("SSH password: "), origin="--ask-pass"))
    hosts: list[Host] = []
    if adhoc.needs_inventory(selection.groups):
        hosts = inventory.select(
            hosts=_nonempty(adhoc.host_terms),
            groups=_nonempty(selection.groups),
            patterns=_nonempty(adhoc.pattern_terms),
            runs=None if journal is None else journal.run_hosts,
        )
    hosts = complete_selection(hosts, inventory, adhoc)
    logger.debug("selected %d host(s): %s", len(hosts), ", ".join(h.name for h in hosts[:20]))
    return inventory, hosts


def _nonempty(values: Sequence[str]) -> list[str] | None:
    return list(values) or None
