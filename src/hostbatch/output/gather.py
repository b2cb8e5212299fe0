"""Gathering results: the summary (statuses, folded host ranges) and identical outputs folded."""

from __future__ import annotations

from collections.abc import Mapping

from hostbatch.inventory.patterns import fold_text, natural_sorted
from hostbatch.models import HostResult, Status


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


def gathered(results: Mapping[str, HostResult]) -> list[tuple[str, bytes]]:
    """Hosts with identical stdout+stderr folded together: ``[("web[01-05]", output), ...]``."""
    by_output: dict[bytes, list[str]] = {}
    for name, result in results.items():
        if result.status in (Status.OK, Status.FAILED, Status.TIMEOUT):
            by_output.setdefault(result.stdout + result.stderr, []).append(name)
    return sorted(
        ((fold_text(names), output) for output, names in by_output.items()),
        key=lambda pair: pair[0],
    )
