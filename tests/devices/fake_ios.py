"""Fake Cisco IOS devices on loopback for the device tests and the device benchmark.

The emulator is internap's fake-switches 1.5.0 (Twisted Conch SSH server), installed into a
virtual environment of its own (never hostbatch's): ``$HOSTBATCH_FAKEIOS_VENV``, else
``~/.cache/hostbatch-test/fakeios-venv``; it is created on first use and reused after.
fake-switches pins Twisted<17, which does not build on current Pythons, so it is installed
with ``--no-deps`` next to a modern Twisted.

One background process serves every device; each listens on a free loopback port that the
operating system picked (port 0), reported back through a small JSON file. The server
applies a few runtime patches to fake-switches (see ``SERVER_SCRIPT``) and can also start
*mute* devices: SSH servers that accept the login and open a shell but never show a prompt,
and *arista* devices: fake-switches' ``arista_generic`` model, which netmiko drives as
``arista_eos`` (Juniper models in fake-switches speak NETCONF only, no CLI).

Usage::

    with FakeIOS(count=3, mute=1, arista=2) as fleet:
        fleet.devices[0].port, fleet.known_hosts_text(), fleet.mute[0].port, fleet.arista[0]
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
ARISTA_MODEL = "arista_generic"  # the fake-switches model served to netmiko as arista_eos

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
    answer_crashes(CiscoShellSession, "^\n" + invalid)
    apply_arista_patches()


def answer_crashes(session_class, error):
    """Commands that raise inside fake-switches print *error* and a prompt instead."""
    stock_receive = session_class.receive
    log = logging.getLogger("fake_ios")

    def receive(self, line):
        try:
            return stock_receive(self, line)
        except Exception:
            log.warning("command raised inside fake-switches: %r", line, exc_info=True)
            proc = self.command_processor
            if proc.piping_processor.is_listening():
                proc.piping_processor.stop_listening()
            proc.terminal_controller.write(error)
            proc.show_prompt()
            return not proc.is_done
    session_class.receive = receive


EOS_VERSION = """Arista vEOS
Hardware version:
Serial number:
System MAC address:  5254.0000.0001

Software image version: 4.20.8M
Architecture:           i386
Internal build version: 4.20.8M-10234567.4208M
Internal build ID:      0c0d2b6b-6d1d-4a1a-9b6c-2a3b4c5d6e7f

Uptime:                 0 weeks, 0 days, 1 hours and 2 minutes
Total memory:           2014520 kB
Free memory:            1147952 kB
"""


def apply_arista_patches():
    """fake-switches' Arista CLI is made for its eAPI tests; these give it what a real EOS
    session shows netmiko (arista_eos) and what the device tests use."""
    from fake_switches.arista.arista_core import AristaShellSession
    from fake_switches.arista.command_processor.config import ConfigCommandProcessor
    from fake_switches.arista.command_processor.default import DefaultCommandProcessor
    from fake_switches.arista.command_processor.enabled import EnabledCommandProcessor

    # 5. 'terminal width N' / 'terminal length 0' in either mode, answered as EOS does
    #    (netmiko waits for 'Width set to' and 'Pagination disabled').
    def do_terminal(self, *args):
        if args and "width".startswith(args[0]) and len(args) > 1:
            self.write_line("Width set to %s columns." % args[1])
        else:
            self.write_line("Pagination disabled.")
    DefaultCommandProcessor.do_terminal = do_terminal
    EnabledCommandProcessor.do_terminal = do_terminal

    # 6. 'show version' (missing), in either mode; 'show running-config' with no argument
    #    (fake-switches reads a first argument that is not there) shows all of it.
    for cls in (DefaultCommandProcessor, EnabledCommandProcessor):
        def do_show(self, *args, _stock=cls.do_show):
            if args and len(args[0]) >= 3 and "version".startswith(args[0]):
                self.write(EOS_VERSION)
            elif len(args) == 1 and len(args[0]) >= 3 and "running-config".startswith(args[0]):
                _stock(self, args[0], "all")
            else:
                _stock(self, *args)
        cls.do_show = do_show

    # 7. 'end' in config mode (netmiko leaves config mode with it) is missing.
    def do_end(self, *_):
        self.sub_processor = None
        self.is_done = True
    ConfigCommandProcessor.do_end = do_end

    # 8. netmiko's save_config() for EOS is 'copy running-config startup-config'.
    def do_copy(self, *args):
        if args[:2] == ("running-config", "startup-config"):
            self.do_write()
        else:
            self.write_line("% Invalid input")
    EnabledCommandProcessor.do_copy = do_copy

    # 9. A 'show' fake-switches lacks raised and dropped the session: EOS's error instead.
    answer_crashes(AristaShellSession, "% Invalid input\n")


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
    p.add_argument("--family", action="append", default=[],
                   help="MODEL:PREFIX:COUNT more devices of another fake-switches model")
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
    families = {}
    for family in a.family:
        model, prefix, count = family.split(":")
        families[model] = []
        for index in range(int(count)):
            name = "%s%03d" % (prefix, index + 1)
            core = switches.get(model, hostname=name, password=a.enable_secret)
            families[model].append([name, listen(a.host, core, users, host_keys, False)])
    ready = {"devices": ports, "mute": mute, "families": families,
             "host_key": public.strip(), "pid": os.getpid()}
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
    """One emulated device: its prompt name, loopback port and netmiko device_type."""

    name: str
    port: int
    address: str = LOOPBACK
    device_type: str = "cisco_ios"

    def netmiko(self, **overrides: object) -> dict[str, object]:
        """The dict a netmiko user would pass to ConnectHandler for this device."""
        spec: dict[str, object] = {
            "device_type": self.device_type,
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
    """*count* IOS devices (and *mute* silent SSH servers, and *arista* Arista EOS devices)
    in one background process."""

    def __init__(
        self,
        count: int,
        *,
        mute: int = 0,
        arista: int = 0,
        venv: Path | None = None,
        workdir: Path | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.count, self.mute_count, self.arista_count = count, mute, arista
        self.venv = venv or venv_path()
        self.workdir = workdir or self.venv
        self.start_timeout = start_timeout
        self.devices: list[Device] = []
        self.mute: list[Device] = []
        self.arista: list[Device] = []  # fake-switches' arista_generic: netmiko arista_eos
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
        if self.arista_count:
            args += ["--family", f"{ARISTA_MODEL}:eos:{self.arista_count}"]
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
        arista = info["families"].get(ARISTA_MODEL, [])
        self.arista = [Device(name, port, device_type="arista_eos") for name, port in arista]
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
        """known_hosts lines for *devices* (default: all, mute and Arista ones included)."""
        chosen = devices if devices is not None else [*self.devices, *self.mute, *self.arista]
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
