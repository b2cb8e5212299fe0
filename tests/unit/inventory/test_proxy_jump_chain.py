"""ProxyJump chains (OpenSSH ``a,b``) resolve into nested jump hosts, first hop first."""

from __future__ import annotations

from pathlib import Path

from hostbatch.inventory import load_inventory
from hostbatch.inventory.resolve import parse_jump, parse_jumps


def test_parse_every_hop() -> None:
    assert parse_jumps("alice@a:2222, b,[::1]:2200") == [
        ("alice", "a", 2222),
        (None, "b", 22),
        (None, "::1", 2200),
    ]
    assert parse_jump("a,b") == (None, "a", 22)


def test_ssh_config_chain_of_inventory_and_literal_hops(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host gw\n  HostName 127.0.0.5\n  User gwuser\n  Port 2022\n\n"
        "Host inner\n  HostName 127.0.0.9\n  User me\n  ProxyJump gw,ops@127.0.0.7:2200\n"
    )
    loaded = load_inventory([config], ssh_config=None)
    inner = loaded.hosts["inner"]
    assert [(h.name, h.hostname, h.port, h.username) for h in inner.jump_chain] == [
        ("gw", "127.0.0.5", 2022, "gwuser"),
        ("127.0.0.7", "127.0.0.7", 2200, "ops"),
    ]
    assert inner.jump is not None and inner.jump.jump is not None
    assert inner.jump.jump.name == "gw" and inner.jump.jump.jump is None
    assert loaded.hosts["gw"].jump is None
