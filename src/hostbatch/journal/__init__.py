"""The run journal: every run, put, get and shell command remembered in SQLite (WAL).

:class:`Journal` is the store, :class:`JournalSink` the event sink that writes each host
as it finishes, and :mod:`hostbatch.journal.queries` reads it back (history, show,
hosts of a run by status for ``--rerun`` and ``@run:RUN:STATUS``).
"""

from hostbatch.journal.paths import default_journal_path
from hostbatch.journal.queries import (
    RunDetail,
    RunSummary,
    history,
    hosts_of_run,
    hosts_of_run_term,
    resolve_run_ref,
    show,
)
from hostbatch.journal.sink import JournalSink
from hostbatch.journal.store import (
    CRASHED,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    HostRecord,
    Journal,
    JournalError,
    Retention,
)

__all__ = [
    "CRASHED",
    "FINISHED",
    "INTERRUPTED",
    "RUNNING",
    "HostRecord",
    "Journal",
    "JournalError",
    "JournalSink",
    "Retention",
    "RunDetail",
    "RunSummary",
    "default_journal_path",
    "history",
    "hosts_of_run",
    "hosts_of_run_term",
    "resolve_run_ref",
    "show",
]
