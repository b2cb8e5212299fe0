"""Fake Cisco IOS devices on loopback for the device tests and the device benchmark.

The emulator is internap's fake-switches 1.5.0 (Twisted Conch SSH server), installed into a
virtual environment of its own (never hostbatch's): ``$HOSTBATCH_FAKEIOS_VENV``, else
``~/.cache/hostbatch-test/fakeios-venv``; it is created on first use and reused after.
fake-switches pins Twisted<17, which does not build on current Pythons, so it is installed
with ``--no-deps`` next to a modern Twisted.

One background process serves every device; each listens on a free loopback port that the
operating system picked (port 0), reported back through a small JSON file. The server
applies a few runtime patches to fake-switches (see ``SERVER_SCRIPT``) and can also start
*mute* devices: SSH servers that accept the login and open a shell but never show a prompt.

Usage::

    with FakeIOS(count=3, mute=1) as fleet:
        fleet.devices[0].port, fleet.known_hosts_text(), fleet.mute[0].port
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

FS_VERSION = "1.5.0"
EXTRA_PACKAGES = ("twisted[conch]==26.10.0", "tftpy", "netaddr", "lxml")
VENV_ENV = "HOSTBATCH_FAKEIOS_VENV"
DEFAULT_VENV = "~/.cache/hostbatch-test/fakeios-venv"
USERNAME = "root"
PASSWORD = "root"
ENABLE_SECRET = "root"  # fake-switches also always accepts the empty enable secret
LOOPBACK = "127.0.0.1"

_CHECK_INSTALLED = """
import importlib.metadata as m, sys
ok = m.version("fake-switches") == "1.5.0" and int(m.version("twisted").split(".")[0]) >= 22
sys.exit(0 if ok else 1)
"""

SERVER_SCRIPT = r'''
"""Serve fake-switches devices from one Twisted reactor (written by tests/devices/fake_ios.py)."""
import argparse
import json
import logging
import os

from twisted.conch.ssh import factory, keys, session
from twisted.cred import checkers, portal
from twisted.internet import protocol, reactor
from zope.interface import implementer

from fake_switches import switch_factory
from fake_switches.transports.ssh_service import SSHDemoAvatar, getRSAKeys


def apply_patches():
    """Small runtime patches (the installed package is untouched)."""
    from fake_switches.cisco.cisco_core import CiscoShellSession
    from fake_switches.cisco.command_processor.config import ConfigCommandProcessor
    from fake_switches.cisco.command_processor.default import DefaultCommandProcessor

    # 1. IOS 'end' in config mode (netmiko's send_config_set() ends with it) is missing.
    def do_end(self, *_):
        self.sub_processor = None
        self.is_done = True
    ConfigCommandProcessor.do_end = do_end

    # 2. 'terminal length 0' / 'terminal width 511' are accepted in user mode on real IOS.
    DefaultCommandProcessor.do_terminal = lambda self, *_: None

    # 3. Unknown commands: the real IOS error, which netmiko's error patterns know.
    invalid = "% Invalid input detected at '^' marker.\n\n"

    def handle_unknown_command(self, line):
        self.command_processor.terminal_controller.write("^\n" + invalid)
    CiscoShellSession.handle_unknown_command = handle_unknown_command

    # 4. A command that crashes inside fake-switches answers with the error and a prompt
    #    instead of leaving the session without a prompt.
    stock_receive = CiscoShellSession.receive
    log = logging.getLogger("fake_ios")

    def receive(self, line):
        try:
            return stock_receive(self, line)
        except Exception:
            log.warning("command raised inside fake-switches: %r", line, exc_info=True)
            proc = self.command_processor
            if proc.piping_processor.is_listening():
                proc.piping_processor.stop_listening()
            proc.terminal_controller.write("^\n" + invalid)
            proc.show_prompt()
            return not proc.is_done
    CiscoShellSession.receive = receive


class MuteAvatar(SSHDemoAvatar):
    """Logs in and opens a shell that never writes anything (no prompt, ever)."""

    def openShell(self, proto):
        silent = protocol.Protocol()
        silent.makeConnection(proto)
        proto.makeConnection(session.wrapProtocol(silent))


@implementer(portal.IRealm)
class Realm:
    def __init__(self, core, mute):
        self.core, self.mute = core, mute

    def requestAvatar(self, avatar_id, mind, *interfaces):
        cls = MuteAvatar if self.mute else SSHDemoAvatar
        return interfaces[0], cls(avatar_id, switch_core=self.core), lambda: None


def listen(host, core, users, host_keys, mute):
    ssh_factory = factory.SSHFactory()
    ssh_factory.portal = portal.Portal(Realm(core, mute))
    ssh_factory.portal.registerChecker(checkers.InMemoryUsernamePasswordDatabaseDontUse(**users))
    ssh_factory.publicKeys, ssh_factory.privateKeys = host_keys
    return reactor.listenTCP(0, ssh_factory, interface=host).getHost().port


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--mute", type=int, default=0)
    p.add_argument("--model", default="cisco_generic")
    p.add_argument("--prefix", default="sw")
    p.add_argument("--username", default="root")
    p.add_argument("--password", default="root")
    p.add_argument("--enable-secret", default="root")
    p.add_argument("--ready", required=True)
    a = p.parse_args()
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    apply_patches()

    public, private = getRSAKeys()  # parsed once, not once per device
    host_keys = ({b"ssh-rsa": keys.Key.fromString(public.encode())},
                 {b"ssh-rsa": keys.Key.fromString(private.encode())})
    users = {a.username: a.password.encode()}
    switches = switch_factory.SwitchFactory()
    ports, mute = [], []
    for index in range(a.count + a.mute):
        name = "%s%03d" % (a.prefix if index < a.count else "mute", index + 1)
        # the enable password must be str (the stock CLI passes bytes)
        core = switches.get(a.model, hostname=name, password=a.enable_secret)
        port = listen(a.host, core, users, host_keys, index >= a.count)
        (ports if index < a.count else mute).append([name, port])
    ready = {"devices": ports, "mute": mute, "host_key": public.strip(), "pid": os.getpid()}
    with open(a.ready + ".tmp", "w") as out:
        json.dump(ready, out)
    os.replace(a.ready + ".tmp", a.ready)
    reactor.run()


if __name__ == "__main__":
    main()
'''


class FakeIOSError(RuntimeError):
    """The emulator could not be installed or started."""


@dataclass(frozen=True)
class Device:
    """One emulated device: its prompt name and loopback port."""

    name: str
    port: int
    address: str = LOOPBACK

    def netmiko(self, **overrides: object) -> dict[str, object]:
        """The dict a netmiko user would pass to ConnectHandler for this device."""
        spec: dict[str, object] = {
            "device_type": "cisco_ios",
            "host": self.address,
            "port": self.port,
            "username": USERNAME,
            "password": PASSWORD,
            "secret": ENABLE_SECRET,
        }
        spec.update(overrides)
        return spec


def venv_path() -> Path:
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV).expanduser()


def _run(args: list[str], what: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise FakeIOSError(f"{what} failed (exit {done.returncode}): " + " | ".join(tail))


def ensure_venv(venv: Path | None = None) -> Path:
    """The emulator venv's python, creating and filling the venv when needed."""
    venv = venv or venv_path()
    python = venv / "bin" / "python"
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(venv)], f"creating the venv {venv}")
    check = subprocess.run([str(python), "-c", _CHECK_INSTALLED], capture_output=True, check=False)
    if check.returncode == 0:
        return python
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--no-deps", f"fake-switches=={FS_VERSION}"], "pip install fake-switches")
    _run([*pip, *EXTRA_PACKAGES], "pip install twisted/tftpy/netaddr/lxml")
    return python


