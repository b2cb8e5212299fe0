"""The seed's command lines, kept working: ``batch_run`` and ``batch_scp``.

batch_run -h h1,h2,h3 -g web_clusters,db_servers -cmd "df -h"
"""

from __future__ import annotations

from typing import Any

import click

from hostbatch.cli.common import CONTEXT_SETTINGS, handle_errors, pop_selection, selection_options
from hostbatch.cli.run import engine_options, execute_command, output_options
from hostbatch.cli.transfer import execute_transfer, transfer_flags
from hostbatch.models import Transfer


@click.command("batch_run", context_settings=CONTEXT_SETTINGS)
@selection_options
@engine_options
@output_options
@click.option("-cmd", "--cmd", "cmd", required=True, help="The command to run on every host.")
@handle_errors
def batch_run(cmd: str, **params: Any) -> None:
    """Run one command on hosts and groups (seed-compatible form of ``hostbatch run``).

    \b
    Example:
      batch_run -h h1,h2,h3 -g web_clusters,db_servers -cmd "df -h"
    """
    execute_command(pop_selection(params), cmd, params)


def batch_run_main() -> None:
    batch_run(prog_name="batch_run")


@click.command("batch_scp", context_settings=CONTEXT_SETTINGS)
@selection_options
@engine_options
@transfer_flags
@click.option(
    "-action",
    "--action",
    type=click.Choice(["put", "get"]),
    required=True,
    help="put: local -> hosts; get: hosts -> local dir (one sub-folder per host).",
)
@click.option(
    "-local",
    "--local",
    "local",
    required=True,
    multiple=True,
    help="put: local file (repeatable); get: local directory.",
)
@click.option(
    "-remote",
    "--remote",
    "remote",
    required=True,
    multiple=True,
    help="put: remote path or directory/; get: remote file (repeatable).",
)
@handle_errors
def batch_scp(action: str, local: tuple[str, ...], remote: tuple[str, ...], **params: Any) -> None:
    """Copy files to or from hosts and groups (seed-compatible form of put/get).

    \b
    Examples:
      batch_scp -h h1,h2,h3 -g web_clusters,db_servers -action put -local test.py -remote /tmp/
      batch_scp -g web_clusters -action get -remote /var/log/syslog -local ./logs
    """
    flags = (params.pop("recursive"), params.pop("preserve"), params.pop("verify"))
    if action == "put":
        if len(remote) != 1:
            raise click.UsageError("put takes one -remote destination")
        transfer = Transfer("put", local, remote[0], *flags)
    else:
        if len(local) != 1:
            raise click.UsageError("get takes one -local directory")
        transfer = Transfer("get", remote, local[0], *flags)
    execute_transfer(pop_selection(params), transfer, params)


def batch_scp_main() -> None:
    batch_scp(prog_name="batch_scp")
