"""The journal against real runs on the in-process fleet and a real sshd: what a run
leaves in it, host by host; secrets kept out; retention; run references."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, run
from hostbatch.engine.limits import Limits
from hostbatch.errors import SelectionError, UsageError
from hostbatch.journal import (
    Journal,
    JournalError,
    JournalSink,
    Retention,
    default_journal_path,
    history,
    resolve_run_ref,
    show,
)
from hostbatch.journal.sink import FLUSH_SECONDS
from hostbatch.logs import MASK
from hostbatch.models import Credentials, Event, Finished, Host, HostResult, Secret, Started, Status
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions
from tests.journal.conftest import BLOB_BYTES, MIXED_COMMAND, OUTPUT_LIMIT, JournalledFleet

SHA256_OF_NOTHING = hashlib.sha256(b"").hexdigest()


def test_a_mixed_run_is_recorded_host_by_host(
    journalled: JournalledFleet, journal: Journal
) -> None:
    sink, results = journalled.run(journal, MIXED_COMMAND)
    detail = show(journal, "last")
    assert detail.run.run_id == sink.run_id and detail.run.outcome == "finished"
    assert detail.run.exit_code == 3 and detail.run.host_count == 7 and not detail.unfinished
    assert detail.run.counts == {
        "ok": 3,
        "failed": 1,
        "auth_failed": 1,
        "unreachable": 1,
        "dropped": 1,
    }
    assert detail.run.kind == "run" and detail.run.operation == MIXED_COMMAND
    hosts = {record.host: record for record in detail.hosts}
    assert [record.host for record in detail.hosts] == [f"node{i:02d}" for i in range(1, 8)]
    first = hosts["node01"]
    assert (first.status, first.exit_status, first.error) == ("ok", 0, None)
    assert (first.stdout_tail, first.stderr_tail) == (b"out-node01\n", b"err-node01\n")
    assert first.stdout_sha256 == hashlib.sha256(b"out-node01\n").hexdigest()
    assert (first.stdout_bytes, first.started, first.ended) == (
        11,
        results["node01"].started,
        results["node01"].ended,
    )
    assert (hosts["node05"].status, hosts["node05"].exit_status) == ("failed", 4)
    assert hosts["node02"].error == results["node02"].error and hosts["node02"].error
    assert hosts["node03"].stdout_sha256 == SHA256_OF_NOTHING == hosts["node03"].stderr_sha256


def test_the_full_stream_is_hashed_though_only_a_tail_is_kept(
    journalled: JournalledFleet, journal: Journal
) -> None:
    journalled.run(journal, MIXED_COMMAND, "node06")
    (record,) = show(journal, "last").hosts
    full = b"out-node06\n" + (journalled.fleet.host("node06").root / "blob").read_bytes()
    assert record.stdout_bytes == len(full) == BLOB_BYTES + 11
    assert record.stdout_sha256 == hashlib.sha256(full).hexdigest()
    assert record.truncated and record.stdout_tail == full[-OUTPUT_LIMIT:]


def test_each_host_is_committed_soon_after_it_finishes(
    journalled: JournalledFleet, journal: Journal
) -> None:
    finished: dict[str, float] = {}
    committed: dict[str, float] = {}
    reader = sqlite3.connect(f"file:{journal.path}?mode=ro", uri=True)

    def on_commit(hosts: list[str]) -> None:
        marks = ",".join("?" * len(hosts))
        rows = reader.execute(f"SELECT host FROM hosts WHERE host IN ({marks})", hosts)
        committed.update(dict.fromkeys((name for (name,) in rows), time.monotonic()))

    def on_finished(event: Event) -> None:
        if isinstance(event, Finished):
            finished[event.host] = time.monotonic()

    names = [f"node0{i}" for i in (1, 5, 6, 7)]
    command = 'sleep "0.$(( ${HOSTBATCH_FLEET_HOST#node0} % 4 * 3 ))"'
    sink = JournalSink.begin(journal, "run", command, "x", names, on_commit=on_commit)
    hosts = journalled.inventory.select(hosts=names)

    def on_event(event: Event) -> None:
        on_finished(event)
        sink(event)

    try:
        run(command, hosts=hosts, options=journalled.options, on_event=on_event)
        ran_until = time.monotonic()
        sink.end(exit_code=0)
    finally:
        reader.close()
    # another connection saw each row within the flush window of its host's end (generous
    # for a loaded machine), during the run; only the last batch waits for end()
    assert sorted(committed) == names
    during = [name for name in names if committed[name] <= ran_until]
    assert sorted(during) == names[:3]  # node07 ends last, 0.3 s after the others
    assert all(committed[name] - finished[name] < FLUSH_SECONDS + 0.5 for name in during)


def test_no_secret_reaches_the_database_file(journalled: JournalledFleet, journal: Journal) -> None:
    password = journalled.fleet.password  # the inventory's: the run logs in with it
    become, enable, env_value = "b3come-Pw-771", "en4ble-S3cret-12", "tok3n-from-env-99"
    argv = ["run", "--password", password, f"--become-password={become}", "-g", "all"]
    options = {
        "password": Secret(password),
        "secret": enable,
        "become_password": become,
        "token_env": env_value,
        "fanout": 10,
        "command": f"mysql --password={enable}",
    }
    journalled.run(journal, f"true password={become} x", "all", argv=argv, options=options)
    summary = history(journal, 1)[0]
    assert summary.argv == ("run", "--password", MASK, f"--become-password={MASK}", "-g", "all")
    assert summary.options["fanout"] == 10 and summary.options["token_env"] == MASK
    assert summary.operation == f"true password={MASK} x"
    for path in (journal.path, Path(f"{journal.path}-wal")):
        data = path.read_bytes() if path.exists() else b""
        for secret in (password, become, enable, env_value):
            assert secret.encode() not in data, (path.name, secret)


def test_runs_are_found_by_id_last_and_last_n(
    journalled: JournalledFleet, journal: Journal
) -> None:
    ids = [journalled.run(journal, f"echo {n}", "node01")[0].run_id for n in range(3)]
    assert resolve_run_ref(journal, "last") == ids[2]
    assert resolve_run_ref(journal, "last~2") == ids[0]
    assert resolve_run_ref(journal, str(ids[1])) == ids[1]
    assert [s.run_id for s in history(journal, 2)] == [ids[2], ids[1]]
    with pytest.raises(SelectionError, match="no run 'last~3'") as missing:
        resolve_run_ref(journal, "last~3")
    assert missing.value.exit_code == 2
    with pytest.raises(SelectionError, match="no run '999'"):
        show(journal, "999")
    with pytest.raises(UsageError, match="bad run reference 'first'"):
        resolve_run_ref(journal, "first")
    with pytest.raises(SelectionError, match="has no host 'node02'"):
        show(journal, "last", ["node02"])


def test_retention_keeps_the_last_runs_and_a_size_cap(
    journalled: JournalledFleet, tmp_path: Path
) -> None:
    path = tmp_path / "kept.sqlite"
    with Journal.open(path, retention=Retention(keep_runs=3)) as journal:
        ids = [journalled.run(journal, "echo x", "node01")[0].run_id for _ in range(5)]
        # pruned when a run begins: the 4 before the last, then the last one itself
        assert [s.run_id for s in history(journal, 10)] == ids[1:][::-1]
        cap = journal.used_bytes() + 8 * 1024
        journal.retention = Retention(keep_runs=100, max_bytes=cap)
        big = "head -c 60000 /dev/zero | tr '\\0' x"  # each host keeps a 4 KiB tail
        bigs = [journalled.run(journal, big, "node0[1,5-7]")[0].run_id for _ in range(4)]
        remaining = [s.run_id for s in history(journal, 100)]
        assert bigs[-1] in remaining and bigs[0] not in remaining and ids[-1] not in remaining
        assert journal.used_bytes() <= cap + 4 * (OUTPUT_LIMIT + 1024)  # the cap + one run
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_journal_from_a_newer_hostbatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    Journal.open(path).close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(JournalError, match="schema version 99, newer") as refused:
        Journal.open(path)
    assert refused.value.exit_code == 2


def test_default_path_follows_env_then_xdg_then_home() -> None:
    assert default_journal_path({"HOSTBATCH_JOURNAL": "/j/x.sqlite"}) == Path("/j/x.sqlite")
    xdg = {"XDG_STATE_HOME": "/state", "HOME": "/home/u"}
    assert default_journal_path(xdg) == Path("/state/hostbatch/journal.sqlite")
    relative = {"XDG_STATE_HOME": "state", "HOME": "/home/u"}
    expected = Path("/home/u/.local/state/hostbatch/journal.sqlite")
    assert default_journal_path(relative) == expected


def test_a_run_on_a_real_sshd_is_recorded(sshd: OpenSSHServer, journal: Journal) -> None:
    credentials = Credentials(sshd.username, key_file=str(sshd.client_key))
    hosts = [Host("real", sshd.host, sshd.port, credentials)]
    options = RunOptions(Limits(), ConnectOptions(known_hosts=str(sshd.known_hosts)))
    sink = JournalSink.begin(journal, "run", "echo hi; echo warn >&2; exit 3", "real", ["real"])
    results = run("echo hi; echo warn >&2; exit 3", hosts=hosts, options=options, on_event=sink)
    sink.end(exit_code=1)
    (record,) = show(journal, "last").hosts
    assert results["real"].exit_status == 3
    assert (record.status, record.exit_status) == ("failed", 3)
    assert (record.stdout_tail, record.stderr_tail) == (b"hi\n", b"warn\n")
    assert history(journal, 1)[0].counts == {"failed": 1}


async def test_a_failed_timed_commit_reaches_the_caller(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite")
    sink = JournalSink.begin(journal, "run", "true", "h1,h2", ["h1", "h2"])
    sink(Finished(HostResult("h1", Status.OK)))  # its commit waits for the timer
    journal.connection.close()  # so the timed commit fails
    deadline = time.monotonic() + 10
    with pytest.raises(JournalError, match="cannot write to the journal"):
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            sink(Started("h2"))  # the failure surfaces here, not in the loop's handler
