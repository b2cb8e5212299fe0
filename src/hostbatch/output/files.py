"""Per-host output files (``--outdir DIR [--errdir DIR]``, as pssh and clush write them).

Each host's full stdout goes to ``DIR/<host>`` and its stderr to ``ERRDIR/<host>``,
streamed to disk chunk by chunk (nothing is lost past the in-memory output cap). A file
is written under a temporary name in the same folder and renamed when the host
finishes, so ``DIR/<host>`` is either absent or complete. Host names become file names
by :func:`hostbatch.engine.transfer.host_directory`'s rules (no path escape).

A file is opened at the host's first chunk and closed when it finishes: open files are
bounded by the hosts running at once (the fanout), not by the selection's size.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from hostbatch.engine.transfer import host_directory
from hostbatch.errors import UsageError
from hostbatch.models import Event, Finished, OutputChunk, Stream


def prepare_directory(path: Path) -> Path:
    """Create *path* if needed; UsageError (exit 2) when it cannot hold files."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{path}: cannot create the directory: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: permission denied (not writable)")
    return path


class OutputFiles:
    """A sink writing each host's stdout into *outdir* and, with *errdir*, its stderr
    into *errdir*. Every finished host gets its file(s), empty when it printed nothing.
    Call :meth:`close` when the run ends early: it removes unfinished temporary files."""

    def __init__(self, outdir: Path, errdir: Path | None = None) -> None:
        self.dirs: dict[Stream, Path] = {"stdout": prepare_directory(outdir)}
        if errdir is not None:
            self.dirs["stderr"] = prepare_directory(errdir)
        self._open: dict[tuple[str, Stream], tuple[BinaryIO, Path]] = {}

    def path_for(self, host: str, stream: Stream = "stdout") -> Path:
        """Where *host*'s *stream* is written once it has finished."""
        return host_directory(self.dirs[stream], host)

    def __call__(self, event: Event) -> None:
        if isinstance(event, OutputChunk):
            if event.stream in self.dirs:
                self._file(event.host, event.stream).write(event.data)
        elif isinstance(event, Finished):
            for stream in self.dirs:
                self._complete(event.host, stream)

    def _file(self, host: str, stream: Stream) -> BinaryIO:
        key = (host, stream)
        if key not in self._open:
            final = self.path_for(host, stream)
            descriptor, temporary = tempfile.mkstemp(
                prefix=f".{final.name}.", suffix=".part", dir=final.parent
            )
            self._open[key] = (os.fdopen(descriptor, "wb"), Path(temporary))
        return self._open[key][0]

    def _complete(self, host: str, stream: Stream) -> None:
        self._file(host, stream)  # a host that printed nothing gets an empty file
        handle, temporary = self._open.pop((host, stream))
        try:
            handle.close()
            os.replace(temporary, self.path_for(host, stream))
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise

    def close(self) -> None:
        """Drop the temporary files of hosts that did not finish (an interrupted run)."""
        for handle, temporary in self._open.values():
            handle.close()
            with contextlib.suppress(OSError):
                temporary.unlink()
        self._open.clear()
