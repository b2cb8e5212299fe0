"""A real OpenSSH ``sshd`` on loopback, started and stopped by tests and benchmarks.

:class:`OpenSSHServer` builds everything it needs in a temporary directory of its own
(host key, client keys, ``authorized_keys``, ``sshd_config``, ``known_hosts``), starts
``sshd -D -e -f CONFIG`` on a free port on one or more loopback addresses and waits for
the SSH banner on each::

    with OpenSSHServer(addresses=["127.0.0.1", "127.0.1.2"]) as server:
        subprocess.run(server.ssh_command("echo", "hi"), check=True)

Login user:

* running as root, a system user ``hostbatch-test`` is created when missing
  (``useradd -m -s /bin/sh``) and given a random password with ``chpasswd``, so both key
  and password authentication can be tested. The password is random per machine (kept
  in a root-only file) so that several servers and test processes agree on it.
  ``OpenSSHServer(login_shell="/bin/bash")`` logs in as ``hostbatch-test-bash`` instead,
  created the same way with ``-s /bin/bash`` (:data:`TEST_USERS`).
* running as anyone else, the login user is the current user (with its own login shell,
  whatever ``login_shell`` asks: :attr:`OpenSSHServer.login_shell` tells which), only key
  authentication works and :attr:`OpenSSHServer.password` is ``None`` (sshd cannot read
  the shadow file).

Only loopback addresses are accepted. The server never touches the system's sshd.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "OpenSSHServer",
    "SshdError",
    "SshdNotFoundError",
    "TEST_USER",
    "TEST_USERS",
    "find_sshd",
    "prepare_login_user",
]

TEST_USER = "hostbatch-test"
"""System user created (as root) to log in as."""
TEST_USERS = {"/bin/sh": TEST_USER, "/bin/bash": "hostbatch-test-bash"}
"""The system user (created as root) for each login shell ``OpenSSHServer`` offers."""

_SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
_PRIVSEP_DIR = Path("/run/sshd")
_START_ATTEMPTS = 5
_PORT_ATTEMPTS = 50
_BIND_FAILED = re.compile(r"Bind to port \d+ on \S+ failed|Cannot bind any address")


class SshdError(RuntimeError):
    """sshd could not be prepared, validated or started; the message carries sshd's output."""


class SshdNotFoundError(SshdError):
    """No sshd binary on this machine."""


def find_sshd() -> Path | None:
    """Return the path of OpenSSH's ``sshd`` (PATH first, then the usual sbin dirs)."""
    found = shutil.which("sshd")
    if found:
        return Path(found).resolve()
    for candidate in _SSHD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _require_sshd() -> Path:
    sshd = find_sshd()
    if sshd is None:
        raise SshdNotFoundError(
            "OpenSSH sshd not found on PATH or in /usr/sbin: install openssh-server "
            "(apt-get install openssh-server, or run scripts/setup.sh --with-sshd)"
        )
    return sshd


def _run(argv: Sequence[str], what: str, stdin: str | None = None) -> str:
    """Run a helper command; raise :class:`SshdError` with its output when it fails."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SshdError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        output = (done.stderr + done.stdout).strip()
        raise SshdError(f"{what} failed (exit {done.returncode}): {output}")
    return done.stdout


def _sshd_version(sshd: Path) -> tuple[int, int]:
    """OpenSSH version of ``sshd`` as (major, minor); (0, 0) when it cannot be told."""
    done = subprocess.run(
        [str(sshd), "-V"], capture_output=True, text=True, check=False, timeout=30
    )
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stdout + done.stderr)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _keygen(path: Path, passphrase: str, comment: str) -> None:
    _run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
        f"ssh-keygen {path.name}",
    )


_PASSWORD_FILE = Path("/var/lib/hostbatch-test/password")


def _password_file(user: str) -> Path:
    return _PASSWORD_FILE if user == TEST_USER else _PASSWORD_FILE.with_name(f"password-{user}")


@functools.cache
def _machine_password(user: str = TEST_USER) -> str:
    """One random password for a test user per machine, kept in a root-only file, so
    that several test processes (or sshd servers) at once never overwrite each other's."""
    path = _password_file(user)
    try:
        return path.read_text().strip()
    except OSError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password)
    _run(["chpasswd"], f"chpasswd {user}", stdin=f"{user}:{password}\n")
    return password


