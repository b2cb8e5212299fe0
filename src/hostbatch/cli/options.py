"""Typed option groups: each command-line option is one dataclass field, declared once.

A group is a frozen dataclass whose fields carry their click option (:func:`option`).
``Group.options`` is the command decorator: it adds every option of the group and hands
the command ONE object, built once, under the group's keyword::

    @click.command("run")
    @SelectionOptions.options          # the command receives selection: SelectionOptions
    @EngineOptions.options             # ... engine: EngineOptions
    @OutputOptions.options             # ... output: OutputOptions
    def run_command(selection: SelectionOptions, engine: EngineOptions,
                    output: OutputOptions, ...) -> None: ...

To add an option, add one field to the group it belongs to::

    dry_run: bool = option("--dry-run", is_flag=True, help="Show the plan, run nothing.")

The field name is the click parameter name; its default is the click default (so code
that builds a group directly, like ``hostbatch demo``, gets the command line's defaults).
A new group is a new ``@dataclass(frozen=True)`` subclass of :class:`OptionGroup` with a
``keyword``. Fields without :func:`option` are not on the command line (set by the command).
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TextIO, TypeVar

import click

from hostbatch import logs
from hostbatch.api import RunOptions
from hostbatch.cli.common import warn
from hostbatch.cli.completion import complete_groups, complete_hosts
from hostbatch.engine.limits import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FANOUT,
    DEFAULT_OUTPUT_LIMIT,
    SESSIONS_PER_WORKER_BLOCKING,
    Limits,
)
from hostbatch.errors import SelectionError, UsageError
from hostbatch.journal import Journal, default_journal_path, hosts_of_run, resolve_run_ref
from hostbatch.models import Transfer
from hostbatch.output.color import COLOR_MODES, ColorMode, color_enabled
from hostbatch.output.files import OutputFiles
from hostbatch.output.gather import OutputMask, compile_masks
from hostbatch.transport.base import DEFAULT_KNOWN_HOSTS, ConnectOptions, HostKeyPolicy
from hostbatch.transport.jump import DEFAULT_CHANNEL_BUDGET
from hostbatch.transport.registry import DEFAULT, NAMES

F = TypeVar("F", bound=Callable[..., Any])
_CLICK = "hostbatch.cli.option"


def option(*decls: str, default: Any = None, **attrs: Any) -> Any:
    """A dataclass field that is also a click option (``decls`` and ``attrs`` as for
    :func:`click.option`; the field's name is the parameter name)."""
    return field(default=default, metadata={_CLICK: (decls, attrs)})


@dataclass(frozen=True)
class OptionGroup:
    """Base of every option group; see the module docstring."""

    keyword: ClassVar[str] = ""

    @classmethod
    def click_options(cls) -> list[Callable[[F], F]]:
        """One click.option decorator per field that declares one, in field order."""
        made: list[Callable[[F], F]] = []
        for item in fields(cls):
            if _CLICK in item.metadata:
                decls, attrs = item.metadata[_CLICK]
                made.append(click.option(*decls, item.name, default=item.default, **attrs))
        return made

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Self:
        """The group built from (and taken out of) a click command's parameters."""
        names = [item.name for item in fields(cls) if _CLICK in item.metadata]
        return cls(**{name: params.pop(name) for name in names})

    @classmethod
    def options(cls, func: F) -> F:
        """Command decorator: adds the group's options; the command gets one object."""

        @functools.wraps(func)
        def wrapper(*args: Any, **params: Any) -> Any:
            params[cls.keyword] = cls.from_params(params)
            return func(*args, **params)

        decorated: Any = wrapper
        for decorator in reversed(cls.click_options()):
            decorated = decorator(decorated)
        return decorated  # type: ignore[no-any-return]


def color_option() -> Any:
    """``--color [auto|always|never]``; a bare ``--color`` is ``always`` (as before)."""
    return option(
        "--color",
        default="auto",
        type=click.Choice(COLOR_MODES),
        is_flag=False,
        flag_value="always",
        show_default=True,
        help="Colour: auto (a terminal, unless NO_COLOR is set; FORCE_COLOR forces it), "
        "always, never.",
    )


def no_color_option() -> Any:
    return option("--no-color", default=False, is_flag=True, help="Same as --color never.")


@dataclass(frozen=True)
class SelectionOptions(OptionGroup):
    """Which hosts: inventory, hosts, groups, patterns; and the password prompt."""

    keyword: ClassVar[str] = "selection"

    inventory: tuple[str, ...] = option(
        "-i",
        "--inventory",
        default=(),
        multiple=True,
        metavar="PATH",
        help="Inventory folder or file (repeatable). Default: $HOSTBATCH_INVENTORY, "
        "else ./inventory[/|.ini|.yaml], else ~/.config/hostbatch/inventory.",
    )
    hosts: tuple[str, ...] = option(
        "-h",
        "--hosts",
        default=(),
        multiple=True,
        metavar="LIST",
        shell_complete=complete_hosts,
        help="Hosts, comma-separated; ranges web[01-20], @group, !exclude, all; "
        "addresses [user@]host[:port] need no inventory; '-' reads a host file from stdin.",
    )
    groups: tuple[str, ...] = option(
        "-g",
        "--groups",
        default=(),
        multiple=True,
        metavar="LIST",
        shell_complete=complete_groups,
        help="Groups, comma-separated (union with -h; each host once).",
    )
    hostfile: tuple[str, ...] = option(
        "--hostfile",
        default=(),
        multiple=True,
        metavar="FILE",
        help="Add the hosts of FILE: [user@]host[:port] per line, # comments (repeatable).",
    )
    ask_pass: bool = option(
        "--ask-pass",
        default=False,
        is_flag=True,
        help="Prompt once for a password, used by hosts that have none.",
    )
    ssh_config: str = option(
        "--ssh-config",
        default="~/.ssh/config",
        show_default=True,
        metavar="PATH",
        help="OpenSSH client config filling in unset values; '' to ignore it.",
    )
    rerun: str | None = option(
        "--rerun",
        metavar="RUN[:STATUS,...]",
        help="The hosts of an earlier run (an id, last, last~N; see 'hostbatch history') "
        "that ended with STATUS: failed (every status but ok), ok, unreachable, "
        "auth_failed, timed_out, command_failed, ... Combines with -h/-g and '!'.",
    )
    patterns: tuple[str, ...] = ()  # positional patterns (hostbatch hosts), not an option

    def host_terms(self) -> list[str]:
        """-h's terms, led by ``@run:RUN:S+S`` for --rerun (so a later ``!host`` removes
        from the re-run's hosts)."""
        if not self.rerun:
            return list(self.hosts)
        ref, _, statuses = self.rerun.partition(":")
        term = f"@run:{ref}" + (f":{statuses.replace(',', '+')}" if statuses else "")
        return [term, *self.hosts]

    def describe(self, journal: JournalOptions | None = None) -> str:
        """The selection as typed (the journal's ``selection``): ``--rerun 41:failed -h x``;
        with *journal*, each ``last``/``last~N`` it resolved is pinned to its run id, so
        the record keeps naming the same run once more runs exist."""
        pin = journal.pin_runs if journal is not None else _as_typed
        words = [f"--rerun {pin(self.rerun, rerun=True)}"] if self.rerun else []
        words += [f"-h {pin(value)}" for value in self.hosts]
        words += [f"-g {value}" for value in self.groups]
        return " ".join([*words, *self.patterns]) or "all"


def _as_typed(text: str, *, rerun: bool = False) -> str:
    return text


# A relative run reference: in ``@run:REF[:STATUS]`` terms, and leading a --rerun value.
_RUN_TERM_REF = re.compile(r"(?<=@run:)(last(?:~\d+)?)(?=[:,]|$)")
_RERUN_REF = re.compile(r"^(last(?:~\d+)?)(?=:|$)")


@dataclass(frozen=True)
class JournalOptions(OptionGroup):
    """The run journal: where it is, and whether this run is recorded."""

    keyword: ClassVar[str] = "journal"

    journal_path: str | None = option(
        "--journal",
        metavar="PATH",
        help="The run journal (recorded runs, --rerun, @run:). Default: $HOSTBATCH_JOURNAL, "
        "else $XDG_STATE_HOME/hostbatch/journal.sqlite (~/.local/state/hostbatch/).",
    )
    no_journal: bool = option(
        "--no-journal",
        default=False,
        is_flag=True,
        help="Do not record this run (--rerun and @run: still read the journal).",
    )

    # run references (last, last~N) as this command resolved them: the first resolution
    # of each, the one its selection used (not on the command line)
    resolved: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def path(self) -> Path:
        return Path(self.journal_path).expanduser() if self.journal_path else default_journal_path()

    def run_hosts(self, term: str) -> list[str]:
        """Host names for ``@run:TERM`` / ``--rerun TERM`` (``RUN[:STATUS+STATUS]``);
        SelectionError (exit 2) when there is no such run. The run id a relative
        reference resolved to is kept in :attr:`resolved` (see :meth:`pin_runs`)."""
        ref, _, statuses = term.partition(":")
        where = self.path()
        if not where.exists():
            raise SelectionError(f"no run '{ref}': no run recorded yet (no journal {where})")
        with Journal.open(where) as journal:
            run_id = resolve_run_ref(journal, ref)
            self.resolved.setdefault(ref.strip(), run_id)
            return hosts_of_run(journal, str(run_id), [statuses] if statuses else ())

    def pin_runs(self, text: str, *, rerun: bool = False) -> str:
        """*text* (a -h value or argv word; *rerun*: a --rerun value) with each relative
        run reference this command resolved replaced by the run's id:
        ``@run:last:failed`` -> ``@run:41:failed``."""

        def pinned(match: re.Match[str]) -> str:
            return str(self.resolved.get(match.group(1), match.group(1)))

        if rerun:
            text = _RERUN_REF.sub(pinned, text)
        return _RUN_TERM_REF.sub(pinned, text)

    def pin_argv(self, argv: Sequence[str]) -> list[str]:
        """*argv* with the value of ``--rerun`` and every ``@run:`` term pinned (see
        :meth:`pin_runs`): what the journal records of the command line."""
        words: list[str] = []
        after_rerun = False
        for word in argv:
            if word.startswith("--rerun="):
                value = word.removeprefix("--rerun=")
                words.append("--rerun=" + self.pin_runs(value, rerun=True))
            else:
                words.append(self.pin_runs(word, rerun=after_rerun))
            after_rerun = word == "--rerun"
        return words


@dataclass(frozen=True)
class EngineOptions(OptionGroup):
    """How to connect and how much at once: transport, fanout, timeouts, retries, keys."""

    keyword: ClassVar[str] = "engine"

    transport: str = option(
        "--transport",
        default=DEFAULT,
        type=click.Choice(NAMES),
        show_default=True,
        help="Transport for hosts that do not set their own.",
    )
    fanout: int | None = option(
        "-f",
        "--fanout",
        type=click.IntRange(min=1),
        help=f"Hosts handled at once, across all workers [default: {DEFAULT_FANOUT}; "
        f"network devices: {SESSIONS_PER_WORKER_BLOCKING} per worker process, and a "
        "larger --fanout adds workers].",
    )
    timeout: float | None = option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        help="Per-host command timeout in seconds; the remote process is "
        "terminated. Default: none.",
    )
    connect_timeout: float = option(
        "--connect-timeout",
        default=DEFAULT_CONNECT_TIMEOUT,
        type=click.FloatRange(min=0, min_open=True),
        show_default=True,
        help="Seconds to connect, get the banner and log in.",
    )
    retries: int = option(
        "--retries",
        default=0,
        type=click.IntRange(min=0),
        show_default=True,
        help="Retry unreachable hosts and connect timeouts, with jittered backoff. "
        "Refusals, auth and host-key failures are never retried; starts the server drops "
        "(MaxStartups) always are.",
    )
    host_keys: HostKeyPolicy = option(  # noqa: RUF009 (a field spec, not a default)
        "--host-keys",
        default="strict",
        type=click.Choice(["strict", "accept-new", "off"]),
        show_default=True,
        help="strict: only keys in known_hosts; accept-new: record unknown keys; "
        "off: no checking (warned).",
    )
    known_hosts: str = option(
        "--known-hosts",
        default=DEFAULT_KNOWN_HOSTS,
        show_default=True,
        metavar="PATH",
        help="known_hosts file to check and record keys in.",
    )
    engine_name: str = option(
        "--engine",
        default="local",
        type=click.Choice(["local", "dask"]),
        show_default=True,
        help="local: this machine (worker processes); dask: shards on a Dask cluster "
        "(pip install 'hostbatch[dask]').",
    )
    scheduler: str | None = option(
        "--scheduler",
        envvar="HOSTBATCH_SCHEDULER",
        metavar="ADDRESS",
        help="Dask scheduler for --engine dask, e.g. tls://ctl1:8786 [env: HOSTBATCH_SCHEDULER].",
    )
    shards: int | None = option(
        "--shards",
        type=click.IntRange(min=1),
        help="Dask tasks the hosts are split into. Default: one per worker thread.",
    )
    shard_by: str | None = option(
        "--shard-by",
        metavar="KEY",
        help="Run hosts of group KEY_VALUE on the Dask workers named VALUE (or VALUE-N, "
        "or with resource VALUE), e.g. --shard-by site for groups site_paris, site_oslo.",
    )
    allow_insecure_scheduler: bool = option(
        "--allow-insecure-scheduler",
        default=False,
        is_flag=True,
        help="Send passwords to a non-loopback scheduler over plain tcp:// anyway.",
    )
    workers: int | None = option(
        "--workers",
        type=click.IntRange(min=1),
        help="Worker processes. Default: 1 for small runs, else one per core.",
    )
    jump_channels: int = option(
        "--jump-channels",
        default=DEFAULT_CHANNEL_BUDGET,
        type=click.IntRange(min=1),
        show_default=True,
        help="Hosts per shared connection to a jump host; more hosts open another one.",
    )

    def run_options(self, *, output_limit: int = DEFAULT_OUTPUT_LIMIT) -> RunOptions:
        """The API's RunOptions; warns on stderr when host key checking is off."""
        if self.host_keys == "off":
            warn("host key checking is OFF (--host-keys off)")
        limits = Limits(
            fanout=self.fanout,
            command_timeout=self.timeout,
            output_limit=output_limit,
            connect_retries=self.retries,
            engine=self.engine_name,
            scheduler=self.scheduler,
            shards=self.shards,
            shard_by=self.shard_by,
            allow_insecure_scheduler=self.allow_insecure_scheduler,
            workers=self.workers,
            jump_channels=self.jump_channels,
        )
        connect = ConnectOptions(
            connect_timeout=self.connect_timeout,
            host_keys=self.host_keys,
            known_hosts=self.known_hosts,
        )
        return RunOptions(limits, connect, self.transport)

    def without_command_timeout(self) -> EngineOptions:
        return replace(self, timeout=None)


