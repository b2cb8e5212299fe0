"""The event loop a run gets: uvloop's where it is installed (a core dependency on Linux),
else asyncio's own; ``HOSTBATCH_LOOP=asyncio`` chooses asyncio's anyway.

uvloop's loop (libuv, in C) spends less CPU per callback, timer and socket event than
asyncio's selector loop, and a cold ``hostbatch run`` is mostly those: ``bench/coldcpu.py``
(``hostbatch run -h all -- true``, real sshd hosts, interleaved rounds) measured about 10%
less client CPU per run at 100 and 300 hosts, start-up included.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

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
