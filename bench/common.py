"""What every bench script shares: paths, argument pieces, the run's provenance and a merging writer.

A bench invocation makes one :class:`Run` (UTC date, the ``python -m bench.X …`` command, the
commit, the machine and the parsed arguments). :func:`write_results` merges the rows it measured
into ``OUT/NAME.json``: rows are matched on their key fields, this run's rows replace their
namesakes and carry this run's provenance (``row["run"]``), every other row keeps its own, byte
for byte. The Markdown is rendered from the merged JSON alone.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CHORUS = SHARED_DATA / "chorus_icecat"
JUDGMENTS_DEV = CHORUS / "judgments_dev.csv"
RESULTS = REPO / "bench" / "results"
RUN_FIELDS = ("date", "command", "commit", "machine", "parameters")

Row = dict[str, Any]


def git_commit() -> str:
    """This checkout's short HEAD (``-dirty`` when tracked files differ; ``unknown`` outside git)."""
    from ranker.evaluation.relevance import git_commit as commit_of

    return commit_of(REPO)


# -- arguments -------------------------------------------------------------------------------------
def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """``python -m bench.<module>`` with the docstring's first line as description."""
    return argparse.ArgumentParser(
        prog=f"python -m bench.{module}", description=(doc or "").strip().splitlines()[0] if doc else None
    )


def add_out(ap: argparse.ArgumentParser, name: str) -> None:
    ap.add_argument(
        "--out", type=Path, default=RESULTS / name, help=f"results folder (default bench/results/{name})"
    )


def add_quiet(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--quiet", action="store_true", help="no progress bars")


def add_judgments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--judgments", type=Path, default=JUDGMENTS_DEV, help=f"graded judgments CSV ({JUDGMENTS_DEV})"
    )


