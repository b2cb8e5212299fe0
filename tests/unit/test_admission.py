"""The AIMD gate of engine/admission.py: how its window moves, who waits, who is let in."""

from __future__ import annotations

import asyncio

import pytest

from hostbatch.engine.admission import MAX_WINDOW, Admission, Gate, destination, drop_delay
from hostbatch.models import Host


def test_a_burst_of_drops_halves_the_window_once() -> None:
    async def scenario() -> Gate:
        gate = Gate("a:22")
        tickets = [await gate.enter() for _ in range(8)]
        gate.dropped_by_server(tickets[0])  # from the 8 in flight, not from MAX_WINDOW
        assert gate.window == 4
        for ticket in tickets[1:4]:  # begun before the decrease: no second decrease
            gate.dropped_by_server(ticket)
        assert gate.window == 4 and gate.dropped == 4
        gate.succeeded(tickets[4])
        assert gate.window == 4.25  # additive: +1/window per success
        late = await gate.enter()
        gate.dropped_by_server(late)  # a new round: halves again, from the 4 in flight
        assert gate.window == 2
        return gate

    gate = asyncio.run(scenario())
    assert gate.in_flight == 3


def test_waiters_enter_in_order_as_room_frees() -> None:
    async def scenario() -> list[int]:
        gate = Gate("a:22")
        gate.window = 2
        first, second = await gate.enter(), await gate.enter()
        order: list[int] = []

        async def wait(number: int) -> None:
            ticket = await gate.enter()
            order.append(number)
            gate.succeeded(ticket)

        waiting = [asyncio.create_task(wait(n)) for n in range(3)]
        await asyncio.sleep(0)
        assert order == [] and gate.in_flight == 2
        gate.succeeded(first)
        gate.failed(second)
        await asyncio.gather(*waiting)
        assert gate.in_flight == 0
        return order

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_a_cancelled_waiter_leaves_no_place_taken() -> None:
    async def scenario() -> Gate:
        gate = Gate("a:22")
        gate.window = 1
        ticket = await gate.enter()
        waiter = asyncio.create_task(gate.enter())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.succeeded(ticket)
        return gate

    gate = asyncio.run(scenario())
    assert gate.in_flight == 0
    assert gate.window < MAX_WINDOW


def test_destinations_and_reports() -> None:
    jump = Host("bastion1", "127.0.0.2")
    direct, behind = Host("a", "127.0.0.1", 2222), Host("b", "127.0.0.1", 2222, jump=jump)
    assert destination(direct)[1] == "127.0.0.1:2222"
    assert destination(behind)[1] == "127.0.0.1:2222 via bastion1"
    admission = Admission()
    assert admission.gate(direct) is admission.gate(Host("c", "127.0.0.1", 2222))
    assert admission.gate(direct) is not admission.gate(behind)
    admission.gate(behind).dropped = 3
    [report] = admission.reports()
    assert (report.address, report.dropped) == ("127.0.0.1:2222 via bastion1", 3)
    assert admission.reports() == []  # reported once


def test_drop_delays_are_jittered_and_capped() -> None:
    delays = [drop_delay(n) for n in range(1, 20) for _ in range(20)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 100
