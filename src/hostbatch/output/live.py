"""The live renderer: each output line as it arrives, prefixed by its host.

A sink: it receives events and writes; the engine knows nothing about it.
"""

from __future__ import annotations

from typing import TextIO

from hostbatch.models import Event, Finished, OutputChunk, Status

_COLORS = {"host": "\x1b[36m", "err": "\x1b[31m", "ok": "\x1b[32m", "fail": "\x1b[1;31m"}
_RESET = "\x1b[0m"


def display(data: bytes) -> str:
    """Bytes as text for a terminal: invalid UTF-8 shown as U+FFFD, never an exception."""
    return data.decode("utf-8", errors="replace")


class LiveRenderer:
    """``host | line`` for stdout, ``host ! line`` for stderr (on our stderr), aligned.

    Partial lines are held until their newline or until the host finishes.
    """

    def __init__(
        self, out: TextIO, err: TextIO, *, width: int, color: bool = False, quiet: bool = False
    ) -> None:
        self.out = out
        self.err = err
        self.width = width
        self.color = color
        self.quiet = quiet
        self.partial: dict[tuple[str, str], bytes] = {}

    def _paint(self, text: str, kind: str) -> str:
        return f"{_COLORS[kind]}{text}{_RESET}" if self.color else text

    def _line(self, host: str, stream: str, line: bytes) -> None:
        marker, target = ("!", self.err) if stream == "stderr" else ("|", self.out)
        prefix = self._paint(host.ljust(self.width), "host")
        text = display(line)
        if stream == "stderr":
            text = self._paint(text, "err")
        target.write(f"{prefix} {marker} {text}\n")

    def __call__(self, event: Event) -> None:
        if isinstance(event, OutputChunk) and not self.quiet:
            key = (event.host, event.stream)
            lines = (self.partial.pop(key, b"") + event.data).split(b"\n")
            for line in lines[:-1]:
                self._line(event.host, event.stream, line.rstrip(b"\r"))
            if lines[-1]:
                self.partial[key] = lines[-1]
            self.out.flush()
        elif isinstance(event, Finished):
            self._finish(event)

    def _finish(self, event: Finished) -> None:
        result = event.result
        for stream in ("stdout", "stderr"):
            rest = self.partial.pop((result.host, stream), b"")
            if rest and not self.quiet:
                self._line(result.host, stream, rest)
        if result.status is not Status.OK:
            prefix = self._paint(result.host.ljust(self.width), "host")
            detail = result.error or f"exit status {result.exit_status}"
            self.err.write(f"{prefix} {self._paint('✗', 'fail')} {result.status.value}: {detail}\n")
            self.err.flush()
        self.out.flush()
