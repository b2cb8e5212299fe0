"""``JournalSink``: the event sink that writes each host to the journal as it finishes.

Like the live renderer it only receives events; the engine does not know it exists::

    with Journal.open() as journal:
        sink = JournalSink.begin(journal, "run", "uptime", "-g web", [h.name for h in hosts])
        results = await run_plan(plan, on_event=lambda e: (live(e), sink(e)))
        sink.end(exit_code=exit_code_for(results))

Every stdout/stderr chunk feeds a SHA-256 and a byte count per host and stream, so the
journal describes the full streams even where it keeps only their tails.

Finished hosts are committed in small batches: at once when ``FLUSH_ROWS`` are waiting,
else ``FLUSH_SECONDS`` after the first of them (a timer on the running event loop; with
no loop, at once). One commit per host costs ~6x more (bench/journal.py), and a kill -9
loses at most the hosts of the last ``FLUSH_SECONDS``. :meth:`JournalSink.end` commits
what is left.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from hostbatch.journal.store import CRASHED, FINISHED, INTERRUPTED, HostRecord, Journal
from hostbatch.models import Event, Finished, HostResult, OutputChunk, Stream

DEFAULT_TAIL_LIMIT = 64 * 1024  # bytes of stdout and of stderr kept per host in the journal
FLUSH_SECONDS = 0.05
FLUSH_ROWS = 64


@dataclass
class _StreamDigest:
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    size: int = 0

    def add(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)


def _tail(data: bytes, limit: int) -> bytes:
    return data[-limit:] if limit and len(data) > limit else (data if limit else b"")


class JournalSink:
    """A callable sink (``Event -> None``) writing run *run_id*'s hosts into *journal*.

    Tails are the result's kept tails (the API's ``output_limit``), cut further to
    *tail_limit* bytes per stream. *on_commit* is told the host names of each commit.
    """

    def __init__(
        self,
        journal: Journal,
        run_id: int,
        *,
        tail_limit: int = DEFAULT_TAIL_LIMIT,
        on_commit: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.journal = journal
        self.run_id = run_id
        self.tail_limit = tail_limit
        self.on_commit = on_commit
        self.finished = 0
        self._digests: dict[tuple[str, Stream], _StreamDigest] = {}
        self._pending: list[HostRecord] = []
        self._timer: asyncio.TimerHandle | None = None
        self._failure: Exception | None = None  # a timed commit's error, raised on next use

    @classmethod
    def begin(
        cls,
        journal: Journal,
        kind: str,
        operation: str,
        selection: str,
        hosts: Sequence[str],
        *,
        argv: Sequence[str] = (),
        options: Mapping[str, object] | None = None,
        tail_limit: int = DEFAULT_TAIL_LIMIT,
        on_commit: Callable[[list[str]], None] | None = None,
    ) -> JournalSink:
        """Record a new run (see :meth:`Journal.begin_run`) and a sink for it."""
        run_id = journal.begin_run(kind, operation, selection, hosts, argv=argv, options=options)
        return cls(journal, run_id, tail_limit=tail_limit, on_commit=on_commit)

    def __call__(self, event: Event) -> None:
        self._raise_failure()
        if isinstance(event, OutputChunk):
            key = (event.host, event.stream)
            digest = self._digests.get(key)
            if digest is None:
                digest = self._digests[key] = _StreamDigest()
            digest.add(event.data)
        elif isinstance(event, Finished):
            self._pending.append(self.host_record(event.result))
            self.finished += 1
            if len(self._pending) >= FLUSH_ROWS:
                self.flush()
            elif self._timer is None:
                self._schedule_flush()

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside an event loop: nothing would fire a timer
            self.flush()
            return
        self._timer = loop.call_later(FLUSH_SECONDS, self._timed_flush)

    def _timed_flush(self) -> None:
        """The timer's commit: an error must reach the caller (the next event or end()),
        not the event loop's exception handler."""
        try:
            self.flush()
        except Exception as exc:
            self._failure = exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def flush(self) -> None:
        """Commit the finished hosts not yet in the journal."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self.journal.record_hosts(self.run_id, pending)
        if self.on_commit is not None:
            self.on_commit([record.host for record in pending])

    def host_record(self, result: HostResult) -> HostRecord:
        """The journal's row for *result*, taking (and forgetting) its stream digests."""
        stdout = self._digest(result.host, "stdout", result.stdout)
        stderr = self._digest(result.host, "stderr", result.stderr)
        stdout_tail = _tail(result.stdout, self.tail_limit)
        stderr_tail = _tail(result.stderr, self.tail_limit)
        return HostRecord(
            host=result.host,
            status=result.status.name.lower(),
            exit_status=result.exit_status,
            error=result.error,
            started=result.started,
            ended=result.ended,
            stdout_tail=stdout_tail,
            stderr_tail=stderr_tail,
            stdout_bytes=stdout.size,
            stderr_bytes=stderr.size,
            stdout_sha256=stdout.sha256.hexdigest(),
            stderr_sha256=stderr.sha256.hexdigest(),
            truncated=result.truncated
            or len(stdout_tail) < stdout.size
            or len(stderr_tail) < stderr.size,
            files=result.files,
            bytes_transferred=result.bytes_transferred,
        )

    def _digest(self, host: str, stream: Stream, kept: bytes) -> _StreamDigest:
        digest = self._digests.pop((host, stream), None)
        if digest is None:  # no chunk came (e.g. a result made up by the executor)
            digest = _StreamDigest()
            digest.add(kept)
        return digest

    def end(self, *, exit_code: int | None, outcome: str = FINISHED) -> None:
        """Commit what is pending and close the run (``finished``; ``interrupted`` on
        Ctrl-C; ``crashed`` on a bug)."""
        self._raise_failure()
        self.flush()
        self.journal.end_run(self.run_id, exit_code=exit_code, outcome=outcome)


__all__ = [
    "CRASHED",
    "DEFAULT_TAIL_LIMIT",
    "FINISHED",
    "FLUSH_ROWS",
    "FLUSH_SECONDS",
    "INTERRUPTED",
    "JournalSink",
]
