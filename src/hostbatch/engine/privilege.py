"""``--sudo``: a command run through ``sudo -S``, its password written on stdin only.

The command line becomes::

    sudo -S -p '[hostbatch-sudo-TOKEN]' [-u USER] -- /bin/sh -c \
        'printf "%s\\n" "[hostbatch-sudo-ready-TOKEN]" >&2; eval "$1"' sh 'COMMAND'

TOKEN is random per host and run. stderr is watched until the ready marker:

* the prompt marker (stripped from stderr) asks for the password: it is written on the
  command's stdin once; a second prompt means it was wrong, so stdin is closed (sudo gets
  EOF and gives up) and the host fails with ``sudo failed: incorrect password``. With no
  password at hand, stdin is closed at the first prompt (``a password is required``).
* the ready marker (stripped) says sudo let the command start: only then is ``--stdin``
  streamed (or EOF sent), so a password sudo did not ask for (NOPASSWD, a cached
  ticket) never reaches the command.

The password is never on a command line, never in output, errors or logs.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
from collections.abc import AsyncIterator

from hostbatch.models import Secret, Stream
from hostbatch.transport.base import OutputSink, StdinSource

INCORRECT = "sudo failed: incorrect password"
MISSING = (
    "sudo failed: a password is required (--ask-become-pass, become_password_env in the "
    "inventory, or HOSTBATCH_BECOME_PASSWORD)"
)


class SudoSession:
    """One host's sudo exchange: wraps the command line, filters stderr, feeds stdin."""

    def __init__(
        self, password: Secret | None, output: OutputSink, source: StdinSource | None
    ) -> None:
        token = secrets.token_hex(8)
        self.prompt = f"[hostbatch-sudo-{token}]".encode()
        self.ready = f"[hostbatch-sudo-ready-{token}]".encode()
        self.failure: str | None = None
        self._password = password
        self._output = output
        self._source = source
        self._pending = bytearray()  # stderr not yet passed on (before the ready marker)
        self._prompts = 0
        self._started = False
        self._steps: asyncio.Queue[str] = asyncio.Queue()  # "password" | "ready" | "eof"

    def wrap(self, line: str, user: str | None) -> str:
        """*line* run by sh under sudo, the ready marker printed first."""
        as_user = f"-u {shlex.quote(user)} " if user else ""
        shell = f'printf "%s\\n" {shlex.quote(self.ready.decode())} >&2; eval "$1"'
        return (
            f"sudo -S -p {shlex.quote(self.prompt.decode())} {as_user}-- "
            f"/bin/sh -c {shlex.quote(shell)} sh {shlex.quote(line)}"
        )

    def output(self, stream: Stream, data: bytes) -> None:
        """The transport's output sink: stdout as is; stderr watched until ready."""
        if stream == "stdout" or self._started:
            self._output(stream, data)
            return
        self._pending += data
        self._scan()

    def flush(self) -> None:
        """Pass on what stderr still holds (the command ended before ready)."""
        if self._pending:
            self._output("stderr", bytes(self._pending))
            self._pending.clear()

    async def stdin(self) -> AsyncIterator[bytes]:
        """The password when asked; after ready, the --stdin source; then EOF."""
        while (step := await self._steps.get()) == "password":
            assert self._password is not None
            yield self._password.reveal().encode() + b"\n"
        if step == "ready" and self._source is not None:
            async for chunk in self._source:
                yield chunk

    def _scan(self) -> None:
        while True:
            prompt_at = self._pending.find(self.prompt)
            ready_at = self._pending.find(self.ready + b"\n")
            if prompt_at >= 0 and (ready_at < 0 or prompt_at < ready_at):
                self._pass_on(prompt_at, len(self.prompt))
                self._prompted()
                continue
            if ready_at >= 0:
                self._pass_on(ready_at, len(self.ready) + 1)
                self._started = True
                self._steps.put_nowait("ready")
                self.flush()
                return
            break
        last_newline = self._pending.rfind(b"\n")  # a marker may still be arriving after it
        if last_newline >= 0:
            self._pass_on(last_newline + 1, 0)

    def _pass_on(self, end: int, skip: int) -> None:
        """Hand stderr up to *end* on, then drop *skip* bytes (a marker)."""
        if end:
            self._output("stderr", bytes(self._pending[:end]))
        del self._pending[: end + skip]

    def _prompted(self) -> None:
        self._prompts += 1
        if self._prompts == 1 and self._password is not None:
            self._steps.put_nowait("password")
            return
        self.failure = INCORRECT if self._prompts > 1 else MISSING
        self._steps.put_nowait("eof")
