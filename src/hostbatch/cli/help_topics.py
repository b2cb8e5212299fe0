"""``hostbatch help [TOPIC]``: short pages on inventory, patterns, exit codes and colour.

All the text lives here. The exit codes are also the top-level ``--help`` epilog, and a
test checks them and the selection terms against the README, so the three never disagree.
"""

from __future__ import annotations

import difflib

import click

from hostbatch.cli.common import CONTEXT_SETTINGS, handle_errors
from hostbatch.errors import UsageError

# (code, meaning): the README's "Exit codes" table has exactly these rows.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "every host ok"),
    (
        1,
        "all hosts reached; some commands exited non-zero, timed out, lost their "
        "connection mid-command or failed; or the run stopped early (--max-fail, a failed "
        "--canary) and some hosts were not started; or (`--engine dask`) a worker or the "
        "scheduler was lost mid-run: the hosts without a result are errors",
    ),
    (2, "bad usage or inventory (nothing was run)"),
    (
        3,
        "some hosts could not be reached, authenticated, or had a rejected host key; or "
        "(`--engine dask`) the scheduler could not be reached or had no workers, and "
        "nothing was run",
    ),
    (129, "hung up (SIGHUP); remote commands stopped, connections closed"),
    (130, "interrupted (Ctrl-C); remote commands stopped, connections closed"),
    (141, "stdout was closed by its reader (| head); the run is stopped quietly"),
    (143, "terminated (SIGTERM); remote commands stopped, connections closed"),
)

# (term, meaning): the README's "Selecting hosts" table has these terms.
SELECTION_TERMS: tuple[tuple[str, str], ...] = (
    ("web01", "a host of the inventory"),
    ("web[01-20], sw[1-4]p[1,3]", "ranges (zero padding kept)"),
    ("@db_servers", "a group (in -h); -g db_servers is the same"),
    ("!web07, !@db", "remove from what came before (alone: everything but)"),
    ("all", "every host"),
    ("web*", "glob over host names"),
    ("deploy@10.0.0.5:2222", "an ad-hoc host: no inventory needed (see below)"),
)


def _table(rows: tuple[tuple[object, str], ...]) -> str:
    width = max(len(str(key)) for key, _ in rows)
    return "\n".join(f"  {str(key).ljust(width)}  {text}" for key, text in rows)


EXIT_CODES_TEXT = f"""Exit codes of run, put, get, ping, demo and the seed's batch_run / batch_scp:

{_table(EXIT_CODES)}

ping: 0 when every host is usable (--icmp: replies), 3 if any is not.
--dry-run exits 0 after printing the plan; nothing is connected.
"""

PATTERNS_TEXT = f"""Selecting hosts: -h LIST, -g LIST, --hostfile FILE, and (hosts, ping) arguments.

Lists are comma-separated and may repeat; the result is the union, each host once, in
the order given. Terms apply left to right: -h terms, then -g groups, then arguments.

{_table(SELECTION_TERMS)}

An unknown host or group is an error naming it and the closest names; a selection that
matches nothing is an error (exit 2).

Ad-hoc hosts ([user@]host[:port], pssh -H style). A term that is an inventory host's name
is always that host. Otherwise a term is an ad-hoc host when it contains '@', ends in
':PORT', is an IP address (10.0.0.5, ::1, [::1]:22), or is a dotted name
(db.example.com) without glob or range characters. Any other bare word must be an
inventory name, so a typo (web0l) is still "unknown host 'web0l'; did you mean ...".
A selection of ad-hoc hosts only needs no inventory at all. Ad-hoc hosts take user, port,
key and jump host from ~/.ssh/config (--ssh-config), then the defaults (port 22, your
user name, ssh-agent and default keys), and are named as written.

Host files (--hostfile FILE, repeatable; -h - reads one from standard input): one host per
line as [user@]host[:port]; '#' starts a comment; blank lines are skipped. A line naming
an inventory host is that host. A bad line is an error naming FILE:LINE (exit 2).

Examples:
  hostbatch run -h deploy@10.0.0.5:2222,10.0.0.6 -- uptime
  hostbatch run --hostfile hosts.txt -g web -- uptime
  grep -v '^#' fleet.txt | hostbatch ping --icmp -h -
"""

