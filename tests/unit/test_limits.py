"""How a run is laid out over worker processes and how many hosts run at once."""

from __future__ import annotations

import os

import pytest

from hostbatch.engine.limits import (
    DEFAULT_FANOUT,
    HOSTS_PER_WORKER,
    HOSTS_PER_WORKER_BLOCKING,
    SESSIONS_PER_WORKER_BLOCKING,
    Limits,
)
from hostbatch.errors import UsageError


@pytest.fixture
def four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)


@pytest.mark.usefixtures("four_cores")
def test_servers_stay_in_one_process_until_there_are_many_hosts_per_core() -> None:
    assert Limits().layout(HOSTS_PER_WORKER - 1) == (1, DEFAULT_FANOUT)
    assert Limits().layout(2 * HOSTS_PER_WORKER) == (2, DEFAULT_FANOUT)
    assert Limits().layout(100 * HOSTS_PER_WORKER) == (4, DEFAULT_FANOUT)
    assert Limits(fanout=10).layout(10_000) == (4, 10)


@pytest.mark.usefixtures("four_cores")
def test_devices_get_a_worker_per_core_sooner_and_bounded_sessions_per_process() -> None:
    per = SESSIONS_PER_WORKER_BLOCKING
    assert Limits().layout(10, blocking=True) == (1, per)
    assert Limits().layout(2 * HOSTS_PER_WORKER_BLOCKING, blocking=True) == (2, 2 * per)
    assert Limits().layout(200, blocking=True) == (4, 4 * per)
    assert Limits().layout(10_000, blocking=True) == (4, 4 * per)


@pytest.mark.usefixtures("four_cores")
def test_a_large_explicit_fanout_for_devices_adds_workers_instead_of_threads() -> None:
    per = SESSIONS_PER_WORKER_BLOCKING
    workers, fanout = Limits(fanout=8 * per).layout(1000, blocking=True)
    assert (workers, fanout) == (8, 8 * per)
    # never more workers than the hosts that can run at once need
    assert Limits(fanout=8 * per).layout(5 * per, blocking=True) == (5, 8 * per)
    # a small fanout stays in one process when there are few hosts
    assert Limits(fanout=5).layout(20, blocking=True) == (1, 5)


@pytest.mark.usefixtures("four_cores")
def test_explicit_workers_are_kept() -> None:
    assert Limits(workers=3).layout(10) == (3, DEFAULT_FANOUT)
    assert Limits(workers=3).layout(2) == (2, DEFAULT_FANOUT)
    per = SESSIONS_PER_WORKER_BLOCKING
    assert Limits(workers=3).layout(500, blocking=True) == (3, 3 * per)
    assert Limits(workers=2, fanout=500).layout(500, blocking=True) == (2, 500)


def test_bad_limits_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="fanout"):
        Limits(fanout=0)
    with pytest.raises(UsageError, match="workers"):
        Limits(workers=0)
