"""``hostbatch hosts``: the selected hosts as a table or JSON (the seed's "view host info")."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import click

from hostbatch.cli.common import handle_errors, load_selection
from hostbatch.cli.options import JournalOptions, SelectionOptions
from hostbatch.models import Host
from hostbatch.output.table import format_columns

MASK = "********"
COLUMNS = ("NAME", "GROUPS", "ADDRESS", "PORT", "USER", "AUTH", "TRANSPORT")


def host_record(host: Host) -> dict[str, Any]:
    """A host as a JSON-able dict; secrets masked, never revealed."""
    creds = host.credentials
    return {
        "name": host.name,
        "groups": list(host.groups),
        "hostname": host.hostname,
        "port": host.port,
        "username": creds.username,
        "auth": creds.auth_kind,
        "password": MASK if creds.password else None,
        "key_file": creds.key_file,
        "passphrase": MASK if creds.passphrase else None,
        "secret": MASK if creds.secret else None,
        "transport": host.transport or "asyncssh",
        "device_type": host.device_type,
        "proxy_jump": host.proxy_jump,
        "source": host.source,
    }


def format_table(hosts: list[Host]) -> str:
    rows = [
        (
            h.name,
            ",".join(h.groups) or "-",
            h.hostname,
            str(h.port),
            h.credentials.username or "-",
            h.credentials.auth_kind,
            (h.transport or "asyncssh") + (f" ({h.device_type})" if h.device_type else ""),
        )
        for h in hosts
    ]
    return format_columns(COLUMNS, rows)


@click.command("hosts")
@SelectionOptions.options
@JournalOptions.options
@click.argument("patterns", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one list) for scripts.")
@handle_errors
def hosts_command(
    patterns: tuple[str, ...], as_json: bool, selection: SelectionOptions, journal: JournalOptions
) -> None:
    """List the selected hosts: name, groups, address, port, user, auth kind, transport.

    Passwords are always shown masked.

    \b
    Examples:
      hostbatch hosts                          every host
      hostbatch hosts -g web_clusters,db_servers
      hostbatch hosts 'web[01-03]' '!web02' --json
      hostbatch hosts '@run:last:unreachable' '!web07'    (hosts of the last run)
    """
    inventory, selected = load_selection(replace(selection, patterns=patterns), journal)
    if as_json:
        click.echo(json.dumps([host_record(h) for h in selected], indent=2))
    elif not selected:  # only an empty inventory: an empty selection is an error
        click.echo(f"no hosts in {', '.join(inventory.sources) or 'the inventory'}", err=True)
        click.echo("0 host(s)", err=True)
    else:
        click.echo(format_table(selected))
        click.echo(f"{len(selected)} host(s)", err=True)