@dataclass(frozen=True)
class OutputOptions(OptionGroup):
    """How results are shown: live lines, JSON lines, or gathered; colour; memory kept."""

    keyword: ClassVar[str] = "output"

    as_json: bool = option(
        "--json",
        default=False,
        is_flag=True,
        help="One JSON object per host as it finishes (stdout/stderr, exit_status, "
        "error); non-UTF-8 output as *_base64.",
    )
    gather: bool = option(
        "-b",
        "--gather",
        default=False,
        is_flag=True,
        help="No live lines: print each distinct output once with its hosts folded.",
    )
    gather_after: bool = option(
        "-B",
        "--gather-after",
        default=False,
        is_flag=True,
        help="Live lines, then each distinct output once with its hosts folded (as -b).",
    )
    masks: tuple[str, ...] = option(
        "--mask",
        default=(),
        multiple=True,
        metavar="REGEX",
        help="With -b/-B: replace matches by <maskN> before outputs are compared, so "
        "outputs differing only in timestamps or pids fold together (repeatable).",
    )
    events: bool = option(
        "--events",
        default=False,
        is_flag=True,
        help="NDJSON on stdout: every event as it happens (started, stdout, stderr, "
        "finished), then one summary object with the journal's run id.",
    )
    outdir: str | None = option(
        "--outdir",
        metavar="DIR",
        help="Write each host's full stdout to DIR/<host> (complete files only).",
    )
    errdir: str | None = option(
        "--errdir",
        metavar="DIR",
        help="With --outdir: each host's full stderr to DIR/<host>.",
    )
    color: ColorMode = color_option()  # noqa: RUF009 (a field spec, not a default)
    no_color: bool = no_color_option()
    output_limit: int = option(
        "--output-limit",
        default=DEFAULT_OUTPUT_LIMIT,
        type=click.IntRange(min=0),
        show_default=True,
        help="Bytes of stdout and of stderr kept per host (the tail); live output is never cut.",
    )

    def checked_masks(self) -> tuple[OutputMask, ...]:
        """Check that the output options go together (UsageError, exit 2, before anything
        runs); the compiled --mask patterns."""
        if self.events and (self.as_json or self.gather or self.gather_after):
            raise UsageError("--events cannot be combined with --json, -b or -B")
        if self.gather and self.gather_after:
            raise UsageError("give -b (gathered only) or -B (live, then gathered), not both")
        if self.masks and not (self.gather or self.gather_after):
            raise UsageError("--mask applies to gathered output: add -b or -B")
        if self.errdir and not self.outdir:
            raise UsageError("--errdir needs --outdir")
        return compile_masks(self.masks)

    def output_files(self) -> OutputFiles | None:
        """The --outdir/--errdir sink (folders created now), or None."""
        if not self.outdir:
            return None
        errdir = Path(self.errdir).expanduser() if self.errdir else None
        return OutputFiles(Path(self.outdir).expanduser(), errdir)

    def use_color(self, stream: TextIO | None = None) -> bool:
        """--color/--no-color, NO_COLOR, FORCE_COLOR, else whether *stream* is a terminal."""
        return color_enabled("never" if self.no_color else self.color, stream or sys.stdout)


