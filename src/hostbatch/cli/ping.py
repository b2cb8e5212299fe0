"""``hostbatch ping``: is every selected host usable, and if not, why."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click

from hostbatch.cli.common import EXIT_OK, EXIT_UNREACHABLE, handle_errors, load_selection
from hostbatch.cli.execute import run_stoppable
from hostbatch.cli.options import EngineOptions, JournalOptions, SelectionOptions
from hostbatch.engine.probe import ProbeResult, probe_all
from hostbatch.inventory.patterns import fold_text

COLUMNS = ("HOST", "ADDRESS", "STATUS", "TCP_MS", "BANNER / ERROR")


def format_table(results: list[ProbeResult]) -> str:
    rows = [
        (
            r.host,
            f"{r.address}:{r.port}",
            r.status,
            f"{r.tcp_ms:.1f}" if r.tcp_ms is not None else "-",
            (r.banner or "") if r.ok else (r.error or ""),
        )
        for r in results
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS[:-1])]
    lines = []
    for row in [COLUMNS, *rows]:
        cells = [v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


@click.command("ping")
@SelectionOptions.options
@EngineOptions.options
@JournalOptions.options
@click.option("--json", "as_json", is_flag=True, help="A JSON list for scripts.")
@handle_errors
def ping_command(
    as_json: bool, selection: SelectionOptions, engine: EngineOptions, journal: JournalOptions
) -> None:
    """Check every selected host in parallel: TCP connect time to the SSH port, the SSH
    banner, and whether login succeeds with its credentials.

    Sorted by status, then latency. Exit code 0 when every host is fully usable, 3 if
    any is not, 2 for bad usage or inventory.

    \b
    Examples:
      hostbatch ping -g web_clusters
      hostbatch ping -h 'db[01-12]' --connect-timeout 3 --json
      hostbatch ping --rerun last:unreachable
    """
    _, hosts = load_selection(selection, journal)
    options = engine.without_command_timeout().run_options()
    results = run_stoppable(
        lambda _: probe_all(
            hosts,
            options.connect,
            transport=options.transport,
            fanout=options.limits.fanout_or_default(),
        ),
        after="connections closed",
    )
    if as_json:
        click.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        click.echo(format_table(results))
    bad = [r.host for r in results if not r.ok]
    summary = f"{len(results) - len(bad)}/{len(results)} hosts usable"
    click.echo(summary + (f"; not usable: {fold_text(bad)}" if bad else ""), err=True)
    sys.exit(EXIT_UNREACHABLE if bad else EXIT_OK)
