"""The ``hostbatch`` command."""

from __future__ import annotations

import click

from hostbatch import __version__
from hostbatch.cli.agent import agent_command
from hostbatch.cli.common import CONTEXT_SETTINGS, run_main
from hostbatch.cli.completion import completion_command
from hostbatch.cli.demo import demo_command
from hostbatch.cli.help_topics import epilog, help_command
from hostbatch.cli.history import history_command, show_command
from hostbatch.cli.hosts import hosts_command
from hostbatch.cli.options import LogOptions
from hostbatch.cli.ping import ping_command
from hostbatch.cli.run import run_command
from hostbatch.cli.shell import shell_command
from hostbatch.cli.transfer import get_command, put_command

EPILOG = (
    epilog()
    + """

\b
Run journal (every run, put, get and shell line; --no-journal to skip one):
  hostbatch history          recent runs;  hostbatch show last: one run, host by host
  hostbatch run --rerun last:failed -- CMD      again on the hosts that failed
  $HOSTBATCH_JOURNAL or --journal PATH          another journal file

\b
Diagnostics on stderr (secrets masked):
  hostbatch -v run ...       info;  -vv or --debug: debug, SSH libraries included
  HOSTBATCH_LOG=debug|info|warning   the same without flags

\b
More: hostbatch help [inventory|patterns|exit-codes|color]
"""
)


@click.group(context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.version_option(__version__, prog_name="hostbatch")
@LogOptions.options
def cli(log: LogOptions) -> None:
    """Run commands and move files on many hosts and network devices at once over SSH."""
    log.configure()


cli.add_command(hosts_command)
cli.add_command(run_command)
cli.add_command(put_command)
cli.add_command(get_command)
cli.add_command(ping_command)
cli.add_command(shell_command)
cli.add_command(demo_command)
cli.add_command(history_command)
cli.add_command(show_command)
cli.add_command(completion_command)
cli.add_command(help_command)
cli.add_command(agent_command)


def main() -> None:
    run_main(cli, "hostbatch")
