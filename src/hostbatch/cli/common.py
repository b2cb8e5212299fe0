"""Pieces every command shares: selection options, inventory loading, error handling."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from hostbatch.errors import HostbatchError
from hostbatch.inventory import Inventory, load_inventory
from hostbatch.models import Host, HostResult, Secret, Status

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["--help"], "max_content_width": 100}

# Exit codes (documented in the README and in `hostbatch --help`).
EXIT_OK = 0
EXIT_COMMAND_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


def exit_code_for(results: dict[str, HostResult]) -> int:
    """3 if any host was not reached (unreachable, auth, host key), else 1 if any failed."""
    statuses = {r.status for r in results.values()}
    if any(not s.reached for s in statuses):
        return EXIT_UNREACHABLE
    if statuses - {Status.OK}:
        return EXIT_COMMAND_FAILED
    return EXIT_OK


def warn(message: str) -> None:
    click.echo(f"hostbatch: warning: {message}", err=True)


def handle_errors(func: F) -> F:
    """Turn HostbatchError into one clear line on stderr and its exit code; no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HostbatchError as exc:
            click.echo(f"hostbatch: error: {exc}", err=True)
            raise SystemExit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class Selection:
    """What the user selected on the command line."""

    inventory: tuple[str, ...]
    hosts: tuple[str, ...]
    groups: tuple[str, ...]
    patterns: tuple[str, ...]
    ask_pass: bool
    ssh_config: str | None


def pop_selection(params: dict[str, Any], patterns: tuple[str, ...] = ()) -> Selection:
    """Take the options added by :func:`selection_options` out of a command's params."""
    return Selection(
        params.pop("inventory"),
        params.pop("hosts"),
        params.pop("groups"),
        patterns,
        params.pop("ask_pass"),
        params.pop("ssh_config"),
    )


def selection_options(func: F) -> F:
    """``-i/--inventory``, ``-h/--hosts``, ``-g/--groups``, ``--ask-pass``, ``--ssh-config``."""
    options = [
        click.option(
            "-i",
            "--inventory",
            multiple=True,
            metavar="PATH",
            help="Inventory folder or file (repeatable). Default: $HOSTBATCH_INVENTORY, "
            "else ./inventory[/|.ini|.yaml], else ~/.config/hostbatch/inventory.",
        ),
        click.option(
            "-h",
            "--hosts",
            multiple=True,
            metavar="LIST",
            help="Hosts, comma-separated; ranges web[01-20], @group, !exclude, all.",
        ),
        click.option(
            "-g",
            "--groups",
            multiple=True,
            metavar="LIST",
            help="Groups, comma-separated (union with -h; each host once).",
        ),
        click.option(
            "--ask-pass",
            is_flag=True,
            help="Prompt once for a password, used by hosts that have none.",
        ),
        click.option(
            "--ssh-config",
            default="~/.ssh/config",
            show_default=True,
            metavar="PATH",
            help="OpenSSH client config filling in unset values; '' to ignore it.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def ask_password(text: str) -> str:
    """Prompt without echo (works on a terminal and with piped input)."""
    return str(click.prompt(text, hide_input=True, prompt_suffix="", err=True))


def load_selection(
    selection: Selection, *, prompt: Callable[[str], str] = ask_password
) -> tuple[Inventory, list[Host]]:
    """Load the inventory, print its warnings, apply --ask-pass, and select hosts."""
    inventory = load_inventory(selection.inventory, ssh_config=selection.ssh_config or None)
    for message in inventory.warnings:
        warn(message)
    if selection.ask_pass:
        inventory = inventory.with_password(Secret(prompt("SSH password: ")))
    hosts = inventory.select(
        hosts=_nonempty(selection.hosts),
        groups=_nonempty(selection.groups),
        patterns=_nonempty(selection.patterns),
    )
    return inventory, hosts


def _nonempty(values: Sequence[str]) -> list[str] | None:
    return list(values) or None
