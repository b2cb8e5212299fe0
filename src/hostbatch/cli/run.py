"""``hostbatch run``: one command on many hosts, live (the seed's ``batch_run`` is in seed.py)."""

from __future__ import annotations

from typing import IO

import click

from hostbatch.cli.common import handle_errors
from hostbatch.cli.dryrun import dry_run_option, print_plan
from hostbatch.cli.execute import execute_command
from hostbatch.cli.options import (
    EngineOptions,
    JournalOptions,
    OutputOptions,
    PersistOptions,
    SelectionOptions,
    WorkflowOptions,
)
from hostbatch.errors import UsageError
from hostbatch.models import CommandSet


@click.command("run", context_settings={"allow_interspersed_args": False})
@SelectionOptions.options
@EngineOptions.options
@OutputOptions.options
@WorkflowOptions.options
@JournalOptions.options
@PersistOptions.options
@click.option(
    "-c",
    "--cmd",
    "cmd",
    multiple=True,
    help="A command (instead of arguments); repeat for several, each output kept apart.",
)
@click.option(
    "--config",
    "config",
    multiple=True,
    metavar="LINE",
    help="Devices: a configuration line sent in config mode (repeatable).",
)
@click.option(
    "--config-file",
    type=click.File("r"),
    default=None,
    help="Devices: configuration lines from a file.",
)
@click.option("--save", is_flag=True, help="Devices: write the configuration to startup.")
@click.option(
    "--parse",
    is_flag=True,
    help="Devices: TextFSM rows (ntc-templates) in the JSON output where a template exists.",
)
@dry_run_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def run_command(
    command: tuple[str, ...],
    dry_run: bool,
    cmd: tuple[str, ...],
    config: tuple[str, ...],
    config_file: IO[str] | None,
    save: bool,
    parse: bool,
    selection: SelectionOptions,
    engine: EngineOptions,
    output: OutputOptions,
    workflow: WorkflowOptions,
    journal: JournalOptions,
    persist: PersistOptions,
) -> None:
    """Run one command on every selected host in parallel, output streamed live.

    Each line is prefixed by its host ('|' stdout, '!' stderr); a summary follows on
    stderr. Exit code: 0 all ok, 1 some commands failed or timed out, or hosts were not
    started (--max-fail, --canary), 3 some hosts unreachable / auth failed / host key
    rejected, 2 bad usage or inventory.

    \b
    Examples:
      hostbatch run -g web_clusters -- df -h
      hostbatch run -h 'web[01-20]' -h '!web07' --timeout 30 -- systemctl is-active nginx
      hostbatch run -g db_servers --json -c 'uptime' | jq .stdout
      hostbatch run -g all -b -- cat /etc/os-release     (identical outputs folded)
      hostbatch run -g routers -c 'show version' -c 'show running-config' --json
      hostbatch run -g switches --config 'vlan 42' --config 'name lab' --save
      hostbatch run -g web --canary 1 --batch 25% --max-fail 2 -- systemctl restart app
      hostbatch run -g web --stdin ./app.conf -- 'cat > /tmp/app.conf'
      hostbatch run -g db --script ./check.sh -- --quick
      hostbatch run -g web --env RELEASE=42 -- 'echo $RELEASE'
      hostbatch run -g web --sudo --ask-become-pass -- systemctl reload nginx
      hostbatch run --rerun last:failed -- systemctl restart nginx
      hostbatch run -h '@run:41:unreachable,!web07' -- uptime
      hostbatch run -g web -B --mask '\\d+' -- 'pgrep -a nginx'   (pids folded)
      hostbatch run -g web --outdir out/ --errdir err/ -- dmesg
      hostbatch run -h deploy@10.0.0.5:2222 --dry-run -- uptime   (the plan only)
      hostbatch run -g web --events -- uptime | jq -c 'select(.event=="summary")'
      hostbatch run -g web --persist -- uptime      (the next run on web logs in no more)

    Every run is recorded in the run journal ('hostbatch history', 'hostbatch show
    last'); --no-journal leaves this one out.
    """
    if cmd and command:
        raise UsageError("give the command either with -c or as arguments, not both")
    if workflow.script is not None and (cmd or config or config_file or save or parse):
        raise UsageError("--script takes its arguments after --, not -c or device options")
    operation: str | CommandSet = " ".join(command)  # --script: the script's arguments
    if workflow.script is None:
        commands = cmd or ((" ".join(command),) if command else ())
        lines = list(config)
        if config_file is not None:
            lines += [line.rstrip("\n") for line in config_file if line.strip()]
        operation = _operation(commands, tuple(lines), save, parse)
    if dry_run:
        print_plan(
            selection, operation, engine, as_json=output.as_json, workflow=workflow, journal=journal
        )
    execute_command(selection, operation, engine, output, journal, workflow, persist)


def _operation(
    commands: tuple[str, ...], config: tuple[str, ...], save: bool, parse: bool
) -> str | CommandSet:
    if len(commands) == 1 and not (config or save or parse):
        return commands[0]
    if not commands and not config and not save:
        raise UsageError("no command given (hostbatch run -g web -- uptime)")
    return CommandSet(commands, config, save=save, parse=parse)
