"""Engine records: the transport registry, the connect timeout's one home, put plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostbatch.engine.limits import Limits
from hostbatch.engine.plan import Plan
from hostbatch.errors import UsageError
from hostbatch.models import Host, Transfer
from hostbatch.transport.base import ConnectOptions
from hostbatch.transport.registry import NAMES, get_transport, is_blocking


@pytest.mark.parametrize("name", NAMES)
def test_the_registry_knows_which_transports_block_without_importing_them(name: str) -> None:
    assert get_transport(name).blocking is is_blocking(name)


def test_only_netmiko_blocks_and_unknown_names_are_bad_input() -> None:
    assert [name for name in NAMES if is_blocking(name)] == ["netmiko"]
    with pytest.raises(UsageError, match="unknown transport 'telnet'"):
        is_blocking("telnet")


def test_the_connect_timeout_lives_on_connect_options_only() -> None:
    assert "connect_timeout" not in Limits.__dataclass_fields__
    assert ConnectOptions(connect_timeout=2.5).connect_timeout == 2.5
    with pytest.raises(UsageError, match="connect timeout must be positive"):
        ConnectOptions(connect_timeout=0)


def test_a_put_plan_carries_its_local_files_walked_when_made(tmp_path: Path) -> None:
    local = tmp_path / "f.txt"
    local.write_bytes(b"x" * 5000)
    transfer = Transfer("put", (str(local),), "/tmp/")
    hosts = (Host("h1", "127.0.0.1"),)
    first = Plan(transfer, hosts)
    local.write_bytes(b"y" * 100)
    second = Plan(transfer, hosts)
    assert [i.size for i in first.local_items[0]] == [5000]
    assert [i.size for i in second.local_items[0]] == [100]  # not a cached walk
    assert first.shard(0, 2).local_items == first.local_items
    local.unlink()
    with pytest.raises(UsageError, match="No such file"):
        Plan(transfer, hosts)
