"""bench.common.write_results: a rerun of some rows replaces those and leaves the others' provenance alone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.common import Run, RunNotes, Table, merge_rows, write_results

FIRST = Run("2026-01-01T00:00:00+00:00", "python -m bench.x", "aaa1111", "CPU A × 2 cores, no GPU", {"n": 1})
SECOND = Run(
    "2026-02-02T00:00:00+00:00", "python -m bench.x --n 2", "bbb2222", "CPU B × 8 cores, no GPU", {"n": 2}
)


def _md(doc: dict) -> str:
    notes = RunNotes()
    lines = [f"{r['name']} {r['score']} {notes.mark(r)}" for r in doc["rows"]]
    return "\n".join([*lines, *notes.lines()]) + "\n"


def _row_text(path: Path, name: str) -> str:
    row = next(r for r in json.loads(path.read_text())["rows"] if r["name"] == name)
    return json.dumps(row, sort_keys=True)


def test_rerunning_a_subset_keeps_the_other_rows_byte_for_byte(tmp_path: Path) -> None:
    rows = [{"name": "a", "score": 0.1}, {"name": "b", "score": 0.2}, {"name": "c", "score": 0.3}]
    write_results(tmp_path, "x", rows, key=["name"], run=FIRST, markdown=_md)
    before = {n: _row_text(tmp_path / "x.json", n) for n in "ac"}

    doc = write_results(tmp_path, "x", [{"name": "b", "score": 0.25}], key=["name"], run=SECOND, markdown=_md)

    assert [r["name"] for r in doc["rows"]] == ["a", "b", "c"]
    assert {n: _row_text(tmp_path / "x.json", n) for n in "ac"} == before
    b = doc["rows"][1]
    assert b["score"] == 0.25 and b["run"] == SECOND.as_dict()
    assert doc["rows"][0]["run"]["commit"] == "aaa1111"


def test_new_rows_are_appended_and_the_markdown_names_each_run(tmp_path: Path) -> None:
    write_results(tmp_path, "x", [{"name": "a", "score": 1}], key=["name"], run=FIRST, markdown=_md)
    write_results(tmp_path, "x", [{"name": "d", "score": 4}], key=["name"], run=SECOND, markdown=_md)
    md = (tmp_path / "x.md").read_text()
    assert md.splitlines()[:2] == ["a 1 [1]", "d 4 [2]"]
    assert "2026-01-01T00:00:00+00:00 · commit aaa1111" in md
    assert "2026-02-02T00:00:00+00:00 · commit bbb2222" in md


def test_keys_are_compound_and_type_exact() -> None:
    old = [
        {"k": 60, "w": 0.5, "m": 1, "run": FIRST.as_dict()},
        {"k": 60, "w": 1.0, "m": 2, "run": FIRST.as_dict()},
    ]
    merged = merge_rows(old, [{"k": 60, "w": 1.0, "m": 3}], ("k", "w"), SECOND)
    assert [r["m"] for r in merged] == [1, 3]
    assert merged[0] is old[0]
    assert merged[1]["run"]["commit"] == "bbb2222"


def test_a_run_with_two_rows_of_one_key_is_refused() -> None:
    with pytest.raises(ValueError, match="same key"):
        merge_rows([], [{"k": 1}, {"k": 1}], ("k",), FIRST)


def test_keyed_tables_keep_the_mapping_layout_and_other_top_level_fields(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"legacy": "kept", "rows": {"torch": {"p50": 1.0}}}))
    doc = write_results(
        tmp_path,
        "x",
        [Table([{"runtime": "onnx", "p50": 0.5}], ("runtime",), keyed=True)],
        run=SECOND,
        extra=lambda tables: {"runtimes": [r["runtime"] for r in tables["rows"]]},
    )
    assert doc["legacy"] == "kept"
    assert doc["rows"]["torch"] == {"p50": 1.0}  # an unstamped older row stays as it was
    assert doc["rows"]["onnx"] == {"p50": 0.5, "run": SECOND.as_dict()}
    assert doc["runtimes"] == ["torch", "onnx"]
    assert not (tmp_path / "x.md").exists()


def test_run_start_records_the_command_and_the_parsed_arguments(tmp_path: Path) -> None:
    args = argparse.Namespace(out=tmp_path, n=3, langs=["en", "zh"])
    run = Run.start("x", ["--n", "3", "--label", " +ce"], args)
    assert run.command == "python -m bench.x --n 3 --label ' +ce'"
    assert run.parameters == {"out": str(tmp_path), "n": 3, "langs": ["en", "zh"]}
    assert run.date is not None and run.date.endswith("+00:00")
    assert run.machine is not None and run.machine.startswith("CPU ")
