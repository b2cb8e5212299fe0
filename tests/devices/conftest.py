"""Fixtures for the device tests: fake Cisco IOS devices on loopback (see fake_ios.py).

One emulator process serves the whole session: ``DEVICE_COUNT`` devices plus one mute
device (logs in, never shows a prompt). Each test takes fresh devices with
``take_devices(n)``, so configuration changes never leak between tests.

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

DEVICE_COUNT = 80
CONNECT_TIMEOUT = 8.0

TakeDevices = Callable[[int], list[Device]]


@pytest.fixture(scope="session")
def fake_ios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeIOS]:
    fleet = FakeIOS(DEVICE_COUNT, mute=1, workdir=tmp_path_factory.mktemp("fake_ios"))
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


@pytest.fixture(scope="session")
def _unused(fake_ios: FakeIOS) -> list[Device]:
    return list(fake_ios.devices)


@pytest.fixture
def take_devices(_unused: list[Device]) -> TakeDevices:
    """``take_devices(n)``: n devices no other test has used."""

    def take(count: int) -> list[Device]:
        if count > len(_unused):
            raise RuntimeError(f"only {len(_unused)} fresh devices left; raise DEVICE_COUNT")
        taken, _unused[:] = _unused[:count], _unused[count:]
        return taken

    return take


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
    """A Host record for *device* (cisco_ios, root/root, enable secret), with *changes*."""
    host = Host(
        name=device.name,
        hostname=device.address,
        port=device.port,
        credentials=Credentials(
            username=USERNAME, password=Secret(PASSWORD), secret=Secret(ENABLE_SECRET)
        ),
        transport="netmiko",
        device_type="cisco_ios",
    )
    return replace(host, **changes)
