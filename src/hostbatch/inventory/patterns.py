"""Host-name patterns: ranges ``web[01-20]``, folding back into ranges, and selection terms.

Grammar of one selection term (terms are separated by commas outside brackets)::

    term     := ["!"] ( "all" | "@run:" run [":" statuses] | "@" group | name-pattern )
    pattern  := text ( "[" ranges "]" text )*        e.g. web[01-03,07]-eu
    ranges   := range ( "," range )*
    range    := number | number "-" number          zero padding is kept: [01-10]

``!`` removes what follows from the result; terms apply left to right, so
``@web,!web07`` is every web host except web07. ``@run:41:failed`` is the hosts of
journal run 41 that did not end ok (statuses joined by ``+``: ``@run:last:unreachable+
timed_out``); the caller resolves it (``Inventory.select(runs=...)``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from hostbatch.errors import SelectionError

MAX_EXPANSION = 1_000_000

_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def split_terms(text: str) -> list[str]:
    """Split on commas that are not inside ``[...]``; drop empty terms."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    terms.append("".join(current).strip())
    return [t for t in terms if t]


def _expand_ranges(spec: str, pattern: str) -> list[str]:
    values: list[str] = []
    for part in spec.split(","):
        match = _RANGE.match(part)
        if not match:
            raise SelectionError(f"bad range '[{spec}]' in '{pattern}': expected e.g. [01-20,25]")
        low_text, high_text = match.group(1), match.group(2) or match.group(1)
        low, high = int(low_text), int(high_text)
        if high < low:
            raise SelectionError(f"bad range '[{spec}]' in '{pattern}': {low_text} > {high_text}")
        if high - low >= MAX_EXPANSION:
            raise SelectionError(f"range '[{spec}]' in '{pattern}' is too large")
        width = len(low_text) if low_text.startswith("0") else 1
        values.extend(str(n).zfill(width) for n in range(low, high + 1))
    return values


def expand(pattern: str) -> list[str]:
    """Expand every ``[...]`` range in *pattern*; names without brackets come back alone."""
    if "[" not in pattern and "]" not in pattern:
        return [pattern]
    pieces: list[list[str]] = []
    position = 0
    for match in _BRACKET.finditer(pattern):
        pieces.append([pattern[position : match.start()]])
        pieces.append(_expand_ranges(match.group(1), pattern))
        position = match.end()
    tail = pattern[position:]
    if "[" in tail or "]" in tail or any("[" in p[0] or "]" in p[0] for p in pieces[::2]):
        raise SelectionError(f"unbalanced brackets in '{pattern}'")
    pieces.append([tail])
    total = 1
    for choice in pieces:
        total *= len(choice)
    if total > MAX_EXPANSION:
        raise SelectionError(f"'{pattern}' expands to {total} names; the limit is {MAX_EXPANSION}")
    return ["".join(combo) for combo in itertools.product(*pieces)]


_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")


def _fold_numbers(numbers: list[str]) -> str:
    """``["03","07","08","09"]`` -> ``"03,07-09"`` (same width numbers only)."""
    values = sorted({int(n) for n in numbers})
    padded = any(n.startswith("0") and len(n) > 1 for n in numbers)
    width = len(numbers[0]) if padded else 0
    runs: list[str] = []
    for _, group in itertools.groupby(enumerate(values), key=lambda pair: pair[1] - pair[0]):
        run = [value for _, value in group]
        low, high = str(run[0]).zfill(width), str(run[-1]).zfill(width)
        runs.append(low if run[0] == run[-1] else f"{low}-{high}")
    return ",".join(runs)


def fold(names: Iterable[str]) -> list[str]:
    """Fold names into range patterns: ``web03 web07 web08 web09`` -> ``web[03,07-09]``.

    ``expand`` of every returned pattern gives back exactly the input names.
    """
    groups: dict[tuple[str, str, int], list[str]] = {}
    singles: list[str] = []
    for name in dict.fromkeys(names):
        match = _TRAILING_NUMBER.match(name)
        if not match or "[" in name or "]" in name or "," in name:
            singles.append(name)
            continue
        prefix, number, suffix = match.groups()
        # numbers of one length fold together, so zero padding survives the round trip
        groups.setdefault((prefix, suffix, len(number)), []).append(number)
    folded = list(singles)
    for (prefix, suffix, _), numbers in groups.items():
        if len(numbers) == 1:
            folded.append(f"{prefix}{numbers[0]}{suffix}")
        else:
            folded.append(f"{prefix}[{_fold_numbers(numbers)}]{suffix}")
    return sorted(folded, key=_natural_key)


def fold_text(names: Iterable[str]) -> str:
    """Folded names as one comma-separated string, e.g. for a summary line."""
    return ",".join(fold(names))


def _natural_key(text: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def natural_sorted(names: Iterable[str]) -> list[str]:
    """Sort so that web2 comes before web10."""
    return sorted(names, key=_natural_key)


@dataclass(frozen=True)
class Term:
    """One parsed selection term."""

    exclude: bool
    kind: str  # "all" | "group" | "host" | "run"
    value: str  # group name, host pattern, or "RUN[:STATUS]" for "run"


def parse_terms(text: str, *, default_kind: str = "host") -> Iterator[Term]:
    """Parse a comma-separated selection; *default_kind* is "group" for ``-g`` values."""
    for raw in split_terms(text):
        exclude = raw.startswith("!")
        body = raw[1:].strip() if exclude else raw
        if not body:
            raise SelectionError(f"empty term in '{text}'")
        if body == "all":
            yield Term(exclude, "all", "")
        elif body.startswith("@run:"):
            yield Term(exclude, "run", body[len("@run:") :])
        elif body.startswith("@"):
            yield Term(exclude, "group", body[1:])
        else:
            yield Term(exclude, default_kind, body)