@dataclass(frozen=True)
class ColorOptions(OptionGroup):
    """--color for commands without OutputOptions (put, get, ping)."""

    keyword: ClassVar[str] = "colors"

    color: ColorMode = color_option()  # noqa: RUF009 (a field spec, not a default)
    no_color: bool = no_color_option()

    def use_color(self, stream: TextIO | None = None) -> bool:
        """As :meth:`OutputOptions.use_color`."""
        return color_enabled("never" if self.no_color else self.color, stream or sys.stdout)


@dataclass(frozen=True)
class TransferOptions(OptionGroup):
    """How files are copied: recursion, modes and times, checksums."""

    keyword: ClassVar[str] = "copy"

    recursive: bool = option(
        "-r", "--recursive", default=False, is_flag=True, help="Copy directories recursively."
    )
    preserve: bool = option(
        "-p", "--preserve", default=False, is_flag=True, help="Keep mode and modification time."
    )
    verify: bool = option(
        "--verify",
        default=False,
        is_flag=True,
        help="Compare SHA-256 of both sides after each file (needs sha256sum on the host).",
    )

    def transfer(
        self, direction: Literal["put", "get"], sources: tuple[str, ...], destination: str
    ) -> Transfer:
        return Transfer(direction, sources, destination, self.recursive, self.preserve, self.verify)


