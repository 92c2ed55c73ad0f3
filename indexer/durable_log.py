"""Append-only JSONL logs that survive a crash: every append is fsync'ed before it returns.

Used by the embedded index's update log and the embedded review log. Only the last line can be
torn (a crash mid-append, after every earlier line reached the disk), so a line that is not JSON
is skipped with a warning when reading.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def append_records(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records as JSON lines and fsync; returns how many were written."""
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    count = len(lines)
    if not count:
        return 0
    with open(path, "a+b") as fh:
        # A torn last line (a crash mid-append) must not swallow the next record.
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                lines.insert(0, "\n")
        fh.write("".join(lines).encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    return count


def read_records(
    path: Path, what: str = "record", *, objects_only: bool = True, offset: int = 0
) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` for every whole line of the log (none when it does not exist),
    from byte ``offset`` on (a length the log had, so a line boundary; line numbers then count
    from there). A line that is not JSON (a torn append, or bytes that are not UTF-8) or, unless
    ``objects_only=False`` (for a reader that quarantines it), not an object is skipped with a
    warning."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        fh.seek(offset)
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                log.warning("%s:%d: ignoring a torn %s", path, n, what)
                continue
            if objects_only and not isinstance(rec, dict):
                log.warning("%s:%d: ignoring a %s that is not a JSON object", path, n, what)
                continue
            yield n, rec


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (fsync the directory itself)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
