"""The typed option groups: one object per group, defaults as on the command line."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from hostbatch.cli.options import (
    EngineOptions,
    LogOptions,
    OutputOptions,
    SelectionOptions,
    TransferOptions,
)

GROUPS = (SelectionOptions, EngineOptions, OutputOptions, TransferOptions, LogOptions)


def _probe() -> tuple[click.Command, dict[str, object]]:
    seen: dict[str, object] = {}

    @click.command()
    @SelectionOptions.options
    @EngineOptions.options
    @OutputOptions.options
    @TransferOptions.options
    @LogOptions.options
    def probe(**groups: object) -> None:
        seen.update(groups)

    return probe, seen


def test_defaults_of_the_dataclasses_are_the_command_line_defaults() -> None:
    probe, seen = _probe()
    result = CliRunner().invoke(probe, [])
    assert result.exit_code == 0, result.output
    assert seen == {group.keyword: group() for group in GROUPS}


def test_values_reach_their_typed_fields() -> None:
    probe, seen = _probe()
    argv = ["-h", "a,b", "-g", "web", "-f", "7", "--timeout", "2.5", "--json", "-r", "-vv"]
    result = CliRunner().invoke(probe, argv)
    assert result.exit_code == 0, result.output
    assert seen["selection"] == SelectionOptions(hosts=("a,b",), groups=("web",))
    assert seen["engine"] == EngineOptions(fanout=7, timeout=2.5)
    assert seen["output"] == OutputOptions(as_json=True)
    assert seen["copy"] == TransferOptions(recursive=True)
    assert seen["log"] == LogOptions(verbose=2)


def test_run_options_carry_every_engine_field() -> None:
    engine = EngineOptions(
        transport="paramiko", fanout=3, timeout=4.0, connect_timeout=5.0, retries=2, workers=2
    )
    options = engine.run_options(output_limit=99)
    assert options.transport == "paramiko"
    limits = options.limits
    assert (limits.fanout, limits.command_timeout) == (3, 4.0)
    assert (limits.connect_retries, limits.workers, limits.output_limit) == (2, 2, 99)
    assert options.connect.connect_timeout == 5.0


def test_click_usage_errors_are_one_line_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hostbatch", "run", "--fanout", "0", "--", "true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("hostbatch: error: Invalid value for '-f' / '--fanout'")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
