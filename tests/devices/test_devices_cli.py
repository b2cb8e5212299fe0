"""`hostbatch run` on fake IOS devices from an INI inventory that sets device_type."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.devices.conftest import TakeDevices
from tests.devices.fake_ios import ENABLE_SECRET, PASSWORD, USERNAME, Device
from tests.fixtures.cli import run_cli

pytestmark = pytest.mark.devices


def write_inventory(folder: Path, devices: list[Device]) -> Path:
    folder.mkdir()
    lines = [
        "[DEFAULT]",
        "device_type = cisco_ios",
        f"username = {USERNAME}",
        f"password = {PASSWORD}",
        f"secret = {ENABLE_SECRET}",
        "",
    ]
    for device in devices:
        lines += [f"[{device.name}]", f"hostname = {device.address}", f"port = {device.port}", ""]
    routers = folder / "routers.ini"
    routers.write_text("\n".join(lines), encoding="utf-8")
    routers.chmod(0o600)
    return folder


def hostbatch_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=90)


def test_run_several_commands_json(
    take_devices: TakeDevices, known_hosts: Path, tmp_path: Path
) -> None:
    devices = take_devices(3)
    inventory = write_inventory(tmp_path / "inventory", devices)
    result = hostbatch_cli(
        "run",
        "-g",
        "routers",
        "-c",
        "show version",
        "-c",
        "show running-config",
        "--json",
        "-i",
        str(inventory),
        "--known-hosts",
        str(known_hosts),
    )
    assert result.returncode == 0, result.stderr
    records = {r["host"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert sorted(records) == sorted(d.name for d in devices)
    for device in devices:
        record = records[device.name]
        assert record["status"] == "ok"
        version, running = record["outputs"]
        assert version["command"] == "show version" and version["error"] is None
        assert "Cisco IOS Software" in version["output"]
        assert running["command"] == "show running-config"
        assert f"hostname {device.name}" in running["output"]
        assert "Cisco IOS Software" not in running["output"]


def test_run_config_save_parse_and_a_failing_command(
    take_devices: TakeDevices, known_hosts: Path, tmp_path: Path
) -> None:
    devices = take_devices(2)
    inventory = write_inventory(tmp_path / "inventory", devices)
    result = hostbatch_cli(
        "run",
        "-g",
        "routers",
        "--config",
        "vlan 321",
        "--save",
        "--parse",
        "-c",
        "show vlan",
        "-c",
        "nonsense here",
        "--json",
        "-i",
        str(inventory),
        "--known-hosts",
        str(known_hosts),
    )
    assert result.returncode == 1, result.stderr  # some commands failed
    for record in map(json.loads, result.stdout.splitlines()):
        assert record["status"] == "failed"
        config, save, vlan, nonsense = record["outputs"]
        assert (config["command"], config["error"]) == ("config", None)
        assert (save["command"], save["error"]) == ("save", None)
        assert "321" in [row["vlan_id"] for row in vlan["parsed"]]
        assert nonsense["error"] == "% Invalid input detected at '^' marker."
