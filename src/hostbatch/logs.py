"""hostbatch's logging: one ``hostbatch`` logger, and a filter that keeps secrets out.

Nothing is printed unless the CLI (``-v``/``--debug``, ``--log-file``) or ``HOSTBATCH_LOG``
asks for it, or a program using the API configures logging itself. Worker processes are
handed :func:`current` and call :func:`configure_as`, so they log as their parent was told
(same level, same destination); every record is one ``write()`` on an ``O_APPEND``
descriptor, so records of several processes never mix within a line.

Every :class:`~hostbatch.models.Secret` registers its value when created (in a worker
too: unpickling a Secret creates it anew); :class:`RedactingFilter` replaces those values
(and ``password=...``-style pairs) in every record before any handler sees it, tracebacks
included.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import traceback
from dataclasses import dataclass

LOGGER_NAME = "hostbatch"
ENV_VAR = "HOSTBATCH_LOG"
MASK = "********"
# Libraries whose records are routed through our handler (and our filter) instead of
# printing on their own (paramiko prints tracebacks for hosts that reset or send garbage).
LIBRARY_LOGGERS = ("asyncssh", "paramiko", "netmiko")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_SECRET_PAIR = re.compile(
    r"(?i)\b(password|passphrase|passwd|secret|become_password)(\s*[=:]\s*|\s+)(\S+)"
)

# Secrets shorter than this are masked only where they stand alone (not inside a longer
# word): an enable secret "en" must not turn "recent" into "rec********t" in every log.
SHORT_SECRET = 8

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None

logger = logging.getLogger(LOGGER_NAME)


def register_secret(value: str) -> None:
    """Remember *value* so the filter can mask it (called by ``Secret.__init__``)."""
    global _pattern
    if value and value not in _secrets:
        with _secrets_lock:
            _secrets.add(value)
            _pattern = None


def _secrets_pattern() -> re.Pattern[str] | None:
    global _pattern
    with _secrets_lock:
        if _pattern is None and _secrets:
            parts = [
                re.escape(v) if len(v) >= SHORT_SECRET else rf"(?<!\w){re.escape(v)}(?!\w)"
                for v in sorted(_secrets, key=len, reverse=True)
            ]
            _pattern = re.compile("|".join(parts))
        return _pattern


def redact(text: str) -> str:
    """*text* with every registered secret and every ``password=VALUE`` pair masked."""
    pattern = _secrets_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Formats each record's message (and traceback) now and masks secrets in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text, record.exc_info = redact(text.rstrip("\n")), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()
_FORMAT = "hostbatch: %(levelname)s %(name)s: %(message)s"
_handler: logging.Handler | None = None


@dataclass(frozen=True)
class LogSettings:
    """What a process was told about logging: the level (None: quiet) and where records
    go (a file's path, appended to; None: stderr). Picklable, for worker processes."""

    level: int | None = None
    path: str | None = None


_settings: LogSettings | None = None  # None: hostbatch has not configured logging


class WriteHandler(logging.Handler):
    """Writes each record with one ``os.write`` on a file descriptor: stderr, or a log
    file opened ``O_APPEND``, shared by the parent and its worker processes. One write
    per record keeps records of concurrent writers whole (pipes: up to PIPE_BUF bytes)."""

    def __init__(self, fd: int, *, owned: bool = False) -> None:
        super().__init__()
        self.fd = fd
        self.owned = owned

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = memoryview((self.format(record) + "\n").encode("utf-8", "backslashreplace"))
            while data:
                data = data[os.write(self.fd, data) :]
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self.owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        super().close()


def level_from(
    verbosity: int = 0, *, debug: bool = False, environ: dict[str, str] | None = None
) -> int | None:
    """The level asked for by ``-v`` (count), ``--debug`` or ``$HOSTBATCH_LOG``; None: quiet."""
    if debug or verbosity >= 2:
        return logging.DEBUG
    if verbosity == 1:
        return logging.INFO
    env = (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower()
    return _LEVELS.get(env)


def _open_handler(stream: object, path: str | None) -> logging.Handler:
    if path is not None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        return WriteHandler(os.open(path, flags, 0o600), owned=True)
    target = stream or sys.stderr
    try:
        return WriteHandler(target.fileno())  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor
        return logging.StreamHandler(target)  # type: ignore[arg-type]


def configure(level: int | None, stream: object = None, *, path: str | None = None) -> None:
    """Send hostbatch's and the SSH libraries' records at *level* and above to stderr (or
    *stream*, or the file *path*, appended to), through the redacting filter; None keeps
    them silent (warnings of libraries too). OSError when *path* cannot be opened."""
    global _handler, _settings
    handler = None if level is None else _open_handler(stream, path)
    for name in (LOGGER_NAME, *LIBRARY_LOGGERS):
        target = logging.getLogger(name)
        if _handler is not None:
            target.removeHandler(_handler)
        target.propagate = False
        target.setLevel(logging.CRITICAL + 1 if level is None else level)
    if _handler is not None:
        _handler.close()
    _handler = handler
    # a worker can reach stderr or a path, not a Python stream object of its parent
    _settings = LogSettings(level, path) if stream is None else None
    if handler is None:
        return
    handler.addFilter(_FILTER)
    handler.setFormatter(logging.Formatter(_FORMAT))
    for name in (LOGGER_NAME, *LIBRARY_LOGGERS):
        logging.getLogger(name).addHandler(handler)
    if level is not None and level > logging.DEBUG:  # library chatter only with --debug
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(max(level, logging.WARNING))


def current() -> LogSettings | None:
    """How this process was configured (for its worker processes); None when hostbatch
    did not configure logging (a program's own handlers cannot cross processes)."""
    return _settings


def configure_as(settings: LogSettings | None) -> None:
    """In a worker process: log as the parent does (*settings*: its :func:`current`).
    A log file that cannot be opened here leaves the worker quiet, never failing it."""
    if settings is None:
        return
    try:
        configure(settings.level, path=settings.path)
    except OSError:
        configure(None)


logger.addFilter(_FILTER)
