"""What an ingest reports: one `FileResult` per path, the totals, and the Ctrl-C outcome.

Kept apart from the ingest machinery so the CLI, the service and the API can read a report without it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

STATUSES = ("added", "updated", "unchanged", "removed", "failed", "skipped")


@dataclass
class FileResult:
    source: str
    status: str
    reason: str = ""
    chunks: int = 0
    doc_id: str = ""


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    embedded_chunks: int = 0
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> str:
        """Counts, then one line per failed or skipped path and per added file with a note (names
        escaped: a newline or a terminal control character in a file name cannot forge a line)."""
        counts = ", ".join(f"{self.count(s)} {s}" for s in STATUSES)
        lines = [f"{counts}; {self.embedded_chunks} chunks embedded in {self.seconds:.1f} s"]
        for r in self.results:
            if r.status in ("failed", "skipped") or (r.reason and r.status in ("added", "updated")):
                lines.append(f"  {r.status}: {printable_name(r.source)}: {printable_name(r.reason)}")
        return "\n".join(lines)


def printable_name(text: str) -> str:
    """`text` safe to print on one terminal line: control and format characters (newline, ESC,
    bidi overrides ...) as escapes like \\n, \\x1b, \\u202e; a file-name byte that is not UTF-8
    (a surrogate escape from the file system) as \\xe9; everything else as it is."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's escape of an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable() or unicodedata.category(ch) == "Zs":  # spaces (no-break too) stay
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1] if code < 0x80 else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(out)


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during an ingest: queued work is cancelled and nothing after the last commit is kept.
    `before` is the first file whose changes were not committed (None: the ingest had not started)."""

    def __init__(self, before: str | None) -> None:
        super().__init__(before or "")
        self.before = before

    def message(self) -> str:
        where = f"before {self.before}" if self.before else "before this ingest"
        return f"interrupted; the index is as it was {where}"

