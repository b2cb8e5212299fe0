"""Reading the journal: recent runs, one run's hosts, and hosts of a run by status.

A run is referred to by its id (``41``), ``last`` or ``last~N`` (N runs before the last).
Status selectors (``--rerun 41:unreachable,timed_out``, ``@run:41:failed``):

* ``failed``: every host that did not end ok, hosts that never finished included
* ``ok``, ``command_failed``, ``unreachable``, ``auth_failed``, ``host_key_rejected``,
  ``transfer_failed``, ``timed_out``, ``connection_lost``, ``error``: that status only
  (the JSON names ``hostkey``, ``timeout``, ``dropped`` are accepted too)
* ``unfinished``: selected but never finished (the run was interrupted)
* ``all``, or no selector: every host the run selected
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hostbatch.errors import SelectionError, UsageError
from hostbatch.inventory.patterns import expand
from hostbatch.journal.store import HostRecord, Journal
from hostbatch.models import Status

UNFINISHED = "unfinished"
_REF = re.compile(r"^(?:last(?:~(\d+))?|(\d+))$")


def _status_selectors() -> dict[str, frozenset[str]]:
    statuses = {s.name.lower() for s in Status}
    selectors: dict[str, frozenset[str]] = {}
    for status in Status:
        for word in (status.name.lower(), status.value.replace(" ", "_")):
            selectors[word] = frozenset({status.name.lower()})
    selectors["failed"] = frozenset(statuses - {"ok"} | {UNFINISHED})
    selectors[UNFINISHED] = frozenset({UNFINISHED})
    selectors["all"] = frozenset(statuses | {UNFINISHED})
    return selectors


STATUS_SELECTORS = _status_selectors()


@dataclass(frozen=True)
class RunSummary:
    """One run's row: what ran, where, how it ended."""

    run_id: int
    started: float
    ended: float | None
    kind: str
    operation: str
    selection: str
    argv: tuple[str, ...]
    options: dict[str, Any]
    host_count: int
    counts: dict[str, int]
    exit_code: int | None
    version: str
    outcome: str

    @property
    def elapsed(self) -> float | None:
        return None if self.ended is None else max(0.0, self.ended - self.started)


@dataclass(frozen=True)
class RunDetail:
    """A run, its finished hosts (in the run's host order) and those that never finished."""

    run: RunSummary
    hosts: tuple[HostRecord, ...]
    unfinished: tuple[str, ...]


_RUN_COLUMNS = (
    "id, started, ended, kind, operation, selection, argv, options, host_count, counts,"
    " exit_code, version, outcome"
)


def _summary(row: tuple[Any, ...]) -> RunSummary:
    run_id, started, ended, kind, operation, selection, argv, options, count, counts = row[:10]
    return RunSummary(
        run_id,
        started,
        ended,
        kind,
        operation,
        selection,
        tuple(json.loads(argv)),
        json.loads(options),
        count,
        json.loads(counts),
        *row[10:],
    )


def history(journal: Journal, limit: int = 20) -> list[RunSummary]:
    """The *limit* most recent runs, newest first."""
    rows = journal.connection.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?", (max(0, limit),)
    ).fetchall()
    return [_summary(row) for row in rows]


def resolve_run_ref(journal: Journal, ref: str) -> int:
    """The id of run *ref* (``41``, ``last``, ``last~2``); SelectionError (exit 2) when
    the journal has no such run, UsageError for something that is not a reference."""
    match = _REF.match(ref.strip())
    if not match:
        raise UsageError(f"bad run reference '{ref}': expected a run id, 'last' or 'last~N'")
    back, number = match.groups()
    if number is not None:
        row = journal.connection.execute(
            "SELECT id FROM runs WHERE id = ?", (int(number),)
        ).fetchone()
    else:
        row = journal.connection.execute(
            "SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?", (int(back or 0),)
        ).fetchone()
    if row is None:
        raise SelectionError(f"no run '{ref.strip()}' in the journal {journal.path}")
    return int(row[0])


