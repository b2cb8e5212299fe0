"""The seed's command lines, kept working: ``batch_run`` and ``batch_scp``.

batch_run -h h1,h2,h3 -g web_clusters,db_servers -cmd "df -h"
"""

from __future__ import annotations

from typing import Any

import click

from hostbatch.cli.common import CONTEXT_SETTINGS, handle_errors, selection_options
from hostbatch.cli.run import _selection, engine_options, execute_command, output_options


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
    execute_command(_selection(params), cmd, params)


def batch_run_main() -> None:
    batch_run(prog_name="batch_run")
