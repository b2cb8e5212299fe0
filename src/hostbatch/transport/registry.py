"""Transports by name, imported only when first used."""

from __future__ import annotations

import importlib

from hostbatch.errors import MissingExtraError, UsageError
from hostbatch.transport.base import TransportFactory

DEFAULT = "asyncssh"
# name -> (module, factory attribute, pip extra, library module)
_KNOWN = {
    "asyncssh": ("hostbatch.transport.asyncssh_", "AsyncsshTransport", "asyncssh", "asyncssh"),
    "paramiko": ("hostbatch.transport.paramiko_", "ParamikoTransport", "paramiko", "paramiko"),
    "netmiko": ("hostbatch.transport.netmiko_", "NetmikoTransport", "netmiko", "netmiko"),
}
_loaded: dict[str, TransportFactory] = {}

NAMES = tuple(_KNOWN)


def get_transport(name: str) -> TransportFactory:
    """The factory for transport *name*; says which extra to install when it is missing."""
    if name in _loaded:
        return _loaded[name]
    if name not in _KNOWN:
        raise UsageError(f"unknown transport '{name}' (choose from {', '.join(_KNOWN)})")
    module_name, attribute, extra, library = _KNOWN[name]
    try:
        importlib.import_module(library)
    except ImportError:
        raise MissingExtraError(f"the {name} transport", extra, library) from None
    module = importlib.import_module(module_name)
    factory: TransportFactory = getattr(module, attribute)
    _loaded[name] = factory
    return factory
