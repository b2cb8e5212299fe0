"""The CLI imports a subcommand's module only when that subcommand is used."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from hostbatch.cli.app import COMMANDS, cli

PROBE = """
import sys
from click.testing import CliRunner
from hostbatch.cli.app import cli
result = CliRunner().invoke(cli, sys.argv[1:])
assert result.exit_code == 0, result.output
print(" ".join(sorted(m for m in sys.modules if m.startswith("hostbatch.cli."))))
"""


def _loaded(*argv: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def test_run_loads_neither_shell_demo_nor_journal_browser() -> None:
    loaded = _loaded("run", "--help")
    assert "hostbatch.cli.run" in loaded
    assert not loaded & {"hostbatch.cli.shell", "hostbatch.cli.demo", "hostbatch.cli.history"}


def test_every_command_resolves_under_its_own_name() -> None:
    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert command is not None and command.name == name
    assert cli.get_command(context, "nosuch") is None


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.splitlines() if line.startswith("  ")}
    assert set(COMMANDS) <= listed
