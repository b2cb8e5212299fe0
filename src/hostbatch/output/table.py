"""Plain text tables: left-aligned columns two spaces apart (hosts, ping, --dry-run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def format_columns(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    style: Callable[[Sequence[str], list[str]], list[str]] | None = None,
) -> str:
    """A header and rows, each column as wide as its widest cell (the last one unpadded,
    trailing spaces stripped). *style(row, padded_cells)* may decorate a body row's padded
    cells, e.g. colour a status, without changing the alignment."""
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns[:-1])]
    lines = []
    for index, row in enumerate([columns, *rows]):
        cells = [v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)] + [row[-1]]
        if index and style is not None:
            cells = style(row, cells)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
