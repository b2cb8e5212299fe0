"""Gathering results: the summary (statuses, folded host ranges) and identical outputs folded."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hostbatch.errors import UsageError
from hostbatch.inventory.patterns import fold_text, natural_sorted
from hostbatch.models import Event, HostResult, Status, Throttled


def by_status(results: Mapping[str, HostResult]) -> dict[Status, list[str]]:
    """Host names per status, in the summary's order, naturally sorted."""
    groups: dict[Status, list[str]] = {}
    for status in Status:
        names = [name for name, r in results.items() if r.status is status]
        if names:
            groups[status] = natural_sorted(names)
    return groups


def summary_lines(results: Mapping[str, HostResult], elapsed: float) -> list[str]:
    """``20 hosts in 1.52s: 17 ok, 1 command failed, ...`` then one line per non-ok status."""
    groups = by_status(results)
    counts = ", ".join(f"{len(names)} {status.value}" for status, names in groups.items())
    lines = [f"{len(results)} hosts in {elapsed:.2f}s: {counts}"]
    for status, names in groups.items():
        if status is not Status.OK:
            lines.append(f"  {status.value:<17} {fold_text(names)}")
    truncated = [name for name, r in results.items() if r.truncated]
    if truncated:
        lines.append(f"  output truncated  {fold_text(truncated)} (only the tail was kept)")
    return lines


class ThrottleNotes:
    """A sink in front of *sink* that keeps the engine's Throttled events for the summary
    (every event is passed on)."""

    def __init__(self, sink: Callable[[Event], None]) -> None:
        self.sink = sink
        self.events: list[Throttled] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, Throttled):
            self.events.append(event)
        self.sink(event)

    def lines(self) -> list[str]:
        """``throttled by server at ADDR: start concurrency settled at N (M starts
        dropped and retried)``, one per address; workers' figures are added up."""
        totals: dict[str, list[int]] = {}
        for event in self.events:
            settled, dropped = totals.setdefault(event.address, [0, 0])
            totals[event.address] = [settled + event.settled, dropped + event.dropped]
        return [
            f"throttled by server at {address}: start concurrency settled at {settled} "
            f"({dropped} starts dropped and retried; raise sshd's MaxStartups to start "
            "more at once)"
            for address, (settled, dropped) in totals.items()
        ]


@dataclass(frozen=True)
class OutputMask:
    """``--mask REGEX``: matches are replaced by ``placeholder`` before outputs are
    compared, so outputs differing only there (timestamps, PIDs) fold together."""

    pattern: str
    regex: re.Pattern[bytes]
    placeholder: bytes


def compile_masks(patterns: Sequence[str]) -> tuple[OutputMask, ...]:
    """Masks for *patterns*, numbered from 1 (placeholder ``<mask1>``...); a bad regular
    expression is a UsageError (exit 2) naming it."""
    masks = []
    for number, pattern in enumerate(patterns, 1):
        try:
            regex = re.compile(pattern.encode("utf-8"))
        except re.error as exc:
            raise UsageError(f"bad --mask '{pattern}': {exc}") from None
        masks.append(OutputMask(pattern, regex, f"<mask{number}>".encode()))
    return tuple(masks)


def apply_masks(output: bytes, masks: Sequence[OutputMask]) -> tuple[bytes, tuple[str, ...]]:
    """*output* with every mask applied in order, and the patterns that matched."""
    applied = []
    for mask in masks:
        output, count = mask.regex.subn(mask.placeholder, output)
        if count:
            applied.append(mask.pattern)
    return output, tuple(applied)


@dataclass(frozen=True)
class GatheredOutput:
    """One distinct (masked) output and the hosts, folded, that printed it."""

    hosts: str
    output: bytes
    masks: tuple[str, ...]  # the patterns that changed this output for some host


def gather_outputs(
    results: Mapping[str, HostResult], masks: Sequence[OutputMask] = ()
) -> list[GatheredOutput]:
    """Hosts with identical stdout+stderr, after *masks*, folded together."""
    by_output: dict[bytes, tuple[list[str], set[str]]] = {}
    for name, result in results.items():
        if result.status in (Status.OK, Status.FAILED, Status.TIMEOUT):
            output, applied = apply_masks(result.stdout + result.stderr, masks)
            names, patterns = by_output.setdefault(output, ([], set()))
            names.append(name)
            patterns.update(applied)
    groups = [
        GatheredOutput(
            fold_text(names), output, tuple(m.pattern for m in masks if m.pattern in patterns)
        )
        for output, (names, patterns) in by_output.items()
    ]
    return sorted(groups, key=lambda group: group.hosts)


def gathered(
    results: Mapping[str, HostResult], masks: Sequence[OutputMask] = ()
) -> list[tuple[str, bytes]]:
    """Hosts with identical stdout+stderr folded together: ``[("web[01-05]", output), ...]``
    (masked outputs, when *masks* are given)."""
    return [(group.hosts, group.output) for group in gather_outputs(results, masks)]


def digest_lines(results: Mapping[str, HostResult], masks: Sequence[OutputMask] = ()) -> list[str]:
    """The gathered digest (``-b``, ``-B``) as lines: a header per distinct output naming
    its hosts and the masks that applied to it, then the output."""
    lines = [f"masks: {m.placeholder.decode()} = {m.pattern}" for m in masks]
    for group in gather_outputs(results, masks):
        applied = [m.placeholder.decode() for m in masks if m.pattern in group.masks]
        suffix = f"  (masked: {', '.join(applied)})" if applied else ""
        lines.append(f"---------------- {group.hosts}{suffix}")
        lines.append(group.output.decode("utf-8", errors="replace").rstrip("\n"))
    return lines
