"""The event loop a run gets: uvloop's where it is installed (a core dependency on Linux),
else asyncio's own; ``HOSTBATCH_LOOP=asyncio`` chooses asyncio's anyway.

uvloop's loop (libuv, in C) spends less CPU per callback, timer and socket event than
asyncio's selector loop, and a cold ``hostbatch run`` is mostly those: ``bench/coldcpu.py``
(``hostbatch run -h all -- true``, real sshd hosts, interleaved rounds) measured about 10%
less client CPU per run at 100 and 300 hosts, start-up included.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from hostbatch.engine.plan import Plan
from hostbatch.errors import HostbatchError
from hostbatch.transport.registry import get_transport

T = TypeVar("T")
ENV_VAR = "HOSTBATCH_LOOP"

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory() -> LoopFactory | None:
    """uvloop's ``new_event_loop``; None (asyncio's default) when it is not installed or
    ``$HOSTBATCH_LOOP`` is ``asyncio``."""
    if os.environ.get(ENV_VAR, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """:func:`asyncio.run` on the loop :func:`loop_factory` chooses."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coroutine)


def warm_up(plan: Plan, *, transports: bool = True) -> None:
    """Before a process that exits after the run (the CLI, a worker) runs *plan*: import
    its hosts' transports now, with the collector paused (one that fails to import stays
    each host's error, as in the run; *transports* False: the hosts run elsewhere), then
    freeze every object start-up made (modules, inventory, plan), so the collections
    during the run no longer walk them. Frozen objects are never freed: not for a
    long-lived process. (bench/coldcpu.py: GC was ~9% of a cold run's CPU at 300 hosts.)"""
    if transports:
        for name in dict.fromkeys(plan.transport_for(host) for host in plan.hosts):
            with contextlib.suppress(HostbatchError):
                get_transport(name)
    gc.freeze()
