"""``hostbatch history`` and ``hostbatch show``: what the run journal remembers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hostbatch.cli.common import handle_errors
from hostbatch.errors import SelectionError
from hostbatch.journal import Journal, default_journal_path, history, show
from hostbatch.journal.queries import RunDetail, RunSummary, host_json, summary_json
from hostbatch.journal.store import HostRecord
from hostbatch.output.live import display


def journal_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--journal",
        "journal_path",
        default=None,
        metavar="PATH",
        help="The journal file. Default: $HOSTBATCH_JOURNAL, else "
        "$XDG_STATE_HOME/hostbatch/journal.sqlite (~/.local/state/hostbatch/).",
    )(func)


def _existing_journal(path: str | None) -> Path | None:
    where = Path(path).expanduser() if path else default_journal_path()
    return where if where.exists() else None


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


def _duration(summary: RunSummary) -> str:
    return "-" if summary.elapsed is None else f"{summary.elapsed:.2f}s"


def _counts(summary: RunSummary) -> str:
    return ", ".join(f"{count} {status}" for status, count in summary.counts.items()) or "-"


def history_line(summary: RunSummary) -> str:
    """``41  2026-12-01 23:50:12  run  'uptime'  -g web  20 hosts: 17 ok, 3 ...  1.52s``"""
    outcome = "" if summary.outcome == "finished" else f"  [{summary.outcome}]"
    return (
        f"{summary.run_id:>5}  {_when(summary.started)}  {summary.kind:<5} "
        f"{summary.operation!r}  {summary.selection or '-'}  "
        f"{summary.host_count} hosts: {_counts(summary)}  {_duration(summary)}{outcome}"
    )


@click.command("history")
@journal_option
@click.option(
    "-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Runs shown."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run, newest first.")
@handle_errors
def history_command(journal_path: str | None, limit: int, as_json: bool) -> None:
    """Recent runs from the journal, newest first: id, when, what, where, host counts by
    status, duration (and how it ended, unless it finished).

    \b
    Examples:
      hostbatch history
      hostbatch history -n 5 --json | jq .counts
    """
    where = _existing_journal(journal_path)
    if where is None:
        click.echo("hostbatch: no run recorded yet (no journal file)", err=True)
        return
    with Journal.open(where) as journal:
        runs = history(journal, limit)
    for summary in runs:
        click.echo(json.dumps(summary_json(summary)) if as_json else history_line(summary))


def _host_lines(record: HostRecord) -> list[str]:
    detail = f" (exit {record.exit_status})" if record.exit_status is not None else ""
    error = f": {record.error}" if record.error else ""
    lines = [
        f"---------------- {record.host}: {record.status}{detail}{error} "
        f"in {max(0.0, record.ended - record.started):.2f}s"
    ]
    if record.truncated:
        lines.append(
            f"(output truncated: the last {len(record.stdout_tail)} of {record.stdout_bytes} "
            f"stdout bytes, {len(record.stderr_tail)} of {record.stderr_bytes} stderr bytes kept)"
        )
    if record.stdout_tail:
        lines.append(display(record.stdout_tail).rstrip("\n"))
    lines += [f"! {line}" for line in display(record.stderr_tail).splitlines()]
    return lines


def show_lines(detail: RunDetail) -> list[str]:
    """The run's summary, then each host's status and kept output."""
    run = detail.run
    lines = [
        f"run {run.run_id}: {run.kind} {run.operation!r} on {run.selection or '-'}",
        f"  {run.outcome}, exit code {run.exit_code}, {run.host_count} hosts: {_counts(run)}",
        f"  started {_when(run.started)}, took {_duration(run)}, hostbatch {run.version}",
        f"  argv: {' '.join(run.argv)}",
    ]
    for record in detail.hosts:
        lines += _host_lines(record)
    for name in detail.unfinished:
        lines.append(f"---------------- {name}: did not finish")
    return lines


@click.command("show")
@journal_option
@click.option("--json", "as_json", is_flag=True, help="The run and its hosts as one object.")
@click.argument("run_ref", metavar="RUN")
@click.argument("hosts", nargs=-1, metavar="[HOST...]")
@handle_errors
def show_command(
    journal_path: str | None, as_json: bool, run_ref: str, hosts: tuple[str, ...]
) -> None:
    """One run from the journal: its summary, then each host's status and output.

    RUN is a run id (see 'hostbatch history'), 'last', or 'last~N' (N runs before the
    last). HOST narrows to those hosts (ranges such as web[01-03] work).

    \b
    Examples:
      hostbatch show last
      hostbatch show 41 web07
      hostbatch show last~1 --json | jq '.hosts[] | select(.status != "ok") | .host'
    """
    where = _existing_journal(journal_path)
    if where is None:
        raise SelectionError(f"no run '{run_ref}': no run recorded yet (no journal file)")
    with Journal.open(where) as journal:
        detail = show(journal, run_ref, hosts)
    if as_json:
        record = {
            "run": summary_json(detail.run),
            "hosts": [host_json(h) for h in detail.hosts],
            "unfinished": list(detail.unfinished),
        }
        click.echo(json.dumps(record, ensure_ascii=False))
        return
    for line in show_lines(detail):
        click.echo(line)
