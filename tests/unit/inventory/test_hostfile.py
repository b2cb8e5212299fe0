"""Ad-hoc host terms and pssh-style host files (inventory/hostfile.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hostbatch.errors import InventoryError, SelectionError
from hostbatch.inventory.hostfile import (
    Address,
    AdhocSelection,
    load_with_adhoc,
    looks_adhoc,
    parse_address,
    read_hostfile,
    split_adhoc,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.5", Address("10.0.0.5", "10.0.0.5")),
        ("deploy@10.0.0.5:2222", Address("deploy@10.0.0.5:2222", "10.0.0.5", "deploy", 2222)),
        ("[::1]:22", Address("[::1]:22", "::1", None, 22)),
        ("root@[fe80::1%eth0]", Address("root@[fe80::1%eth0]", "fe80::1%eth0", "root")),
        ("::1", Address("::1", "::1")),
        ("db.example.com", Address("db.example.com", "db.example.com")),
    ],
)
def test_parse_address(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("u@", "no host"),
        ("@host", "empty user"),
        ("host:http", "port 'http' is not a number"),
        ("host:70000", "out of range"),
        ("[::1", r"expected \[IPv6 address\]:PORT"),
        ("ho/st", "not a host name"),
        ("[web01:22]:22", "not a host name"),
        ("a:b:c", "not a host name"),
    ],
)
def test_parse_address_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_address(text)


@pytest.mark.parametrize(
    ("term", "adhoc"),
    [
        ("10.0.0.5", True),
        ("u@web01", True),
        ("web01:2222", True),
        ("[::1]:22", True),
        ("::1", True),
        ("db.example.com", True),
        ("web0l", False),  # a bare word must be an inventory name
        ("web[01-03]", False),
        ("web*.example.com", False),
        ("@web", False),
        ("all", False),
    ],
)
def test_looks_adhoc(term: str, adhoc: bool) -> None:
    assert looks_adhoc(term) is adhoc


def test_split_keeps_inventory_names_and_patterns() -> None:
    split = AdhocSelection()
    terms = split_adhoc(["web01,web.example.com,10.0.0.5,!10.0.0.6,@db,web0l"], {"web01"}, split)
    assert terms == ["web01", "@db", "web0l"]
    assert list(split.addresses) == ["web.example.com", "10.0.0.5"]
    assert split.excluded == {"10.0.0.6"}


def test_an_inventory_name_with_a_dot_stays_the_inventory_host() -> None:
    split = AdhocSelection()
    assert split_adhoc(["web01.example.com"], {"web01.example.com"}, split) == ["web01.example.com"]
    assert not split.addresses


def test_bad_address_term_is_a_selection_error() -> None:
    with pytest.raises(SelectionError, match="bad host 'u@h:99999' in -h: port 99999"):
        split_adhoc(["u@h:99999"], set(), AdhocSelection())


def test_hostfile_lines_comments_and_errors_name_the_line() -> None:
    split = AdhocSelection()
    text = "# fleet\n\nweb01\nroot@127.0.0.2:2222  # lab\nlocalhost\n"
    read_hostfile(io.StringIO(text), "hosts.txt", {"web01"}, split)
    assert split.host_terms == ["web01"]
    assert {a: w.where for a, (_, w) in split.addresses.items()} == {
        "root@127.0.0.2:2222": "hosts.txt:4",
        "localhost": "hosts.txt:5",
    }
    with pytest.raises(InventoryError, match=r"^hosts.txt:2: bad host 'a b'"):
        read_hostfile(io.StringIO("ok.example\na b\n"), "hosts.txt", set(), AdhocSelection())


def test_adhoc_hosts_take_ssh_config_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./inventory here, none in $HOME: none is needed
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "ssh_config"
    config.write_text("Host 127.0.0.*\n  User alice\n  Port 2200\n  IdentityFile /k/id\n")
    inventory, split = load_with_adhoc(
        (), hosts=["127.0.0.1,bob@127.0.0.2:22"], ssh_config=str(config), environ={}
    )
    first, second = (inventory.hosts[name] for name in split.addresses)
    assert (first.username, first.port, first.credentials.key_file) == ("alice", 2200, "/k/id")
    assert (second.username, second.port) == ("bob", 22)
    assert first.source == "-h"


def test_without_inventory_a_bare_word_still_needs_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InventoryError, match="no inventory found"):
        load_with_adhoc((), hosts=["127.0.0.1,web01"], environ={})
    with pytest.raises(InventoryError, match="no inventory found"):
        load_with_adhoc((), hosts=["127.0.0.1"], groups=["web"], environ={})
