"""Which files an ingest reads: walk folders, skip hidden and unsupported entries, and turn every
unreadable path or non-UTF-8 name into a failure that names it (never a silent gap)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from assistant.ingest_report import FileResult
from assistant.loaders import is_supported


def _unreadable(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _bad_name(path: Path) -> FileResult | None:
    """A path that is not valid UTF-8 (bytes of another encoding in a file name) cannot be stored
    or shown as a source: a failure that says so, instead of a UnicodeEncodeError later."""
    try:
        str(path).encode("utf-8")
        return None
    except UnicodeEncodeError:
        bad = next((f"byte 0x{ord(c) - 0xDC00:02x}" for c in str(path) if 0xDC80 <= ord(c) <= 0xDCFF), "a surrogate")
        return FileResult(str(path), "failed",
                          f"the name is not valid UTF-8 ({bad}): rename it in UTF-8 "
                          "(for example `convmv -f latin1 -t utf-8 --notest NAME`)")


def _walk(root: Path, files: list[Path], notes: list[FileResult]) -> None:
    """Supported files under the folder `root` (hidden entries skipped, symlinked folders not
    walked); a folder or entry that cannot be read is a failure naming it, never a silent gap."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue  # a symlink loop or a folder reached twice
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as scan:
                entries = list(scan)
        except OSError as exc:
            notes.append(FileResult(str(folder), "failed", f"cannot read this folder ({_unreadable(exc)}): nothing "
                                    "under it was ingested; check its permissions"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = folder / entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)  # symlinked folders are not walked (as rglob)
                is_file = not is_dir and entry.is_file()
            except OSError as exc:
                notes.append(FileResult(str(child), "failed", f"cannot read it ({_unreadable(exc)}); check its permissions"))
                continue
            if is_dir:
                if (problem := _bad_name(child)) is not None:
                    notes.append(problem)
                else:
                    stack.append(child)
            elif is_file:
                found.append(child)
    for child in sorted(found):
        _add_file(child, files, notes)


def _add_file(path: Path, files: list[Path], notes: list[FileResult]) -> None:
    try:
        resolved = path.resolve()
    except OSError as exc:
        notes.append(FileResult(str(path), "failed", f"cannot read it ({_unreadable(exc)}); check its permissions"))
        return
    if not is_supported(path):
        notes.append(FileResult(str(resolved), "skipped", f"unsupported type {path.suffix or '(none)'}"))
    elif (problem := _bad_name(resolved)) is not None:
        notes.append(problem)
    else:
        files.append(resolved)


def collect_files(paths: Iterable[Path | str]) -> tuple[list[Path], list[FileResult]]:
    """Supported files under the paths (folders recurse, hidden entries skipped), plus skip/fail notes:
    a path or folder that cannot be read (permissions) is a failure that names it."""
    files: list[Path] = []
    notes: list[FileResult] = []
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            notes.append(FileResult(str(path), "failed", "no such file or folder"))
            continue
        except NotADirectoryError:
            notes.append(FileResult(str(path), "failed", "no such file or folder (a part of the path is a file)"))
            continue
        except OSError as exc:  # e.g. PermissionError: a folder on the way is not searchable
            notes.append(FileResult(str(path), "failed", f"cannot read it ({_unreadable(exc)}): a folder on its path "
                                    "may not be readable; check the permissions"))
            continue
        if stat.S_ISDIR(mode):
            _walk(path, files, notes)
        elif stat.S_ISREG(mode):
            _add_file(path, files, notes)
        else:
            notes.append(FileResult(str(path), "skipped", "not a regular file or folder"))
    unique = list(dict.fromkeys(files))
    return unique, notes
