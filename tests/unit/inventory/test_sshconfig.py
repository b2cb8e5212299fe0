"""~/.ssh/config as an inventory source and as fill-in values."""

from __future__ import annotations

from hostbatch.inventory import load_inventory
from hostbatch.inventory.sshconfig import parse
from tests.unit.inventory.conftest import WriteFile

CONFIG = """
    Host bastion
        HostName 10.9.0.1
        User jump
    Host web*
        User www
        Port 2200
        IdentityFile ~/.ssh/web_key
        ProxyJump bastion
    Host *
        User fallback
        Port 22
    Match host foo
        User ignored
"""


def test_lookup_first_value_wins(write: WriteFile) -> None:
    config = parse(write("ssh_config", CONFIG))
    values = {k: v.value for k, v in config.lookup("web01").items()}
    assert values["username"] == "www" and values["port"] == "2200"
    assert values["proxy_jump"] == "bastion"
    assert values["key_file"].endswith("/.ssh/web_key")
    assert config.lookup("other")["username"].value == "fallback"


def test_ssh_config_as_inventory(write: WriteFile) -> None:
    path = write("ssh_config", CONFIG)
    inventory = load_inventory([path], ssh_config=None)
    assert list(inventory.hosts) == ["bastion"]
    bastion = inventory.hosts["bastion"]
    assert (bastion.hostname, bastion.username, bastion.groups) == (
        "10.9.0.1",
        "jump",
        ("ssh_config",),
    )


def test_ssh_config_fills_what_inventory_leaves_unset(write: WriteFile) -> None:
    config = write("ssh_config", CONFIG)
    inv = write("hosts.ini", "[web01]\nhostname = web01\n[web02]\nhostname = web02\nport = 22\n")
    inventory = load_inventory([inv], ssh_config=config)
    web01, web02 = inventory.hosts["web01"], inventory.hosts["web02"]
    assert (web01.port, web01.username, web01.proxy_jump) == (2200, "www", "bastion")
    assert web02.port == 22  # the inventory wins over ssh_config
