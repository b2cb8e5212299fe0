"""Host selection: -h/-g union, ranges, @group, !exclude, all, unknown names."""

from __future__ import annotations

import pytest

from hostbatch.errors import SelectionError
from hostbatch.inventory import Inventory
from hostbatch.inventory.patterns import MAX_EXPANSION
from hostbatch.models import Host, Secret


@pytest.fixture
def inventory() -> Inventory:
    hosts = [Host(f"web{i:02d}", f"10.0.0.{i}", groups=("web",)) for i in range(1, 11)]
    hosts += [Host(f"db{i}", f"10.0.1.{i}", groups=("db",)) for i in range(1, 4)]
    hosts.append(Host("web03", "10.0.0.3", groups=("web", "db")))
    return Inventory.from_hosts(hosts, group_order=["web", "db", "empty"])


def names(hosts: list[Host]) -> list[str]:
    return [h.name for h in hosts]


def test_hosts_and_groups_union_each_once(inventory: Inventory) -> None:
    chosen = inventory.select(hosts="web01,db1", groups="db")
    assert names(chosen) == ["web01", "db1", "db2", "db3", "web03"]


def test_range_group_and_exclusion(inventory: Inventory) -> None:
    chosen = inventory.select(patterns=["web[01-05]", "!web03", "@db", "!db2"])
    assert names(chosen) == ["web01", "web02", "web04", "web05", "db1", "db3", "web03"]


def test_leading_exclusion_starts_from_all(inventory: Inventory) -> None:
    assert "web07" not in names(inventory.select(patterns="!web07"))
    assert len(inventory.select(patterns="!web07")) == len(inventory) - 1


def test_all_and_nothing_given(inventory: Inventory) -> None:
    assert len(inventory.select(patterns="all")) == len(inventory)
    assert len(inventory.select()) == len(inventory)


def test_glob(inventory: Inventory) -> None:
    assert names(inventory.select(patterns="db*")) == ["db1", "db2", "db3"]


def test_unknown_host_named_with_suggestions(inventory: Inventory) -> None:
    with pytest.raises(SelectionError, match=r"unknown host 'web1'; did you mean .*'web01'"):
        inventory.select(hosts="web1")


def test_unknown_range_member_named(inventory: Inventory) -> None:
    with pytest.raises(SelectionError, match=r"unknown host 'web11' \(and 1 more\)"):
        inventory.select(hosts="web[09-12]")


def test_unknown_group_named_with_suggestion(inventory: Inventory) -> None:
    with pytest.raises(SelectionError, match=r"unknown group 'dbs'; did you mean 'db'"):
        inventory.select(groups="web,dbs")


def test_empty_result_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(SelectionError, match="matches no host"):
        inventory.select(groups="empty")
    with pytest.raises(SelectionError, match="matches no host"):
        inventory.select(patterns=["@db", "!@db"])


def test_ask_pass_fills_only_hosts_without_password() -> None:
    with_pw = Host("a", "10.0.0.1")
    inventory = Inventory.from_hosts([with_pw])
    updated = inventory.with_password(Secret("typed"))
    assert updated.hosts["a"].credentials.password == Secret("typed")
    assert "typed" not in repr(updated.hosts["a"])


@pytest.mark.parametrize(
    "given",
    [
        {"hosts": ""},
        {"hosts": ","},
        {"hosts": " , "},
        {"groups": ""},
        {"patterns": [""]},
        {"hosts": ["web01", ""]},
        {"hosts": "web01,,web02"},
        {"hosts": "web01,"},
        {"groups": "web,"},
    ],
)
def test_empty_selection_or_term_is_an_error_never_all(
    inventory: Inventory, given: dict[str, str | list[str]]
) -> None:
    with pytest.raises(SelectionError, match="empty"):
        inventory.select(
            hosts=given.get("hosts"), groups=given.get("groups"), patterns=given.get("patterns")
        )


def test_not_given_at_all_still_means_every_host(inventory: Inventory) -> None:
    assert len(inventory.select(hosts=None, groups=None, patterns=None)) == len(inventory)
    assert len(inventory.select(hosts=[], groups=(), patterns=[])) == len(inventory)


def test_total_expansion_is_bounded_before_building_names(inventory: Inventory) -> None:
    huge = ",".join(["web[0-999998]"] * 12)
    with pytest.raises(SelectionError) as caught:
        inventory.select(hosts=huge)
    message = str(caught.value)
    assert "11999988" in message and f"{MAX_EXPANSION}" in message


def test_expansion_bound_spans_hosts_groups_and_patterns(inventory: Inventory) -> None:
    half = f"web[1-{MAX_EXPANSION // 2 + 1}]"
    with pytest.raises(SelectionError, match=r"limit is"):
        inventory.select(hosts=half, patterns=[half])
