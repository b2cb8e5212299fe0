"""The run journal from the command line (issue #13): every run recorded, history and show,
--rerun and @run:, --no-journal, no secret in the file, --events, -B --mask, --outdir.

Real servers: an in-process fleet with misbehaving hosts (node03 refuses the login, node05
and node06 refuse connections) and, for --outdir and --events, the real OpenSSH sshd.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostbatch.journal import Journal, show
from hostbatch.journal import history as journal_history
from hostbatch.journal.queries import host_json, summary_json
from hostbatch.testing import Fleet, FleetThread
from hostbatch.testing.sshd import OpenSSHServer
from tests.fixtures.cli import cli_argv, cli_env, run_cli

BEHAVIOURS = {"node03": "refuse_auth", "node05": "refuse_connect", "node06": "refuse_connect"}
ENABLE_SECRET = "enable-Secret-7f3a9c"
# node04 exits 4; every host prints its name on stdout and stderr.
MIXED = (
    'echo "out-$HOSTBATCH_FLEET_HOST"; echo "err-$HOSTBATCH_FLEET_HOST" >&2; '
    'case "$HOSTBATCH_FLEET_HOST" in node04) exit 4;; esac'
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    """7 hosts, password logins, and an enable secret on every host (never stored)."""
    with FleetThread(7, behaviours=BEHAVIOURS) as started:
        inventory = started.write_inventory(tmp_path_factory.mktemp("j") / "inv")
        ini = inventory / "fleet.ini"
        ini.write_text(f"[DEFAULT]\nsecret = {ENABLE_SECRET}\n\n" + ini.read_text())
        yield started, inventory


def cli(fleet: tuple[Fleet, Path], journal: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``hostbatch COMMAND ...`` with the fleet's inventory (and keys) and *journal*."""
    started, inventory = fleet
    command, *rest = args
    extra = ["-i", str(inventory)] if command in ("run", "hosts") else []
    if command == "run":
        extra += ["--known-hosts", str(started.known_hosts), "--connect-timeout", "5"]
    return run_cli(command, *extra, "--journal", str(journal), *rest, timeout=90)


def history(journal: Path) -> list[dict[str, Any]]:
    """``hostbatch history --json``, newest first."""
    listed = run_cli("history", "--journal", str(journal), "--json")
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def recorded_runs(journal: Path) -> list[dict[str, Any]]:
    """The same, read in this process (fewer subprocesses: each costs ~1 s here)."""
    with Journal.open(journal) as opened:
        return [summary_json(summary) for summary in journal_history(opened)]


def recorded_hosts(journal: Path, run_ref: str) -> list[dict[str, Any]]:
    with Journal.open(journal) as opened:
        return [host_json(record) for record in show(opened, run_ref).hosts]


