"""``hostbatch demo``: the built-in fleet, a run on it, live output and summary."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from hostbatch.cli.common import handle_errors
from hostbatch.cli.execute import execute_command
from hostbatch.cli.options import EngineOptions, JournalOptions, OutputOptions, SelectionOptions

DEMO_COMMAND = (
    'echo "hello from $HOSTBATCH_FLEET_HOST ($(uname -s), pid $$)"; '
    "df -h . | tail -n 1; "
    'case "$HOSTBATCH_FLEET_HOST" in *04) echo "disk check failed" >&2; exit 1;; esac'
)
# Name suffix -> what that demo host does wrong (see hostbatch.testing.fleet).
MISBEHAVIOUR = {
    "07": "refuse_auth",
    "11": "slow_output",
    "13": "hang_before_banner",
    "16": "drop_mid_command",
    "19": "refuse_connect",
}


def demo_behaviours(count: int, prefix: str = "node") -> dict[str, str]:
    width = 2 if count < 100 else len(str(count))
    return {
        f"{prefix}{int(suffix):0{width}d}": kind
        for suffix, kind in MISBEHAVIOUR.items()
        if int(suffix) <= count
    }


@click.command("demo")
@click.option(
    "-n",
    "--hosts",
    "count",
    type=click.IntRange(1, 2000),
    default=20,
    show_default=True,
    help="Hosts in the demo fleet.",
)
@click.option("--well-behaved", is_flag=True, help="No misbehaving hosts.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Command timeout.")
@click.option("--connect-timeout", type=float, default=3.0, show_default=True)
@OutputOptions.options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def demo_command(
    count: int,
    well_behaved: bool,
    timeout: float,
    connect_timeout: float,
    command: tuple[str, ...],
    output: OutputOptions,
) -> None:
    """Start an in-process SSH fleet on loopback and run a command on it.

    The fleet (hostbatch.testing) really runs commands in a shell, each host in its
    own temp dir. By default a few hosts misbehave: one refuses the login, one never
    sends its SSH banner, one drops the connection mid-command, one refuses
    connections, one writes slowly; and the demo command fails on node04.

    \b
    Examples:
      hostbatch demo
      hostbatch demo -n 200 --well-behaved -- 'echo $HOSTBATCH_FLEET_HOST; uptime'
      hostbatch demo --json
    """
    from hostbatch.testing import FleetThread

    behaviours = {} if well_behaved else demo_behaviours(count)
    text = " ".join(command) or DEMO_COMMAND
    with (
        tempfile.TemporaryDirectory(prefix="hostbatch-demo-") as workdir,
        FleetThread(count, behaviours=behaviours) as fleet,
    ):
        inventory = fleet.write_inventory(Path(workdir) / "inventory", auth="key")
        click.echo(
            f"demo: {count} hosts on 127.0.0.1 ({len(behaviours)} misbehaving: "
            f"{', '.join(f'{h} {b}' for h, b in behaviours.items()) or 'none'})",
            err=True,
        )
        click.echo(f"demo: $ {text}", err=True)
        engine = EngineOptions(
            transport="asyncssh",
            fanout=256,
            timeout=timeout,
            connect_timeout=connect_timeout,
            known_hosts=str(fleet.known_hosts),
        )
        selection = SelectionOptions(inventory=(str(inventory),), ssh_config="")
        # a throwaway fleet: its runs are not worth keeping in the journal
        execute_command(selection, text, engine, output, JournalOptions(no_journal=True))
