"""A .csv loader registered through the assistant's plugin hook: the table as Markdown rows, so the
answerer sees each row under its header (the same shape the HTML loader gives a <table>)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from assistant.loaders import LoadedDocument, LoadError
from assistant.plugins import hookimpl


def load_csv(path: Path) -> LoadedDocument:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            rows = [[cell.strip().replace("|", "\\|") for cell in row] for row in csv.reader(handle)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LoadError(f"unreadable CSV ({exc}); save it as UTF-8 comma-separated values") from exc
    rows = [row for row in rows if any(row)]
    if not rows:
        raise LoadError("empty CSV: there is no text to index")
    width = max(len(row) for row in rows)
    lines = ["| " + " | ".join(row + [""] * (width - len(row))) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * width)
    return LoadedDocument(title=path.stem.replace("_", " "), segments=["\n".join(lines) + "\n"])


@hookimpl
def register_loaders(register: Callable[[str, Callable[[Path], LoadedDocument]], None]) -> None:
    register(".csv", load_csv)
