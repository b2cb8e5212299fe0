"""~/.ssh/config as an inventory source and as fill-in values."""

from __future__ import annotations

import itertools
import time

import pytest

from hostbatch.errors import InventoryError
from hostbatch.inventory import load_inventory
from hostbatch.inventory.sshconfig import MAX_INCLUDE_DEPTH, parse
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


def test_include_of_itself_is_a_cycle_error_naming_file_and_line(write: WriteFile) -> None:
    path = write("config", "Host a\n  HostName 10.0.0.1\n")
    path.write_text(f"Host a\n  HostName 10.0.0.1\nInclude {path}\nInclude {path}\n")
    began = time.monotonic()
    with pytest.raises(InventoryError, match=rf"^{path}:3: Include cycle"):
        parse(path)
    assert time.monotonic() - began < 5


def test_mutual_include_cycle(write: WriteFile) -> None:
    first = write("a.conf", "")
    second = write("b.conf", f"Include {first}\n")
    first.write_text(f"Host x\n  User u\nInclude {second}\n")
    with pytest.raises(InventoryError, match=rf"^{second}:1: Include cycle"):
        parse(first)


def test_include_depth_is_capped_like_openssh(write: WriteFile) -> None:
    paths = [write(f"c{n}.conf", "") for n in range(MAX_INCLUDE_DEPTH + 2)]
    for here, below in itertools.pairwise(paths):
        here.write_text(f"Include {below}\n")
    paths[-1].write_text("Host deep\n  User u\n")
    with pytest.raises(InventoryError, match=rf"nested deeper than {MAX_INCLUDE_DEPTH}"):
        parse(paths[0])
    ok = paths[-MAX_INCLUDE_DEPTH - 1]  # exactly MAX_INCLUDE_DEPTH levels below it
    assert parse(ok).lookup("deep")["username"].value == "u"


def test_diamond_includes_stay_linear(write: WriteFile) -> None:
    leaf = write("leaf.conf", "Host leaf\n  User u\n")
    below = leaf
    for level in range(MAX_INCLUDE_DEPTH - 1):
        below = write(f"d{level}.conf", f"Include {below}\nInclude {below}\n")
    began = time.monotonic()
    config = parse(below)
    assert time.monotonic() - began < 5
    assert config.lookup("leaf")["username"].value == "u"


@pytest.mark.parametrize(
    "line",
    ["x" * 100_000, 'HostName "unclosed quote', f'Password {"s" * 20} "hunter2-secret'],
)
def test_bad_line_is_short_clear_and_masked(write: WriteFile, line: str) -> None:
    path = write("config", f"Host a\n{line}\n")
    with pytest.raises(InventoryError) as caught:
        parse(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:2: ") and len(message) < 300
    assert "hunter2" not in message
