"""Selecting hosts by a previous run: ``@run:RUN:STATUS`` through Inventory.select's
*runs* callback, resolved by the journal of real runs."""

from __future__ import annotations

import pytest

from hostbatch.errors import SelectionError, UsageError
from hostbatch.inventory.patterns import Term, parse_terms
from hostbatch.journal import Journal, hosts_of_run, hosts_of_run_term, show
from hostbatch.models import Host
from tests.journal.conftest import MIXED_COMMAND, JournalledFleet


def _names(hosts: list[Host]) -> list[str]:
    return [host.name for host in hosts]


def test_rerun_selects_exactly_the_failed_hosts(
    journalled: JournalledFleet, journal: Journal
) -> None:
    journalled.run(journal, MIXED_COMMAND)
    runs = lambda term: hosts_of_run_term(journal, term)  # noqa: E731
    select = journalled.inventory.select
    assert _names(select(patterns="@run:last:failed", runs=runs)) == [
        "node02",
        "node03",
        "node04",
        "node05",
    ]
    assert _names(select(patterns="@run:last:unreachable+auth_failed", runs=runs)) == [
        "node02",
        "node03",
    ]
    assert hosts_of_run(journal, "last", ["command_failed", "connection_lost"]) == [
        "node04",
        "node05",
    ]
    # combined with -h and with ! exclusion, left to right
    combined = select(hosts="node07", patterns="@run:last:failed,!node03", runs=runs)
    assert _names(combined) == ["node07", "node02", "node04", "node05"]
    assert _names(select(patterns="!@run:last:failed", runs=runs)) == [
        "node01",
        "node06",
        "node07",
    ]
    # the re-run itself: only those hosts are run and journalled
    journalled.run(journal, "echo again", "@run:last:failed", runs=runs)
    rerun = show(journal, "last")
    assert [h.host for h in rerun.hosts] == ["node02", "node03", "node04", "node05"]
    assert rerun.run.selection == "@run:last:failed"
    assert hosts_of_run_term(journal, "last~1:ok") == ["node01", "node06", "node07"]


def test_a_missing_run_or_status_is_a_clear_usage_error(
    journalled: JournalledFleet, journal: Journal
) -> None:
    journalled.run(journal, "true", "node01")
    runs = lambda term: hosts_of_run_term(journal, term)  # noqa: E731
    with pytest.raises(SelectionError, match=r"no run '41' in the journal") as missing:
        journalled.inventory.select(patterns="@run:41:failed", runs=runs)
    assert missing.value.exit_code == 2
    with pytest.raises(UsageError, match=r"unknown status 'broken' \(known: .*timed_out"):
        journalled.inventory.select(patterns="@run:last:broken", runs=runs)
    with pytest.raises(SelectionError, match="needs the run journal"):
        journalled.inventory.select(patterns="@run:last:failed")
    with pytest.raises(SelectionError, match="matches no host"):
        journalled.inventory.select(patterns="@run:last:failed", runs=runs)  # none failed


def test_an_interrupted_runs_unfinished_hosts_count_as_failed(journal: Journal) -> None:
    run_id = journal.begin_run("run", "sleep 9", "a,b,c", ["a", "b", "c"])
    assert hosts_of_run(journal, str(run_id), ["unfinished"]) == ["a", "b", "c"]
    assert hosts_of_run(journal, str(run_id), ["failed"]) == ["a", "b", "c"]
    assert hosts_of_run(journal, str(run_id), ["ok"]) == []


def test_the_run_term_parses_beside_groups_and_exclusions() -> None:
    terms = list(parse_terms("@run:last~2:unreachable+timed_out,!@run:41,@web,node1"))
    assert terms == [
        Term(False, "run", "last~2:unreachable+timed_out"),
        Term(True, "run", "41"),
        Term(False, "group", "web"),
        Term(False, "host", "node1"),
    ]
