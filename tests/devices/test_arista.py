"""A second device family: fake-switches' Arista model, driven by netmiko as arista_eos.

The IOS tests cover the transport in depth; these check that nothing in it is IOS-only:
the login and paging set-up, show commands and TextFSM parsing, a configuration set and
its save, and the family's own error line, per host, in a run mixing both families.
"""

from __future__ import annotations

import pytest

import hostbatch
from hostbatch.api import RunOptions
from hostbatch.models import CommandSet, Host, HostResult, Status
from tests.devices.conftest import TakeDevices, device_host

pytestmark = pytest.mark.devices


def run(
    commands: CommandSet | str, hosts: list[Host], options: RunOptions
) -> dict[str, HostResult]:
    return hostbatch.api.run(commands, hosts=hosts, options=options)


def test_show_commands_parsed_with_the_eos_templates(
    take_arista: TakeDevices, run_options: RunOptions
) -> None:
    devices = take_arista(2)
    assert {d.device_type for d in devices} == {"arista_eos"}
    commands = CommandSet(("show version", "show vlan"), parse=True)
    results = run(commands, [device_host(d) for d in devices], run_options)
    for device in devices:
        result = results[device.name]
        assert result.status is Status.OK, result.error
        version, vlans = result.outputs
        assert "Arista vEOS" in version.output
        assert version.parsed is not None
        assert (version.parsed[0]["model"], version.parsed[0]["image"]) == ("vEOS", "4.20.8M")
        assert vlans.parsed is not None
        assert [(v["vlan_id"], v["vlan_name"]) for v in vlans.parsed] == [("1", "default")]


def test_config_set_save_and_running_config(
    take_arista: TakeDevices, run_options: RunOptions
) -> None:
    device = take_arista(1)[0]
    commands = CommandSet(
        ("show running-config", "show vlan"), config=("vlan 42", "name lab42"), save=True
    )
    result = run(commands, [device_host(device)], run_options)[device.name]
    assert result.status is Status.OK, result.error
    config, save, running, vlans = result.outputs
    assert config.error is None
    assert f"{device.name}(config-vlan-42)#" in config.output  # EOS's own mode prompt
    assert (save.error, "Copy completed successfully." in save.output) == (None, True)
    assert "vlan 42\n   name lab42" in running.output
    assert "lab42" in vlans.output
    # the change outlives the session
    again = run("show vlan 42", [device_host(device)], run_options)[device.name]
    assert again.ok and "lab42" in again.stdout_text


def test_rejected_lines_carry_each_familys_own_error(
    take_arista: TakeDevices, take_devices: TakeDevices, run_options: RunOptions
) -> None:
    arista, ios = take_arista(1)[0], take_devices(1)[0]
    commands = CommandSet(
        ("show version", "frobnicate"), config=("vlan 50", "bogus thing", "vlan 51")
    )
    results = run(commands, [device_host(arista), device_host(ios)], run_options)
    errors = {
        name: [(o.command, o.error) for o in result.outputs] for name, result in results.items()
    }
    assert errors[arista.name] == [
        ("config", "'bogus thing': % Invalid input"),
        ("show version", None),
        ("frobnicate", "% Invalid input"),
    ]
    ios_invalid = "% Invalid input detected at '^' marker."
    assert errors[ios.name] == [
        ("config", f"'bogus thing': {ios_invalid}"),
        ("show version", None),
        ("frobnicate", ios_invalid),
    ]
    eos = results[arista.name]
    assert eos.status is Status.FAILED
    assert "Arista vEOS" in eos.outputs[1].output
    # the line before the rejected one was applied, the one after it was not
    vlans = run("show vlan", [device_host(arista)], run_options)[arista.name].stdout_text
    assert "50 " in vlans and "51 " not in vlans
