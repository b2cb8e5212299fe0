"""Rolling runs: canary hosts first, then successive batches, and a failure budget.

``Limits.canary`` hosts (the plan's first) run alone; the rest run only if every one of
them is ok. The remaining hosts run in waves of ``Limits.batch`` (each wave finished
before the next starts), or all in one wave. Once ``Limits.max_fail`` hosts have failed,
no new host is started (in flight ones finish): every host not started is reported as
:attr:`Status.NOT_STARTED` with the reason. The executor runs each wave as a sub-plan
(inline, or sharded across worker processes) and consults a :class:`StartGate` before
starting each host.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from hostbatch.engine.hostrun import Emit
from hostbatch.engine.limits import Limits, hosts_in
from hostbatch.engine.plan import Plan
from hostbatch.models import Event, Finished, Host, HostResult, Status

NOT_STARTED_PENDING = "not started: the run stopped starting hosts"


class StartGate:
    """Whether new hosts may still be started; closed once, with the reason, and every
    listener (e.g. worker processes to signal) told."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._listeners: list[Callable[[], None]] = []

    @property
    def open(self) -> bool:
        return self.reason is None

    def close(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            for listener in self._listeners:
                listener()

    def on_close(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)


def not_started(host: str, reason: str | None) -> HostResult:
    now = time.time()
    return HostResult(
        host=host,
        status=Status.NOT_STARTED,
        error=reason or NOT_STARTED_PENDING,
        started=now,
        ended=now,
    )


def waves(hosts: Sequence[Host], limits: Limits) -> list[tuple[Host, ...]]:
    """The canary hosts, then batches of ``limits.batch`` (or everything else at once)."""
    canary = min(limits.canary, len(hosts))
    rest = tuple(hosts[canary:])
    made = [tuple(hosts[:canary])] if canary else []
    size = len(rest) if limits.batch is None else hosts_in(limits.batch, len(hosts), what="--batch")
    size = max(1, size)
    made += [rest[start : start + size] for start in range(0, len(rest), size)]
    return [wave for wave in made if wave]


RunWave = Callable[[Plan, Emit, StartGate], Awaitable[None]]


class _FailureBudget:
    """Counts failed hosts as their results pass by; closes the gate at the limit."""

    def __init__(self, limits: Limits, total: int, gate: StartGate, emit: Emit) -> None:
        self.limit = None
        if limits.max_fail is not None:
            self.limit = hosts_in(limits.max_fail, total, what="--max-fail")
        self.spec = limits.max_fail
        self.gate = gate
        self.emit = emit
        self.failed: set[str] = set()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Finished) and event.result.status not in (
            Status.OK,
            Status.NOT_STARTED,
        ):
            self.failed.add(event.host)
            if self.limit is not None and len(self.failed) >= self.limit:
                self.gate.close(
                    f"not started: {len(self.failed)} host(s) failed (--max-fail {self.spec})"
                )
        self.emit(event)


async def run_rollout(plan: Plan, emit: Emit, run_wave: RunWave) -> None:
    """Run *plan* wave by wave through *run_wave*; see the module docstring."""
    gate = StartGate()
    budget = _FailureBudget(plan.limits, len(plan.hosts), gate, emit)
    for index, wave in enumerate(waves(plan.hosts, plan.limits)):
        if not gate.open:
            for host in wave:
                emit(Finished(not_started(host.name, gate.reason)))
            continue
        await run_wave(replace(plan, hosts=wave), budget, gate)
        if index == 0 and plan.limits.canary:
            failed = sorted(budget.failed.intersection(h.name for h in wave))
            if failed:
                gate.close(f"not started: canary host(s) failed: {', '.join(failed)}")
