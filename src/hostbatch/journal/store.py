"""The run journal's SQLite store: schema and migrations, WAL, retention, crash marking.

One file (see :func:`~hostbatch.journal.paths.default_journal_path`), opened in WAL mode
so that several hostbatch processes can write at once (each write waits for the other's
lock, never fails). A run is a row in ``runs``; each host is a row in ``hosts``, committed
as that host finishes (the sink batches commits over at most 50 ms), so a run killed
with SIGKILL keeps every host that had finished before its last instant. Such a run is
left ``running``; the next :meth:`Journal.open` sees that its process is gone and marks
it ``interrupted``.

Nothing secret is stored: argv, the command and option values pass through
:func:`hostbatch.logs.redact`; values of options named like passwords, passphrases,
secrets, or ending in ``_env``, and every :class:`~hostbatch.models.Secret`, are masked.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from hostbatch.errors import HostbatchError
from hostbatch.journal.paths import default_journal_path
from hostbatch.logs import MASK, redact
from hostbatch.models import Secret, Status

SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 30.0
DEFAULT_KEEP_RUNS = 200
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

RUNNING, FINISHED, INTERRUPTED, CRASHED = "running", "finished", "interrupted", "crashed"
OUTCOMES = (RUNNING, FINISHED, INTERRUPTED, CRASHED)

# Migration N (index N-1) takes a journal from user_version N-1 to N. Append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        started     REAL NOT NULL,
        ended       REAL,
        kind        TEXT NOT NULL,          -- run | put | get | shell
        operation   TEXT NOT NULL,          -- the command or transfer, secrets masked
        selection   TEXT NOT NULL,          -- as typed
        argv        TEXT NOT NULL,          -- JSON list, secrets masked
        options     TEXT NOT NULL,          -- JSON object, secrets masked
        host_count  INTEGER NOT NULL,
        planned     TEXT NOT NULL,          -- JSON list of the selected host names
        counts      TEXT NOT NULL DEFAULT '{}',  -- JSON {status: hosts}
        exit_code   INTEGER,
        version     TEXT NOT NULL,          -- hostbatch version that ran it
        outcome     TEXT NOT NULL,          -- running | finished | interrupted | crashed
        owner       TEXT NOT NULL           -- machine:pid:process start, to detect a kill
    );
    CREATE TABLE hosts (
        run_id            INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        host              TEXT NOT NULL,
        status            TEXT NOT NULL,    -- Status.name.lower(): ok, failed, unreachable...
        exit_status       INTEGER,
        error             TEXT,
        started           REAL NOT NULL,
        ended             REAL NOT NULL,
        stdout_tail       BLOB NOT NULL,
        stderr_tail       BLOB NOT NULL,
        stdout_bytes      INTEGER NOT NULL,
        stderr_bytes      INTEGER NOT NULL,
        stdout_sha256     TEXT NOT NULL,    -- of the full stream, not only the tail
        stderr_sha256     TEXT NOT NULL,
        truncated         INTEGER NOT NULL, -- the tails hold less than the full streams
        files             INTEGER NOT NULL DEFAULT 0,
        bytes_transferred INTEGER NOT NULL DEFAULT 0,
        recorded          REAL NOT NULL,
        PRIMARY KEY (run_id, host)
    ) WITHOUT ROWID;
    """,
)


class JournalError(HostbatchError):
    """The journal cannot be opened or used (unreadable file, newer schema)."""

    exit_code = 2


@dataclass(frozen=True)
class Retention:
    """Keep the last ``keep_runs`` runs, and drop the oldest while the file's used pages
    exceed ``max_bytes``. Applied when a run begins; running runs are never dropped."""

    keep_runs: int = DEFAULT_KEEP_RUNS
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class HostRecord:
    """One finished host as the journal keeps it."""

    host: str
    status: str
    exit_status: int | None
    error: str | None
    started: float
    ended: float
    stdout_tail: bytes
    stderr_tail: bytes
    stdout_bytes: int
    stderr_bytes: int
    stdout_sha256: str
    stderr_sha256: str
    truncated: bool
    files: int = 0
    bytes_transferred: int = 0


_SECRET_NAME = re.compile(r"(?i)(password|passphrase|passwd|secret)|([-_]env|^env)$")


def is_secret_name(name: str) -> bool:
    """True for option or key names whose values are never stored (``password``,
    ``become_password``, ``--passphrase``, ``enable_secret``, ``*_env``, ``--env``)."""
    return bool(_SECRET_NAME.search(name.lstrip("-")))


