"""The Inventory: frozen hosts and groups, where to find the files, and host selection."""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hostbatch.errors import InventoryError, SelectionError
from hostbatch.gcpause import collector_paused
from hostbatch.inventory import ini, sshconfig
from hostbatch.inventory.patterns import MAX_EXPANSION, Term, clip, count_names, expand, parse_terms
from hostbatch.inventory.records import LoadResult
from hostbatch.inventory.resolve import resolve
from hostbatch.models import Host, Secret

ENV_VAR = "HOSTBATCH_INVENTORY"
DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
_SUFFIXES = ("", ".ini", ".yaml", ".yml")


def default_locations(cwd: Path | None = None, home: Path | None = None) -> list[Path]:
    """Where an inventory is looked for when neither --inventory nor $HOSTBATCH_INVENTORY is set."""
    here = cwd or Path.cwd()
    config = (home or Path.home()) / ".config" / "hostbatch"
    return [base / f"inventory{suffix}" for base in (here, config) for suffix in _SUFFIXES]


def find_inventory(
    paths: Sequence[str | Path] = (), environ: Mapping[str, str] | None = None
) -> list[Path]:
    """The inventory paths to load: explicit ones, else $HOSTBATCH_INVENTORY, else defaults."""
    env = os.environ if environ is None else environ
    if paths:
        chosen = [Path(p).expanduser() for p in paths]
    elif env.get(ENV_VAR):
        chosen = [Path(p).expanduser() for p in env[ENV_VAR].split(os.pathsep) if p]
    else:
        for candidate in default_locations():
            if candidate.exists():
                return [candidate]
        looked = ", ".join(str(p) for p in default_locations())
        raise InventoryError(
            f"no inventory found: pass --inventory PATH, set ${ENV_VAR}, or create one of: {looked}"
        )
    for path in chosen:
        if not path.exists():
            raise InventoryError("inventory not found", path=str(path))
    return chosen


def load_source(path: Path, result: LoadResult) -> None:
    """Load one inventory path of any supported form into *result*."""
    if path.is_dir():
        ini.load_folder(path, result)
        for extra in sorted([*path.glob("*.yaml"), *path.glob("*.yml")]):
            _load_yaml(extra, result)
        if not result.definitions:
            raise InventoryError("inventory folder holds no *.ini or *.yaml file", path=str(path))
    elif path.suffix in (".yaml", ".yml"):
        _load_yaml(path, result)
    elif path.name == "config" or "ssh_config" in path.name:
        sshconfig.load_ssh_config(path, result)
    else:
        ini.load_single_file(path, result)


def _load_yaml(path: Path, result: LoadResult) -> None:
    """YAML files only: PyYAML takes ~20 ms to import, paid by every CLI start otherwise."""
    from hostbatch.inventory import yaml as yaml_loader

    yaml_loader.load_yaml(path, result)


