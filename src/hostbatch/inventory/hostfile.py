"""Hosts without an inventory: ad-hoc ``[user@]host[:port]`` terms and pssh-style host files.

Which selection terms are ad-hoc hosts (the rule, also in ``hostbatch help patterns``):

1. a term that is an inventory host's name is always that inventory host;
2. otherwise a term is an ad-hoc host when it contains ``@`` (``deploy@web01``), ends in
   ``:PORT`` (``web01:2222``, ``[::1]:22``), is an IP address (``10.0.0.5``, ``::1``) or is
   a dotted name (``db.example.com``) without glob or range characters;
3. any other bare word (``web0l``) must be an inventory name: a typo is still
   "unknown host 'web0l'; did you mean 'web01'?".

Every line of a host file (``--hostfile FILE``, or ``-h -`` for standard input) is one host,
``[user@]host[:port]``, with ``#`` comments and blank lines ignored; a line that names an
inventory host is that host, any other line is an ad-hoc host. Bad lines are errors naming
``file:line``.

Ad-hoc hosts are resolved like inventory hosts without values of their own: user, port,
key file and jump host come from ``~/.ssh/config`` (the ``--ssh-config`` file), then the
built-in defaults. Each is named as written (``deploy@10.0.0.5:2222``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from hostbatch.errors import InventoryError, SelectionError
from hostbatch.inventory import sshconfig
from hostbatch.inventory.inventory import ENV_VAR, Inventory, find_inventory, load_inventory
from hostbatch.inventory.patterns import split_terms
from hostbatch.inventory.records import HostDefinition, Layer, Located
from hostbatch.inventory.resolve import resolve
from hostbatch.models import Host

STDIN = "-"
STDIN_NAME = "<stdin>"
_PORT_SUFFIX = re.compile(r":(\d+)$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_.%:-]+$")


@dataclass(frozen=True)
class Address:
    """One parsed ``[user@]host[:port]``."""

    text: str  # as written; the host's name
    host: str
    user: str | None = None
    port: int | None = None


def _split_port(rest: str) -> tuple[str, str | None]:
    """``host:22`` / ``[v6]:22`` / ``[v6]`` / ``::1`` / ``host`` -> (host, port text)."""
    if rest.startswith("["):
        inside, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError("expected [IPv6 address]:PORT")
        return inside, (tail[1:] if tail else None)
    if rest.count(":") == 1:
        host, _, port = rest.partition(":")
        return host, port
    return rest, None  # a bare IPv6 address has several colons and no port


def parse_address(text: str) -> Address:
    """Parse ``[user@]host[:port]``; ValueError says what is wrong."""
    text = text.strip()
    user, at, rest = text.rpartition("@")
    if at and not user:
        raise ValueError("empty user before '@'")
    host, port_text = _split_port(rest)
    if not host:
        raise ValueError("no host")
    if not _HOSTNAME.match(host) or (":" in host and not _is_ip(host.split("%")[0])):
        raise ValueError(f"'{host}' is not a host name or address")
    port = None
    if port_text is not None:
        if not port_text.isdigit():
            raise ValueError(f"port '{port_text}' is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is out of range (1-65535)")
    return Address(text, host, user or None, port)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def looks_adhoc(term: str) -> bool:
    """True for a term that is an address rather than an inventory name (rule 2 above)."""
    if not term or term.startswith(("@", "!")) or any(c in term for c in "*?,"):
        return False
    if "@" in term or _is_ip(term) or term.startswith("["):
        return True
    if _PORT_SUFFIX.search(term) and term.count(":") == 1:
        return True
    return "." in term and "[" not in term and "]" not in term


@dataclass
class AdhocSelection:
    """Selection terms split into those the inventory answers and ad-hoc hosts."""

    host_terms: list[str] = field(default_factory=list)  # -h terms for Inventory.select
    pattern_terms: list[str] = field(default_factory=list)  # positional terms, likewise
    addresses: dict[str, tuple[Address, Located]] = field(default_factory=dict)
    excluded: set[str] = field(default_factory=set)  # "!address" terms

    def add(self, address: Address, where: Located) -> None:
        self.addresses.setdefault(address.text, (address, where))

    def needs_inventory(self, groups: Sequence[str]) -> bool:
        """False when the selection is ad-hoc hosts only (no inventory is needed)."""
        return not self.addresses or bool(self.host_terms or self.pattern_terms or groups)


def split_adhoc(
    texts: Iterable[str], known: Container[str], into: AdhocSelection, *, origin: str = "-h"
) -> list[str]:
    """Split comma-separated host terms: addresses (rule 2) become ad-hoc hosts in
    *into*; inventory names and patterns are returned. SelectionError for a bad address."""
    terms: list[str] = []
    for text in texts:
        for term in split_terms(text):
            body = term[1:].strip() if term.startswith("!") else term
            if body in known or not looks_adhoc(body):
                terms.append(term)
                continue
            try:
                address = parse_address(body)
            except ValueError as exc:
                raise SelectionError(f"bad host '{body}' in {origin}: {exc}") from None
            if term.startswith("!"):
                into.excluded.add(address.text)
            else:
                into.add(address, Located(body, origin))
    return terms


def read_hostfile(stream: TextIO, name: str, known: Container[str], split: AdhocSelection) -> None:
    """Add every line of a host file to *split*: inventory names as terms, others as
    ad-hoc hosts. Raises InventoryError naming ``file:line``."""
    for number, raw in enumerate(stream, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line in known:
            split.host_terms.append(line)
            continue
        try:
            if any(c.isspace() for c in line):
                raise ValueError("one host per line, [user@]host[:port]")
            address = parse_address(line)
        except ValueError as exc:
            raise InventoryError(f"bad host {line!r}: {exc}", path=name, line=number) from None
        split.add(address, Located(line, name, number))


def load_hostfile(path: str, known: Container[str], split: AdhocSelection) -> None:
    """:func:`read_hostfile` for a file path (``-`` is standard input, read by the caller)."""
    try:
        with Path(path).expanduser().open(encoding="utf-8") as stream:
            read_hostfile(stream, path, known, split)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InventoryError(f"cannot read host file: {reason}", path=path) from None


def adhoc_hosts(
    split: AdhocSelection,
    *,
    ssh_config: sshconfig.SSHConfig | None,
    environ: Mapping[str, str] | None = None,
) -> list[Host]:
    """Resolve the ad-hoc addresses into Hosts (``~/.ssh/config``, then defaults)."""
    definitions = []
    for address, where in split.addresses.values():
        if address.text in split.excluded:
            continue
        layer: Layer = {"hostname": Located(address.host, where.path, where.line)}
        if address.user:
            layer["username"] = Located(address.user, where.path, where.line)
        if address.port is not None:
            layer["port"] = Located(str(address.port), where.path, where.line)
        definitions.append(HostDefinition(address.text, where.path, where.line, layers=[layer]))
    return resolve(definitions, ssh_config=ssh_config, environ=environ)


def _inventory_if_any(
    paths: Sequence[str], ssh_config: str | None, environ: Mapping[str, str] | None
) -> Inventory | None:
    """The inventory, or None when none was asked for and none is found (it may not be
    needed: see :meth:`AdhocSelection.needs_inventory`)."""
    env = os.environ if environ is None else environ
    try:
        find_inventory(paths, env)
    except InventoryError:
        if paths or env.get(ENV_VAR):
            raise
        return None
    return load_inventory(paths, environ=environ, ssh_config=ssh_config)


def load_with_adhoc(
    paths: Sequence[str],
    *,
    hosts: Sequence[str] = (),
    patterns: Sequence[str] = (),
    groups: Sequence[str] = (),
    hostfiles: Sequence[str] = (),
    ssh_config: str | None = None,
    stdin: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Inventory, AdhocSelection]:
    """The inventory with the selection's ad-hoc hosts added, and the split selection.

    ``-`` among *hosts* reads a host file from *stdin*. No inventory is needed (none is
    looked for past the defaults) when the selection is ad-hoc hosts only.
    """
    inventory = _inventory_if_any(paths, ssh_config, environ)
    known: Container[str] = inventory.hosts if inventory is not None else {}
    split = AdhocSelection()
    split.host_terms = split_adhoc([h for h in hosts if h.strip() != STDIN], known, split)
    for path in hostfiles:
        load_hostfile(path, known, split)
    if stdin is not None and any(h.strip() == STDIN for h in hosts):
        read_hostfile(stdin, STDIN_NAME, known, split)
    split.pattern_terms = split_adhoc(patterns, known, split, origin="the arguments")
    if inventory is None:
        if split.needs_inventory(groups):
            find_inventory(paths, environ)  # raises "no inventory found: ..."
        inventory = Inventory.from_hosts([])
    config = sshconfig.parse(Path(ssh_config).expanduser()) if ssh_config else None
    extra = adhoc_hosts(split, ssh_config=config, environ=environ)
    merged = Inventory.from_hosts(
        [*inventory.hosts.values(), *extra],
        sources=inventory.sources,
        warnings=inventory.warnings,
        group_order=inventory.groups,
    )
    return merged, split


def complete_selection(
    chosen: Sequence[Host], inventory: Inventory, split: AdhocSelection
) -> list[Host]:
    """The hosts the inventory selected, then the ad-hoc hosts, each once (emptiness of
    an inventory selection is :meth:`Inventory.select`'s business)."""
    names = dict.fromkeys(h.name for h in chosen)
    names.update(dict.fromkeys(a for a in split.addresses if a not in split.excluded))
    if not names and split.addresses:  # every ad-hoc host excluded again
        raise SelectionError("the selection matches no host")
    return [inventory.hosts[name] for name in names]
