"""Writing a command's rows as a table, JSON or CSV (``--format``)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as CSV with a header (columns: the given ones, else every key in first-seen order)."""
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return "" if value is None else value


def emit(fmt: str, rows: Sequence[Mapping[str, Any]], document: Any,
         show: Callable[[], None], columns: Sequence[str] | None = None) -> None:
    """Print ``document`` as JSON, ``rows`` as CSV, or call ``show`` (the table view)."""
    if fmt == "json":
        print(json.dumps(document, indent=2))
    elif fmt == "csv":
        sys.stdout.write(csv_text(rows, columns))
    else:
        show()


def show_all(*items: Any) -> None:
    """Print rich renderables (tables, markup-free lines) on one console."""
    from rich.console import Console

    console = Console()
    for item in items:
        if isinstance(item, str):  # a plain line: no markup, not wrapped (URIs stay whole)
            console.print(item, markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(item)


def escape(text: Any) -> str:
    """Text shown in a rich table as it is (``conv1[...]`` is not markup)."""
    from rich.markup import escape as _escape

    return _escape(str(text))