@dataclass(frozen=True)
class LogOptions(OptionGroup):
    """Diagnostics on stderr (or --log-file): -v (info), -vv or --debug (debug), else
    $HOSTBATCH_LOG. Worker processes log the same way (engine/executors/processes.py)."""

    keyword: ClassVar[str] = "log"

    verbose: int = option(
        "-v",
        "--verbose",
        default=0,
        count=True,
        help="More diagnostics on stderr: -v info, -vv debug "
        "(or HOSTBATCH_LOG=debug|info|warning).",
    )
    debug: bool = option(
        "--debug",
        default=False,
        is_flag=True,
        help="Debug records of hostbatch and the SSH libraries on stderr (secrets masked).",
    )
    log_file: str | None = option(
        "--log-file",
        metavar="PATH",
        help="Append the diagnostics asked for by -v, --debug or HOSTBATCH_LOG to PATH "
        "instead of stderr (worker processes too).",
    )

    def configure(self) -> None:
        """Set up logging once for this process (silent unless asked); a log file that
        cannot be opened is a usage error (exit 2)."""
        path = str(Path(self.log_file).expanduser()) if self.log_file else None
        try:
            logs.configure(logs.level_from(self.verbose, debug=self.debug), path=path)
        except OSError as exc:
            raise click.UsageError(f"cannot write --log-file {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class WorkflowOptions(OptionGroup):
    """Everyday workflows of ``run``: rolling batches, stdin, scripts, variables, sudo
    (applied by :mod:`hostbatch.cli.workflow`)."""

    keyword: ClassVar[str] = "workflow"

    batch: str | None = option(
        "--batch",
        metavar="N|N%",
        help="Run in successive batches of N hosts (or N% of them), each finished "
        "before the next starts.",
    )
    max_fail: str | None = option(
        "--max-fail",
        metavar="N|N%",
        help="Start no more hosts once N (or N%) have failed; the rest are 'not started'.",
    )
    canary: int = option(
        "--canary",
        default=0,
        type=click.IntRange(min=0),
        metavar="N",
        help="Run the first N hosts alone; the rest only if all of them are ok.",
    )
    stdin: str | None = option(
        "--stdin",
        metavar="FILE|-",
        help="Send FILE (- for this stdin) to every host's command on its stdin.",
    )
    script: str | None = option(
        "--script",
        metavar="LOCAL",
        help="Upload LOCAL to a private temporary directory on each host, run it with "
        "the arguments as its arguments, remove it afterwards.",
    )
    env: tuple[str, ...] = option(
        "--env",
        default=(),
        multiple=True,
        metavar="NAME=VALUE",
        help="Set a variable for the command (repeatable; no AcceptEnv needed).",
    )
    sudo: bool = option(
        "--sudo", default=False, is_flag=True, help="Run the command through sudo (as root)."
    )
    sudo_user: str | None = option(
        "--sudo-user", metavar="USER", help="Run the command through sudo as USER."
    )
    ask_become_pass: bool = option(
        "--ask-become-pass",
        default=False,
        is_flag=True,
        help="Prompt once for the sudo password (else become_password_env in the "
        "inventory, or $HOSTBATCH_BECOME_PASSWORD).",
    )


PERSIST_ENV = "HOSTBATCH_PERSIST"
PERSIST_DEFAULT = "10m"
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``2s``, ``10m``, ``1.5h``; a UsageError otherwise."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS else ""
    try:
        seconds = float(value[: len(value) - len(unit)]) * _UNITS[unit]
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise UsageError(
            f"--persist needs a positive duration like 90s, 10m or 1h (got {text!r}); "
            "a bare --persist goes before -- or last"
        )
    return seconds


@dataclass(frozen=True)
class PersistOptions(OptionGroup):
    """Warm connections through the per-user agent (engine/executors/agent.py)."""

    keyword: ClassVar[str] = "persist"

    persist: str | None = option(
        "--persist",
        is_flag=False,
        flag_value=PERSIST_DEFAULT,
        metavar="[DURATION]",
        help=f"Run through a per-user background agent that keeps the connections open "
        f"for DURATION idle [default: {PERSIST_DEFAULT}; also ${PERSIST_ENV}], so the "
        "next command on these hosts logs in no more ('hostbatch agent status|stop').",
    )

    def seconds(self) -> float | None:
        """The idle duration when the run goes through the agent, else None."""
        text = self.persist or os.environ.get(PERSIST_ENV, "")
        if not text or text.strip().lower() in ("0", "off", "no"):
            return None
        return parse_duration(text)