class FakeIOS:
    """*count* IOS devices (and *mute* silent SSH servers) in one background process."""

    def __init__(
        self,
        count: int,
        *,
        mute: int = 0,
        venv: Path | None = None,
        workdir: Path | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.count, self.mute_count = count, mute
        self.venv = venv or venv_path()
        self.workdir = workdir or self.venv
        self.start_timeout = start_timeout
        self.devices: list[Device] = []
        self.mute: list[Device] = []
        self.host_key = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path = self.workdir / "fake_ios.log"

    def start(self) -> FakeIOS:
        python = ensure_venv(self.venv)
        self.workdir.mkdir(parents=True, exist_ok=True)
        script = self.workdir / "fake_ios_server.py"
        partial = script.with_name(f"{script.name}.{os.getpid()}.tmp")
        partial.write_text(SERVER_SCRIPT, encoding="utf-8")
        partial.replace(script)
        ready = self.workdir / f"fake_ios.{os.getpid()}.{id(self)}.ready.json"
        ready.unlink(missing_ok=True)
        args = [str(python), str(script), "--count", str(self.count), "--host", LOOPBACK]
        args += ["--mute", str(self.mute_count), "--ready", str(ready)]
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_ready(ready)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, ready: Path) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while not ready.exists():
            if self._process.poll() is not None:
                raise FakeIOSError(f"the emulator exited early; see {self._log}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise FakeIOSError(f"the emulator did not start in {self.start_timeout:g}s")
            time.sleep(0.05)
        info = json.loads(ready.read_text(encoding="utf-8"))
        ready.unlink(missing_ok=True)
        self.devices = [Device(name, port) for name, port in info["devices"]]
        self.mute = [Device(name, port) for name, port in info["mute"]]
        self.host_key = info["host_key"]

    @property
    def pid(self) -> int | None:
        """The server process's pid while it runs."""
        return self._process.pid if self._process is not None else None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def known_hosts_text(self, devices: list[Device] | None = None) -> str:
        """known_hosts lines for *devices* (default: all, mute ones included)."""
        chosen = devices if devices is not None else [*self.devices, *self.mute]
        key = " ".join(self.host_key.split()[:2])  # "ssh-rsa BASE64", no comment
        return "".join(f"[{d.address}]:{d.port} {key}\n" for d in chosen)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> FakeIOS:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
