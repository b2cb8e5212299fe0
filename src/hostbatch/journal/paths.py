"""Where the run journal lives: ``$HOSTBATCH_JOURNAL``, else the XDG state directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_VAR = "HOSTBATCH_JOURNAL"
FILE_NAME = "journal.sqlite"


def default_journal_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$HOSTBATCH_JOURNAL``; else ``$XDG_STATE_HOME/hostbatch/journal.sqlite``; else
    ``~/.local/state/hostbatch/journal.sqlite`` (a relative ``XDG_STATE_HOME`` is ignored,
    as the XDG spec says)."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR]).expanduser()
    state = env.get("XDG_STATE_HOME", "")
    if state and Path(state).is_absolute():
        return Path(state) / "hostbatch" / FILE_NAME
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "state" / "hostbatch" / FILE_NAME
