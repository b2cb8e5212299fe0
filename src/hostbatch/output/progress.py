"""Transfer progress: one status line on a terminal, a line per host as it completes."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from hostbatch.models import Event, Finished, Host, Progress, Started, Status
from hostbatch.output.color import GREEN, RED, paint

REDRAW_SECONDS = 0.2


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover - loop always returns


def terminal_progress(hosts: Sequence[Host], *, color: bool = False) -> TransferProgress:
    """Progress for *hosts* on stdout/stderr; the status line only when stderr is a tty."""
    return TransferProgress(
        sys.stdout,
        sys.stderr,
        hosts=len(hosts),
        width=max(len(h.name) for h in hosts),
        live=sys.stderr.isatty(),
        color=color,
    )


class TransferProgress:
    """A sink for put/get events. On a terminal it redraws one line on *err*:
    hosts done, bytes, rate; every host's completion is printed as a line on *out*."""

    def __init__(
        self, out: TextIO, err: TextIO, *, hosts: int, width: int, live: bool, color: bool = False
    ) -> None:
        self.color = color
        self.out = out
        self.err = err
        self.hosts = hosts
        self.width = width
        self.live = live
        self.done: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.finished = 0
        self.began = time.monotonic()
        self.drawn = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self.done.setdefault(event.host, 0)
        elif isinstance(event, Progress):
            self.done[event.host] = event.done
            self.totals[event.host] = event.total
            self._redraw()
        elif isinstance(event, Finished):
            self.finished += 1
            self._clear()
            self._completed(event)
            self._redraw(force=True)

    def line(self) -> str:
        moved = sum(self.done.values())
        elapsed = max(time.monotonic() - self.began, 1e-6)
        total = sum(self.totals.values())
        of_total = f" / {human_bytes(total)}" if total else ""
        return (
            f"[{self.finished}/{self.hosts} hosts] {human_bytes(moved)}{of_total} "
            f"{human_bytes(moved / elapsed)}/s"
        )

    def _redraw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.live or (not force and now - self.drawn < REDRAW_SECONDS):
            return
        self.drawn = now
        self.err.write("\r\x1b[2K" + self.line())
        self.err.flush()

    def _clear(self) -> None:
        if self.live:
            self.err.write("\r\x1b[2K")

    def _completed(self, event: Finished) -> None:
        result = event.result
        name = result.host.ljust(self.width)
        if result.status is Status.OK:
            rate = result.bytes_transferred / max(result.elapsed, 1e-6)
            mark = paint("✓", GREEN, self.color)
            self.out.write(
                f"{name} {mark} {result.files} file(s), {human_bytes(result.bytes_transferred)} "
                f"in {result.elapsed:.2f}s ({human_bytes(rate)}/s)\n"
            )
            self.out.flush()
        else:
            mark = paint("✗", RED, self.color)
            self.err.write(f"{name} {mark} {result.status.value}: {result.error}\n")
            self.err.flush()
