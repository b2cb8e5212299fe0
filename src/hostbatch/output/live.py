"""The live renderer: each output line as it arrives, prefixed by its host.

A sink: it receives events and writes; the engine knows nothing about it.
"""

from __future__ import annotations

from typing import TextIO

from hostbatch.models import Event, Finished, OutputChunk, Status

_COLORS = {"host": "\x1b[36m", "err": "\x1b[31m", "ok": "\x1b[32m", "fail": "\x1b[1;31m"}
_RESET = "\x1b[0m"
PARTIAL_LINE_CAP = 64 * 1024
"""A partial line held longer than this is printed as a line of its own: output without
newlines costs bounded memory, and linear time."""


def display(data: bytes) -> str:
    """Bytes as text for a terminal: invalid UTF-8 shown as U+FFFD, never an exception."""
    return data.decode("utf-8", errors="replace")


def _utf8_boundary(data: bytearray) -> int:
    """Where to cut *data* so that no UTF-8 sequence is split: before an incomplete last
    sequence (never at 0)."""
    lead = len(data) - 1
    while lead > 0 and len(data) - lead < 4 and data[lead] & 0xC0 == 0x80:
        lead -= 1
    first = data[lead]
    needed = 4 if first >= 0xF0 else 3 if first >= 0xE0 else 2 if first >= 0xC0 else 1
    return lead if lead > 0 and len(data) - lead < needed else len(data)


class LiveRenderer:
    """``host | line`` for stdout, ``host ! line`` for stderr (on our stderr), aligned.

    Partial lines are held until their newline or until the host finishes; one that
    reaches :data:`PARTIAL_LINE_CAP` bytes is printed as a line of its own (cut before a
    UTF-8 sequence, never inside one). Each chunk is scanned once: time is linear.
    """

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        *,
        width: int,
        color: bool = False,
        quiet: bool = False,
        cap: int = PARTIAL_LINE_CAP,
    ) -> None:
        self.out = out
        self.err = err
        self.width = width
        self.color = color
        self.quiet = quiet
        self.cap = max(cap, 4)  # room for one whole UTF-8 sequence
        self.partial: dict[tuple[str, str], bytearray] = {}

    def _paint(self, text: str, kind: str) -> str:
        return f"{_COLORS[kind]}{text}{_RESET}" if self.color else text

    def _line(self, host: str, stream: str, line: bytes) -> None:
        marker, target = ("!", self.err) if stream == "stderr" else ("|", self.out)
        prefix = self._paint(host.ljust(self.width), "host")
        text = display(line)
        if stream == "stderr":
            text = self._paint(text, "err")
        target.write(f"{prefix} {marker} {text}\n")

    def held_bytes(self) -> int:
        """Bytes of partial lines waiting for their newline, all hosts and streams."""
        return sum(len(held) for held in self.partial.values())

    def __call__(self, event: Event) -> None:
        if isinstance(event, OutputChunk) and not self.quiet:
            self._feed(event.host, event.stream, event.data)
            self.out.flush()
        elif isinstance(event, Finished):
            self._finish(event)

    def _feed(self, host: str, stream: str, data: bytes) -> None:
        """Print *data*'s complete lines; hold the rest, at most ``cap`` bytes. Each
        search is bounded by the room left, so every byte is scanned once."""
        held = self.partial.pop((host, stream), bytearray())
        view, start, end = memoryview(data), 0, len(data)
        while start < end:
            room = self.cap - len(held)
            newline = data.find(b"\n", start, min(end, start + room + 1))
            if newline >= 0:
                held += view[start:newline]
                self._line(host, stream, bytes(held).rstrip(b"\r"))
                held.clear()
                start = newline + 1
            elif end - start < room:
                held += view[start:end]
                break
            else:  # the cap is reached: print what is held as a line of its own
                held += view[start : start + room]
                start += room
                cut = _utf8_boundary(held)
                self._line(host, stream, bytes(held[:cut]))
                del held[:cut]
        if held:
            self.partial[(host, stream)] = held

    def _finish(self, event: Finished) -> None:
        result = event.result
        for stream in ("stdout", "stderr"):
            rest = self.partial.pop((result.host, stream), bytearray())
            if rest and not self.quiet:
                self._line(result.host, stream, bytes(rest))
        if result.status is not Status.OK:
            prefix = self._paint(result.host.ljust(self.width), "host")
            detail = result.error or f"exit status {result.exit_status}"
            self.err.write(f"{prefix} {self._paint('✗', 'fail')} {result.status.value}: {detail}\n")
            self.err.flush()
        self.out.flush()
