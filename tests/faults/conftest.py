"""Fixtures for the fault matrix: one misbehaving in-process fleet plus the real sshd.

``mixed`` is an inventory of two groups: ``fleet`` (node01..node08 of an in-process
fleet, node02..node06 misbehaving one way each) and ``real`` (``real01``, the session's
OpenSSH sshd, whose commands run on this machine as its login user). One known_hosts
file holds every host's key. On the fleet ``$HOSTBATCH_FLEET_HOST`` names the host; on
the sshd it is empty, so one command can tell the two kinds apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostbatch.testing import Fleet, FleetThread
from hostbatch.testing.sshd import OpenSSHServer

BEHAVIOURS = {
    "node02": "hang_before_banner",
    "node03": "refuse_connect",
    "node04": "refuse_auth",
    "node05": "drop_mid_command",
    "node06": "slow_output",
}
GOOD_FLEET_HOSTS = ("node01", "node07", "node08")
SLOW_DELAY = 0.2


@dataclass(frozen=True)
class Mixed:
    """The fleet, the real sshd, and an inventory and known_hosts covering both."""

    fleet: Fleet
    sshd: OpenSSHServer
    inventory: Path
    known_hosts: Path


def write_private(path: Path, text: str) -> Path:
    """Write *text* to a new file only its owner can read (inventories with secrets)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return path


@pytest.fixture(scope="module")
def mixed(sshd: OpenSSHServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mixed]:
    root = tmp_path_factory.mktemp("mixed")
    with FleetThread(8, behaviours=BEHAVIOURS, slow_delay=SLOW_DELAY) as fleet:
        inventory = fleet.write_inventory(root / "inventory", auth="key")
        write_private(
            inventory / "real.ini",
            f"[real01]\nhostname = {sshd.host}\nport = {sshd.port}\n"
            f"username = {sshd.username}\nkey_file = {sshd.client_key}\n",
        )
        known_hosts = root / "known_hosts"
        known_hosts.write_text(fleet.known_hosts.read_text() + sshd.known_hosts.read_text())
        yield Mixed(fleet, sshd, inventory, known_hosts)
