"""Append-only JSONL logs that survive a crash: every append is fsync'ed before it returns.

Used by the embedded index's update log and the embedded event, query and review logs
(:class:`SharedLog`: appended, followed and rewritten by several processes). Only the last line can be
torn (a crash mid-append, after every earlier line reached the disk), so a line that is not JSON
is skipped with a warning when reading.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def append_records(path: Path, records: Iterable[dict[str, Any]], *, sync: bool = True) -> int:
    """Append records as JSON lines and fsync (``sync``; else they are with the OS at once, so
    every process reads them and a crash of this one loses nothing, and reach the disk with its
    write-back); returns how many were written."""
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
        if sync:
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


class FileLock:
    """An ``flock`` on a file, across processes (not re-entrant: take it once per thread)."""

    def __init__(self, path: Path):
        self.path = path
        self.held: str | None = None  # "shared" or "exclusive" while this process holds it

    @contextmanager
    def __call__(self, *, exclusive: bool) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            self.held = "exclusive" if exclusive else "shared"
            try:
                yield
            finally:
                self.held = None
                fcntl.flock(fh, fcntl.LOCK_UN)


class SharedLog:
    """One append-only log that several processes append to, follow and rewrite (the embedded
    backend's event, query and review logs under ``serve --workers N``).

    Every operation runs under ``lock`` (a :class:`FileLock`, which several logs may share):
    appends and rewrites exclusively, reads shared at least, so a reader never sees half an
    append and an append never lands in a log that a rewrite is replacing. The log remembers how
    far this process has read it (the file's inode and length): :meth:`read_new` gives what
    others appended since, or the whole log again once it was replaced (an erasure or expiry
    rewrote it, here or elsewhere). Not thread-safe on its own: callers hold their own lock.
    """

    def __init__(self, path: Path, lock: FileLock):
        self.path = path
        self.lock = lock
        self._ino: int | None = None  # the file this process has read (None: not read yet / none)
        self._offset = 0

    def _stat(self) -> tuple[int | None, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None, 0
        return st.st_ino, st.st_size

    def read_new(
        self, what: str = "record", *, objects_only: bool = True
    ) -> tuple[bool, Iterator[tuple[int, Any]]]:
        """``(whole, records)``: ``whole`` when the log is read from its start (the first read, or
        the file was replaced or truncated since), then ``records`` is the whole log; otherwise
        the records appended since the last read. Consume ``records`` under the lock."""
        assert self.lock.held, "read_new needs the log's lock"
        ino, size = self._stat()
        whole = ino != self._ino or size < self._offset
        start = 0 if whole else self._offset
        self._ino, self._offset = ino, size
        if size <= start:
            return whole, iter(())
        return whole, read_records(self.path, what, objects_only=objects_only, offset=start)

    def append(self, records: Iterable[dict[str, Any]], *, sync: bool = True) -> int:
        """Append (and fsync: ``sync``, see :func:`append_records`), under the exclusive lock,
        after :meth:`read_new` read what others appended (else this process would skip it);
        returns how many were written."""
        assert self.lock.held == "exclusive", "append needs the log's exclusive lock"
        n = append_records(self.path, records, sync=sync)
        if n:
            ino, size = self._stat()
            if self._ino is None:  # this append created the log
                self._ino = ino
            if ino == self._ino:
                self._offset = size
        return n

    def replace(self, records: Iterable[dict[str, Any]], *, adopt: bool = False) -> None:
        """Rewrite the log atomically (a crash leaves the old or the new one, never a mix), under
        the exclusive lock. ``adopt``: the caller holds exactly ``records`` in memory, so they
        count as read; otherwise the next :meth:`read_new` reads the new log whole."""
        assert self.lock.held == "exclusive", "replace needs the log's exclusive lock"
        tmp = self.path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        append_records(tmp, records)  # fsync'ed before it replaces the log
        tmp.touch()
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        if adopt:
            self._ino, self._offset = self._stat()
        else:
            self._ino, self._offset = None, 0
