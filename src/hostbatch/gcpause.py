"""``collector_paused()``: no cyclic garbage collection while a block builds many objects.

Shared by the inventory loader (the objects of a large inventory would set off full
collections again and again: 100k hosts cost 3x the CPU) and the transport registry (an
SSH library's hundreds of classes and functions set off ~50 collections that free nothing:
asyncssh, ~25 ms of CPU on every cold run, bench/coldcpu.py). Neither creates cycles worth
collecting. Imports nothing of hostbatch, so any module can use it without a cycle.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for the block; on again after it only if it was on
    before (a caller that paused it keeps it paused)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
