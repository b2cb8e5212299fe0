"""When to colour: ``--color auto|always|never``, then NO_COLOR, then FORCE_COLOR, then a tty.

One rule for every command that colours (run's live lines, transfer progress, ping):

1. ``--color always`` / ``--color never`` (``--no-color``) decide;
2. otherwise (``auto``) a non-empty ``NO_COLOR`` turns colour off (https://no-color.org);
3. a ``FORCE_COLOR`` other than empty or ``0`` turns it on, even through a pipe;
4. else colour when the output stream is a terminal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, TextIO

ColorMode = Literal["auto", "always", "never"]
COLOR_MODES: tuple[ColorMode, ...] = ("auto", "always", "never")
RESET = "\x1b[0m"
GREEN = "\x1b[32m"
RED = "\x1b[1;31m"


def color_enabled(mode: str, stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to colour what is written to *stream* (see the module docstring)."""
    if mode in ("always", "never"):
        return mode == "always"
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR", "0") not in ("", "0"):
        return True
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False


def paint(text: str, sgr: str, enabled: bool) -> str:
    """*text* in the SGR colour *sgr* when *enabled*."""
    return f"{sgr}{text}{RESET}" if enabled else text