INVENTORY_TEXT = """Inventory: where hosts, groups and credentials come from.

Found at: --inventory PATH (repeatable), else $HOSTBATCH_INVENTORY (':'-separated), else
the first of ./inventory, ./inventory.ini, ./inventory.yaml, ./inventory.yml, then the
same names under ~/.config/hostbatch/. Not needed for ad-hoc hosts (hostbatch help
patterns).

Forms:
  folder      one <group>.ini per group (the seed's form): one section per host,
              [DEFAULT] for every host of that file; *.yaml files in it are read too
  one .ini    host sections list their groups (groups = web, frontend); [group:NAME]
              sections carry values shared by the group; [DEFAULT] applies to all
  .yaml       netmiko-style lists (each top-level key a group), or structured:
              defaults:, groups: {web: {port: 2222, hosts: [web01]}}, hosts: {...}
  ssh config  --inventory ~/.ssh/config: every Host alias without wildcards is a host
              of group ssh_config

Keys: hostname (ip, host), port, username (user), password, password_env, key_file
(identity_file), passphrase, passphrase_env, transport (asyncssh, paramiko, netmiko),
device_type (e.g. cisco_ios), secret / secret_env (enable secret), proxy_jump,
become_password_env (sudo's password for run --sudo).
An unknown key is a warning naming the file and line.

Precedence (highest first): the host's own values; its groups' values in the order it
lists them; the file's defaults; ~/.ssh/config for its hostname (--ssh-config PATH, ''
to ignore); built-ins (port 22, your user name, ssh-agent and default keys).

Secrets: prefer password_env = VAR or --ask-pass over password. They are never printed:
tables, JSON and --dry-run show ******** and where each came from.

Bad input (syntax, no hostname, bad port, conflicting duplicates, unset password_env):
one line naming the file and line, exit 2, no traceback.
"""

COLOR_TEXT = """Colour (run's live lines, put/get progress, ping):

  --color always | never      decides (--color alone: always; --no-color: never)
  --color auto (the default)  NO_COLOR set and non-empty: plain; else FORCE_COLOR set and
                              not 0: colour, even through a pipe; else colour on a terminal
"""

TOPICS: dict[str, tuple[str, str]] = {
    "inventory": ("where hosts come from: forms, keys, precedence, secrets", INVENTORY_TEXT),
    "patterns": ("selecting hosts: ranges, groups, ad-hoc addresses, host files", PATTERNS_TEXT),
    "exit-codes": ("what each exit code means", EXIT_CODES_TEXT),
    "color": ("--color, NO_COLOR, FORCE_COLOR", COLOR_TEXT),
}
ALIASES = {"exit": "exit-codes", "exitcodes": "exit-codes", "colour": "color", "hosts": "patterns"}


def epilog() -> str:
    """The exit codes for the top-level ``--help``."""
    return "\b\nExit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES)


def topic_list() -> str:
    width = max(len(name) for name in TOPICS)
    lines = [f"  {name.ljust(width)}  {summary}" for name, (summary, _) in TOPICS.items()]
    return (
        "Help topics (hostbatch help TOPIC):\n"
        + "\n".join(lines)
        + ("\n\nEvery command also has --help: hostbatch run --help")
    )


@click.command("help", context_settings=CONTEXT_SETTINGS)
@click.argument("topic", required=False)
@click.pass_context
@handle_errors
def help_command(ctx: click.Context, topic: str | None) -> None:
    """Help pages: inventory, patterns, exit-codes, color; or a command's --help.

    \b
    Examples:
      hostbatch help                 the list of topics
      hostbatch help patterns        ranges, groups, ad-hoc hosts, host files
      hostbatch help run             the same as hostbatch run --help
    """
    if topic is None:
        click.echo(topic_list())
        return
    name = ALIASES.get(topic.lower(), topic.lower())
    if name in TOPICS:
        click.echo(TOPICS[name][1].rstrip("\n"))
        return
    group = ctx.find_root().command
    if isinstance(group, click.Group) and (command := group.get_command(ctx, topic)):
        with click.Context(command, info_name=topic, parent=ctx.find_root()) as sub:
            click.echo(command.get_help(sub))
        return
    close = difflib.get_close_matches(name, list(TOPICS), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f" (topics: {', '.join(TOPICS)})"
    raise UsageError(f"no help topic '{topic}'{hint}")