def ran_hosts(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The hosts a --json run reported (one object per host that ran)."""
    return {json.loads(line)["host"] for line in result.stdout.splitlines()}


def test_mixed_run_is_recorded_then_rerun_by_status(
    fleet: tuple[Fleet, Path], tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    first = cli(fleet, journal, "run", "-g", "fleet", "-c", MIXED)
    assert first.returncode == 3, first.stderr
    note = "run 1 recorded; rerun failures: hostbatch run --rerun 1:failed ..."
    assert first.stderr.rstrip().endswith(note)
    [run] = history(journal)
    assert run["outcome"] == "finished" and run["exit_code"] == 3 and run["kind"] == "run"
    assert run["counts"] == {"ok": 3, "failed": 1, "unreachable": 2, "auth_failed": 1}
    assert run["operation"] == MIXED and run["selection"] == "-g fleet"
    shown = json.loads(cli(fleet, journal, "show", "last", "--json").stdout)
    statuses = {host["host"]: host["status"] for host in shown["hosts"]}
    assert statuses == {
        "node01": "ok",
        "node02": "ok",
        "node03": "auth_failed",
        "node04": "failed",
        "node05": "unreachable",
        "node06": "unreachable",
        "node07": "ok",
    }
    assert shown["hosts"][0]["stdout"] == "out-node01\n"

    again = cli(fleet, journal, "run", "--rerun", "last:failed", "--json", "-c", "echo again")
    assert again.returncode == 3, again.stderr
    assert ran_hosts(again) == {"node03", "node04", "node05", "node06"}
    rerun, rerun_of = recorded_runs(journal)[:2]
    assert rerun["selection"] == f"--rerun {rerun_of['id']}:failed"  # the run 'last' was
    started, inventory = fleet
    picked = run_cli(  # the seed's form takes --rerun too
        *("-i", str(inventory), "--known-hosts", str(started.known_hosts)),
        *("--journal", str(journal), "--rerun", "1:ok,auth_failed", "-h", "!node02"),
        *("--json", "-cmd", "true"),
        program="batch_run",
    )
    assert ran_hosts(picked) == {"node01", "node03", "node07"}
    assert recorded_runs(journal)[0]["selection"] == "--rerun 1:ok,auth_failed -h !node02"
    assert_no_secret(fleet[0], journal)


def assert_no_secret(fleet: Fleet, journal: Path) -> None:
    """The journal's bytes (WAL included) hold outputs, never the password or secret."""
    files = [path for path in journal.parent.iterdir() if path.name.startswith(journal.name)]
    stored = b"".join(path.read_bytes() for path in files)
    assert b"out-node01" in stored  # the file holds what was recorded...
    for secret in (fleet.password, ENABLE_SECRET):
        assert secret.encode() not in stored  # ...and never a secret


def test_run_terms_missing_runs_and_no_journal(fleet: tuple[Fleet, Path], tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    missing = cli(fleet, journal, "hosts", "@run:last:failed")
    assert missing.returncode == 2 and "no run 'last'" in missing.stderr
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    cli(fleet, journal, "run", "-g", "fleet", "-c", MIXED)
    listed = cli(fleet, journal, "hosts", "--json", "@run:last:unreachable", "!node06")
    assert listed.returncode == 0, listed.stderr
    assert [host["name"] for host in json.loads(listed.stdout)] == ["node05"]
    absent = cli(fleet, journal, "run", "--rerun", "42:failed", "true")
    assert absent.returncode == 2, absent.stderr
    assert absent.stdout == "" and absent.stderr.strip().splitlines() == [
        f"hostbatch: error: no run '42' in the journal {journal}"
    ]
    bad = cli(fleet, journal, "hosts", "-h", "@run:1:unreachable+broken")
    assert bad.returncode == 2 and "unknown status 'broken'" in bad.stderr
    unrecorded = cli(fleet, journal, "run", "-h", "node01", "--no-journal", "true")
    assert unrecorded.returncode == 0 and "recorded" not in unrecorded.stderr
    assert len(recorded_runs(journal)) == 1  # --no-journal left no new run


def test_a_journal_that_cannot_be_opened_is_a_warning(
    fleet: tuple[Fleet, Path], tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli(fleet, blocker / "journal.sqlite", "run", "-h", "node01", "echo still-runs")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "node01 | still-runs\n"
    [warning] = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warning.startswith(f"hostbatch: warning: cannot open the journal {blocker}/journal")
    assert warning.endswith("; this run is not recorded")
    assert "recorded" not in result.stderr.replace(warning, "")  # no "run N recorded" line


def test_events_gather_after_and_masks(fleet: tuple[Fleet, Path], tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    events = cli(fleet, journal, "run", "-h", "node0[1-4]", "--events", "-c", MIXED)
    assert events.returncode == 3, events.stderr
    records = [json.loads(line) for line in events.stdout.splitlines()]
    assert all(record["version"] == 1 for record in records)
    *stream, summary = records
    assert summary["event"] == "summary" and summary["run_id"] == recorded_runs(journal)[0]["id"]
    assert summary["counts"]["ok"] == 2 and summary["host_ranges"]["auth_failed"] == "node03"
    assert summary["exit_code"] == 3 and summary["hosts"] == 4
    kinds = {(record["event"], record["host"]) for record in stream}
    assert ("stdout", "node01") in kinds and ("stderr", "node02") in kinds
    assert {host for event, host in kinds if event == "finished"} == {f"node0{n}" for n in "1234"}
    refused = cli(fleet, journal, "run", "-h", "node01", "--events", "-B", "true")
    assert refused.returncode == 2 and "--events cannot be combined" in refused.stderr

    pids = cli(
        fleet, journal, "run", "-h", "node0[1-2],node07", "-B", "--mask", r"\d+", "echo pid $$"
    )
    assert pids.returncode == 0, pids.stderr
    live, digest = pids.stdout.split("masks: <mask1> = \\d+\n")
    assert len(set(re.findall(r"pid (\d+)", live))) == 3  # three different pids, live
    assert digest == "---------------- node[01-02,07]  (masked: <mask1>)\npid <mask1>\n"
    bad = cli(fleet, journal, "run", "-h", "node01", "-b", "--mask", "(", "true")
    assert bad.returncode == 2
    assert bad.stderr.startswith("hostbatch: error: bad --mask '(': missing ), unterminated")


def test_outdir_files_hold_every_byte(fleet: tuple[Fleet, Path], tmp_path: Path) -> None:
    started, _ = fleet
    command = "head -c 300000 /dev/urandom > blob; cat blob; printf 'e\\000\\377' >&2"
    out, err = tmp_path / "out", tmp_path / "err"
    result = cli(
        fleet,
        tmp_path / "journal.sqlite",
        "run",
        "-h",
        "node0[1-2],node07",
        "--output-limit",
        "1000",
        "--outdir",
        str(out),
        "--errdir",
        str(err),
        "-b",
        "-c",
        command,
    )
    assert result.returncode == 0, result.stderr
    for name in ("node01", "node02", "node07"):
        assert (out / name).read_bytes() == (started.host(name).root / "blob").read_bytes()
        assert (err / name).read_bytes() == b"e\x00\xff"
    assert sorted(path.name for path in out.iterdir()) == ["node01", "node02", "node07"]


def test_two_cli_runs_at_once_both_land_whole(fleet: tuple[Fleet, Path], tmp_path: Path) -> None:
    started, inventory = fleet
    journal = tmp_path / "journal.sqlite"
    runs = [
        subprocess.Popen(
            cli_argv(
                *("run", "-i", str(inventory), "--known-hosts", str(started.known_hosts)),
                *("--journal", str(journal), "-h", "node0[1-2,4,7]", "--json", "--"),
                f"sleep 0.5; echo {tag}; case $HOSTBATCH_FLEET_HOST in node04) exit 4;; esac",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        for tag in ("a", "b")
    ]
    outputs = [run.communicate(timeout=90) for run in runs]
    assert [run.returncode for run in runs] == [1, 1], outputs
    recorded = recorded_runs(journal)
    assert len(recorded) == 2
    tags = set()
    for run in recorded:
        assert run["outcome"] == "finished" and run["exit_code"] == 1
        assert run["counts"] == {"ok": 3, "failed": 1}
        outputs_of_run = {host["stdout"] for host in recorded_hosts(journal, str(run["id"]))}
        assert len(outputs_of_run) == 1  # each run's 4 hosts, none of the other's
        tags |= outputs_of_run
    assert tags == {"a\n", "b\n"}
    first, second = sorted(recorded, key=lambda run: run["started"])
    assert second["started"] < first["ended"]  # they overlapped


@pytest.mark.sshd
def test_sshd_run_outdir_events_and_journal(
    sshd: OpenSSHServer, sshd_remote_dir: Path, tmp_path: Path
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "".join(
            f"[{name}]\nhostname = 127.0.0.1\nport = {sshd.port}\nusername = {sshd.username}\n"
            f"key_file = {sshd.client_key}\n\n"
            for name in ("h1", "h2")
        )
    )
    journal, out = tmp_path / "journal.sqlite", tmp_path / "out"
    command = "printf 'bin\\000\\377\\n'; head -c 200000 /dev/zero | tr '\\000' '\\253'"
    result = run_cli(
        "run",
        *("-i", str(inventory), "--known-hosts", str(sshd.known_hosts), "--ssh-config", ""),
        *("--journal", str(journal), "--outdir", str(out), "--output-limit", "100"),
        *("-h", "h1,h2", "--events", "--", command),
    )
    assert result.returncode == 0, result.stderr
    expected = b"bin\x00\xff\n" + b"\xab" * 200000
    assert (out / "h1").read_bytes() == expected and (out / "h2").read_bytes() == expected
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["event"] == "summary" and summary["counts"]["ok"] == 2
    [run] = recorded_runs(journal)
    assert run["id"] == summary["run_id"] and run["outcome"] == "finished"
    assert run["exit_code"] == 0 and run["counts"] == {"ok": 2}
    hosts = recorded_hosts(journal, "last")
    assert [host["stdout_bytes"] for host in hosts] == [len(expected)] * 2
    local = tmp_path / "app.conf"
    local.write_bytes(b"x" * 1000)
    put = run_cli(
        "put",
        *("-i", str(inventory), "--known-hosts", str(sshd.known_hosts), "--ssh-config", ""),
        *("--journal", str(journal), "-h", "h1,h2", str(local), f"{sshd_remote_dir}/"),
    )
    assert put.returncode == 0, put.stderr
    assert f"run {run['id'] + 1} recorded" in put.stderr
    transfer = recorded_runs(journal)[0]
    assert transfer["kind"] == "put" and transfer["counts"] == {"ok": 2}
    assert transfer["operation"] == f"{local} -> {sshd_remote_dir}/"
    assert [h["bytes_transferred"] for h in recorded_hosts(journal, "last")] == [1000, 1000]
