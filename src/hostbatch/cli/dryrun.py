"""``--dry-run`` for run, put and get: the plan, host by host, without connecting anywhere.

For each selected host: its address, user, transport, jump host and where its credentials
come from (key file path, ssh-agent, password from the inventory file:line, password_env
NAME, --ask-pass). Secret values are never printed, only ``********`` and their origin.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import click

from hostbatch.cli.common import EXIT_OK, load_selection
from hostbatch.cli.options import EngineOptions, SelectionOptions
from hostbatch.models import CommandSet, Host, Secret, Transfer

MASK = "********"
COLUMNS = ("HOST", "ADDRESS", "USER", "TRANSPORT", "JUMP", "AUTH")

dry_run_option = click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (hosts, addresses, users, transports, jump hosts, which "
    "credentials; secrets masked) and exit 0 without connecting.",
)


def _secret(kind: str, secret: Secret) -> str:
    return f"{kind} {MASK} ({secret.origin or 'given'})"


def auth_sources(host: Host) -> list[str]:
    """Where this host's credentials come from, secrets masked."""
    creds = host.credentials
    sources = []
    if creds.key_file:
        sources.append(f"key {creds.key_file}")
    if creds.passphrase:
        sources.append(_secret("passphrase", creds.passphrase))
    if creds.password:
        sources.append(_secret("password", creds.password))
    if not creds.key_file and not creds.password:
        sources.append("ssh-agent / default keys")
    if creds.secret:
        sources.append(_secret("enable secret", creds.secret))
    return sources


def _jump(host: Host) -> str | None:
    jump = host.jump
    if jump is None:
        return None
    user = f"{jump.username}@" if jump.username else ""
    named = f" ({jump.name})" if jump.name != jump.hostname else ""
    return f"{user}{jump.hostname}:{jump.port}{named}"


def plan_record(host: Host, default_transport: str) -> dict[str, Any]:
    """One host of the plan as a JSON-able dict (secrets masked)."""
    return {
        "host": host.name,
        "address": f"{host.hostname}:{host.port}",
        "user": host.username,
        "transport": host.transport or default_transport,
        "device_type": host.device_type,
        "jump": _jump(host),
        "auth": auth_sources(host),
        "source": host.source,
    }


def describe(operation: str | CommandSet | Transfer) -> str:
    if isinstance(operation, Transfer):
        return f"{operation.direction} {' '.join(operation.sources)} -> {operation.destination}"
    if isinstance(operation, CommandSet):
        parts = [*operation.commands, *(f"config: {line}" for line in operation.config)]
        return "run " + "; ".join(repr(p) for p in parts) + (" (save)" if operation.save else "")
    return f"run {operation!r}"


def format_plan(records: list[dict[str, Any]]) -> str:
    rows = [
        (
            r["host"],
            r["address"],
            r["user"] or "-",
            r["transport"] + (f" ({r['device_type']})" if r["device_type"] else ""),
            r["jump"] or "-",
            "; ".join(r["auth"]),
        )
        for r in records
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    )


def print_plan(
    selection: SelectionOptions,
    operation: str | CommandSet | Transfer,
    engine: EngineOptions,
    *,
    as_json: bool = False,
) -> NoReturn:
    """Print what would run where, and exit 0; nothing connects."""
    _, hosts = load_selection(selection)
    options = engine.run_options()
    records = [plan_record(h, options.transport) for h in hosts]
    if as_json:
        click.echo(json.dumps({"operation": describe(operation), "hosts": records}, indent=2))
    else:
        click.echo(f"plan: {describe(operation)}")
        click.echo(format_plan(records))
    click.echo(
        f"dry run: {len(hosts)} host(s), fanout {options.limits.fanout_or_default()}, "
        f"connect timeout "
        f"{options.connect.connect_timeout:g}s, host keys {options.connect.host_keys}; "
        "nothing was connected",
        err=True,
    )
    raise SystemExit(EXIT_OK)
