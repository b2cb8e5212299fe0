"""The seed's command lines, kept working: ``batch_run`` and ``batch_scp``.

batch_run -h h1,h2,h3 -g web_clusters,db_servers -cmd "df -h"
"""

from __future__ import annotations

import click

from hostbatch.cli.common import CONTEXT_SETTINGS, handle_errors, run_main
from hostbatch.cli.execute import execute_command, execute_transfer
from hostbatch.cli.options import (
    EngineOptions,
    JournalOptions,
    LogOptions,
    OutputOptions,
    SelectionOptions,
    TransferOptions,
    WorkflowOptions,
)
from hostbatch.errors import UsageError


@click.command("batch_run", context_settings=CONTEXT_SETTINGS)
@SelectionOptions.options
@EngineOptions.options
@OutputOptions.options
@JournalOptions.options
@click.option("-cmd", "--cmd", "cmd", required=True, help="The command to run on every host.")
@WorkflowOptions.options
@LogOptions.options
@handle_errors
def batch_run(
    cmd: str,
    log: LogOptions,
    selection: SelectionOptions,
    engine: EngineOptions,
    output: OutputOptions,
    workflow: WorkflowOptions,
    journal: JournalOptions,
) -> None:
    """Run one command on hosts and groups (seed-compatible form of ``hostbatch run``).

    \b
    Example:
      batch_run -h h1,h2,h3 -g web_clusters,db_servers -cmd "df -h"
    """
    log.configure()
    execute_command(selection, cmd, engine, output, journal, workflow)


def batch_run_main() -> None:
    run_main(batch_run, "batch_run")


@click.command("batch_scp", context_settings=CONTEXT_SETTINGS)
@SelectionOptions.options
@EngineOptions.options
@TransferOptions.options
@JournalOptions.options
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
@LogOptions.options
@handle_errors
def batch_scp(
    action: str,
    local: tuple[str, ...],
    remote: tuple[str, ...],
    log: LogOptions,
    selection: SelectionOptions,
    engine: EngineOptions,
    copy: TransferOptions,
    journal: JournalOptions,
) -> None:
    """Copy files to or from hosts and groups (seed-compatible form of put/get).

    \b
    Examples:
      batch_scp -h h1,h2,h3 -g web_clusters,db_servers -action put -local test.py -remote /tmp/
      batch_scp -g web_clusters -action get -remote /var/log/syslog -local ./logs
    """
    log.configure()
    if action == "put":
        if len(remote) != 1:
            raise UsageError("put takes one -remote destination")
        transfer = copy.transfer("put", local, remote[0])
    else:
        if len(local) != 1:
            raise UsageError("get takes one -local directory")
        transfer = copy.transfer("get", remote, local[0])
    execute_transfer(selection, transfer, engine, journal)


def batch_scp_main() -> None:
    run_main(batch_scp, "batch_scp")
