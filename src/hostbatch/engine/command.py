"""One host's Command: stdin from a local file, exported variables, an uploaded script,
sudo. The same for every transport: only ``Transport.run`` (with its stdin source),
``put`` and ``remove`` are used.

* ``--stdin``: the local file is read in chunks for each host as its channel takes them
  (never whole into memory).
* ``--env``: ``export NAME='VALUE';`` before the command, for the remote POSIX shell (no
  AcceptEnv needed). Values never appear in errors or logs.
* ``--script``: ``mktemp -d`` (mode 0700) under ``$TMPDIR`` or /tmp, the script put there
  with mode 0700 and run by its path (its shebang decides), the directory removed in a
  ``finally`` that a timeout or Ctrl-C cannot skip (shielded, bounded).
* ``--sudo``: see :mod:`hostbatch.engine.privilege`.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import re
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from hostbatch.engine.privilege import SudoSession
from hostbatch.errors import HostbatchError, RemoteFileError, UsageError
from hostbatch.logs import logger, register_secret
from hostbatch.models import Command, Host, Stream
from hostbatch.transport.base import OutputSink, StdinSource, Transport

STDIN_CHUNK = 65536
CLEANUP_TIMEOUT = 10.0  # seconds to remove a script's directory after the command
MASKED_ENV_LENGTH = 3
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MKTEMP = 'mktemp -d "${TMPDIR:-/tmp}/hostbatch.XXXXXXXXXX"'


def check_env_name(name: str) -> None:
    """A variable name the shell can export; else UsageError (exit 2)."""
    if not ENV_NAME.fullmatch(name):
        raise UsageError(f"bad --env name {name!r}: letters, digits and _ only, not first a digit")


def exports(env: tuple[tuple[str, str], ...]) -> str:
    """``export A='1' B='x y';`` (empty without variables). The values, as given and as
    quoted, are masked in log records (an SSH library may log the command line); values
    shorter than ``MASKED_ENV_LENGTH`` are not (masking every "1" would garble the logs)."""
    for name, value in env:
        check_env_name(name)
        if len(value) >= MASKED_ENV_LENGTH:
            register_secret(value)
            register_secret(shlex.quote(value))
    if not env:
        return ""
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in env) + "; "


async def file_chunks(path: str) -> AsyncIterator[bytes]:
    """The local file *path*, chunk by chunk (each host reads it on its own)."""
    with open(path, "rb") as handle:
        while chunk := handle.read(STDIN_CHUNK):
            yield chunk


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    error: str | None = None  # e.g. "sudo failed: incorrect password"


async def run_command(
    transport: Transport,
    host: Host,
    command: Command,
    output: OutputSink,
    timeout: float | None,
) -> CommandResult:
    """Run *command* on *host* (script uploaded and removed around it when there is one)."""
    if command.script is None:
        line = exports(command.env) + command.text
        return await _run(
            transport, host, command=command, line=line, output=output, timeout=timeout
        )
    directory = await _private_dir(transport, host)
    try:
        remote = posixpath.join(directory, posixpath.basename(command.script) or "script")
        await _upload(transport, host, command, remote)
        line = f"{exports(command.env)}{shlex.quote(remote)} {command.text}".rstrip()
        return await _run(
            transport, host, command=command, line=line, output=output, timeout=timeout
        )
    finally:
        await asyncio.shield(_remove_dir(transport, host, directory))


async def _run(
    transport: Transport,
    host: Host,
    *,
    command: Command,
    line: str,
    output: OutputSink,
    timeout: float | None,
) -> CommandResult:
    stdin: StdinSource | None = None if command.stdin is None else file_chunks(command.stdin)
    if command.sudo is None:
        if stdin is None:
            return CommandResult(await transport.run(line, output, timeout))
        return CommandResult(await transport.run(line, output, timeout, stdin=stdin))
    password = host.credentials.become_password or command.sudo.password
    session = SudoSession(password, output, stdin)
    wrapped = session.wrap(line, command.sudo.user)
    exit_status = await transport.run(wrapped, session.output, timeout, stdin=session.stdin())
    session.flush()
    return CommandResult(exit_status, session.failure)


async def _quiet(transport: Transport, line: str, timeout: float) -> tuple[int, bytes]:
    captured = bytearray()

    def keep(stream: Stream, data: bytes) -> None:
        captured.extend(data)

    status = await transport.run(line, keep, timeout)
    return status, bytes(captured)


async def _private_dir(transport: Transport, host: Host) -> str:
    status, printed = await _quiet(transport, MKTEMP, CLEANUP_TIMEOUT)
    directory = printed.decode("utf-8", errors="replace").strip()
    if status != 0 or not directory.startswith("/"):
        raise RemoteFileError(f"--script: mktemp -d failed (exit status {status})", host=host.name)
    return directory


async def _upload(transport: Transport, host: Host, command: Command, remote: str) -> None:
    assert command.script is not None
    await transport.put(Path(command.script), remote, lambda done, total: None)
    # the target user of sudo -u must be able to run it; everyone else cannot list the dir
    other = command.sudo is not None and command.sudo.user not in (None, "root")
    mode, dir_mode = ("755", "711") if other else ("700", "700")
    directory = posixpath.dirname(remote)
    line = f"chmod {mode} {shlex.quote(remote)} && chmod {dir_mode} {shlex.quote(directory)}"
    status, _ = await _quiet(transport, line, CLEANUP_TIMEOUT)
    if status != 0:
        raise RemoteFileError(f"--script: chmod failed (exit status {status})", host=host.name)


async def _remove_dir(transport: Transport, host: Host, directory: str) -> None:
    """Remove the script's directory; never raises (a failure is logged)."""
    with contextlib.suppress(HostbatchError, TimeoutError, OSError):
        status, _ = await asyncio.wait_for(
            _quiet(transport, f"rm -rf {shlex.quote(directory)}", CLEANUP_TIMEOUT),
            CLEANUP_TIMEOUT,
        )
        if status == 0:
            return
    logger.warning("%s: could not remove the script directory %s", host.name, directory)
