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

# The most host names one selection may expand to (all its terms together).
MAX_EXPANSION = 1_000_000

_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def split_terms(text: str) -> list[str]:
    """Split on commas that are not inside ``[...]``; every term stripped, empty ones kept."""
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
    return terms


def clip(text: str, limit: int = 80) -> str:
    """*text* cut to *limit* characters for an error message (a user's 50 MB line stays out)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# One bracket's ranges: (low, high, width); width 1 means no zero padding.
Spans = list[tuple[int, int, int]]


def _parse_ranges(spec: str, pattern: str) -> Spans:
    spans: Spans = []
    for part in spec.split(","):
        match = _RANGE.match(part)
        if not match:
            raise SelectionError(
                f"bad range '[{clip(spec)}]' in '{clip(pattern)}': expected e.g. [01-20,25]"
            )
        low_text, high_text = match.group(1), match.group(2) or match.group(1)
        low, high = int(low_text), int(high_text)
        if high < low:
            raise SelectionError(
                f"bad range '[{clip(spec)}]' in '{clip(pattern)}': {low_text} > {high_text}"
            )
        spans.append((low, high, len(low_text) if low_text.startswith("0") else 1))
    return spans


def _split_pattern(pattern: str) -> tuple[list[str], list[Spans]]:
    """The literal texts around the brackets (one more than brackets) and each bracket's spans."""
    texts: list[str] = []
    brackets: list[Spans] = []
    position = 0
    for match in _BRACKET.finditer(pattern):
        texts.append(pattern[position : match.start()])
        brackets.append(_parse_ranges(match.group(1), pattern))
        position = match.end()
    texts.append(pattern[position:])
    if any("[" in text or "]" in text for text in texts):
        raise SelectionError(f"unbalanced brackets in '{clip(pattern)}'")
    return texts, brackets


def count_names(pattern: str) -> int:
    """How many names :func:`expand` would give, computed without building them."""
    if "[" not in pattern and "]" not in pattern:
        return 1
    total = 1
    for spans in _split_pattern(pattern)[1]:
        total *= sum(high - low + 1 for low, high, _ in spans)
    return total


def expand(pattern: str) -> list[str]:
    """Expand every ``[...]`` range in *pattern*; names without brackets come back alone."""
    if "[" not in pattern and "]" not in pattern:
        return [pattern]
    total = count_names(pattern)
    if total > MAX_EXPANSION:
        raise SelectionError(
            f"'{clip(pattern)}' expands to {total} names; the limit is {MAX_EXPANSION}"
        )
    texts, brackets = _split_pattern(pattern)
    pieces: list[list[str]] = []
    for text, spans in zip(texts, brackets, strict=False):
        pieces.append([text])
        pieces.append(
            [str(n).zfill(width) for low, high, width in spans for n in range(low, high + 1)]
        )
    pieces.append([texts[-1]])
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


def _term(body: str, exclude: bool, default_kind: str) -> Term:
    """Classify one non-empty term body (new term kinds go here)."""
    if body == "all":
        return Term(exclude, "all", "")
    if body.startswith("@run:"):
        return Term(exclude, "run", body[len("@run:") :])
    if body.startswith("@"):
        return Term(exclude, "group", body[1:])
    return Term(exclude, default_kind, body)


def parse_terms(text: str, *, default_kind: str = "host") -> Iterator[Term]:
    """Parse a comma-separated selection; *default_kind* is "group" for ``-g`` values.

    An empty selection or an empty term (``''``, ``','``, ``'web01,'``, ``'!'``) is an
    error, never "every host": a script passing an empty variable must not hit the fleet.
    """
    raw_terms = split_terms(text)
    if not any(raw_terms):
        raise SelectionError(
            f"empty selection {clip(text)!r}: name hosts, @groups or 'all' "
            "(give no -h/-g at all for every host)"
        )
    for raw in raw_terms:
        exclude = raw.startswith("!")
        body = raw[1:].strip() if exclude else raw
        if not body:
            raise SelectionError(f"empty term in {clip(text)!r} (a stray comma or '!'?)")
        yield _term(body, exclude, default_kind)
