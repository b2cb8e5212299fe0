"""Shared fixtures: the in-process asyncssh fleet, a real OpenSSH sshd on loopback, the CLI.

The generic fixtures (``ssh_fleet``, ``openssh_server``, ...) come from hostbatch's own
pytest plugin, ``hostbatch.testing.plugin``, which pytest loads through the ``pytest11``
entry point once hostbatch is installed (scripts/setup.sh installs it). It is named here
only when the entry point cannot load it (not installed, or plugin autoloading off), so
that it is never registered twice. tests/fixtures/ adds the project's names on top.

No test writes into the developer's real ``~/.local/state``: for the whole session
``HOSTBATCH_JOURNAL`` and ``XDG_STATE_HOME`` point into a temporary folder, for code in
this process and for every CLI subprocess (``tests.fixtures.cli.cli_env`` passes them on).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

PLUGIN = "hostbatch.testing.plugin"


def _entry_point_loads_plugin() -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(point.value == PLUGIN for point in entry_points(group="pytest11"))


pytest_plugins = [
    *([] if _entry_point_loads_plugin() else [PLUGIN]),
    "pytester",
    "tests.fixtures.cli",
    "tests.fixtures.fleet",
    "tests.fixtures.sshd",
]


@pytest.fixture(scope="session", autouse=True)
def private_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's run journal (a temp file), also the default for CLI subprocesses."""
    state = tmp_path_factory.mktemp("state")
    journal = state / "hostbatch" / "journal.sqlite"
    saved = {name: os.environ.get(name) for name in ("HOSTBATCH_JOURNAL", "XDG_STATE_HOME")}
    os.environ["HOSTBATCH_JOURNAL"] = str(journal)
    os.environ["XDG_STATE_HOME"] = str(state)
    yield journal
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session", autouse=True)
def interruptible_children() -> Iterator[None]:
    """CLI subprocesses start with Ctrl-C (SIGINT) at its default, as from a terminal.

    A process started in the background by a non-interactive shell (``cmd &``, many CI
    and loop scripts) ignores SIGINT, and an ignored signal is inherited: every CLI the
    tests start would then ignore the SIGINT they send, and hang until killed. With a
    handler installed here, a child's SIGINT is reset to the default when it starts."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
