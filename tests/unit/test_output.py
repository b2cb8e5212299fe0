"""Renderers and summaries: prefixed live lines, folding, JSON, transfer progress."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hostbatch.errors import UsageError
from hostbatch.models import Finished, HostResult, OutputChunk, Progress, Started, Status
from hostbatch.output.files import OutputFiles
from hostbatch.output.gather import compile_masks, gathered, summary_lines
from hostbatch.output.jsonl import EVENTS_VERSION, event_record, result_line, summary_line
from hostbatch.output.live import LiveRenderer
from hostbatch.output.progress import TransferProgress, human_bytes


def test_live_lines_are_prefixed_aligned_and_partial_lines_held() -> None:
    out, err = io.StringIO(), io.StringIO()
    render = LiveRenderer(out, err, width=6)
    render(OutputChunk("web1", "stdout", b"one\ntw"))
    assert out.getvalue() == "web1   | one\n"  # "tw" waits for its newline
    render(OutputChunk("web1", "stdout", b"o\n\xffbad"))
    render(OutputChunk("db10", "stderr", b"warn\n"))
    render(Finished(HostResult("web1", Status.FAILED, exit_status=2)))
    assert out.getvalue() == "web1   | one\nweb1   | two\nweb1   | \ufffdbad\n"
    assert "db10   ! warn\n" in err.getvalue()
    assert "web1   ✗ command failed: exit status 2" in err.getvalue()


def test_partial_lines_are_capped_and_cut_between_utf8_sequences() -> None:
    out, err = io.StringIO(), io.StringIO()
    render = LiveRenderer(out, err, width=1, cap=8)
    render(OutputChunk("h", "stdout", "aaaaaaé€".encode()))  # 6 + 2 + 3 bytes
    assert out.getvalue() == "h | aaaaaaé\n"  # flushed at the cap, before the cut "€"
    assert render.held_bytes() == 3
    render(OutputChunk("h", "stdout", b"\nb\r\nccc"))
    render(Finished(HostResult("h", Status.OK, exit_status=0)))
    assert out.getvalue() == "h | aaaaaaé\nh | €\nh | b\nh | ccc\n"
    assert render.held_bytes() == 0


def test_output_without_newlines_is_held_at_most_the_cap() -> None:
    out = io.StringIO()
    render = LiveRenderer(out, io.StringIO(), width=1)
    sent = bytearray()
    for index in range(200):  # 12.5 MiB in 64 KiB chunks, one newline in the middle
        chunk = bytes([97 + index % 26]) * 65536
        if index == 100:
            chunk = chunk[:1000] + b"\n" + chunk[1001:]
        sent += chunk
        render(OutputChunk("h", "stdout", chunk))
        assert render.held_bytes() <= render.cap
    render(Finished(HostResult("h", Status.OK, exit_status=0)))
    lines = [line.removeprefix("h | ") for line in out.getvalue().split("\n")[:-1]]
    assert max(len(line) for line in lines) == render.cap
    assert "".join(lines).encode() == bytes(sent).replace(b"\n", b"")


def test_colour_only_when_asked() -> None:
    out, err = io.StringIO(), io.StringIO()
    LiveRenderer(out, err, width=4, color=True)(OutputChunk("a", "stdout", b"x\n"))
    assert "\x1b[" in out.getvalue()


def test_summary_folds_hosts_by_status() -> None:
    results = {
        f"web{i:02d}": HostResult(
            f"web{i:02d}", Status.OK if i not in (3, 7, 8, 9) else Status.FAILED
        )
        for i in range(1, 11)
    }
    results["db1"] = HostResult("db1", Status.UNREACHABLE, error="refused")
    lines = summary_lines(results, 1.5)
    assert lines[0] == "11 hosts in 1.50s: 6 ok, 4 command failed, 1 unreachable"
    assert "  command failed    web[03,07-09]" in lines
    assert "  unreachable       db1" in lines


def test_gathered_folds_identical_outputs() -> None:
    results = {n: HostResult(n, Status.OK, stdout=b"same\n") for n in ("a1", "a2", "a3")}
    results["b1"] = HostResult("b1", Status.OK, stdout=b"other\n")
    assert gathered(results) == [("a[1-3]", b"same\n"), ("b1", b"other\n")]


def test_json_keeps_non_utf8_bytes() -> None:
    record = json.loads(result_line(HostResult("h", Status.OK, 0, stdout=b"\xff\x00")))
    assert record["stdout"] is None and record["stdout_base64"] == "/wA="
    assert record["status"] == "ok" and record["exit_status"] == 0


def test_transfer_progress_line_and_completions() -> None:
    out, err = io.StringIO(), io.StringIO()
    progress = TransferProgress(out, err, hosts=2, width=3, live=True)
    progress(Started("h1"))
    progress(Started("h2"))
    progress(Progress("h1", 512 * 1024, 1024 * 1024))
    progress(Progress("h2", 1024 * 1024, 1024 * 1024))
    assert "[0/2 hosts]" in progress.line() and "/ 2.0 MiB" in progress.line()
    progress(
        Finished(
            HostResult(
                "h2", Status.OK, files=1, bytes_transferred=1024 * 1024, started=0.0, ended=0.5
            )
        )
    )
    assert "h2  ✓ 1 file(s), 1.0 MiB in 0.50s (2.0 MiB/s)" in out.getvalue()
    assert "[1/2 hosts] 1.5 MiB / 2.0 MiB" in err.getvalue()  # redrawn status line
    quiet = TransferProgress(io.StringIO(), err2 := io.StringIO(), hosts=1, width=2, live=False)
    quiet(Progress("h1", 1, 2))
    assert err2.getvalue() == ""  # no status line when not on a terminal
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(10) == "10 B"


def test_event_records_carry_a_version_and_keep_bytes() -> None:
    started = event_record(Started("h1", at=12.5))
    assert started == {"version": EVENTS_VERSION, "event": "started", "host": "h1", "at": 12.5}
    text = event_record(OutputChunk("h1", "stderr", b"warn\n"))
    assert (text["event"], text["data"]) == ("stderr", "warn\n")
    binary = event_record(OutputChunk("h1", "stdout", b"\xff\x00"))
    assert binary["data"] is None and binary["data_base64"] == "/wA="
    progress = event_record(Progress("h1", 5, 10))
    assert (progress["event"], progress["done"], progress["total"]) == ("progress", 5, 10)
    finished = event_record(Finished(HostResult("h1", Status.TIMEOUT, error="timed out")))
    assert (finished["event"], finished["status"], finished["error"]) == (
        "finished",
        "timeout",
        "timed out",
    )


def test_summary_record_counts_every_status_and_folds_hosts() -> None:
    results = {f"web{i}": HostResult(f"web{i}", Status.OK) for i in range(1, 4)}
    results["db1"] = HostResult("db1", Status.UNREACHABLE)
    summary = json.loads(summary_line(results, 2.0, 3, None))
    assert summary["counts"]["ok"] == 3 and summary["counts"]["error"] == 0
    assert summary["host_ranges"] == {"ok": "web[1-3]", "unreachable": "db1"}
    assert (summary["hosts"], summary["exit_code"], summary["run_id"]) == (4, 3, None)


def test_bad_mask_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"bad --mask '\(unclosed'"):
        compile_masks(["(unclosed"])


def test_output_files_keep_hostile_names_inside_and_drop_unfinished(tmp_path: Path) -> None:
    root = tmp_path
    files = OutputFiles(root / "out", root / "err")
    for name in ("..", "../up", "/abs", "ok"):
        files(OutputChunk(name, "stdout", b"data-" + name.encode()))
    files(OutputChunk("late", "stderr", b"partial"))
    assert not any((root / "out").glob("[!.]*"))  # nothing final before Finished
    for name in ("..", "../up", "/abs", "ok"):
        files(Finished(HostResult(name, Status.OK)))
        assert files.path_for(name).read_bytes() == b"data-" + name.encode()
        assert files.path_for(name).parent == root / "out"
        assert files.path_for(name, "stderr").read_bytes() == b""
    files.close()  # "late" never finished: its temporary file goes
    assert not list((root / "err").glob(".*part")) and not (root / "up").exists()
