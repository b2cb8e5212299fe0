"""``hostbatch put`` / ``hostbatch get`` and the seed's ``batch_scp``."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import click

from hostbatch.api import make_plan, run_plan
from hostbatch.cli.common import (
    EXIT_INTERRUPTED,
    Selection,
    exit_code_for,
    handle_errors,
    load_selection,
    pop_selection,
    selection_options,
)
from hostbatch.cli.run import build_options, engine_options
from hostbatch.errors import UsageError
from hostbatch.models import Transfer
from hostbatch.output.gather import summary_lines
from hostbatch.output.progress import terminal_progress


def transfer_flags(func: Any) -> Any:
    options = [
        click.option("-r", "--recursive", is_flag=True, help="Copy directories recursively."),
        click.option("-p", "--preserve", is_flag=True, help="Keep mode and modification time."),
        click.option(
            "--verify",
            is_flag=True,
            help="Compare SHA-256 of both sides after each file (needs sha256sum on the host).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def execute_transfer(selection: Selection, transfer: Transfer, params: dict[str, Any]) -> None:
    """Shared body of put, get and batch_scp; exits with the run's code."""
    _, hosts = load_selection(selection)
    plan = make_plan(transfer, hosts, build_options(params, command_timeout=params["timeout"]))
    sink = terminal_progress(hosts)
    began = time.monotonic()
    try:
        results = asyncio.run(run_plan(plan, sink))
    except KeyboardInterrupt:
        click.echo(
            "\nhostbatch: interrupted; partial files were left under temporary names only", err=True
        )
        raise SystemExit(EXIT_INTERRUPTED) from None
    for line in summary_lines(results, time.monotonic() - began):
        click.echo(line, err=True)
    raise SystemExit(exit_code_for(results))


def _transfer(
    direction: Literal["put", "get"], paths: tuple[str, ...], params: dict[str, Any]
) -> Transfer:
    if len(paths) < 2:
        raise UsageError(f"{direction} needs at least one source and a destination")
    *sources, destination = paths
    return Transfer(
        direction,
        tuple(sources),
        destination,
        params.pop("recursive"),
        params.pop("preserve"),
        params.pop("verify"),
    )


@click.command("put")
@selection_options
@engine_options
@transfer_flags
@click.argument("paths", nargs=-1, required=True, metavar="LOCAL... REMOTE")
@handle_errors
def put_command(paths: tuple[str, ...], **params: Any) -> None:
    """Copy local files to every selected host.

    A REMOTE ending in '/' (or an existing remote directory) receives each file under
    its own name. Each file is written under a temporary name and renamed when complete.
    Exit codes as for 'run'.

    \b
    Examples:
      hostbatch put -g web_clusters app.tar.gz /tmp/
      hostbatch put -h 'web[01-05]' -r -p conf/ /etc/myapp/
      hostbatch put -g db_servers --verify dump.sql /srv/restore/dump.sql
    """
    transfer = _transfer("put", paths, params)
    execute_transfer(pop_selection(params), transfer, params)


@click.command("get")
@selection_options
@engine_options
@transfer_flags
@click.argument("paths", nargs=-1, required=True, metavar="REMOTE... LOCALDIR")
@handle_errors
def get_command(paths: tuple[str, ...], **params: Any) -> None:
    """Copy remote files from every selected host into LOCALDIR/<host>/.

    \b
    Examples:
      hostbatch get -g web_clusters /var/log/nginx/error.log ./logs
      hostbatch get -h db01 -r /etc/postgresql ./configs
    """
    transfer = _transfer("get", paths, params)
    execute_transfer(pop_selection(params), transfer, params)
