"""Sinks beside the journal on real runs: per-host output files byte-equal to what the
hosts printed (binary, 20 MiB), the --events stream, and masked gathering."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from hostbatch.api import RunOptions, run
from hostbatch.engine.limits import Limits
from hostbatch.models import Credentials, Host, Status
from hostbatch.output.files import OutputFiles
from hostbatch.output.gather import compile_masks, digest_lines, gather_outputs
from hostbatch.output.jsonl import EVENTS_VERSION, event_line, summary_record
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions
from tests.journal.conftest import JournalledFleet

MIB = 1024 * 1024
# node01 prints 20 MiB, the others 300 kB of random bytes; each 1000 bytes on stderr.
BINARY_COMMAND = (
    'case "$HOSTBATCH_FLEET_HOST" in node01) size=20971520;; *) size=300000;; esac; '
    "head -c $size /dev/urandom > out.bin; head -c 1000 /dev/urandom > err.bin; "
    "cat out.bin; cat err.bin >&2"
)


def test_outdir_files_are_byte_equal_to_what_hosts_printed(
    journalled: JournalledFleet, tmp_path: Path
) -> None:
    files = OutputFiles(tmp_path / "out", tmp_path / "err")
    # node04 (drops mid-command) is left out: the fleet leaves its big writer's pipe
    # transport for the garbage collector (a ResourceWarning in a later test).
    results = run(
        BINARY_COMMAND,
        patterns="node0[1-3,5-7]",
        inventory=journalled.inventory,
        options=journalled.options,
        on_event=files,
    )
    for name in ("node01", "node05", "node06", "node07"):
        root = journalled.fleet.host(name).root
        assert (tmp_path / "out" / name).read_bytes() == (root / "out.bin").read_bytes(), name
        assert (tmp_path / "err" / name).read_bytes() == (root / "err.bin").read_bytes(), name
        assert results[name].truncated  # the in-memory tail is cut; the file is whole
    assert (tmp_path / "out" / "node01").stat().st_size == 20 * MIB
    assert (tmp_path / "out" / "node02").read_bytes() == b""  # auth failed: empty, present
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"node{i:02d}" for i in (1, 2, 3, 5, 6, 7)]  # no temporary file left


def test_outdir_with_a_real_sshd_and_hostile_names(
    sshd: OpenSSHServer, sshd_remote_dir: Path, tmp_path: Path
) -> None:
    credentials = Credentials(sshd.username, key_file=str(sshd.client_key))
    names = ["../escape", "a/b", "plain"]
    hosts = [Host(name, sshd.host, sshd.port, credentials) for name in names]
    options = RunOptions(Limits(), ConnectOptions(known_hosts=str(sshd.known_hosts)))
    blob = sshd_remote_dir / "blob.bin"
    blob.write_bytes(os.urandom(20 * MIB))
    blob.chmod(0o644)
    files = OutputFiles(tmp_path / "out")
    run(f"cat {blob}", hosts=hosts, options=options, on_event=files)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(files.path_for(n).name for n in names) and len(written) == 3
    assert all(files.path_for(n).parent == tmp_path / "out" for n in names)
    expected = blob.read_bytes()
    for name in names:
        assert files.path_for(name).read_bytes() == expected, name
    assert not (tmp_path / "escape").exists() and not list(tmp_path.glob("out/*.part"))


def test_events_stream_in_order_per_host_then_a_summary(
    journalled: JournalledFleet,
) -> None:
    lines: list[str] = []
    command = 'echo "one-$HOSTBATCH_FLEET_HOST"; sleep 0.1; echo two >&2; exit 2'
    results = run(
        command,
        patterns="node0[1-3]",
        inventory=journalled.inventory,
        options=journalled.options,
        on_event=lambda e: lines.append(event_line(e)),
    )
    per_host: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        record = json.loads(line)
        assert record["version"] == EVENTS_VERSION
        per_host[record["host"]].append(record)
    first = per_host["node01"]
    assert first[0]["event"] == "started" and first[-1]["event"] == "finished"
    assert "".join(r["data"] for r in first if r["event"] == "stdout") == "one-node01\n"
    assert "".join(r["data"] for r in first if r["event"] == "stderr") == "two\n"
    assert first[-1]["status"] == "failed" and first[-1]["exit_status"] == 2
    assert [r["event"] for r in per_host["node03"]] == ["started", "finished"]
    summary = summary_record(results, 1.25, 3, 41)
    assert summary["counts"]["failed"] == 1 and summary["counts"]["unreachable"] == 1
    assert summary["host_ranges"] == {
        "failed": "node01",
        "auth_failed": "node02",
        "unreachable": "node03",
    }
    assert (summary["event"], summary["exit_code"], summary["run_id"]) == ("summary", 3, 41)


def test_masks_fold_outputs_that_differ_only_where_masked(
    journalled: JournalledFleet,
) -> None:
    command = 'echo "pid $$ on $HOSTBATCH_FLEET_HOST"; echo same'
    results = run(
        command,
        patterns="node0[1,5-7]",
        inventory=journalled.inventory,
        options=journalled.options,
    )
    assert len(gather_outputs(results)) == 4  # pids and names differ
    masks = compile_masks([r"pid \d+", r"node\d+"])
    (group,) = gather_outputs(results, masks)
    assert group.hosts == "node[01,05-07]" and group.output == b"<mask1> on <mask2>\nsame\n"
    assert group.masks == (r"pid \d+", r"node\d+")
    lines = digest_lines(results, masks)
    assert lines[:2] == [r"masks: <mask1> = pid \d+", r"masks: <mask2> = node\d+"]
    assert lines[2] == "---------------- node[01,05-07]  (masked: <mask1>, <mask2>)"
    assert all(r.status is Status.OK for r in results.values())
