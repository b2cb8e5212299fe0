"""Shell completion: ``hostbatch completion bash|zsh|fish`` and host/group names for -h/-g.

The script is click's (the shell calls ``hostbatch`` back with ``_HOSTBATCH_COMPLETE``
set). Values of ``-h`` and ``-g`` complete from the inventory the command line names
(``-i``, else $HOSTBATCH_INVENTORY, else the default places), loaded quietly: a missing or
broken inventory completes nothing, never prints, never raises.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable
from typing import Any

import click
from click.shell_completion import CompletionItem, get_completion_class

from hostbatch.inventory import Inventory, load_inventory

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_HOSTBATCH_COMPLETE"


def _quiet_inventory(ctx: click.Context) -> Inventory | None:
    """The inventory named on the command line so far, or None (nothing printed)."""
    params = ctx.params
    ssh_config = params.get("ssh_config") or None
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            return load_inventory(params.get("inventory") or (), ssh_config=ssh_config)
    except Exception:  # completion must never show a traceback
        return None


def _complete(names: Iterable[str], incomplete: str, *, prefixes: tuple[str, ...]) -> list[str]:
    """Names for the last comma-separated term of *incomplete*, earlier terms kept."""
    done, _, last = incomplete.rpartition(",")
    lead = f"{done}," if done else ""
    mark = next((p for p in prefixes if last.startswith(p)), "")
    body = last[len(mark) :]
    return [f"{lead}{mark}{name}" for name in names if name.startswith(body)]


def _completer(groups_only: bool) -> Callable[[click.Context, click.Parameter, str], Any]:
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        inventory = _quiet_inventory(ctx)
        if inventory is None:
            return []
        if groups_only:
            values = _complete(inventory.groups, incomplete, prefixes=("!",))
        else:
            last = incomplete.rpartition(",")[2].lstrip("!")
            if last.startswith("@"):
                values = _complete(inventory.groups, incomplete, prefixes=("!@", "@"))
            else:
                values = _complete(inventory.hosts, incomplete, prefixes=("!",))
        return [CompletionItem(v) for v in values]

    return complete


complete_hosts = _completer(groups_only=False)
complete_groups = _completer(groups_only=True)


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    Commands, options, and the host and group names of -h / -g (read from the inventory
    given with -i, $HOSTBATCH_INVENTORY or the default places) complete with Tab.

    \b
    Examples:
      eval "$(hostbatch completion bash)"                          # this shell only
      hostbatch completion bash > ~/.local/share/bash-completion/completions/hostbatch
      hostbatch completion zsh > "${fpath[1]}/_hostbatch"
      hostbatch completion fish > ~/.config/fish/completions/hostbatch.fish
    """
    root = ctx.find_root().command
    shell_class = get_completion_class(shell)
    if shell_class is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"no completion for {shell}")
    click.echo(shell_class(root, {}, "hostbatch", COMPLETE_VAR).source())
