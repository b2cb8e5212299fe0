"""JSON lines for scripts: one object per finished host (``--json``), or every event as
it happens then a summary (``--events``).

``--events`` records all carry ``"version": EVENTS_VERSION`` and an ``"event"`` field:

* ``started``: ``host``, ``at`` (Unix time)
* ``stdout`` / ``stderr``: ``host``, ``data`` (text), or ``data`` null and
  ``data_base64`` when the chunk is not valid UTF-8 on its own (binary output, or a
  character split across two chunks: concatenate the decoded bytes of each host's chunks)
* ``progress``: ``host``, ``done``, ``total`` (bytes, transfers)
* ``finished``: the ``--json`` host object (``host``, ``status``, ``exit_status``,
  ``stdout``, ``stderr``, ``error``, ``started``, ``ended``, ``elapsed``, ``truncated``...)
* ``throttled``: ``address``, ``settled``, ``dropped`` (the server dropped connection
  starts, MaxStartups; they were retried: see :class:`hostbatch.models.Throttled`)
* ``summary`` (last line): ``hosts``, ``counts`` (every status, zeros included),
  ``host_ranges`` (folded names per status present), ``elapsed``, ``exit_code``,
  ``run_id`` (the journal's run id, null without a journal), ``interrupted`` (true when
  Ctrl-C, SIGTERM or SIGHUP stopped the run; ``exit_code`` is then 130, 143 or 129) and
  ``unfinished`` (selected hosts without a result; added by the CLI's ``EventsSummary``)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from hostbatch.inventory.patterns import fold_text
from hostbatch.models import (
    Event,
    Finished,
    HostResult,
    OutputChunk,
    Progress,
    Started,
    Status,
    Throttled,
)

EVENTS_VERSION = 1


def _text_or_base64(name: str, data: bytes) -> dict[str, Any]:
    """UTF-8 output as text; anything else as base64 so no byte is lost."""
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {name: None, f"{name}_base64": base64.b64encode(data).decode()}


def result_record(result: HostResult) -> dict[str, Any]:
    return {
        "host": result.host,
        "status": result.status.name.lower(),
        "exit_status": result.exit_status,
        **_text_or_base64("stdout", result.stdout),
        **_text_or_base64("stderr", result.stderr),
        "error": result.error,
        "started": result.started,
        "ended": result.ended,
        "elapsed": round(result.elapsed, 6),
        "truncated": result.truncated,
        **({"outputs": [asdict(o) for o in result.outputs]} if result.outputs else {}),
        **(
            {"files": result.files, "bytes_transferred": result.bytes_transferred}
            if result.files
            else {}
        ),
    }


def result_line(result: HostResult) -> str:
    return json.dumps(result_record(result), ensure_ascii=False)


def event_record(event: Event) -> dict[str, Any]:
    """One ``--events`` object for *event* (schema in the module docstring)."""
    head: dict[str, Any] = {"version": EVENTS_VERSION}
    if isinstance(event, Started):
        return {**head, "event": "started", "host": event.host, "at": event.at}
    if isinstance(event, OutputChunk):
        return {**head, "event": event.stream, "host": event.host} | _text_or_base64(
            "data", event.data
        )
    if isinstance(event, Progress):
        return {**head, "event": "progress", "host": event.host} | {
            "done": event.done,
            "total": event.total,
        }
    if isinstance(event, Throttled):
        return {**head, "event": "throttled", "address": event.address} | {
            "settled": event.settled,
            "dropped": event.dropped,
        }
    assert isinstance(event, Finished)
    return {**head, "event": "finished", **result_record(event.result)}


def summary_record(
    results: Mapping[str, HostResult], elapsed: float, exit_code: int, run_id: int | None
) -> dict[str, Any]:
    """The final ``--events`` object: counts and host ranges per status, and the outcome."""
    names: dict[str, list[str]] = {status.name.lower(): [] for status in Status}
    for name, result in results.items():
        names[result.status.name.lower()].append(name)
    return {
        "version": EVENTS_VERSION,
        "event": "summary",
        "hosts": len(results),
        "counts": {status: len(hosts) for status, hosts in names.items()},
        "host_ranges": {status: fold_text(hosts) for status, hosts in names.items() if hosts},
        "elapsed": round(elapsed, 6),
        "exit_code": exit_code,
        "run_id": run_id,
    }


def event_line(event: Event) -> str:
    return json.dumps(event_record(event), ensure_ascii=False)


def summary_line(
    results: Mapping[str, HostResult], elapsed: float, exit_code: int, run_id: int | None
) -> str:
    return json.dumps(summary_record(results, elapsed, exit_code, run_id), ensure_ascii=False)
