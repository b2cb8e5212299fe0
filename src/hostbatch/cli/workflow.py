"""``run``'s workflow options (:class:`~hostbatch.cli.options.WorkflowOptions`) turned into
the engine's data: rolling Limits, and a Command with stdin, variables, script and sudo.

Bad input (a bad count, ``--env`` without ``=`` or with a bad name, a missing script or
stdin file, these options with several commands) is a UsageError: one line, exit 2.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from hostbatch.api import RunOptions
from hostbatch.cli.common import ask_password
from hostbatch.cli.options import WorkflowOptions
from hostbatch.engine.command import check_env_name
from hostbatch.errors import UsageError
from hostbatch.models import Command, CommandSet, Secret, Sudo

BECOME_PASSWORD_ENV = "HOSTBATCH_BECOME_PASSWORD"
SPOOL_CHUNK = 65536


def rolling(workflow: WorkflowOptions, options: RunOptions) -> RunOptions:
    """*options* with --batch, --max-fail and --canary in its Limits (checked there)."""
    limits = replace(
        options.limits, batch=workflow.batch, max_fail=workflow.max_fail, canary=workflow.canary
    )
    return replace(options, limits=limits)


def parse_env(assignments: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals:
            raise UsageError(f"--env takes NAME=VALUE (got {name!r} without '=')")
        check_env_name(name)
        pairs.append((name, value))
    return tuple(pairs)


def _changes_command(workflow: WorkflowOptions) -> bool:
    return bool(
        workflow.stdin or workflow.script or workflow.env or workflow.sudo or workflow.sudo_user
    )


def _sudo(workflow: WorkflowOptions, prompt: Callable[[str], str]) -> Sudo | None:
    if not (workflow.sudo or workflow.sudo_user):
        return None
    password = None
    if workflow.ask_become_pass:
        password = Secret(prompt("sudo password: "), origin="--ask-become-pass")
    elif os.environ.get(BECOME_PASSWORD_ENV):
        password = Secret(os.environ[BECOME_PASSWORD_ENV], origin=f"${BECOME_PASSWORD_ENV}")
    return Sudo(user=workflow.sudo_user, password=password)


def _script(path: str | None) -> str | None:
    if path is None:
        return None
    if not Path(path).is_file() or not os.access(path, os.R_OK):
        raise UsageError(f"--script {path}: not a readable file")
    return str(Path(path).resolve())


@contextlib.contextmanager
def _stdin_file(spec: str | None) -> Iterator[str | None]:
    """A regular file every host can read on its own: FILE itself, or this process's
    stdin (``-``, a pipe, a FIFO) copied once in chunks to a private temporary file,
    removed afterwards."""
    if spec is None:
        yield None
        return
    if spec != "-":
        try:
            mode = os.stat(spec).st_mode
        except OSError as exc:
            raise UsageError(f"--stdin {spec}: {exc.strerror}") from None
        if stat.S_ISREG(mode):
            if not os.access(spec, os.R_OK):
                raise UsageError(f"--stdin {spec}: permission denied")
            yield spec
            return
    with contextlib.ExitStack() as stack:
        source = sys.stdin.buffer if spec == "-" else stack.enter_context(open(spec, "rb"))
        spool = stack.enter_context(tempfile.NamedTemporaryFile(prefix="hostbatch-stdin-"))
        shutil.copyfileobj(source, spool, SPOOL_CHUNK)
        spool.flush()
        yield spool.name


@contextlib.contextmanager
def applied(
    workflow: WorkflowOptions | None,
    command: str | CommandSet,
    options: RunOptions,
    *,
    prompt: Callable[[str], str] = ask_password,
) -> Iterator[tuple[str | Command | CommandSet, RunOptions]]:
    """The run's operation and options with the workflow applied (a spooled stdin file
    lives as long as the block)."""
    if workflow is None:
        yield command, options
        return
    options = rolling(workflow, options)
    if workflow.ask_become_pass and not (workflow.sudo or workflow.sudo_user):
        raise UsageError("--ask-become-pass needs --sudo or --sudo-user")
    if not _changes_command(workflow):
        yield command, options
        return
    if isinstance(command, CommandSet):
        raise UsageError("--stdin, --script, --env and --sudo take a single command")
    env = parse_env(workflow.env)
    script = _script(workflow.script)
    sudo = _sudo(workflow, prompt)
    with _stdin_file(workflow.stdin) as stdin:
        yield Command(command, stdin=stdin, env=env, script=script, sudo=sudo), options
