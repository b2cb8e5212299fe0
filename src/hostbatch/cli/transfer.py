"""``hostbatch put`` / ``hostbatch get`` (the seed's ``batch_scp`` is in seed.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click

from hostbatch.cli.common import handle_errors
from hostbatch.cli.dryrun import dry_run_option, print_plan
from hostbatch.cli.execute import execute_transfer
from hostbatch.cli.options import (
    ColorOptions,
    EngineOptions,
    JournalOptions,
    PersistOptions,
    SelectionOptions,
    TransferOptions,
)
from hostbatch.errors import UsageError
from hostbatch.models import Transfer

F = TypeVar("F", bound=Callable[..., Any])


def _transfer(
    direction: Literal["put", "get"], paths: tuple[str, ...], copy: TransferOptions
) -> Transfer:
    if len(paths) < 2:
        raise UsageError(f"{direction} needs at least one source and a destination")
    *sources, destination = paths
    return copy.transfer(direction, tuple(sources), destination)


def _transfer_options(func: F) -> F:
    """The options put and get share (each added in one place for both)."""
    for decorator in reversed(
        (
            SelectionOptions.options,
            EngineOptions.options,
            TransferOptions.options,
            JournalOptions.options,
            ColorOptions.options,
            dry_run_option,
            PersistOptions.options,
        )
    ):
        func = decorator(func)
    return func


def _copy(
    direction: Literal["put", "get"],
    paths: tuple[str, ...],
    dry_run: bool,
    selection: SelectionOptions,
    engine: EngineOptions,
    copy: TransferOptions,
    journal: JournalOptions,
    colors: ColorOptions,
    persist: PersistOptions,
) -> None:
    """The body of put and get: the plan only (--dry-run), or the transfer."""
    persist.seconds()  # first: a path taken as --persist's DURATION is the error to show
    transfer = _transfer(direction, paths, copy)
    if dry_run:
        print_plan(selection, transfer, engine, journal=journal)
    execute_transfer(
        selection, transfer, engine, journal, color=colors.use_color(), persist=persist
    )


@click.command("put")
@_transfer_options
@click.argument("paths", nargs=-1, required=True, metavar="LOCAL... REMOTE")
@handle_errors
def put_command(
    paths: tuple[str, ...],
    dry_run: bool,
    selection: SelectionOptions,
    engine: EngineOptions,
    copy: TransferOptions,
    journal: JournalOptions,
    colors: ColorOptions,
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
      hostbatch put --rerun last:failed app.tar.gz /tmp/
      hostbatch put --hostfile hosts.txt --dry-run app.tar.gz /tmp/   (the plan only)
      hostbatch put -g web app.conf /etc/app/ --persist    (connections kept warm)
    """
    _copy("put", paths, dry_run, selection, engine, copy, journal, colors, persist)


@click.command("get")
@_transfer_options
@click.argument("paths", nargs=-1, required=True, metavar="REMOTE... LOCALDIR")
@handle_errors
def get_command(
    paths: tuple[str, ...],
    dry_run: bool,
    selection: SelectionOptions,
    engine: EngineOptions,
    copy: TransferOptions,
    journal: JournalOptions,
    colors: ColorOptions,
    persist: PersistOptions,
) -> None:
    """Copy remote files from every selected host into LOCALDIR/<host>/.

    \b
    Examples:
      hostbatch get -g web_clusters /var/log/nginx/error.log ./logs
      hostbatch get -h db01 -r /etc/postgresql ./configs
      hostbatch get --rerun 41:transfer_failed /var/log/syslog ./logs
      hostbatch get -g web_clusters --dry-run /etc/hosts ./hosts   (the plan only)
    """
    _copy("get", paths, dry_run, selection, engine, copy, journal, colors, persist)
