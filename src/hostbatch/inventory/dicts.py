"""netmiko-style host dicts (``device_type``, ``ip``/``host``, ``username``, ...) as Hosts.

The seed's scripts hand lists of such dicts to netmiko; the API accepts them as ``hosts=``
and resolves them exactly like inventory entries (see :mod:`hostbatch.inventory.resolve`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from hostbatch.errors import UsageError
from hostbatch.inventory.records import (
    ALIASES,
    HOST_KEYS,
    STRUCTURE_KEYS,
    HostDefinition,
    Layer,
    Located,
)
from hostbatch.inventory.resolve import resolve
from hostbatch.models import Host, Secret

# netmiko connection tunables a seed's host dicts may carry; hostbatch sets its own
# (timeouts, host key checking, fast CLI), so these are accepted and not used.
NETMIKO_TUNING_KEYS = frozenset(
    {
        "allow_agent",
        "alt_host_keys",
        "alt_key_file",
        "auth_timeout",
        "banner_timeout",
        "blocking_timeout",
        "conn_timeout",
        "fast_cli",
        "global_delay_factor",
        "keepalive",
        "session_log",
        "ssh_strict",
        "system_host_keys",
        "timeout",
        "use_keys",
        "verbose",
    }
)


def dict_layer(spec: Mapping[str, Any], where: str) -> Layer:
    """One dict as an inventory layer (aliases applied, tunables dropped, values located
    at *where*); unknown keys and a missing address raise UsageError."""
    layer: Layer = {}
    for raw_key, value in spec.items():
        key = ALIASES.get(str(raw_key).lower(), str(raw_key).lower())
        if value is None or key in NETMIKO_TUNING_KEYS or key in STRUCTURE_KEYS:
            continue
        if key not in HOST_KEYS:
            known = ", ".join(sorted({*HOST_KEYS, "ip", "host", "name"}))
            raise UsageError(f"{where}: unknown key '{raw_key}' in a host dict (known: {known})")
        text = value.reveal() if isinstance(value, Secret) else str(value)
        layer[key] = Located(text, where)
    if not layer.get("hostname") or not layer["hostname"].value:
        raise UsageError(f"{where}: a host dict needs 'host' or 'ip'")
    return layer


def hosts_from_dicts(specs: Sequence[tuple[int, Mapping[str, Any]]]) -> list[Host]:
    """netmiko-style dicts (``device_type``, ``ip``/``host``, ``username``, ``password``,
    ``secret``, ``port``, ...), each with its index in the caller's list, as Host records,
    resolved like inventory entries (a dict with ``device_type`` uses the netmiko
    transport; passwords become Secrets).

    A host is named by its ``name``, else by its address; when several unnamed dicts share
    an address (one IP, several ports), each is named ``address:port``.
    """
    layers = [(index, spec, dict_layer(spec, f"hosts[{index}]")) for index, spec in specs]
    unnamed = Counter(layer["hostname"].value for _, spec, layer in layers if not spec.get("name"))
    definitions: list[HostDefinition] = []
    for index, spec, layer in layers:
        address = layer["hostname"].value
        name = str(spec.get("name") or "")
        if not name:
            port = layer["port"].value if "port" in layer else "22"
            name = address if unnamed[address] == 1 else f"{address}:{port}"
        definitions.append(HostDefinition(name, f"hosts[{index}]", None, layers=[layer]))
    return resolve(definitions)
