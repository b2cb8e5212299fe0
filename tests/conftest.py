"""Shared fixtures: the in-process asyncssh fleet, a real OpenSSH sshd on loopback, the CLI.

The generic fixtures (``ssh_fleet``, ``openssh_server``, ...) come from hostbatch's own
pytest plugin, ``hostbatch.testing.plugin``, which pytest loads through the ``pytest11``
entry point once hostbatch is installed (scripts/setup.sh installs it). It is named here
only when the entry point cannot load it (not installed, or plugin autoloading off), so
that it is never registered twice. tests/fixtures/ adds the project's names on top.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

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
