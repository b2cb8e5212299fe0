"""``hostbatch ping``: is every selected host usable, and if not, why."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

import click

from hostbatch.cli.common import EXIT_OK, EXIT_UNREACHABLE, handle_errors, load_selection
from hostbatch.cli.execute import run_stoppable
from hostbatch.cli.options import ColorOptions, EngineOptions, JournalOptions, SelectionOptions
from hostbatch.engine.icmp import DEFAULT_ICMP_TIMEOUT, REACHABLE, EchoResult, echo_all
from hostbatch.engine.limits import DEFAULT_FANOUT
from hostbatch.engine.probe import ProbeResult, probe_all
from hostbatch.inventory.patterns import fold_text
from hostbatch.models import Host
from hostbatch.output.color import GREEN, RED, paint
from hostbatch.output.table import format_columns

COLUMNS = ("HOST", "ADDRESS", "STATUS", "TCP_MS", "BANNER / ERROR")
ICMP_COLUMNS = ("HOST", "ADDRESS", "STATUS", "LOSS", "RTT MIN/AVG/MAX MS")


def _status_style(color: bool) -> Callable[[Sequence[str], list[str]], list[str]] | None:
    """Colour the STATUS column (the third): green when usable / reachable, else red."""
    if not color:
        return None

    def style(row: Sequence[str], cells: list[str]) -> list[str]:
        good = row[2] in ("ok", REACHABLE)
        return [*cells[:2], paint(cells[2], GREEN if good else RED, True), *cells[3:]]

    return style


def format_icmp(results: list[EchoResult], *, color: bool = False) -> str:
    rows = [
        (
            r.host,
            r.address,
            r.status,
            f"{r.loss_percent:.0f}% ({r.received}/{r.sent})",
            f"{r.rtt_min_ms:.3f}/{r.rtt_avg_ms:.3f}/{r.rtt_max_ms:.3f}"
            if r.rtt_avg_ms is not None
            else (r.error or "-"),
        )
        for r in results
    ]
    return format_columns(ICMP_COLUMNS, rows, style=_status_style(color))


def format_table(results: list[ProbeResult], *, color: bool = False) -> str:
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
    return format_columns(COLUMNS, rows, style=_status_style(color))


@click.command("ping")
@SelectionOptions.options
@EngineOptions.options
@JournalOptions.options
@ColorOptions.options
@click.option("--json", "as_json", is_flag=True, help="A JSON list for scripts.")
@click.option(
    "--icmp",
    is_flag=True,
    help="ICMP echo instead of SSH: loss and round trips (needs hostbatch[icmp]).",
)
@click.option(
    "--count",
    default=3,
    show_default=True,
    type=click.IntRange(min=1, max=1000),
    help="--icmp: echo requests per host.",
)
@click.option(
    "--interval",
    default=0.2,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="--icmp: seconds between one host's requests.",
)
@click.argument("patterns", nargs=-1)
@handle_errors
def ping_command(
    as_json: bool,
    icmp: bool,
    count: int,
    interval: float,
    patterns: tuple[str, ...],
    selection: SelectionOptions,
    engine: EngineOptions,
    colors: ColorOptions,
    journal: JournalOptions,
) -> None:
    """Check every selected host in parallel: TCP connect time to the SSH port, the SSH
    banner, and whether login succeeds with its credentials. With --icmp: ICMP echo
    (reachable with loss and round trips min/avg/max, or no reply); --timeout is then the
    seconds to wait for each reply (default 1).

    Sorted by status (usable first), then latency (--icmp: name). Hosts are selected as
    for every command, or given as arguments; addresses need no inventory. Exit code 0
    when every host is usable / replies, 3 if any is not, 2 for bad usage or inventory.

    \b
    Examples:
      hostbatch ping -g web_clusters
      hostbatch ping -h 'db[01-12]' --connect-timeout 3 --json
      hostbatch ping --rerun last:unreachable
      hostbatch ping --icmp 10.0.0.1,10.0.0.2 --count 5 --interval 0.5
      hostbatch ping --icmp --hostfile hosts.txt --timeout 2 --json
    """
    _, hosts = load_selection(replace(selection, patterns=patterns), journal)
    color = colors.use_color()
    if icmp:
        bad = _icmp(hosts, engine, count=count, interval=interval, as_json=as_json, color=color)
    else:
        bad = _ssh(hosts, engine, as_json=as_json, color=color)
    total = len(hosts)
    word = "replying" if icmp else "usable"
    summary = f"{total - len(bad)}/{total} hosts {word}"
    click.echo(summary + (f"; not {word}: {fold_text(bad)}" if bad else ""), err=True)
    sys.exit(EXIT_UNREACHABLE if bad else EXIT_OK)


def _ssh(hosts: list[Host], engine: EngineOptions, *, as_json: bool, color: bool) -> list[str]:
    """The SSH probe; returns the hosts that are not usable."""
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
        click.echo(format_table(results, color=color), color=color)
    return [r.host for r in results if not r.ok]


def _icmp(
    hosts: list[Host],
    engine: EngineOptions,
    *,
    count: int,
    interval: float,
    as_json: bool,
    color: bool,
) -> list[str]:
    """ICMP echo; returns the hosts that did not reply."""
    results = run_stoppable(
        lambda _: echo_all(
            hosts,
            count=count,
            interval=interval,
            timeout=engine.timeout or DEFAULT_ICMP_TIMEOUT,
            fanout=engine.fanout or DEFAULT_FANOUT,
        ),
        after="nothing left running",
    )
    if as_json:
        rows = [{**asdict(r), "status": r.status, "loss_percent": r.loss_percent} for r in results]
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(format_icmp(results, color=color), color=color)
    return [r.host for r in results if not r.ok]
