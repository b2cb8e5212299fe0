"""hostbatch's logging: one ``hostbatch`` logger, and a filter that keeps secrets out.

Nothing is printed unless the CLI (``-v``/``--debug``) or ``HOSTBATCH_LOG`` asks for it,
or a program using the API configures logging itself. Every :class:`~hostbatch.models.Secret`
registers its value when created; :class:`RedactingFilter` replaces those values (and
``password=...``-style pairs) in every record before any handler sees it, tracebacks
included.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import traceback

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
_handler: logging.Handler | None = None


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


def configure(level: int | None, stream: object = None) -> None:
    """Send hostbatch's and the SSH libraries' records at *level* and above to stderr,
    through the redacting filter; None keeps them silent (warnings of libraries too)."""
    global _handler
    for name in (LOGGER_NAME, *LIBRARY_LOGGERS):
        target = logging.getLogger(name)
        if _handler is not None:
            target.removeHandler(_handler)
        target.propagate = False
        target.setLevel(logging.CRITICAL + 1 if level is None else level)
    if level is None:
        _handler = None
        return
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.addFilter(_FILTER)
    handler.setFormatter(logging.Formatter("hostbatch: %(levelname)s %(name)s: %(message)s"))
    _handler = handler
    for name in (LOGGER_NAME, *LIBRARY_LOGGERS):
        logging.getLogger(name).addHandler(handler)
    if level > logging.DEBUG:  # library chatter only with --debug
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(max(level, logging.WARNING))


logger.addFilter(_FILTER)
