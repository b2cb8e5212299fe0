"""The ``hostbatch`` command."""

from __future__ import annotations

import importlib

import click

from hostbatch import __version__
from hostbatch.cli.common import CONTEXT_SETTINGS, run_main
from hostbatch.cli.help_topics import epilog
from hostbatch.cli.options import LogOptions

# Each subcommand's module is imported only when that subcommand is used (or listed, as
# --help and completion do): `hostbatch run` then loads neither the shell nor the demo,
# the journal browser nor the agent's client, which is start-up time of every cold run.
COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("hostbatch.cli.agent", "agent_command"),
    "completion": ("hostbatch.cli.completion", "completion_command"),
    "demo": ("hostbatch.cli.demo", "demo_command"),
    "get": ("hostbatch.cli.transfer", "get_command"),
    "help": ("hostbatch.cli.help_topics", "help_command"),
    "history": ("hostbatch.cli.history", "history_command"),
    "hosts": ("hostbatch.cli.hosts", "hosts_command"),
    "ping": ("hostbatch.cli.ping", "ping_command"),
    "put": ("hostbatch.cli.transfer", "put_command"),
    "run": ("hostbatch.cli.run", "run_command"),
    "shell": ("hostbatch.cli.shell", "shell_command"),
    "show": ("hostbatch.cli.history", "show_command"),
}


class LazyGroup(click.Group):
    """A group whose subcommands (:data:`COMMANDS`) are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}.{attribute} is not a click command")
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


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
  hostbatch --log-file run.log -vv run ...   to a file instead (workers too)

\b
More: hostbatch help [inventory|patterns|exit-codes|color]
"""
)


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.version_option(__version__, prog_name="hostbatch")
@LogOptions.options
def cli(log: LogOptions) -> None:
    """Run commands and move files on many hosts and network devices at once over SSH."""
    log.configure()


def main() -> None:
    run_main(cli, "hostbatch")
