"""The agent's resident shell: plain commands on a warm connection without a session each.

A cold command is one SSH session: sshd forks, then execs ``$SHELL -c COMMAND``. For a warm
connection the agent keeps one long-lived session instead, the user's own login shell
started exactly as for a cold command (``$SHELL -c PROGRAM``, so the same environment
and start-up files) and reading one line per command from its stdin. Each command then
costs the server a fork, not a session and an exec.

Per command (PROGRAM below; ``hb_*`` are its variables, unset before the command runs):

1. ``( eval "set -n<newline>COMMAND" )``: the command is parsed, nothing runs. A syntax
   error answers ``P`` and the agent runs the command in a session of its own, so its
   message is byte for byte a cold run's. (Skipped for plain words such as ``uptime`` or
   ``df -h /``, which cannot be a syntax error: ``hb_v=1``.)
2. A subshell, stdin ``/dev/null``, runs the command at its top level, as ``sh -c`` does:
   the text is set as the subshell's USR1 trap and the subshell signals itself. (dash
   prefixes errors raised inside ``eval`` with ``eval:``; a trap runs outside any builtin,
   so ``sh: 1: foo: not found`` reads as cold; line numbers count from 1.) The trap resets
   USR1 and unsets ``hb_*`` first, and ends with ``exit $?``.
3. Processes the command left running in the shell's session (``sleep 9 &``) are looked
   for among the pids allocated meanwhile (``/proc/loadavg``'s last pid). With any left,
   the answer is ``L`` and the shell exits: the channel then ends when they close its
   stdout and stderr, as a cold session's does, and everything until then is the
   command's output.
4. Markers with a random per-command token: ``\\x1eTOKEN:STATUS:K|L|P\\n`` on stdout and
   ``\\x1eTOKEN\\n`` on stderr. Output before them (and, for ``L``, after) is the
   command's; it is passed on as it arrives.

A timeout or a cancel signals the session as a cold run does (TERM and KILL to the
shell's process group: the command's whole tree) and the shell is dropped; the next
command starts a new one. Output between commands (something the check in 3 missed)
drops the shell too.

**bash** (a login shell that is bash) cannot run a command inside its own process and
be a cold ``bash -c``: a subshell would differ in $$, $BASHPID, $BASH_SUBSHELL,
$BASH_COMMAND, $SECONDS, $PIPESTATUS, xtrace's PS4 depth, the exit status of fatal expansion
errors (``set -u``: 127 for ``bash -c``, 1 in a subshell), the exec of the last simple
command (it gives SHLVL-1 and no "Killed" notice), ``.bashrc``/``BASH_ENV`` being read
per command... So bash's PROGRAM (PROGRAM_BASH) keeps step 3 and 4 and replaces 1 and 2:
a subshell, stdin ``/dev/null``, execs ``$SHELL -c COMMAND`` with argv[0] as sshd gives
it (the shell's ``$0``) and the environment sshd gave the shell, so the command runs in a
``bash -c`` of its own started as sshd would start it; it reads its start-up files,
parses (syntax errors are its own) and execs its last command itself. The environment
is /proc/$$/environ: at start the shell compares it with what a child of it would be
given and refuses (sessions, for the connection) when start-up files (``~/.bashrc``,
which Debian's bash reads when started by sshd; BASH_ENV is not read then) changed it
other than bash's own PWD and SHLVL, which are put back as sshd had them. The start-up
files are read once more than cold runs would (when the shell starts: output then makes
it refuse too).

Fast path, for plain words (``hb_v=1``) naming ``true``, ``false``, ``:`` or a program
found on PATH (no alias, function or builtin of that name, IFS as bash's default, no
BASH_ENV):
the subshell runs it itself, as ``bash -c`` would exec it: SHLVL one less, ``$_`` its
path, stderr its own (the subshell's, /dev/null, takes bash's "Killed" notice, which an
exec'd command never gets). No exec of bash: a fork, as for dash. Here ~/.bashrc is the
one read when the resident shell started, not once per command: the same state, but a
.bashrc with side effects (a file written per login) or reading the time makes a
difference this path does not see.

What stays another on both paths: the command's parent ($PPID is the resident shell,
not sshd's session process: commands naming PPID take a session), its session and
process group (it is no session leader) and stdin (``/dev/null``, not an empty pipe), as
for dash.

Sessions are used as before for what this cannot do exactly: a command with stdin
(``--stdin``, sudo's password); for dash text containing a here-document (``<<``), ``$$``
(it would be the resident shell's pid), a NUL or a trailing backslash; for bash a NUL or
``PPID``; a login shell other than dash or bash (``$SHELL`` is asked once per
connection: csh, fish, ... differ in how ``eval``, traps and error messages behave); no
``/proc``; transports without :class:`~hostbatch.transport.base.StartsProcesses`
(paramiko, devices); and the first command on a connection (the shell is started in the
background after it, while the agent waits for the next run; a command arriving
meanwhile takes a session). ``HOSTBATCH_RESIDENT=0`` in the client's environment turns
it off for a run (benchmarks compare both).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import secrets
from pathlib import Path
from typing import Any, ClassVar

from hostbatch.engine.pool import alive
from hostbatch.errors import CommandTimeout, HostbatchError
from hostbatch.logs import logger
from hostbatch.models import Stream
from hostbatch.transport.base import (
    OutputSink,
    ProgressSink,
    RemoteProcess,
    RemoteStat,
    StartsProcesses,
    StdinSource,
    Transport,
)

SWITCH = "HOSTBATCH_RESIDENT"  # "0": sessions only (the client's, passed by the agent)
START_TIMEOUT = 10.0  # seconds for the probe and for the shell's ready marker
SHELLS = {"sh": "dash", "dash": "dash", "bash": "bash"}  # $SHELL basename: PROGRAMS key
MARK = b"\x1e"
PLAIN = re.compile(r"[\w./:=,+@%-]+(?:[ \t]+[\w./:=,+@%-]+)*", re.ASCII)
RESERVED = frozenset(
    [
        "case",
        "do",
        "done",
        "elif",
        "else",
        "esac",
        "fi",
        "for",
        "if",
        "in",
        "then",
        "until",
        "while",
    ]
)

LEFT = r"""hb_left() {
read -r hb_a hb_a hb_a hb_a hb_e </proc/loadavg || return 0
[ "$hb_e" -ge "$hb_f" ] || return 0
while [ "$hb_f" -le "$hb_e" ]; do
if read -r hb_a </proc/$hb_f/stat; then
hb_a=${hb_a##*)}
set -- $hb_a
[ "$4" != "$$" ] || return 0
fi
hb_f=$((hb_f + 1))
done
return 1
}
"""  # 3.: are processes left in the shell's session?
PROGRAM = (
    r"""[ /proc/$$/exe -ef /bin/dash ] || [ /proc/$$/exe -ef /usr/bin/dash ] || exit 97
[ -r /proc/loadavg ] && [ -r /proc/self/stat ] || exit 97
exec 3>&2 2>/dev/null
hb_n='
'
"""
    + LEFT
    + r"""printf '\036%s:0:R\n' TOKEN; printf '\036%s\n' TOKEN >&3
while IFS= read -r hb_l; do
eval "$hb_l"
read -r hb_a hb_a hb_a hb_a hb_f </proc/loadavg; hb_f=$((hb_f + 1))
if [ -n "$hb_v" ] || ( eval "set -n$hb_n$hb_c" ) </dev/null >/dev/null 2>&1 3>&-; then
( read -r hb_p hb_a </proc/self/stat; trap "trap - USR1; unset -f hb_left; unset hb_l hb_c \
hb_p hb_a hb_e hb_f hb_n hb_r hb_s hb_t hb_v; $hb_c${hb_n}exit \$?" USR1; kill -USR1 "$hb_p" \
) </dev/null 2>&3 3>&-
hb_s=$?
if hb_left; then hb_r=L; else hb_r=K; fi
else hb_s=2 hb_r=P; fi
printf '\036%s:%s:%s\n' "$hb_t" "$hb_s" "$hb_r"; printf '\036%s\n' "$hb_t" >&3
[ "$hb_r" != L ] || exit 0
done
"""
)

# bash's PROGRAM (see "bash" in the module docstring): each command runs in ``$SHELL -c``
# of its own, exec'd by a subshell with the environment sshd gave the shell (its
# /proc/$$/environ: the start refuses when start-up files changed what a child would be
# given, other than bash's own PWD and SHLVL, which are put back as sshd had them).
PROGRAM_BASH = (
    r"""shopt -u expand_aliases
[ /proc/$$/exe -ef "$SHELL" ] && [ -n "$BASH_VERSION" ] || exit 97
[ -r /proc/loadavg ] && [ -r /proc/self/stat ] && [ -r /proc/$$/environ ] || exit 97
hb_0=$0
mapfile -d '' hb_a </proc/$$/environ
for hb_e in "${hb_a[@]}"; do
case $hb_e in PWD=*) hb_pw=${hb_e#PWD=};; SHLVL=*) hb_sl=${hb_e#SHLVL=};; esac
done
hb_env() {
unset PWD SHLVL
[ -z "${hb_pw+x}" ] || export PWD="$hb_pw"; [ -z "${hb_sl+x}" ] || export SHLVL="$hb_sl"
}
hb_x=(grep -zv -e '^PWD=' -e '^SHLVL=' -e '^_=')
cmp -s <("${hb_x[@]}" /proc/$$/environ | sort -z) <(hb_env; env -0 | "${hb_x[@]}" | sort -z) ||
exit 97
exec 3>&2 2>/dev/null
hb_n=$'\n'
declare -A hb_b; for hb_e in $(compgen -b -k); do hb_b[$hb_e]=1; done
hb_fast() {
[ -n "$hb_v" ] && [ -z "${BASH_ENV+x}" ] && [ "$IFS" = $' \t\n' ] || return 1
set -f; set -- $hb_c; set +f
declare -F "$1" >/dev/null || [ -n "${BASH_ALIASES[$1]+x}" ] && return 1
case $1 in true|false|:) [ -n "${hb_b[$1]}" ]; return;; *=*|*/*) return 1;; esac
[ -z "${hb_b[$1]}" ] && hash "$1" 2>/dev/null || return 1
SHLVL=$((SHLVL > 0 ? SHLVL - 1 : 0))
}
"""
    + LEFT
    + r"""printf '\036%s:0:R\n' TOKEN; printf '\036%s\n' TOKEN >&3
while IFS= read -r hb_i; do
eval "$hb_i"
read -r hb_a hb_a hb_a hb_a hb_f </proc/loadavg; hb_f=$((hb_f + 1))
( exec </dev/null; if hb_fast; then set -f; set -- $hb_c; "$@" 2>&3 3>&-; exit; fi
exec 2>&3 3>&-; hb_env; exec -a "$hb_0" "$SHELL" -c "$hb_c" )
hb_s=$?
if hb_left; then hb_r=L; else hb_r=K; fi
printf '\036%s:%s:%s\n' "$hb_t" "$hb_s" "$hb_r"; printf '\036%s\n' "$hb_t" >&3
[ "$hb_r" != L ] || exit 0
done
"""
)
PROGRAMS = {"dash": PROGRAM, "bash": PROGRAM_BASH}


def enabled() -> bool:
    return os.environ.get(SWITCH, "1") != "0"


def eligible(command: str, shell: str | None = None) -> bool:
    """Whether the resident shell of login shell *shell* ("dash", "bash") runs *command*
    exactly as a session would; with *shell* None, whether some resident shell could."""
    if "\0" in command:  # the line protocol cannot carry it
        return False
    if shell is None:
        return True
    if shell == "bash":  # a bash -c of its own: only its parent ($PPID) is another
        return "PPID" not in command
    unsafe = ("$$", "${$", "<<")
    return not any(s in command for s in unsafe) and not command.rstrip("\n").endswith("\\")


def plain_words(command: str) -> bool:
    """Words of letters, digits and ``_./:=,+@%-`` only, the first no reserved word: no
    syntax error is possible, so the resident shell skips its parse check (a fork)."""
    return bool(PLAIN.fullmatch(command)) and command.split(maxsplit=1)[0] not in RESERVED


def command_line(token: str, command: str) -> bytes:
    """The line PROGRAM reads: assignments, the command single-quoted (newlines as
    ``$hb_n``, so it stays one line)."""
    quoted = "'" + command.replace("'", "'\\''").replace("\n", "'\"$hb_n\"'") + "'"
    checked = "1" if plain_words(command) else ""
    return f"hb_t={token} hb_v={checked} hb_c={quoted}\n".encode()


def _held_back(data: bytearray, marker: bytes) -> int:
    """How many bytes at the end of *data* could be the start of *marker*."""
    for size in range(min(len(marker) - 1, len(data)), 0, -1):
        if data.endswith(marker[:size]):
            return size
    return 0


class Exchange:
    """One command's output: passed on as it comes, its markers taken out."""

    def __init__(self, token: str, output: OutputSink) -> None:
        self.output = output
        self.markers: dict[Stream, bytes] = {
            "stdout": MARK + token.encode() + b":",
            "stderr": MARK + token.encode() + b"\n",
        }
        self.pending: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.seen: dict[Stream, bool] = {"stdout": False, "stderr": False}
        self.answer = ""  # "STATUS:FLAG" from the stdout marker
        self.extra = False  # output after a marker
        self.done = asyncio.Event()

    def feed(self, stream: Stream, data: bytes) -> None:
        if self.seen[stream]:
            self.extra = True
            self.output(stream, data)
            return
        pending = self.pending[stream]
        pending += data
        marker = self.markers[stream]
        at = pending.find(marker)
        if at < 0:
            keep = _held_back(pending, marker)
            self._pass(stream, len(pending) - keep)
            return
        end = at + len(marker) if stream == "stderr" else pending.find(b"\n", at)
        if end < 0:
            self._pass(stream, at)
            return
        if stream == "stdout":
            self.answer = pending[at + len(marker) : end].decode("ascii", "replace")
            end += 1
        self._pass(stream, at)
        del pending[: end - at]
        self.seen[stream] = True
        if pending:
            self.feed(stream, bytes(pending))
            pending.clear()
        if all(self.seen.values()):
            self.done.set()

    def _pass(self, stream: Stream, size: int) -> None:
        pending = self.pending[stream]
        if size > 0:
            self.output(stream, bytes(pending[:size]))
            del pending[:size]

    def flush(self) -> None:
        for stream, pending in self.pending.items():
            if pending:
                self.output(stream, bytes(pending))
                pending.clear()

    def result(self) -> tuple[int, str]:
        status, _, flag = self.answer.partition(":")
        return (int(status) if status.isdigit() else 255), flag


class ResidentShell:
    """One resident shell on one connection."""

    def __init__(self, host: str, shell: str = "dash") -> None:
        self.host = host
        self.shell = shell  # a PROGRAMS key
        self.process: RemoteProcess | None = None
        self.exchange: Exchange | None = None
        self.ended: asyncio.Future[int] | None = None
        self.dirty = False

    def _route(self, stream: Stream, data: bytes) -> None:
        if self.exchange is not None:
            self.exchange.feed(stream, data)
        else:
            self.dirty = True  # output between commands: nothing owns it

    async def start(self, starter: StartsProcesses) -> bool:
        """Start the shell; False when it did not answer as PROGRAM does."""
        token = secrets.token_hex(16)
        captured = bytearray()
        exchange = self.exchange = Exchange(token, lambda stream, data: captured.extend(data))
        try:
            program = PROGRAMS[self.shell].replace("TOKEN", token)
            self.process = await starter.start(program, self._route)
            self.ended = asyncio.ensure_future(self.process.finished())
            self.ended.add_done_callback(lambda f: f.cancelled() or f.exception())
            marked = asyncio.ensure_future(exchange.done.wait())
            try:
                await asyncio.wait(
                    {self.ended, marked}, timeout=START_TIMEOUT, return_when="FIRST_COMPLETED"
                )
            finally:
                marked.cancel()
        except HostbatchError:
            pass  # no channel: sessions it is
        except BaseException:  # cancelled while starting: leave no shell behind
            await asyncio.shield(self.kill())
            raise
        finally:
            self.exchange = None
        ready = exchange.done.is_set() and exchange.result() == (0, "R")
        if not ready or captured:
            logger.debug("%s: no resident shell (%r)", self.host, bytes(captured[:200]))
            await self.kill()
            return False
        return True

    def usable(self) -> bool:
        return self.process is not None and self.process.running() and not self.dirty

    async def run(self, command: str, output: OutputSink, timeout: float | None) -> int | None:
        """The command's exit status; None when it must run in a session (syntax error)."""
        assert self.process is not None and self.ended is not None
        token = secrets.token_hex(16)
        exchange = self.exchange = Exchange(token, output)
        self.process.write(command_line(token, command))
        try:
            return await asyncio.wait_for(self._outcome(exchange), timeout)
        except TimeoutError:
            await self.kill()
            raise CommandTimeout(
                f"command timed out after {timeout:g}s; remote process terminated", host=self.host
            ) from None
        except asyncio.CancelledError:
            await asyncio.shield(self.kill())
            raise
        finally:
            self.exchange = None

    async def _outcome(self, exchange: Exchange) -> int | None:
        assert self.ended is not None
        marked = asyncio.ensure_future(exchange.done.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {marked, self.ended}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            marked.cancel()
        if not exchange.done.is_set():  # the shell ended mid-command (kill 0, a lost link)
            status = await self.ended
            exchange.flush()
            return status
        status, flag = exchange.result()
        if flag == "L":  # processes left behind: the channel ends when they let go
            with contextlib.suppress(Exception):
                await self.ended
            exchange.flush()
        elif exchange.extra or flag not in ("K", "P"):
            self.dirty = True
        return None if flag == "P" else status

    async def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            await process.terminate()


class ResidentTransport:
    """A warm connection's transport: plain commands through its resident shell, the
    rest (and every other operation) straight to the wrapped transport."""

    blocking: ClassVar[bool] = False

    def __init__(self, inner: Transport, starter: StartsProcesses, host: str) -> None:
        self.inner = inner
        self._starter = starter
        self._host = host
        self._shell: ResidentShell | None = None
        self._lock = asyncio.Lock()
        self._commands = 0
        self._kind: str | bool | None = None  # the login shell's PROGRAMS key; False: none
        self._warming: asyncio.Future[None] | None = None

    def alive(self) -> bool:
        return alive(self.inner)

    async def connect(self) -> None:
        await self.inner.connect()

    async def run(
        self,
        command: str,
        output: OutputSink,
        timeout: float | None,
        *,
        stdin: StdinSource | None = None,
    ) -> int:
        self._commands += 1
        if self._commands == 1:  # a session, then the shell starts while the agent idles
            try:
                return await self.inner.run(command, output, timeout, stdin=stdin)
            finally:
                if enabled() and self._warming is None:
                    self._warming = asyncio.ensure_future(self._warm_up())
        known = self._kind if isinstance(self._kind, str) else None  # None: not asked yet
        if (
            stdin is not None
            or not enabled()
            or not eligible(command, known)
            or self._lock.locked()
        ):
            return await self.inner.run(command, output, timeout, stdin=stdin)
        async with self._lock:
            shell = await self._resident()
            status = None
            if shell is not None and eligible(command, shell.shell):
                status = await shell.run(command, output, timeout)
            if shell is not None and not shell.usable():
                await self._drop()
        if status is None:
            return await self.inner.run(command, output, timeout)
        return status

    async def _warm_up(self) -> None:
        """Start the shell in the background after the connection's first command (a
        command meanwhile takes a session rather than waiting)."""
        with contextlib.suppress(Exception):
            async with self._lock:
                await self._resident()

    async def _resident(self) -> ResidentShell | None:
        """The connection's shell, started when missing (not before its first command)."""
        if self._shell is not None and self._shell.usable():
            return self._shell
        await self._drop()
        if self._commands < 1 or self._kind is False:
            return None
        if self._kind is None:
            self._kind = await self._login_shell() or False
        if not isinstance(self._kind, str):
            return None
        shell = ResidentShell(self._host, self._kind)
        if await shell.start(self._starter):
            self._shell = shell
            return shell
        self._kind = False  # it did not start as it should: sessions from now on
        return None

    async def _login_shell(self) -> str | None:
        """The PROGRAMS key for the login shell ($SHELL), None when there is none."""
        printed = bytearray()

        def keep(stream: Stream, data: bytes) -> None:
            printed.extend(data if stream == "stdout" else b"")

        try:
            status = await self.inner.run('echo "$SHELL"', keep, START_TIMEOUT)
        except HostbatchError:  # the command itself will meet the same trouble, if lasting
            return None
        name = posixpath.basename(printed.decode("utf-8", "replace").strip())
        return SHELLS.get(name) if status == 0 else None

    async def _drop(self) -> None:
        shell, self._shell = self._shell, None
        if shell is not None:
            await shell.kill()

    async def stat(self, remote: str) -> RemoteStat | None:
        return await self.inner.stat(remote)

    async def listdir(self, remote: str) -> list[tuple[str, RemoteStat]]:
        return await self.inner.listdir(remote)

    async def mkdir(self, remote: str) -> None:
        await self.inner.mkdir(remote)

    async def put(
        self, local: Path, remote: str, progress: ProgressSink, *, preserve: bool = False
    ) -> None:
        await self.inner.put(local, remote, progress, preserve=preserve)

    async def get(
        self, remote: str, local: Path, progress: ProgressSink, *, preserve: bool = False
    ) -> None:
        await self.inner.get(remote, local, progress, preserve=preserve)

    async def rename(self, source: str, target: str) -> None:
        await self.inner.rename(source, target)

    async def remove(self, remote: str) -> None:
        await self.inner.remove(remote)

    async def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(BaseException):
                await self._warming
        with contextlib.suppress(Exception):
            await self._drop()
        await self.inner.close()


def resident(transport: Transport, host: str) -> Transport:
    """*transport* with a resident shell for its plain commands, when it can start one."""
    if isinstance(transport, StartsProcesses):
        return ResidentTransport(transport, transport, host)
    return transport
