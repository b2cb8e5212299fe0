"""Fixtures for the device tests: fake Cisco IOS devices on loopback (see fake_ios.py).

One emulator process serves the whole session: ``DEVICE_COUNT`` IOS devices, one mute
device (logs in, never shows a prompt) and ``ARISTA_COUNT`` Arista EOS devices. Each test
takes fresh devices with ``take_devices(n)`` (IOS) or ``take_arista(n)``, so configuration
changes never leak between tests.

The emulator lives in a venv of its own, created on first use (``$HOSTBATCH_FAKEIOS_VENV``,
else ``~/.cache/hostbatch-test/fakeios-venv``; needs PyPI once). When it cannot be
installed or started the tests are skipped, or fail when ``CI`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hostbatch.api import RunOptions
from hostbatch.engine.limits import Limits
from hostbatch.models import Credentials, Host, Secret
from hostbatch.transport.base import ConnectOptions
from tests.devices.fake_ios import (
    ENABLE_SECRET,
    PASSWORD,
    USERNAME,
    Device,
    FakeIOS,
    FakeIOSError,
)

DEVICE_COUNT = 84
ARISTA_COUNT = 6
CONNECT_TIMEOUT = 8.0

TakeDevices = Callable[[int], list[Device]]


@pytest.fixture(scope="session")
def fake_ios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeIOS]:
    workdir = tmp_path_factory.mktemp("fake_ios")
    fleet = FakeIOS(DEVICE_COUNT, mute=1, arista=ARISTA_COUNT, workdir=workdir)
    try:
        fleet.start()
    except FakeIOSError as exc:
        message = f"fake IOS emulator unavailable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield fleet
    finally:
        fleet.stop()


def _taker(unused: list[Device]) -> TakeDevices:
    def take(count: int) -> list[Device]:
        if count > len(unused):
            raise RuntimeError(f"only {len(unused)} fresh devices left; raise the count")
        taken, unused[:] = unused[:count], unused[count:]
        return taken

    return take


@pytest.fixture(scope="session")
def _unused(fake_ios: FakeIOS) -> list[Device]:
    return list(fake_ios.devices)


@pytest.fixture(scope="session")
def _unused_arista(fake_ios: FakeIOS) -> list[Device]:
    return list(fake_ios.arista)


@pytest.fixture
def take_devices(_unused: list[Device]) -> TakeDevices:
    """``take_devices(n)``: n IOS devices no other test has used (DEVICE_COUNT in all)."""
    return _taker(_unused)


@pytest.fixture
def take_arista(_unused_arista: list[Device]) -> TakeDevices:
    """``take_arista(n)``: n Arista EOS devices no other test has used (ARISTA_COUNT)."""
    return _taker(_unused_arista)


@pytest.fixture(scope="session")
def known_hosts(fake_ios: FakeIOS, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A known_hosts file holding every emulated device's key."""
    path = tmp_path_factory.mktemp("keys") / "known_hosts"
    path.write_text(fake_ios.known_hosts_text(), encoding="utf-8")
    return path


@pytest.fixture
def connect_options(known_hosts: Path) -> ConnectOptions:
    return ConnectOptions(connect_timeout=CONNECT_TIMEOUT, known_hosts=str(known_hosts))


@pytest.fixture
def run_options(connect_options: ConnectOptions) -> RunOptions:
    return RunOptions(limits=Limits(workers=1), connect=connect_options)


def device_host(device: Device, **changes: Any) -> Host:
    """A Host record for *device* (its device_type, root/root, enable secret), with *changes*."""
    host = Host(
        name=device.name,
        hostname=device.address,
        port=device.port,
        credentials=Credentials(
            username=USERNAME, password=Secret(PASSWORD), secret=Secret(ENABLE_SECRET)
        ),
        transport="netmiko",
        device_type=device.device_type,
    )
    return replace(host, **changes)