def prepare_login_user(login_shell: str = "/bin/sh") -> tuple[str, str | None]:
    """Return (username, password) of the login user for *login_shell*: as root the
    :data:`TEST_USERS` user, created when missing; as anyone else the current user."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name, None
    user = TEST_USERS[login_shell]
    try:
        pwd.getpwnam(user)
    except KeyError:
        _run(["useradd", "-m", "-s", login_shell, user], f"useradd {user}")
        _password_file(user).unlink(missing_ok=True)  # a new user has no password yet
        _machine_password.cache_clear()
    return user, _machine_password(user)


def _ensure_privsep_dir() -> None:
    """sshd (as root) refuses to start without its privilege separation directory."""
    if os.geteuid() == 0 and not _PRIVSEP_DIR.is_dir():
        _PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)


def _check_loopback(addresses: Iterable[str]) -> tuple[str, ...]:
    checked = tuple(addresses)
    if not checked:
        raise ValueError("OpenSSHServer needs at least one listen address")
    for address in checked:
        if not ipaddress.ip_address(address).is_loopback:
            raise ValueError(f"OpenSSHServer listens on loopback only, not {address!r}")
    return checked


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _free_port(addresses: Sequence[str]) -> int:
    """A port that is free on every address right now (bind port 0, then the rest)."""
    for _ in range(_PORT_ATTEMPTS):
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(socket.socket(_family(addresses[0]), socket.SOCK_STREAM))
            first.bind((addresses[0], 0))
            port = int(first.getsockname()[1])
            try:
                for address in addresses[1:]:
                    other = stack.enter_context(socket.socket(_family(address), socket.SOCK_STREAM))
                    other.bind((address, port))
            except OSError:
                continue
            return port
    raise SshdError(f"no port free on all of {', '.join(addresses)}")


def _read_banner(address: str, port: int, timeout: float) -> bytes:
    with socket.create_connection((address, port), timeout=timeout) as sock:
        data = b""
        while b"\n" not in data and len(data) < 512:
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
        return data


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime+stime+cutime+cstime in seconds) of a process, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5): ppid is field 4, utime..cstime 14..17
    ticks = sum(int(value) for value in fields[11:15])
    return int(fields[1]), ticks / os.sysconf("SC_CLK_TCK")


def _descendants(root_pid: int) -> list[int]:
    """Pids of every live descendant of ``root_pid`` (from a scan of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry.name))
    found: list[int] = []
    todo = [root_pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def _start_time(pid: int) -> str | None:
    """Start time (field 22 of /proc/PID/stat) of a live, non-zombie process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def _reap_or_kill(started: dict[int, str | None], timeout: float) -> None:
    """Wait for sessions (no longer our children once the listener is gone) to end.

    ``started`` maps pid to start time taken before signalling, so a reused pid is
    never killed.
    """
    remaining = [pid for pid, start in started.items() if start is not None]
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = [pid for pid in remaining if _start_time(pid) == started[pid]]
    for pid in remaining:
        if _start_time(pid) == started[pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class _Files:
    """Everything the server keeps in its temporary directory."""

    root: Path
    host_key: Path
    client_key: Path
    client_key_enc: Path
    authorized_keys: Path
    config: Path
    known_hosts: Path
    pid_file: Path
    log: Path

    @classmethod
    def under(cls, root: Path) -> _Files:
        return cls(
            root=root,
            host_key=root / "ssh_host_ed25519_key",
            client_key=root / "id_ed25519",
            client_key_enc=root / "id_ed25519_enc",
            authorized_keys=root / "authorized_keys",
            config=root / "sshd_config",
            known_hosts=root / "known_hosts",
            pid_file=root / "sshd.pid",
            log=root / "sshd.log",
        )


@dataclass
class _Running:
    """State that exists only between start() and stop()."""

    files: _Files
    username: str
    password: str | None
    host_key_line: str
    port: int
    process: subprocess.Popen[bytes]
    log_handle: IO[bytes]


class OpenSSHServer:
    """A real OpenSSH sshd on loopback addresses, for tests and benchmarks.

    ``extra_config`` lines are appended to the generated ``sshd_config`` (after every
    global option, so ``Match`` blocks may be among them); sshd checks them with ``-t``.
    ``login_shell`` picks the login user as root (a key of :data:`TEST_USERS`).

    Nothing happens until :meth:`start` (or ``with``); :meth:`stop` ends sshd and every
    process it started and removes the temporary directory. Properties other than
    :attr:`addresses` and :attr:`host` raise :class:`SshdError` while not started.
    """

    def __init__(
        self,
        addresses: Sequence[str] = ("127.0.0.1",),
        *,
        max_startups: str = "2000:30:4000",
        max_sessions: int = 100,
        log_level: str = "INFO",
        start_timeout: float = 15.0,
        extra_config: Sequence[str] = (),
        login_shell: str = "/bin/sh",
    ) -> None:
        if login_shell not in TEST_USERS:
            raise ValueError(f"login_shell is one of {', '.join(TEST_USERS)}, not {login_shell!r}")
        self._login_shell = login_shell
        self._addresses = _check_loopback(addresses)
        self._extra_config = tuple(extra_config)
        self._max_startups = max_startups
        self._max_sessions = max_sessions
        self._log_level = log_level
        self._start_timeout = start_timeout
        self._key_passphrase = secrets.token_urlsafe(12)
        self._running: _Running | None = None
        self._final_cpu = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Prepare keys, user and config, start sshd and wait for its banner."""
        if self._running is not None:
            return self
        sshd = _require_sshd()
        _ensure_privsep_dir()
        root = Path(tempfile.mkdtemp(prefix="hostbatch-sshd-"))
        try:
            self._running = self._launch(sshd, _Files.under(root))
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return self

    def stop(self) -> None:
        """Stop sshd and its sessions, wait for them, remove the temporary directory."""
        running, self._running = self._running, None
        if running is None:
            return
        with contextlib.suppress(SshdError):
            self._final_cpu = self._cpu_of(running.process.pid)
        process = running.process
        sessions = _descendants(process.pid)
        session_starts = {pid: _start_time(pid) for pid in sessions}
        for pid in [process.pid, *sessions]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        _reap_or_kill(session_starts, timeout=5)
        running.log_handle.close()
        shutil.rmtree(running.files.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- properties --------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The first listen address (``127.0.0.1`` by default)."""
        return self._addresses[0]

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._addresses

    @property
    def port(self) -> int:
        return self._state().port

    @property
    def username(self) -> str:
        return self._state().username

    @property
    def login_shell(self) -> str:
        """The login user's shell (from the password database)."""
        return pwd.getpwnam(self.username).pw_shell

    @property
    def password(self) -> str | None:
        """Password of :data:`TEST_USER` (root only); ``None`` when not running as root."""
        return self._state().password

    @property
    def client_key(self) -> Path:
        """Private ed25519 client key without passphrase."""
        return self._state().files.client_key

    @property
    def client_key_enc(self) -> Path:
        """Private ed25519 client key protected by :attr:`key_passphrase`."""
        return self._state().files.client_key_enc

    @property
    def key_passphrase(self) -> str:
        return self._key_passphrase

    @property
    def known_hosts(self) -> Path:
        """known_hosts with a ``[ADDR]:PORT`` line for every listen address."""
        return self._state().files.known_hosts

    @property
    def host_key_line(self) -> str:
        """The public host key, ``ssh-ed25519 AAAA... comment``."""
        return self._state().host_key_line

    @property
    def pid(self) -> int:
        return self._state().process.pid

    @property
    def root(self) -> Path:
        """The server's temporary directory."""
        return self._state().files.root

    @property
    def log_path(self) -> Path:
        """sshd's log (its stderr, ``-e``)."""
        return self._state().files.log

    @property
    def running(self) -> bool:
        return self._running is not None and self._running.process.poll() is None

    # -- helpers for callers -----------------------------------------------------------

    def cpu_seconds(self) -> float:
        """User+system CPU seconds used so far by sshd and its live processes.

        Sums utime+stime+cutime+cstime of the listener and of its live descendants. It
        UNDERCOUNTS finished sessions: OpenSSH's privilege-separation monitor does not
        reap the session process, so its CPU never reaches the listener's cutime/cstime
        (bench/sshd_cgroup.py counts every process exactly). After :meth:`stop` it
        returns the value measured just before stopping.
        """
        if self._running is None:
            return self._final_cpu
        return self._cpu_of(self._running.process.pid)

    def ssh_command(self, *args: str, address: str | None = None) -> list[str]:
        """An OpenSSH ``ssh`` command line logging in with :attr:`client_key`.

        Host keys are checked strictly against :attr:`known_hosts`; user and system ssh
        configuration is ignored. ``args`` form the remote command.
        """
        state = self._state()
        target = address or self.host
        return [
            shutil.which("ssh") or "ssh",
            "-F",
            os.devnull,
            "-p",
            str(state.port),
            "-i",
            str(state.files.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={state.files.known_hosts}",
            "-o",
            f"GlobalKnownHostsFile={os.devnull}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            f"{state.username}@{target}",
            *args,
        ]

    def log_text(self) -> str:
        """What sshd has logged so far."""
        return self._state().files.log.read_text(errors="replace")

    # -- internals ---------------------------------------------------------------------

    def _state(self) -> _Running:
        if self._running is None:
            raise SshdError("OpenSSHServer is not started; call start() or use 'with'")
        return self._running

    def _cpu_of(self, pid: int) -> float:
        total = 0.0
        for each in [pid, *_descendants(pid)]:
            stat = _proc_stat(each)
            if stat is not None:
                total += stat[1]
        return total

    def _launch(self, sshd: Path, files: _Files) -> _Running:
        """Write keys and files, then start sshd, retrying when its port was taken."""
        files.root.chmod(0o711)  # the login user's sshd child must reach authorized_keys
        _keygen(files.host_key, "", "hostbatch-test-host")
        _keygen(files.client_key, "", "hostbatch-test-client")
        _keygen(files.client_key_enc, self._key_passphrase, "hostbatch-test-client-enc")
        files.authorized_keys.write_text(
            files.client_key.with_suffix(".pub").read_text()
            + files.client_key_enc.with_name(files.client_key_enc.name + ".pub").read_text()
        )
        files.authorized_keys.chmod(0o644)
        host_key_line = files.host_key.with_name(files.host_key.name + ".pub").read_text().strip()
        username, password = prepare_login_user(self._login_shell)
        version = _sshd_version(sshd)
        last_error: SshdError | None = None
        for _ in range(_START_ATTEMPTS):
            port = _free_port(self._addresses)
            self._write_config(files, port, version)
            _run([str(sshd), "-t", "-f", str(files.config)], "sshd -t (config check)")
            self._write_known_hosts(files, port, host_key_line)
            try:
                process, log_handle = self._spawn(sshd, files, port)
            except _PortTaken as exc:
                last_error = exc
                continue
            return _Running(files, username, password, host_key_line, port, process, log_handle)
        raise SshdError(f"sshd could not bind a free port: {last_error}")

    def _write_config(self, files: _Files, port: int, version: tuple[int, int]) -> None:
        lines = [
            f"Port {port}",
            *(f"ListenAddress {address}" for address in self._addresses),
            f"HostKey {files.host_key}",
            f"PidFile {files.pid_file}",
            f"AuthorizedKeysFile {files.authorized_keys}",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin yes",
            f"MaxStartups {self._max_startups}",
            f"MaxSessions {self._max_sessions}",
            f"LogLevel {self._log_level}",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "Subsystem sftp internal-sftp",
        ]
        if version >= (9, 8):
            # 9.8+ penalises sources with failed logins or many connections: loopback
            # test clients are all one source, so the benchmark would be refused.
            lines.append("PerSourcePenalties no")
        lines.extend(self._extra_config)  # last, so that Match blocks may be given
        files.config.write_text("\n".join(lines) + "\n")

    def _write_known_hosts(self, files: _Files, port: int, host_key_line: str) -> None:
        key_type, key_blob = host_key_line.split()[:2]
        entries = [f"[{address}]:{port} {key_type} {key_blob}\n" for address in self._addresses]
        files.known_hosts.write_text("".join(entries))

    def _spawn(
        self, sshd: Path, files: _Files, port: int
    ) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        """Start sshd; return once it has bound every address and sent its banner."""
        files.pid_file.unlink(missing_ok=True)
        log_handle = files.log.open("wb")  # a fresh log per attempt
        process = subprocess.Popen(
            [str(sshd), "-D", "-e", "-f", str(files.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_handle,
        )
        try:
            self._await_ready(process, files, port)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=5)
            log_handle.close()
            raise
        return process, log_handle

    def _await_ready(self, process: subprocess.Popen[bytes], files: _Files, port: int) -> None:
        """Wait for the pid file (written once all sockets are bound), then the banners."""
        deadline = time.monotonic() + self._start_timeout
        while not files.pid_file.exists():
            if process.poll() is not None:
                break
            if time.monotonic() > deadline:
                raise SshdError(f"sshd did not start in {self._start_timeout}s: {_tail(files)}")
            time.sleep(0.01)
        log = files.log.read_text(errors="replace")
        if _BIND_FAILED.search(log):
            raise _PortTaken(_tail(files))
        if process.poll() is not None:
            raise SshdError(f"sshd exited with status {process.returncode}: {_tail(files)}")
        for address in self._addresses:
            banner = _read_banner(address, port, timeout=max(deadline - time.monotonic(), 1.0))
            if not banner.startswith(b"SSH-"):
                raise SshdError(f"no SSH banner from {address}:{port} (got {banner[:80]!r})")


class _PortTaken(SshdError):
    """Another process got the port between choosing it and sshd binding it."""


def _tail(files: _Files, lines: int = 20) -> str:
    try:
        text = files.log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"