def mask_argv(argv: Iterable[str]) -> list[str]:
    """argv with the value of every secret-named option masked (``--password X`` and
    ``--password=X``) and every other word passed through :func:`redact`."""
    masked: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            masked.append(MASK)
            hide_next = False
        elif word.startswith("-") and "=" in word and is_secret_name(word.split("=", 1)[0]):
            masked.append(word.split("=", 1)[0] + "=" + MASK)
        elif word.startswith("-") and len(word) > 2 and is_secret_name(word):
            masked.append(word)
            hide_next = True
        else:
            masked.append(redact(word))
    return masked


def mask_value(name: str, value: object) -> object:
    """A JSON-able copy of an option value with secrets masked."""
    if isinstance(value, Secret) or (is_secret_name(name) and value not in (None, False, "")):
        return MASK
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(name, item) for item in value]
    return redact(str(value))


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' where /proc is missing):
    with the pid it names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def current_owner() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def owner_alive(owner: str) -> bool:
    """Whether the process that began a run still runs. A run begun on another machine
    (a journal on a shared disk) is assumed alive: it cannot be checked from here."""
    machine, pid_text, start = owner.rsplit(":", 2)
    if machine != socket.gethostname():
        return True
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or _process_start(pid) == start


def _create_private(path: Path) -> None:
    """Make the journal's folder (0700) and file (0600): outputs may be sensitive."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(descriptor)


class Journal:
    """An open journal. Use :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, connection: sqlite3.Connection, path: Path, retention: Retention) -> None:
        self.connection = connection
        self.path = path
        self.retention = retention

    @classmethod
    def open(cls, path: str | Path | None = None, *, retention: Retention | None = None) -> Journal:
        """Open (creating it if needed) the journal at *path* (default: the default path),
        bring its schema up to date and mark runs whose process died ``interrupted``."""
        where = Path(path).expanduser() if path is not None else default_journal_path()
        try:
            _create_private(where)
            connection = sqlite3.connect(where, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {where}: {exc}") from None
        journal = cls(connection, where, retention or Retention())
        try:
            journal._prepare()
            journal.mark_interrupted()
        except sqlite3.Error as exc:
            connection.close()
            raise JournalError(f"cannot use the journal {where}: {exc}") from None
        except BaseException:
            connection.close()
            raise
        return journal

    def _prepare(self) -> None:
        execute = self.connection.execute
        execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect on a new file
        execute("PRAGMA journal_mode = WAL")
        execute("PRAGMA synchronous = NORMAL")  # WAL: a commit survives a killed process
        execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _migrate(self) -> None:
        version = self._user_version()
        if version > len(MIGRATIONS):
            raise JournalError(
                f"the journal {self.path} has schema version {version}, newer than this "
                f"hostbatch knows ({len(MIGRATIONS)}): upgrade hostbatch or use --journal"
            )
        if version == len(MIGRATIONS):
            return
        with self._transaction():
            version = self._user_version()  # another process may have migrated meanwhile
            for number, script in enumerate(MIGRATIONS[version:], version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        self.connection.execute(statement)
                self.connection.execute(f"PRAGMA user_version = {number}")

    def _user_version(self) -> int:
        row = self.connection.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self.connection)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def begin_run(
        self,
        kind: str,
        operation: str,
        selection: str,
        hosts: Sequence[str],
        *,
        argv: Sequence[str] = (),
        options: Mapping[str, object] | None = None,
        version: str | None = None,
        started: float | None = None,
    ) -> int:
        """Prune old runs, then record a new ``running`` run; its id."""
        from hostbatch import __version__

        self.prune()
        masked_options = {k: mask_value(k, v) for k, v in (options or {}).items()}
        cursor = self.connection.execute(
            "INSERT INTO runs (started, kind, operation, selection, argv, options, host_count,"
            " planned, version, outcome, owner) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                time.time() if started is None else started,
                kind,
                redact(operation),
                redact(selection),
                json.dumps(mask_argv(argv)),
                json.dumps(masked_options),
                len(hosts),
                json.dumps(list(hosts)),
                version or __version__,
                RUNNING,
                current_owner(),
            ),
        )
        run_id = cursor.lastrowid
        assert run_id is not None
        return run_id

    def record_host(self, run_id: int, record: HostRecord) -> None:
        """Write one finished host and commit (in WAL mode the row survives the process
        being killed right after; no fsync, so not a power cut)."""
        self.record_hosts(run_id, (record,))

    def record_hosts(self, run_id: int, records: Iterable[HostRecord]) -> None:
        """Write several finished hosts in one transaction."""
        rows = [
            (
                run_id,
                r.host,
                r.status,
                r.exit_status,
                None if r.error is None else redact(r.error),
                r.started,
                r.ended,
                r.stdout_tail,
                r.stderr_tail,
                r.stdout_bytes,
                r.stderr_bytes,
                r.stdout_sha256,
                r.stderr_sha256,
                int(r.truncated),
                r.files,
                r.bytes_transferred,
                time.time(),
            )
            for r in records
        ]
        try:
            with self._transaction():
                self.connection.executemany(
                    "INSERT OR REPLACE INTO hosts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
                )
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write to the journal {self.path}: {exc}") from None

    def end_run(
        self,
        run_id: int,
        *,
        exit_code: int | None,
        outcome: str = FINISHED,
        ended: float | None = None,
    ) -> None:
        """Close a run: its outcome, exit code, end time and per-status counts."""
        if outcome not in OUTCOMES or outcome == RUNNING:
            raise ValueError(f"a run ends finished, interrupted or crashed, not {outcome!r}")
        with self._transaction():
            self._close_run(run_id, outcome, exit_code, time.time() if ended is None else ended)

    def _close_run(self, run_id: int, outcome: str, exit_code: int | None, ended: float) -> None:
        found = dict(
            self.connection.execute(
                "SELECT status, count(*) FROM hosts WHERE run_id = ? GROUP BY status", (run_id,)
            ).fetchall()
        )
        order = [status.name.lower() for status in Status]  # the summary's order
        counts = {name: found.pop(name) for name in order if name in found} | found
        self.connection.execute(
            "UPDATE runs SET outcome = ?, exit_code = ?, ended = ?, counts = ? WHERE id = ?",
            (outcome, exit_code, ended, json.dumps(counts), run_id),
        )

    def mark_interrupted(self) -> list[int]:
        """Mark ``interrupted`` every running run whose process is gone; their ids."""
        running = self.connection.execute(
            "SELECT id, owner, started FROM runs WHERE outcome = ?", (RUNNING,)
        ).fetchall()
        dead = [(run_id, started) for run_id, owner, started in running if not owner_alive(owner)]
        if not dead:
            return []
        with self._transaction():
            for run_id, started in dead:
                last = self.connection.execute(
                    "SELECT max(ended) FROM hosts WHERE run_id = ?", (run_id,)
                ).fetchone()[0]
                self._close_run(run_id, INTERRUPTED, None, last or started)
        return [run_id for run_id, _ in dead]

    def prune(self) -> int:
        """Apply the retention; the number of runs removed."""
        removed = 0
        with self._transaction():
            stale = self._run_ids(
                "SELECT id FROM runs WHERE outcome != ? AND id NOT IN"
                " (SELECT id FROM runs ORDER BY id DESC LIMIT ?)",
                (RUNNING, max(0, self.retention.keep_runs)),
            )
            removed += self._delete_runs(stale)
            while self.used_bytes() > self.retention.max_bytes:
                finished = self._run_ids(
                    "SELECT id FROM runs WHERE outcome != ? ORDER BY id", (RUNNING,)
                )
                if not finished:
                    break
                removed += self._delete_runs(finished[: max(1, len(finished) // 10)])
        if removed:
            self.connection.execute("PRAGMA incremental_vacuum")
        return removed

    def _run_ids(self, query: str, parameters: tuple[object, ...]) -> list[int]:
        return [row[0] for row in self.connection.execute(query, parameters)]

    def _delete_runs(self, run_ids: Sequence[int]) -> int:
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            self.connection.execute(f"DELETE FROM hosts WHERE run_id IN ({marks})", chunk)
            self.connection.execute(f"DELETE FROM runs WHERE id IN ({marks})", chunk)
        return len(run_ids)

    def used_bytes(self) -> int:
        """Bytes of the file's pages in use (freed pages are reused, then vacuumed)."""
        pages = self.connection.execute("PRAGMA page_count").fetchone()[0]
        free = self.connection.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.connection.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error): takes the write lock up
    front, so two processes wait for each other instead of failing on an upgrade."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.connection.execute("ROLLBACK" if exc_type is not None else "COMMIT")
