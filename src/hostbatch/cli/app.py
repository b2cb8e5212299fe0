"""The ``hostbatch`` command."""

from __future__ import annotations

import click

from hostbatch import __version__
from hostbatch.cli.agent import agent_command
from hostbatch.cli.common import CONTEXT_SETTINGS, run_main
from hostbatch.cli.demo import demo_command
from hostbatch.cli.history import history_command, show_command
from hostbatch.cli.hosts import hosts_command
from hostbatch.cli.options import LogOptions
from hostbatch.cli.ping import ping_command
from hostbatch.cli.run import run_command
from hostbatch.cli.shell import shell_command
from hostbatch.cli.transfer import get_command, put_command

EPILOG = """\b
Exit codes:
  0    every host ok
  1    some commands exited non-zero, timed out or failed (all hosts reached), or
       the run stopped early (--max-fail, a failed --canary): hosts 'not started'
  2    bad usage or inventory (nothing was run)
  3    some hosts could not be reached, authenticated or timed out
  129  hung up (SIGHUP); remote commands stopped, connections closed
  130  interrupted (Ctrl-C); remote commands stopped, connections closed
  141  stdout closed by its reader (| head); the run was stopped quietly
  143  terminated (SIGTERM); remote commands stopped, connections closed

\b
Diagnostics on stderr (secrets masked):
  hostbatch -v run ...       info;  -vv or --debug: debug, SSH libraries included
  HOSTBATCH_LOG=debug|info|warning   the same without flags
"""


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
cli.add_command(agent_command)


def main() -> None:
    run_main(cli, "hostbatch")
