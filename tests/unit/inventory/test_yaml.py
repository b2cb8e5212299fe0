"""YAML inventories: the netmiko list style and the structured form."""

from __future__ import annotations

import pytest

from hostbatch.errors import InventoryError
from hostbatch.inventory import load_inventory
from hostbatch.models import Secret
from tests.unit.inventory.conftest import WriteFile


def test_netmiko_list_style(write: WriteFile) -> None:
    path = write(
        "devices.yaml",
        """
        routers:
          - {device_type: cisco_ios, ip: 10.0.0.1, username: admin, password: pw1}
          - {device_type: cisco_ios, ip: 10.0.0.2, username: admin, password: pw2, secret: en}
        switches:
          - name: sw1
            device_type: arista_eos
            host: 10.0.1.1
            port: 2222
            username: netops
        """,
    )
    inventory = load_inventory([path], ssh_config=None)
    assert list(inventory.hosts) == ["10.0.0.1", "10.0.0.2", "sw1"]
    r2 = inventory.hosts["10.0.0.2"]
    assert (r2.device_type, r2.transport, r2.groups) == ("cisco_ios", "netmiko", ("routers",))
    assert r2.credentials.secret == Secret("en")
    sw1 = inventory.hosts["sw1"]
    assert (sw1.hostname, sw1.port, sw1.username) == ("10.0.1.1", 2222, "netops")


def test_top_level_list(write: WriteFile) -> None:
    path = write("devices.yml", "- {ip: 10.0.0.1, username: a}\n- {ip: 10.0.0.2}\n")
    assert list(load_inventory([path], ssh_config=None).hosts) == ["10.0.0.1", "10.0.0.2"]


def test_structured_form_precedence(write: WriteFile) -> None:
    path = write(
        "inv.yaml",
        """
        defaults: {username: ops, port: 22}
        groups:
          web: {port: 2222}
          db:
            username: dba
            hosts: [db01]
        hosts:
          web01: {hostname: 10.0.0.1, groups: [web]}
          web02: {hostname: 10.0.0.2, groups: [web], port: 8022}
          db01: {hostname: 10.0.0.3}
        """,
    )
    inventory = load_inventory([path], ssh_config=None)
    web01, web02, db01 = (inventory.hosts[n] for n in ("web01", "web02", "db01"))
    assert (web01.port, web01.username) == (2222, "ops")
    assert web02.port == 8022
    assert db01.username == "dba" and "db" in db01.groups


def test_yaml_syntax_error_names_line(write: WriteFile) -> None:
    path = write("inv.yaml", "routers:\n  - {ip: 10.0.0.1\n  - {ip: 10.0.0.2}\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory([path], ssh_config=None)
    assert caught.value.path == str(path)
    assert caught.value.line is not None and caught.value.line >= 2
    assert "YAML syntax error" in str(caught.value)


def test_yaml_bad_port_names_line(write: WriteFile) -> None:
    path = write("inv.yaml", "routers:\n  - ip: 10.0.0.1\n    port: twenty\n")
    with pytest.raises(InventoryError, match=r"inv.yaml:3: host '10.0.0.1': port 'twenty'"):
        load_inventory([path], ssh_config=None)


def test_yaml_host_without_address(write: WriteFile) -> None:
    path = write("inv.yaml", "routers:\n  - {username: admin}\n")
    with pytest.raises(InventoryError, match=r"inv.yaml:2: host has no 'name', 'host' or 'ip'"):
        load_inventory([path], ssh_config=None)


def test_yaml_unknown_key_warns_once(write: WriteFile) -> None:
    path = write("inv.yaml", "routers:\n  - {ip: 10.0.0.1, fast_cli: true}\n")
    warnings = load_inventory([path], ssh_config=None).warnings
    assert warnings == (f"{path}:2: unknown key 'fast_cli' ignored",)


def test_folder_with_yaml_and_ini(write: WriteFile) -> None:
    write("inv/web.ini", "[web01]\nhostname = 10.0.0.1\n")
    path = write("inv/routers.yaml", "routers:\n  - {ip: 10.0.0.9, device_type: cisco_ios}\n")
    inventory = load_inventory([path.parent], ssh_config=None)
    assert set(inventory.groups) == {"web", "routers"}
