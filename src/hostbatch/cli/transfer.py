"""``hostbatch put`` / ``hostbatch get`` (the seed's ``batch_scp`` is in seed.py)."""

from __future__ import annotations

from typing import Literal

import click

from hostbatch.cli.common import handle_errors
from hostbatch.cli.execute import execute_transfer
from hostbatch.cli.options import EngineOptions, PersistOptions, SelectionOptions, TransferOptions
from hostbatch.errors import UsageError
from hostbatch.models import Transfer


def _transfer(
    direction: Literal["put", "get"], paths: tuple[str, ...], copy: TransferOptions
) -> Transfer:
    if len(paths) < 2:
        raise UsageError(f"{direction} needs at least one source and a destination")
    *sources, destination = paths
    return copy.transfer(direction, tuple(sources), destination)


@click.command("put")
@SelectionOptions.options
@EngineOptions.options
@TransferOptions.options
@PersistOptions.options
@click.argument("paths", nargs=-1, required=True, metavar="LOCAL... REMOTE")
@handle_errors
def put_command(
    paths: tuple[str, ...],
    selection: SelectionOptions,
    engine: EngineOptions,
    copy: TransferOptions,
    persist: PersistOptions,
) -> None:
    """Copy local files to every selected host.

    A REMOTE ending in '/' (or an existing remote directory) receives each file under
    its own name. Each file is written under a temporary name and renamed when complete.
    Exit codes as for 'run'.

    \b
    Examples:
      hostbatch put -g web_clusters app.tar.gz /tmp/
      hostbatch put -h 'web[01-05]' -r -p conf/ /etc/myapp/
      hostbatch put -g db_servers --verify dump.sql /srv/restore/dump.sql
      hostbatch put -g web app.conf /etc/app/ --persist    (connections kept warm)
    """
    persist.seconds()  # first: a path taken as --persist's DURATION is the error to show
    execute_transfer(selection, _transfer("put", paths, copy), engine, persist)


@click.command("get")
@SelectionOptions.options
@EngineOptions.options
@TransferOptions.options
@PersistOptions.options
@click.argument("paths", nargs=-1, required=True, metavar="REMOTE... LOCALDIR")
@handle_errors
def get_command(
    paths: tuple[str, ...],
    selection: SelectionOptions,
    engine: EngineOptions,
    copy: TransferOptions,
    persist: PersistOptions,
) -> None:
    """Copy remote files from every selected host into LOCALDIR/<host>/.

    \b
    Examples:
      hostbatch get -g web_clusters /var/log/nginx/error.log ./logs
      hostbatch get -h db01 -r /etc/postgresql ./configs
    """
    persist.seconds()  # first: a path taken as --persist's DURATION is the error to show
    execute_transfer(selection, _transfer("get", paths, copy), engine, persist)
