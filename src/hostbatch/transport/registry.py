"""Transports by name, imported only when first used."""

from __future__ import annotations

import importlib
from typing import NamedTuple

from hostbatch.errors import MissingExtraError, UsageError
from hostbatch.gcpause import collector_paused
from hostbatch.transport.base import TransportFactory


class _Entry(NamedTuple):
    module: str
    factory: str  # attribute of *module*
    extra: str  # pip extra that installs *library*
    library: str
    blocking: bool  # the class's ``blocking``, known here without importing the library


DEFAULT = "asyncssh"
_KNOWN = {
    "asyncssh": _Entry(
        "hostbatch.transport.asyncssh_", "AsyncsshTransport", "asyncssh", "asyncssh", False
    ),
    "paramiko": _Entry(
        "hostbatch.transport.paramiko_", "ParamikoTransport", "paramiko", "paramiko", False
    ),
    "netmiko": _Entry(
        "hostbatch.transport.netmiko_", "NetmikoTransport", "netmiko", "netmiko", True
    ),
}
_loaded: dict[str, TransportFactory] = {}

NAMES = tuple(_KNOWN)


def _entry(name: str) -> _Entry:
    if name not in _KNOWN:
        raise UsageError(f"unknown transport '{name}' (choose from {', '.join(_KNOWN)})")
    return _KNOWN[name]


def is_blocking(name: str) -> bool:
    """Whether transport *name* drives a blocking library in threads (its class's
    ``blocking``), answered without importing that library."""
    return _entry(name).blocking


def get_transport(name: str) -> TransportFactory:
    """The factory for transport *name*; says which extra to install when it is missing."""
    if name in _loaded:
        return _loaded[name]
    entry = _entry(name)
    with collector_paused():
        try:
            importlib.import_module(entry.library)
        except ImportError:
            raise MissingExtraError(f"the {name} transport", entry.extra, entry.library) from None
        module = importlib.import_module(entry.module)
    factory: TransportFactory = getattr(module, entry.factory)
    _loaded[name] = factory
    return factory
