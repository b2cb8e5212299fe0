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
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, Self, TextIO, TypeVar

import click

from hostbatch import logs
from hostbatch.api import RunOptions
from hostbatch.cli.common import warn
from hostbatch.engine.limits import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FANOUT,
    DEFAULT_OUTPUT_LIMIT,
    SESSIONS_PER_WORKER_BLOCKING,
    Limits,
)
from hostbatch.errors import UsageError
from hostbatch.models import Transfer
from hostbatch.transport.base import DEFAULT_KNOWN_HOSTS, ConnectOptions, HostKeyPolicy
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
        help="Hosts, comma-separated; ranges web[01-20], @group, !exclude, all.",
    )
    groups: tuple[str, ...] = option(
        "-g",
        "--groups",
        default=(),
        multiple=True,
        metavar="LIST",
        help="Groups, comma-separated (union with -h; each host once).",
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
    patterns: tuple[str, ...] = ()  # positional patterns (hostbatch hosts), not an option


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
        help="Retry refused/unreachable connections, with backoff.",
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
    workers: int | None = option(
        "--workers",
        type=click.IntRange(min=1),
        help="Worker processes. Default: 1 for small runs, else one per core.",
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
            workers=self.workers,
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
    color: bool | None = option("--color/--no-color", help="Default: colour on a terminal.")
    output_limit: int = option(
        "--output-limit",
        default=DEFAULT_OUTPUT_LIMIT,
        type=click.IntRange(min=0),
        show_default=True,
        help="Bytes of stdout and of stderr kept per host (the tail); live output is never cut.",
    )

    def use_color(self, stream: TextIO | None = None) -> bool:
        """--color/--no-color, else colour when *stream* (stdout) is a terminal."""
        if self.color is not None:
            return self.color
        return (stream or sys.stdout).isatty()


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
    """Diagnostics on stderr: -v (info), -vv or --debug (debug), else $HOSTBATCH_LOG."""

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

    def configure(self) -> None:
        """Set up logging once for this process (silent unless asked)."""
        logs.configure(logs.level_from(self.verbose, debug=self.debug))


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
