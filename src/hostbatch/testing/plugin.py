"""pytest plugin: SSH servers for your own tests, loaded through the ``pytest11`` entry point.

Installing hostbatch makes these fixtures available to any pytest suite (no conftest
needed; ``-p no:hostbatch`` turns the plugin off):

``ssh_fleet``
    A started in-process fleet (:class:`hostbatch.testing.Fleet`) of five well-behaved
    hosts, ``node01``..``node05``, shared by the test module.
``ssh_fleet_factory``
    ``ssh_fleet_factory(count=5, **options) -> Fleet``: start a fleet of your own size and
    behaviours (the keyword arguments of :class:`hostbatch.testing.FleetThread`, e.g.
    ``behaviours={"node02": "refuse_auth"}``); stopped when the test ends.
``openssh_server``
    A started :class:`hostbatch.testing.sshd.OpenSSHServer` (a real OpenSSH sshd) on
    ``127.0.0.1``, shared by the whole session.
``openssh_server_factory``
    ``openssh_server_factory(addresses=("127.0.0.1",), **options) -> OpenSSHServer``: more
    servers (other loopback addresses, ``max_sessions``, ``extra_config``...); stopped when
    the test ends.
``openssh_remote_dir``
    A fresh directory the sshd login user owns (sshd runs on this machine).

Tests using an OpenSSH fixture are marked ``sshd`` (select with ``-m sshd`` or
``-m "not sshd"``). Without an sshd binary they are skipped with the reason, or fail
when the ``CI`` environment variable is set (CI should install openssh-server).

The fleet and sshd modules are imported when a fixture is first used, so the plugin costs
nothing in test sessions that do not use it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from hostbatch.testing.fleet import Fleet
    from hostbatch.testing.sshd import OpenSSHServer

__all__ = [
    "FleetFactory",
    "SSHD_FIXTURES",
    "SshdFactory",
    "openssh_remote_dir",
    "openssh_server",
    "openssh_server_factory",
    "ssh_fleet",
    "ssh_fleet_factory",
]

FleetFactory = Callable[..., "Fleet"]
"""``ssh_fleet_factory``: ``(count=5, **FleetThread options) -> started Fleet``."""
SshdFactory = Callable[..., "OpenSSHServer"]
"""``openssh_server_factory``: ``(addresses=("127.0.0.1",), **options) -> started server``."""

SSHD_FIXTURES = frozenset({"openssh_server", "openssh_server_factory"})
"""Fixtures whose tests get the ``sshd`` marker (directly or through another fixture)."""

_SSHD_MISSING = (
    "OpenSSH sshd is not installed: install openssh-server "
    "(e.g. apt-get install openssh-server; hostbatch's scripts/setup.sh --with-sshd does it)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sshd: needs a real OpenSSH sshd (started by the test on loopback)"
    )


def pytest_collection_modifyitems(items: Sequence[pytest.Item]) -> None:
    """Mark every test that uses an OpenSSH fixture, even through another fixture."""
    for item in items:
        if SSHD_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.sshd)


# -- the in-process fleet ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_fleet() -> Iterator[Fleet]:
    """Five well-behaved in-process SSH hosts (node01..node05), shared by a test module."""
    from hostbatch.testing.fleet import FleetThread

    with FleetThread(5) as started:
        yield started


@pytest.fixture
def ssh_fleet_factory() -> Iterator[FleetFactory]:
    """Start fleets of any size and behaviour: ``ssh_fleet_factory(3, behaviours={...})``."""
    from hostbatch.testing.fleet import FleetThread

    threads: list[FleetThread] = []

    def start(count: int = 5, **options: Any) -> Fleet:
        thread = FleetThread(count, **options)
        fleet = thread.start()  # stops itself when it cannot start
        threads.append(thread)
        return fleet

    yield start
    for thread in reversed(threads):
        thread.stop()


# -- a real OpenSSH sshd -------------------------------------------------------------------


def _require_sshd_binary() -> None:
    from hostbatch.testing.sshd import find_sshd

    if find_sshd() is None:
        if os.environ.get("CI"):
            pytest.fail(_SSHD_MISSING, pytrace=False)
        pytest.skip(_SSHD_MISSING)


@pytest.fixture(scope="session")
def openssh_server() -> Iterator[OpenSSHServer]:
    """A started real OpenSSH sshd on 127.0.0.1, shared by the whole session."""
    _require_sshd_binary()
    from hostbatch.testing.sshd import OpenSSHServer

    with OpenSSHServer() as server:
        yield server


@pytest.fixture
def openssh_server_factory() -> Iterator[SshdFactory]:
    """Start more servers: ``openssh_server_factory(addresses=[...], max_sessions=...)``."""
    _require_sshd_binary()
    from hostbatch.testing.sshd import OpenSSHServer

    servers: list[OpenSSHServer] = []

    def start(addresses: Sequence[str] = ("127.0.0.1",), **options: Any) -> OpenSSHServer:
        server = OpenSSHServer(addresses, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def openssh_remote_dir(openssh_server: OpenSSHServer) -> Iterator[Path]:
    """A fresh directory owned by the sshd login user (as root, another user).

    It is made in the system's temporary directory, not under pytest's ``tmp_path``:
    pytest keeps ``/tmp/pytest-of-USER`` private (0700) and every pytest run started
    meanwhile makes it so again, which would lock the login user out mid-test."""
    with owned_remote_dir(openssh_server) as path:
        yield path


@contextlib.contextmanager
def owned_remote_dir(server: OpenSSHServer) -> Iterator[Path]:
    """A fresh directory in the system's temporary directory, owned by *server*'s login
    user (as root, another user), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="hostbatch-sshd-remote-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(server.username)
        os.chown(path, owner.pw_uid, owner.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