@dataclass(frozen=True)
class Inventory:
    """Hosts by name (in definition order) and group memberships, resolved once."""

    hosts: Mapping[str, Host]
    groups: Mapping[str, tuple[str, ...]]
    sources: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_hosts(
        cls,
        hosts: Iterable[Host],
        *,
        sources: tuple[str, ...] = (),
        warnings: tuple[str, ...] = (),
        group_order: Iterable[str] = (),
    ) -> Inventory:
        """Build from resolved hosts; *group_order* also keeps groups that have no host."""
        by_name: dict[str, Host] = {}
        groups: dict[str, list[str]] = {g: [] for g in group_order}
        for host in hosts:
            by_name[host.name] = host
            for group in host.groups:
                groups.setdefault(group, []).append(host.name)
        return cls(by_name, {g: tuple(m) for g, m in groups.items()}, sources, warnings)

    def __len__(self) -> int:
        return len(self.hosts)

    def with_password(self, password: Secret) -> Inventory:
        """A copy in which hosts without a password of their own use *password* (--ask-pass)."""
        hosts = [
            h
            if h.credentials.password
            else replace(h, credentials=replace(h.credentials, password=password))
            for h in self.hosts.values()
        ]
        return Inventory.from_hosts(
            hosts, sources=self.sources, warnings=self.warnings, group_order=self.groups
        )

    def select(
        self,
        hosts: str | Sequence[str] | None = None,
        groups: str | Sequence[str] | None = None,
        patterns: str | Sequence[str] | None = None,
        runs: Callable[[str], list[str]] | None = None,
    ) -> list[Host]:
        """Hosts named by ``-h`` (hosts), ``-g`` (groups) and free patterns, each once.

        Terms apply left to right: hosts, then groups, then patterns; ``!term`` removes.
        Nothing given at all (None or empty sequences) selects every host; a given but
        empty value (``''``, ``','``) or an empty term is a SelectionError, never "all".
        *runs* resolves ``@run:RUN:STATUS`` terms (given ``"RUN:STATUS"``, it returns host
        names, e.g. from the journal).
        """
        terms = [
            *(t for text in _texts(hosts) for t in parse_terms(text, default_kind="host")),
            *(t for text in _texts(groups) for t in parse_terms(text, default_kind="group")),
            *(t for text in _texts(patterns) for t in parse_terms(text, default_kind="host")),
        ]
        if not terms:
            return list(self.hosts.values())
        _check_expansion(terms)
        chosen: dict[str, None] = {}
        if terms[0].exclude:  # "!web07" alone means everything but web07
            chosen = dict.fromkeys(self.hosts)
        for term in terms:
            if term.kind == "run":
                names = self._run_names(term.value, runs)
            else:
                names = self._term_names(term.kind, term.value)
            if term.exclude:
                for name in names:
                    chosen.pop(name, None)
            else:
                chosen.update(dict.fromkeys(names))
        if not chosen:
            raise SelectionError("the selection matches no host")
        return [self.hosts[name] for name in chosen]

    def _run_names(self, value: str, runs: Callable[[str], list[str]] | None) -> list[str]:
        if runs is None:
            raise SelectionError(f"'@run:{value}' needs the run journal, which is not in use")
        names = runs(value)
        missing = [n for n in names if n not in self.hosts]
        if missing:
            raise SelectionError(
                f"host '{missing[0]}' of '@run:{value}' is no longer in the inventory"
            )
        return names

    def _term_names(self, kind: str, value: str) -> list[str]:
        if kind == "all":
            return list(self.hosts)
        if kind == "group":
            if value not in self.groups:
                raise SelectionError(_unknown("group", value, self.groups))
            return list(self.groups[value])
        names = expand(value)
        if any(c in value for c in "*?"):
            matched = [n for n in self.hosts if fnmatch.fnmatchcase(n, value)]
            if not matched:
                raise SelectionError(f"no host matches '{clip(value)}'")
            return matched
        missing = [n for n in names if n not in self.hosts]
        if missing:
            raise SelectionError(_unknown("host", missing[0], self.hosts, extra=len(missing) - 1))
        return names


def _check_expansion(terms: list[Term]) -> None:
    """Refuse a selection whose ranges expand to too many names, before building any."""
    total = sum(count_names(t.value) for t in terms if t.kind == "host")
    if total > MAX_EXPANSION:
        raise SelectionError(
            f"the selection expands to {total} host names; the limit is {MAX_EXPANSION}"
        )


def _texts(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _unknown(kind: str, name: str, known: Iterable[str], *, extra: int = 0) -> str:
    message = f"unknown {kind} '{clip(name)}'"
    if extra:
        message += f" (and {extra} more)"
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if close:
        message += "; did you mean " + ", ".join(f"'{c}'" for c in close) + "?"
    return message


def load_inventory(
    paths: Sequence[str | Path] = (),
    *,
    environ: Mapping[str, str] | None = None,
    ssh_config: str | Path | None = DEFAULT_SSH_CONFIG,
) -> Inventory:
    """Find, read and resolve an inventory. Raises InventoryError naming file and line."""
    sources = find_inventory(paths, environ)
    with collector_paused():
        result = LoadResult()
        for path in sources:
            load_source(path, result)
        config = sshconfig.parse(Path(ssh_config).expanduser()) if ssh_config else None
        hosts = resolve(result.definitions, ssh_config=config, environ=environ)
        return Inventory.from_hosts(
            hosts,
            sources=tuple(str(p) for p in sources),
            warnings=tuple(result.warnings),
            group_order=result.group_order,
        )
