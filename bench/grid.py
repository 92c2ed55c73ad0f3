"""Shared output of the tuning grids: rows merged into JSON with their runs, and a Markdown table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Run, RunNotes, write_results

METRICS = ["ndcg@10", "ndcg_condensed@10", "judged@10", "mrr@10", "recall@100"]


def write_grid(
    out: Path, name: str, title: str, documents: int, columns: Sequence[str], rows: list[dict], run: Run
) -> None:
    """``rows`` carry the ``columns`` (settings, the row key), the metrics and ``default`` (the
    shipped choice); each is stamped with ``run`` and the number of ``documents`` it was scored on."""
    meta = {"date": run.date, "machine": run.machine, "documents": documents}
    write_results(
        out,
        name,
        [{**r, "documents": documents} for r in rows],
        key=columns,
        run=run,
        extra={"meta": meta},
        markdown=lambda doc: render_grid(doc, title, columns),
    )


def render_grid(doc: dict[str, Any], title: str, columns: Sequence[str]) -> str:
    notes = RunNotes()
    lines = [
        f"# {title}",
        "",
        "Chosen and scored on the same 100 dev queries (no held-out set): small gaps are noise.",
        "★ = the shipped default; `run` = the footnote naming the row's date, commit and command.",
        "",
        "| " + " | ".join([*columns, *METRICS, "products", "run"]) + " |",
        "|" + "---|" * (len(columns) + len(METRICS) + 2),
    ]
    for r in doc["rows"]:
        cells = [("–" if r.get(c) is None else str(r[c])) for c in columns]
        cells[0] += " ★" if r["default"] else ""
        cells += [f"{r[m]:.4f}" for m in METRICS]
        cells += [str(r.get("documents", doc.get("meta", {}).get("documents", "–"))), notes.mark(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *notes.lines()]) + "\n"
