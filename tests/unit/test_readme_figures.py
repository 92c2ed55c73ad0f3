"""README.md's figures are the committed bench results (``python -m bench.readme_figures``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import readme_figures
from indexer.errors import BadInputError
from tests.conftest import ROOT

README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "results"


def test_readme_figures_match_the_committed_results(capsys: pytest.CaptureFixture[str]) -> None:
    status = readme_figures.main(["--check", "--readme", str(README), "--results", str(RESULTS)])
    assert status == 0, "README.md differs from bench/results (run `python -m bench.readme_figures`):\n" + (
        capsys.readouterr().out
    )


def test_every_region_names_its_source_file_and_run() -> None:
    text = README.read_text(encoding="utf-8")
    bodies = {m["name"]: m["body"] for m in readme_figures.REGION.finditer(text)}
    assert set(bodies) == set(readme_figures.REGIONS)
    for name, body in bodies.items():
        assert "`bench/results/" in body and ".json`" in body, name
        assert " run 20" in body and "CPU" in body, name


def _copies(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    readme = tmp_path / "README.md"
    shutil.copyfile(README, readme)
    return readme, results


def test_a_changed_result_fails_the_check_and_the_rewrite_quotes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme, results = _copies(tmp_path)
    path = results / "foundation" / "foundation.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    old = doc["quality"]["embedded"]["bm25"]["ndcg@10"]
    doc["quality"]["embedded"]["bm25"]["ndcg@10"] = 0.1234
    path.write_text(json.dumps(doc), encoding="utf-8")

    assert readme_figures.main(["--check", "--readme", str(readme), "--results", str(results)]) == 1
    out = capsys.readouterr().out
    assert f"-| bm25 (analyzed `all_text` + weighted synonyms) | {old:.3f} /" in out
    assert "+| bm25 (analyzed `all_text` + weighted synonyms) | 0.123 /" in out

    assert readme_figures.main(["--readme", str(readme), "--results", str(results)]) == 0
    assert "| 0.123 / " in readme.read_text(encoding="utf-8")
    assert readme_figures.main(["--check", "--readme", str(readme), "--results", str(results)]) == 0


def test_a_changed_row_date_is_named_in_its_region(tmp_path: Path) -> None:
    readme, results = _copies(tmp_path)
    path = results / "overload" / "overload.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    row = doc["rows"][0]  # the merging writer's layout: the row's run under "run"
    row["run"] = {**(row.get("run") or {}), "date": "2030-01-02T03:04:05+00:00", "commit": "abc1234"}
    path.write_text(json.dumps(doc), encoding="utf-8")
    new = readme_figures.render(readme.read_text(encoding="utf-8"), results)
    label = f"{row['variant']} {row['scenario']} {row['connections']} conns"
    assert f"its {label} row from run 2030-01-02 03:04 UTC, commit abc1234" in new


def test_a_region_without_a_renderer_or_a_missing_region_is_refused(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    with pytest.raises(BadInputError, match="unknown"):
        readme_figures.render(text + "\n<!-- figures:nope -->x<!-- /figures:nope -->\n", RESULTS)
    start = text.index("<!-- figures:overload -->")
    end = text.index("<!-- /figures:overload -->") + len("<!-- /figures:overload -->")
    with pytest.raises(BadInputError, match="missing"):
        readme_figures.render(text[:start] + text[end:], RESULTS)
