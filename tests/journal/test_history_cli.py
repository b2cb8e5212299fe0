"""``hostbatch history`` and ``hostbatch show`` as subprocesses, on a journal of real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hostbatch.journal import Journal
from tests.journal.conftest import MIXED_COMMAND, JournalledFleet


def hostbatch(*args: str, journal: Path) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "HOSTBATCH_JOURNAL": str(journal)}
    return subprocess.run(
        [sys.executable, "-c", "from hostbatch.cli.app import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environ,
    )


def test_history_and_show_of_real_runs(journalled: JournalledFleet, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal.open(path) as journal:
        first = journalled.run(journal, "echo first", "node01")[0].run_id
        second = journalled.run(journal, MIXED_COMMAND, "all")[0].run_id
    listed = hostbatch("history", journal=path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and lines[0].lstrip().startswith(f"{second} ")
    assert "7 hosts: 3 ok, 1 failed, 1 unreachable, 1 auth_failed, 1 dropped" in lines[0]
    assert "'echo first'" in lines[1] and "1 hosts: 1 ok" in lines[1]
    records = [
        json.loads(line)
        for line in hostbatch("history", "--json", journal=path).stdout.splitlines()
    ]
    assert [r["id"] for r in records] == [second, first] and records[1]["counts"] == {"ok": 1}

    shown = hostbatch("show", "last", journal=path)
    assert shown.returncode == 0, shown.stderr
    assert f"run {second}: run" in shown.stdout and "exit code 3" in shown.stdout
    assert "---------------- node01: ok (exit 0)" in shown.stdout
    assert "out-node01\n! err-node01" in shown.stdout
    assert "---------------- node02: auth_failed: authentication failed" in shown.stdout
    one = json.loads(hostbatch("show", "last", "node0[4-5]", "--json", journal=path).stdout)
    assert [h["host"] for h in one["hosts"]] == ["node04", "node05"]
    assert one["run"]["id"] == second and one["hosts"][1]["exit_status"] == 4
    earlier = json.loads(hostbatch("show", "last~1", "--json", journal=path).stdout)
    assert earlier["hosts"][0]["stdout"] == "first\n"


def test_bad_references_are_one_line_errors_exit_2(
    journalled: JournalledFleet, tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite"
    missing = hostbatch("show", "last", journal=path)
    assert missing.returncode == 2 and "no run recorded yet" in missing.stderr
    assert hostbatch("history", journal=path).returncode == 0 and not path.exists()
    with Journal.open(path) as journal:
        journalled.run(journal, "true", "node01")
    for ref, message in (("41", "no run '41' in the journal"), ("first", "bad run reference")):
        done = hostbatch("show", ref, journal=path)
        assert done.returncode == 2 and message in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    unknown_host = hostbatch("show", "last", "node09", journal=path)
    assert unknown_host.returncode == 2 and "has no host 'node09'" in unknown_host.stderr