def add_data(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", type=Path, default=SHARED_DATA, help=f"shared data folder ({SHARED_DATA})")


def add_catalog(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--catalog", type=Path, default=CHORUS, help=f"catalog file or folder ({CHORUS})")


def add_index(ap: argparse.ArgumentParser) -> None:
    from plugin_api.settings import Settings

    ap.add_argument(
        "--index", type=Path, default=Settings().embedded_dir, help="embedded index (default: the settings')"
    )


def add_device(ap: argparse.ArgumentParser, choices: Sequence[str] | None = None) -> None:
    ap.add_argument("--device", default="auto", choices=list(choices) if choices else None)


# -- provenance ------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True)
class Run:
    """Where one invocation's figures come from; made once, stamped on every row it writes."""

    date: str | None
    command: str | None
    commit: str | None
    machine: str | None
    parameters: dict[str, Any] | None
    note: str | None = field(default=None, compare=False)

    @classmethod
    def start(cls, module: str, argv: Sequence[str] | None, args: argparse.Namespace) -> Run:
        from ranker.evaluation.relevance import machine_description

        words = list(sys.argv[1:] if argv is None else argv)
        return cls(
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            command=" ".join(["python -m", f"bench.{module}", shlex.join(words)]).rstrip(),
            commit=git_commit(),
            machine=machine_description(),
            parameters=_jsonable(vars(args)),
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f: getattr(self, f) for f in RUN_FIELDS}
        if self.note:
            out["note"] = self.note
        return out

    def file_fields(self) -> dict[str, Any]:
        """The file-level fields older readers expect (date, command, commit, machine): the run
        that last wrote the file; the rows' own ``run`` stays authoritative."""
        return {k: v for k, v in self.as_dict().items() if k != "parameters"}


# -- merging writer --------------------------------------------------------------------------------
def row_key(row: Mapping[str, Any], key: Sequence[str]) -> str:
    """A row's identity: its key fields, as canonical JSON (so 1 and 1.0, None and absent differ)."""
    return json.dumps([row.get(k) for k in key], sort_keys=True)


def merge_rows(old: Sequence[Row], new: Sequence[Row], key: Sequence[str], run: Run) -> list[Row]:
    """``old`` with ``new``'s namesakes replaced (in place, the rest appended), ``new`` stamped with ``run``.

    Rows of ``old`` that ``new`` does not name are returned unchanged, provenance and all.
    """
    stamped = {
        row_key(r, key): {**{k: v for k, v in r.items() if k != "run"}, "run": run.as_dict()} for r in new
    }
    if len(stamped) != len(new):
        raise ValueError(f"this run produced two rows with the same key {list(key)}")
    merged = [stamped.pop(row_key(r, key), r) for r in old]
    return merged + list(stamped.values())


@dataclass(frozen=True)
class Table:
    """One merged collection of rows in a result file: ``doc[at]``, a list, or (``keyed``) a mapping
    from the single key field's value to the rest of the row (the older files' layout)."""

    rows: Sequence[Row]
    key: tuple[str, ...]
    at: str = "rows"
    keyed: bool = False

    def merged(self, previous: Mapping[str, Any], run: Run) -> list[Row]:
        if self.keyed and len(self.key) != 1:
            raise ValueError("a keyed table has exactly one key field")
        old = rows_of(previous, self.at, self.key[0] if self.keyed else None)
        return merge_rows(old, self.rows, self.key, run)

    def stored(self, rows: Sequence[Row]) -> Any:
        if not self.keyed:
            return list(rows)
        k = self.key[0]
        return {r[k]: {f: v for f, v in r.items() if f != k} for r in rows}


def read_results(out_dir: Path, name: str) -> dict[str, Any]:
    path = out_dir / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_results(
    out_dir: Path,
    name: str,
    rows: Sequence[Row] | Sequence[Table],
    *,
    key: Sequence[str] = (),
    run: Run,
    markdown: Callable[[dict[str, Any]], str] | None = None,
    extra: Callable[[dict[str, list[Row]]], Mapping[str, Any]] | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge this run's rows into ``OUT/NAME.json``, write it and ``OUT/NAME.md``; return the document.

    ``rows`` is either plain rows (stored under ``"rows"``, matched on ``key``) or :class:`Table`\\ s.
    ``extra`` adds top-level fields: a mapping, or a function of the merged rows per table (for
    views derived from every row, not only this run's). The Markdown is ``markdown(document)``.
    """
    tables = _tables(rows, key)
    previous = read_results(out_dir, name)
    merged = {t.at: t.merged(previous, run) for t in tables}
    doc: dict[str, Any] = {k: v for k, v in previous.items() if k not in merged}
    doc |= dict(extra(merged) if callable(extra) else (extra or {}))
    doc |= {t.at: t.stored(merged[t.at]) for t in tables}
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
    (out_dir / f"{name}.json").write_text(text, encoding="utf-8")
    if markdown is not None:
        (out_dir / f"{name}.md").write_text(markdown(doc), encoding="utf-8")
    return doc


def _tables(rows: Sequence[Row] | Sequence[Table], key: Sequence[str]) -> list[Table]:
    if rows and all(isinstance(r, Table) for r in rows):
        return [r for r in rows if isinstance(r, Table)]
    if not key:
        raise ValueError("plain rows need their key fields (key=...)")
    return [Table([r for r in rows if isinstance(r, dict)], tuple(key))]


def rows_of(doc: Mapping[str, Any], at: str = "rows", key: str | None = None) -> list[Row]:
    """A document's rows as a list, whatever the layout (``key``: the field a mapping is keyed by)."""
    stored = doc.get(at) or []
    if isinstance(stored, dict):
        return [{(key or "name"): k, **v} for k, v in stored.items()]
    return list(stored)


# -- Markdown --------------------------------------------------------------------------------------
class RunNotes:
    """Footnote marks for the distinct runs behind a table's rows: ``mark(row)`` gives ``[n]``,
    ``lines()`` the footnotes (date, commit, command, machine) in order of first mention."""

    def __init__(self) -> None:
        self._runs: list[dict[str, Any]] = []

    def mark(self, row: Mapping[str, Any]) -> str:
        run = dict(row.get("run") or {})
        if run not in self._runs:
            self._runs.append(run)
        return f"[{self._runs.index(run) + 1}]"

    def lines(self) -> list[str]:
        out = []
        for i, r in enumerate(self._runs, 1):
            if not r:
                out.append(f"- [{i}] provenance not recorded")
                continue
            cmd = f"`{r['command']}`" if r.get("command") else "command not recorded"
            out.append(
                f"- [{i}] {r.get('date') or 'date not recorded'} · commit {r.get('commit') or 'not recorded'}"
                f" · {cmd} · {r.get('machine') or 'machine not recorded'}"
                + (f" ({r['note']})" if r.get("note") else "")
            )
        return out
