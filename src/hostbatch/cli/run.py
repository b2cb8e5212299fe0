"""``hostbatch run`` (and the seed's ``batch_run``): one command on many hosts, live."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from hostbatch.api import RunOptions, make_plan, run_plan
from hostbatch.cli.common import (
    EXIT_INTERRUPTED,
    Selection,
    exit_code_for,
    handle_errors,
    load_selection,
    pop_selection,
    selection_options,
)
from hostbatch.engine.limits import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FANOUT,
    DEFAULT_OUTPUT_LIMIT,
    SESSIONS_PER_WORKER_BLOCKING,
    Limits,
)
from hostbatch.errors import UsageError
from hostbatch.models import CommandSet, Event, Finished, Host, HostResult
from hostbatch.output.gather import gathered, summary_lines
from hostbatch.output.jsonl import result_line
from hostbatch.output.live import LiveRenderer, display
from hostbatch.transport.base import DEFAULT_KNOWN_HOSTS, ConnectOptions
from hostbatch.transport.registry import DEFAULT, NAMES


def engine_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that connects to hosts."""
    options = [
        click.option(
            "--transport",
            type=click.Choice(NAMES),
            default=DEFAULT,
            show_default=True,
            help="Transport for hosts that do not set their own.",
        ),
        click.option(
            "-f",
            "--fanout",
            type=click.IntRange(min=1),
            default=None,
            help=f"Hosts handled at once, across all workers [default: {DEFAULT_FANOUT}; "
            f"network devices: {SESSIONS_PER_WORKER_BLOCKING} per worker process, and a "
            "larger --fanout adds workers].",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Per-host command timeout in seconds; the remote process is "
            "terminated. Default: none.",
        ),
        click.option(
            "--connect-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_CONNECT_TIMEOUT,
            show_default=True,
            help="Seconds to connect, get the banner and log in.",
        ),
        click.option(
            "--retries",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Retry refused/unreachable connections, with backoff.",
        ),
        click.option(
            "--host-keys",
            type=click.Choice(["strict", "accept-new", "off"]),
            default="strict",
            show_default=True,
            help="strict: only keys in known_hosts; accept-new: record unknown keys; "
            "off: no checking (warned).",
        ),
        click.option(
            "--known-hosts",
            default=DEFAULT_KNOWN_HOSTS,
            show_default=True,
            metavar="PATH",
            help="known_hosts file to check and record keys in.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            help="Worker processes. Default: 1 for small runs, else one per core.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_options(params: dict[str, Any], *, command_timeout: float | None) -> RunOptions:
    if params["host_keys"] == "off":
        click.echo("hostbatch: warning: host key checking is OFF (--host-keys off)", err=True)
    limits = Limits(
        fanout=params["fanout"],
        command_timeout=command_timeout,
        output_limit=params.get("output_limit", DEFAULT_OUTPUT_LIMIT),
        connect_retries=params["retries"],
        workers=params["workers"],
    )
    connect = ConnectOptions(
        connect_timeout=params["connect_timeout"],
        host_keys=params["host_keys"],
        known_hosts=params["known_hosts"],
    )
    return RunOptions(limits, connect, params["transport"])


def _sinks(
    hosts: list[Host], *, as_json: bool, gather: bool, color: bool
) -> Callable[[Event], None]:
    if as_json:

        def json_sink(event: Event) -> None:
            if isinstance(event, Finished):
                sys.stdout.write(result_line(event.result) + "\n")
                sys.stdout.flush()

        return json_sink
    width = max(len(h.name) for h in hosts)
    return LiveRenderer(sys.stdout, sys.stderr, width=width, color=color, quiet=gather)


def print_gathered(results: dict[str, HostResult]) -> None:
    for hosts, output in gathered(results):
        click.echo(f"---------------- {hosts}")
        click.echo(display(output).rstrip("\n"))


def execute_command(
    selection: Selection, command: str | CommandSet, params: dict[str, Any]
) -> None:
    """Shared body of ``hostbatch run`` and ``batch_run``; exits with the run's code."""
    if isinstance(command, str) and not command.strip():
        raise UsageError("no command given (hostbatch run -g web -- uptime)")
    _, hosts = load_selection(selection)
    plan = make_plan(command, hosts, build_options(params, command_timeout=params["timeout"]))
    color = params["color"] if params["color"] is not None else sys.stdout.isatty()
    sink = _sinks(hosts, as_json=params["as_json"], gather=params["gather"], color=color)
    began = time.monotonic()
    try:
        results = asyncio.run(run_plan(plan, sink))
    except KeyboardInterrupt:
        click.echo("hostbatch: interrupted; connections closed", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    if params["gather"] and not params["as_json"]:
        print_gathered(results)
    for line in summary_lines(results, time.monotonic() - began):
        click.echo(line, err=True)
    raise SystemExit(exit_code_for(results))


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="One JSON object per host as it finishes (stdout/stderr, exit_status, "
            "error); non-UTF-8 output as *_base64.",
        ),
        click.option(
            "-b",
            "--gather",
            is_flag=True,
            help="No live lines: print each distinct output once with its hosts folded.",
        ),
        click.option("--color/--no-color", default=None, help="Default: colour on a terminal."),
        click.option(
            "--output-limit",
            type=click.IntRange(min=0),
            default=DEFAULT_OUTPUT_LIMIT,
            show_default=True,
            help="Bytes of stdout and of stderr kept per host "
            "(the tail); live output is never cut.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("run", context_settings={"allow_interspersed_args": False})
@selection_options
@engine_options
@output_options
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
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def run_command(command: tuple[str, ...], cmd: tuple[str, ...], **params: Any) -> None:
    """Run one command on every selected host in parallel, output streamed live.

    Each line is prefixed by its host ('|' stdout, '!' stderr); a summary follows on
    stderr. Exit code: 0 all ok, 1 some commands failed or timed out, 3 some hosts
    unreachable / auth failed / host key rejected, 2 bad usage or inventory.

    \b
    Examples:
      hostbatch run -g web_clusters -- df -h
      hostbatch run -h 'web[01-20]' -h '!web07' --timeout 30 -- systemctl is-active nginx
      hostbatch run -g db_servers --json -c 'uptime' | jq .stdout
      hostbatch run -g all -b -- cat /etc/os-release     (identical outputs folded)
      hostbatch run -g routers -c 'show version' -c 'show running-config' --json
      hostbatch run -g switches --config 'vlan 42' --config 'name lab' --save
    """
    if cmd and command:
        raise click.UsageError("give the command either with -c or as arguments, not both")
    execute_command(pop_selection(params), _operation(command, cmd, params), params)


def _operation(
    args: tuple[str, ...], cmds: tuple[str, ...], params: dict[str, Any]
) -> str | CommandSet:
    commands = cmds or ((" ".join(args),) if args else ())
    config = list(params.pop("config"))
    config_file = params.pop("config_file")
    if config_file is not None:
        config += [line.rstrip("\n") for line in config_file if line.strip()]
    save, parse = params.pop("save"), params.pop("parse")
    if len(commands) == 1 and not (config or save or parse):
        return commands[0]
    if not commands and not config and not save:
        raise UsageError("no command given (hostbatch run -g web -- uptime)")
    return CommandSet(tuple(commands), tuple(config), save=save, parse=parse)
