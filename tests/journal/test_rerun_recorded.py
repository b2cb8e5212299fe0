"""A run selected by ``--rerun last...`` or ``@run:last...`` is recorded with the run id
the reference resolved to, not the word ``last``: once more runs exist, its record still
says which run it re-ran. Real CLI runs against the in-process fleet, one journal file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostbatch.testing import Fleet, FleetThread
from tests.fixtures.cli import run_cli


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    with FleetThread(3, behaviours={"node02": "refuse_auth"}) as started:
        inventory = tmp_path_factory.mktemp("rerun") / "inv"
        yield started, started.write_inventory(inventory, auth="key")


def recorded(journal: Path, run_id: int) -> dict[str, Any]:
    shown = run_cli("show", str(run_id), "--journal", str(journal), "--json")
    assert shown.returncode == 0, shown.stderr
    run: dict[str, Any] = json.loads(shown.stdout)["run"]
    return run


def test_relative_run_references_are_recorded_as_run_ids(
    fleet: tuple[Fleet, Path], tmp_path: Path
) -> None:
    started, inventory = fleet
    journal = tmp_path / "journal.sqlite"
    common = ["-i", str(inventory), "--known-hosts", str(started.known_hosts)]
    common += ["--journal", str(journal)]

    first = run_cli("run", *common, "-g", "fleet", "--", "echo one")
    assert first.returncode == 3, first.stderr  # node02 refuses the login
    second = run_cli("run", *common, "--rerun", "last:failed", "--", "echo two")
    assert second.returncode == 3, second.stderr
    third = run_cli(
        "run", *common, "--rerun=last:failed", "-h", "@run:last~1:ok", "--", "echo three"
    )
    assert third.returncode == 3, third.stderr

    run2, run3 = recorded(journal, 2), recorded(journal, 3)
    assert run2["selection"] == "--rerun 1:failed"
    assert run2["argv"][run2["argv"].index("--rerun") + 1] == "1:failed"
    assert run3["selection"] == "--rerun 2:failed -h @run:1:ok"
    assert "--rerun=2:failed" in run3["argv"] and "@run:1:ok" in run3["argv"]
    assert not any("last" in word for word in run2["argv"] + run3["argv"])
    assert run3["host_count"] == 3  # node02 from run 2, node01 and node03 from run 1
    # the records still name the runs they re-ran once later runs exist
    fourth = run_cli("run", *common, "-g", "fleet", "--", "echo four")
    assert fourth.returncode == 3
    assert recorded(journal, 2)["selection"] == "--rerun 1:failed"
    history = run_cli("history", "--journal", str(journal), "--json")
    selections = [json.loads(line)["selection"] for line in history.stdout.splitlines()]
    assert selections == [
        "-g fleet",
        "--rerun 2:failed -h @run:1:ok",
        "--rerun 1:failed",
        "-g fleet",
    ]


def test_an_id_or_a_typo_is_recorded_as_typed(fleet: tuple[Fleet, Path], tmp_path: Path) -> None:
    started, inventory = fleet
    journal = tmp_path / "journal.sqlite"
    common = ["-i", str(inventory), "--known-hosts", str(started.known_hosts)]
    common += ["--journal", str(journal)]
    run_cli("run", *common, "-g", "fleet", "--", "true")
    again = run_cli("run", *common, "--rerun", "1:ok", "--", "true")
    assert again.returncode == 0, again.stderr
    assert recorded(journal, 2)["selection"] == "--rerun 1:ok"
    missing = run_cli("run", *common, "--rerun", "last~5:failed", "--", "true")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"hostbatch: error: no run 'last~5' in the journal {journal}"
