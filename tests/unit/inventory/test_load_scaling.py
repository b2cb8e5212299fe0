"""Loading a large inventory stays linear: no repeated full garbage collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostbatch.inventory import load_inventory

HOSTS = 10_000


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """Counts generation-2 collections while the test runs."""
    seen: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(1)

    gc.callbacks.append(count)
    yield seen
    gc.callbacks.remove(count)


def test_large_ini_load_triggers_no_repeated_full_collections(
    tmp_path: Path, full_collections: list[int]
) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(
        "".join(
            f"[h{n}]\nhostname = 10.0.{n >> 8}.{n & 255}\ngroups = g{n % 7}\n" for n in range(HOSTS)
        )
    )
    gc.collect()
    full_collections.clear()
    inventory = load_inventory([path], ssh_config=None, environ={})
    assert len(inventory) == HOSTS
    assert len(full_collections) <= 1
    assert gc.isenabled()


def test_collector_is_re_enabled_after_a_failed_load(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("no header\n")
    with pytest.raises(Exception, match="header"):
        load_inventory([path], ssh_config=None)
    assert gc.isenabled()