def _run(journal: Journal, run_id: int) -> tuple[RunSummary, list[str]]:
    row = journal.connection.execute(
        f"SELECT {_RUN_COLUMNS}, planned FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    return _summary(row[:-1]), list(json.loads(row[-1]))


def _host_rows(journal: Journal, run_id: int) -> dict[str, HostRecord]:
    rows = journal.connection.execute(
        "SELECT host, status, exit_status, error, started, ended, stdout_tail, stderr_tail,"
        " stdout_bytes, stderr_bytes, stdout_sha256, stderr_sha256, truncated, files,"
        " bytes_transferred FROM hosts WHERE run_id = ?",
        (run_id,),
    ).fetchall()
    return {row[0]: _host_record(row) for row in rows}


def _host_record(row: tuple[Any, ...]) -> HostRecord:
    return HostRecord(
        host=row[0],
        status=row[1],
        exit_status=row[2],
        error=row[3],
        started=row[4],
        ended=row[5],
        stdout_tail=bytes(row[6]),
        stderr_tail=bytes(row[7]),
        stdout_bytes=row[8],
        stderr_bytes=row[9],
        stdout_sha256=row[10],
        stderr_sha256=row[11],
        truncated=bool(row[12]),
        files=row[13],
        bytes_transferred=row[14],
    )


def show(journal: Journal, run_ref: str, hosts: Sequence[str] = ()) -> RunDetail:
    """Run *run_ref* with its hosts; *hosts* (names or ranges such as ``web[01-03]``)
    narrows them, and a name the run did not select is a SelectionError."""
    summary, planned = _run(journal, resolve_run_ref(journal, run_ref))
    records = _host_rows(journal, summary.run_id)
    order = planned + [name for name in records if name not in set(planned)]
    if hosts:
        wanted = [name for pattern in hosts for name in expand(pattern)]
        missing = [name for name in wanted if name not in set(order)]
        if missing:
            raise SelectionError(f"run {summary.run_id} has no host '{missing[0]}'")
        order = [name for name in order if name in set(wanted)]
    return RunDetail(
        summary,
        tuple(records[name] for name in order if name in records),
        tuple(name for name in order if name not in records),
    )


def parse_statuses(text: str) -> frozenset[str]:
    """``"unreachable,timed_out"`` (or ``+``-separated) as journal status names."""
    chosen: set[str] = set()
    for word in re.split(r"[,+]", text):
        key = word.strip().lower().replace("-", "_").replace(" ", "_")
        if not key:
            continue
        if key not in STATUS_SELECTORS:
            known = ", ".join(sorted(STATUS_SELECTORS))
            raise UsageError(f"unknown status '{word.strip()}' (known: {known})")
        chosen |= STATUS_SELECTORS[key]
    return frozenset(chosen)


def hosts_of_run(journal: Journal, run_ref: str, statuses: Sequence[str] = ()) -> list[str]:
    """Names of run *run_ref*'s hosts whose status is one of *statuses* (selectors as in
    the module docstring; none: every host), in the run's host order."""
    run_id = resolve_run_ref(journal, run_ref)
    _, planned = _run(journal, run_id)
    ended = {name: record.status for name, record in _host_rows(journal, run_id).items()}
    wanted = parse_statuses(",".join(statuses)) if statuses else STATUS_SELECTORS["all"]
    order = planned + [name for name in ended if name not in set(planned)]
    return [name for name in order if ended.get(name, UNFINISHED) in wanted]


def hosts_of_run_term(journal: Journal, term: str) -> list[str]:
    """Hosts for a selection term's value ``RUN[:STATUS[,+]STATUS...]`` (``@run:41:failed``
    gives ``41:failed``; ``--rerun last:unreachable,timed_out`` passes its value)."""
    ref, _, statuses = term.partition(":")
    return hosts_of_run(journal, ref, [statuses] if statuses else ())


def _text_or_base64(name: str, data: bytes) -> dict[str, Any]:
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {name: None, f"{name}_base64": base64.b64encode(data).decode()}


def summary_json(summary: RunSummary) -> dict[str, Any]:
    """A run as JSON (``hostbatch history --json``, the head of ``show --json``)."""
    return {
        "id": summary.run_id,
        "started": summary.started,
        "ended": summary.ended,
        "elapsed": summary.elapsed,
        "kind": summary.kind,
        "operation": summary.operation,
        "selection": summary.selection,
        "argv": list(summary.argv),
        "options": summary.options,
        "host_count": summary.host_count,
        "counts": summary.counts,
        "exit_code": summary.exit_code,
        "version": summary.version,
        "outcome": summary.outcome,
    }


def host_json(record: HostRecord) -> dict[str, Any]:
    """A journal host as JSON; non-UTF-8 tails as ``*_base64``."""
    return {
        "host": record.host,
        "status": record.status,
        "exit_status": record.exit_status,
        "error": record.error,
        "started": record.started,
        "ended": record.ended,
        **_text_or_base64("stdout", record.stdout_tail),
        **_text_or_base64("stderr", record.stderr_tail),
        "stdout_bytes": record.stdout_bytes,
        "stderr_bytes": record.stderr_bytes,
        "stdout_sha256": record.stdout_sha256,
        "stderr_sha256": record.stderr_sha256,
        "truncated": record.truncated,
        "files": record.files,
        "bytes_transferred": record.bytes_transferred,
    }
