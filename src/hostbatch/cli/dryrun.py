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
from hostbatch.cli.hosts import MASK
from hostbatch.cli.options import (
    EngineOptions,
    JournalOptions,
    SelectionOptions,
    WorkflowOptions,
)
from hostbatch.cli.workflow import applied
from hostbatch.engine.limits import Limits
from hostbatch.models import Command, CommandSet, Host, Secret, Transfer
from hostbatch.output.table import format_columns

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
    if creds.become_password:
        sources.append(_secret("sudo password", creds.become_password))
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


def describe(operation: str | Command | CommandSet | Transfer) -> str:
    """The operation in one line; variables by name only, secrets masked."""
    if isinstance(operation, Transfer):
        return f"{operation.direction} {' '.join(operation.sources)} -> {operation.destination}"
    if isinstance(operation, CommandSet):
        parts = [*operation.commands, *(f"config: {line}" for line in operation.config)]
        return "run " + "; ".join(repr(p) for p in parts) + (" (save)" if operation.save else "")
    if isinstance(operation, str):
        return f"run {operation!r}"
    text = f"run {operation.text!r}"
    if operation.script:
        text = f"script {operation.script} {operation.text}".rstrip()
    extras = [f"stdin from {operation.stdin}"] if operation.stdin else []
    extras += [f"env {name}" for name, _ in operation.env]
    if operation.sudo is not None:
        extras.append(f"sudo as {operation.sudo.user or 'root'}")
        if operation.sudo.password is not None:
            extras.append(_secret("sudo password", operation.sudo.password))
    return text + "".join(f"; {extra}" for extra in extras)


def _rollout(limits: Limits) -> str:
    parts = [f"batches of {limits.batch}"] if limits.batch is not None else []
    parts += [f"max-fail {limits.max_fail}"] if limits.max_fail is not None else []
    parts += [f"canary {limits.canary}"] if limits.canary else []
    return "".join(f", {part}" for part in parts)


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
    return format_columns(COLUMNS, rows)


def print_plan(
    selection: SelectionOptions,
    operation: str | CommandSet | Transfer,
    engine: EngineOptions,
    *,
    as_json: bool = False,
    workflow: WorkflowOptions | None = None,
    journal: JournalOptions | None = None,
) -> NoReturn:
    """Print what would run where (the workflow applied, so its bad input fails as a real
    run would), and exit 0; nothing connects."""
    _, hosts = load_selection(selection, journal)
    options = engine.run_options()
    if isinstance(operation, Transfer):
        what = describe(operation)
    else:
        with applied(workflow, operation, options) as (planned, options):
            what = describe(planned)
    records = [plan_record(h, options.transport) for h in hosts]
    if as_json:
        click.echo(json.dumps({"operation": what, "hosts": records}, indent=2))
    else:
        click.echo(f"plan: {what}")
        click.echo(format_plan(records))
    click.echo(
        f"dry run: {len(hosts)} host(s), fanout {options.limits.fanout_or_default()}"
        f"{_rollout(options.limits)}, connect timeout {options.connect.connect_timeout:g}s, "
        f"host keys {options.connect.host_keys}; nothing was connected",
        err=True,
    )
    raise SystemExit(EXIT_OK)
