"""Resolve host definitions once into frozen :class:`~hostbatch.models.Host` records.

Precedence, highest first:

1. the host's own values (its section, its YAML mapping);
2. its groups' values, in the order the host lists its groups (single-file INI ``[group:X]``,
   YAML ``groups:``);
3. the file's defaults (``[DEFAULT]`` of that INI file, YAML ``defaults:``);
4. ``~/.ssh/config`` (HostName, User, Port, IdentityFile, ProxyJump) for the host's name;
5. built-in defaults: port 22, the local user name, ssh-agent / default keys.

A host defined in several files (the folder form's group files) is one host in all of
those groups; a key given with different values in two definitions is an error.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from hostbatch.errors import InventoryError
from hostbatch.inventory.patterns import clip
from hostbatch.inventory.records import (
    SECRET_KEYS,
    HostDefinition,
    Layer,
    Located,
    mask_secrets,
)
from hostbatch.inventory.sshconfig import SSHConfig
from hostbatch.models import Credentials, Host, Secret

TRANSPORTS = ("asyncssh", "paramiko", "netmiko")
_ENV_KEYS = {"password_env": "password", "passphrase_env": "passphrase", "secret_env": "secret"}

Environ = Mapping[str, str]


@dataclass(frozen=True)
class _Merged:
    name: str
    definitions: tuple[HostDefinition, ...]
    values: Layer
    groups: tuple[str, ...]


def merge_definitions(definitions: list[HostDefinition]) -> list[_Merged]:
    """Group definitions by host name; refuse keys that two definitions set differently."""
    by_name: dict[str, list[HostDefinition]] = {}
    for definition in definitions:
        by_name.setdefault(definition.name, []).append(definition)
    merged: list[_Merged] = []
    for name, defs in by_name.items():
        if len(defs) == 1:  # the common case: nothing to reconcile
            only = defs[0]
            merged.append(
                _Merged(name, (only,), only.flattened(), tuple(dict.fromkeys(only.groups)))
            )
            continue
        values: Layer = {}
        for definition in defs:
            for key, located in definition.flattened().items():
                seen = values.get(key)
                if seen is not None and seen.value != located.value:
                    raise _conflict(name, key, seen, located)
                values.setdefault(key, located)
        groups = tuple(dict.fromkeys(g for d in defs for g in d.groups))
        merged.append(_Merged(name, tuple(defs), values, groups))
    return merged


def _conflict(name: str, key: str, seen: Located, located: Located) -> InventoryError:
    hidden = key in SECRET_KEYS
    first = "(hidden)" if hidden else shown(seen.value)
    second = "(hidden)" if hidden else shown(located.value)
    return InventoryError(
        f"host '{name}' is defined twice with conflicting values for '{key}': "
        f"{first} at {seen.where} and {second} at {located.where}",
        path=located.path,
        line=located.line,
        host=name,
    )


def shown(value: str) -> str:
    """A value quoted in an error: at most ~80 characters, anything secret-looking masked."""
    return repr(mask_secrets(clip(value)))


def _fail(located: Located, message: str, host: str) -> InventoryError:
    return InventoryError(f"host '{clip(host)}': {message}", path=located.path, line=located.line)


def _port(values: Layer, host: str) -> int:
    located = values.get("port")
    if located is None:
        return 22
    try:
        port = int(located.value)
    except ValueError:
        raise _fail(located, f"port {shown(located.value)} is not a number", host) from None
    if not 1 <= port <= 65535:
        raise _fail(located, f"port {port} is out of range (1-65535)", host)
    return port


def _secret(values: Layer, key: str, host: str, environ: Environ) -> Secret | None:
    env_key = f"{key}_env"
    if env_key in values:
        located = values[env_key]
        if located.value not in environ:
            raise _fail(located, f"{env_key} names ${located.value}, which is not set", host)
        return Secret(environ[located.value], origin=f"{env_key} {located.value}")
    if key in values:
        return Secret(values[key].value, origin=f"inventory {values[key].where}")
    return None


def build_host(
    merged: _Merged,
    ssh_config: SSHConfig | None,
    environ: Environ,
    local_user: str,
    expand_home: Callable[[str], str] = os.path.expanduser,
) -> Host:
    """Resolve one merged definition into a frozen Host."""
    values = dict(merged.values)
    alias = values["hostname"].value if "hostname" in values else merged.name
    if ssh_config is not None:
        for key, located in ssh_config.lookup(alias).items():
            values.setdefault(key, located)
    first = merged.definitions[0]
    if "hostname" not in values or not values["hostname"].value:
        raise InventoryError(
            f"host '{merged.name}' has no hostname (set hostname = ADDRESS)",
            path=first.path,
            line=first.line,
        )
    transport = values.get("transport")
    if transport is not None and transport.value not in TRANSPORTS:
        raise _fail(
            transport,
            f"unknown transport {shown(transport.value)} (choose from {', '.join(TRANSPORTS)})",
            merged.name,
        )
    credentials = Credentials(
        username=values["username"].value if "username" in values else local_user,
        password=_secret(values, "password", merged.name, environ),
        key_file=expand_home(values["key_file"].value) if "key_file" in values else None,
        passphrase=_secret(values, "passphrase", merged.name, environ),
        secret=_secret(values, "secret", merged.name, environ),
        become_password=_secret(values, "become_password", merged.name, environ),
    )
    device_type = values["device_type"].value if "device_type" in values else None
    return Host(
        name=merged.name,
        hostname=values["hostname"].value,
        port=_port(values, merged.name),
        credentials=credentials,
        groups=merged.groups,
        transport=transport.value if transport else ("netmiko" if device_type else None),
        device_type=device_type,
        proxy_jump=values["proxy_jump"].value if "proxy_jump" in values else None,
        source=first.where,
    )


def resolve(
    definitions: list[HostDefinition],
    *,
    ssh_config: SSHConfig | None = None,
    environ: Environ | None = None,
    local_user: str | Callable[[], str] | None = None,
) -> list[Host]:
    """Resolve every definition into Hosts, in the order they were first defined."""
    env = os.environ if environ is None else environ
    user = local_user() if callable(local_user) else local_user
    if user is None:
        user = env.get("USER") or env.get("LOGNAME") or "root"
    # expanduser reads $HOME on every call; once per distinct key_file within this load
    expand_home = functools.lru_cache(maxsize=None)(os.path.expanduser)
    hosts = [
        build_host(m, ssh_config, env, user, expand_home) for m in merge_definitions(definitions)
    ]
    return resolve_jumps(hosts)


def parse_jump(spec: str) -> tuple[str | None, str, int]:
    """``[user@]host[:port]`` (the first hop of a ProxyJump list) -> (user, host, port)."""
    return parse_jumps(spec)[0]


def _parse_hop(hop: str) -> tuple[str | None, str, int]:
    user, _, rest = hop.strip().rpartition("@")
    host, port = rest, 22
    if rest.startswith("[") and "]" in rest:  # [::1]:2222
        host, _, tail = rest[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else 22
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
        port = int(port_text) if port_text.isdigit() else 22
    return (user or None), host, port


def parse_jumps(spec: str) -> list[tuple[str | None, str, int]]:
    """OpenSSH's ``ProxyJump a,b``: every hop, the first one (connected to directly) first."""
    return [_parse_hop(hop) for hop in spec.split(",") if hop.strip()] or [_parse_hop(spec)]


