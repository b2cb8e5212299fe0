"""netmiko-style host dicts as Host records (hostbatch.inventory.dicts)."""

from __future__ import annotations

from typing import Any

import pytest

from hostbatch.errors import UsageError
from hostbatch.inventory.dicts import hosts_from_dicts
from hostbatch.models import Secret


def test_dicts_resolve_like_inventory_entries() -> None:
    specs: list[dict[str, Any]] = [
        {"device_type": "cisco_ios", "ip": "127.0.0.5", "username": "u", "password": "pw"},
        {"host": "127.0.0.6", "port": 2222, "global_delay_factor": 2, "secret": None},
    ]
    router, server = hosts_from_dicts(list(enumerate(specs)))
    assert (router.name, router.transport, router.device_type) == (
        "127.0.0.5",
        "netmiko",
        "cisco_ios",
    )
    assert router.credentials.password == Secret("pw")
    assert (server.name, server.port, server.transport) == ("127.0.0.6", 2222, None)


def test_unnamed_dicts_sharing_an_address_are_named_by_port() -> None:
    specs: list[dict[str, Any]] = [
        {"ip": "127.0.0.7", "port": 22},
        {"ip": "127.0.0.7", "port": 2222},
        {"ip": "127.0.0.8", "name": "r8"},
    ]
    assert [h.name for h in hosts_from_dicts(list(enumerate(specs)))] == [
        "127.0.0.7:22",
        "127.0.0.7:2222",
        "r8",
    ]


def test_an_unknown_key_or_no_address_is_bad_input() -> None:
    with pytest.raises(UsageError, match=r"hosts\[1\]: unknown key 'colour'"):
        hosts_from_dicts([(1, {"ip": "127.0.0.9", "colour": "red"})])
    with pytest.raises(UsageError, match="needs 'host' or 'ip'"):
        hosts_from_dicts([(0, {"username": "u"})])
