"""Shared output of the tuning grids: JSON with the run's context, and a Markdown table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ranker.evaluation.relevance import machine_description

METRICS = ["ndcg@10", "ndcg_condensed@10", "judged@10", "mrr@10", "recall@100"]


def write_grid(
    out: Path, name: str, title: str, documents: int, columns: Sequence[str], rows: list[dict]
) -> None:
    """``rows`` carry the ``columns`` (settings), the metrics and ``default`` (the shipped choice)."""
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "documents": documents,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"# {title}",
        "",
        f"{meta['date']} · {meta['machine']} · {documents} products. Chosen and scored on the same",
        "100 dev queries (no held-out set): small gaps are noise. ★ = the shipped default.",
        "",
        "| " + " | ".join([*columns, *METRICS]) + " |",
        "|" + "---|" * (len(columns) + len(METRICS)),
    ]
    for r in rows:
        cells = [("–" if r[c] is None else str(r[c])) for c in columns]
        cells[0] += " ★" if r["default"] else ""
        lines.append("| " + " | ".join(cells + [f"{r[m]:.4f}" for m in METRICS]) + " |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