def _hop(host: Host, spec: tuple[str | None, str, int], by_name: dict[str, Host]) -> Host:
    """One hop: an inventory host by name, else built from the spec with the target's
    credentials (as ssh -J does with your default identity)."""
    user, address, port = spec
    jump = by_name.get(address)
    if jump is None or jump.name == host.name:
        creds = replace(host.credentials, username=user or host.credentials.username)
        return Host(name=address, hostname=address, port=port, credentials=creds)
    if user:
        jump = replace(jump, credentials=replace(jump.credentials, username=user))
    return replace(jump, proxy_jump=None, jump=None)


def resolve_jumps(hosts: list[Host]) -> list[Host]:
    """Attach each host's jump hosts. ``ProxyJump a,b`` gives ``host.jump`` = b, whose
    ``jump`` is a (the hop connected to directly): each hop tunnels through the one before
    it, as OpenSSH does. A hop's own proxy_jump is not followed."""
    by_name = {h.name: h for h in hosts}
    resolved: list[Host] = []
    for host in hosts:
        if not host.proxy_jump or host.proxy_jump.lower() == "none":
            resolved.append(host)
            continue
        previous: Host | None = None
        for spec in parse_jumps(host.proxy_jump):
            previous = replace(_hop(host, spec, by_name), jump=previous)
        resolved.append(replace(host, jump=previous))
    return resolved
