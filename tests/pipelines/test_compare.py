"""`medssl compare --seeds`: runs of one pipeline averaged over their seeds, beside another
pipeline's, with a shared baseline kept once."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medssl.cli import app
from medssl.pipelines.compare import average_seeds, compare
from medssl.platform.errors import ConfigError


def _row(init: str, value: float) -> dict:
    return {"dataset": "xr", "stage": "probe/linear", "init": init, "label_budget": "1%",
            "metric": "auroc", "value": value}


def _write(folder: Path, name: str, seed: int, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    report = {"name": name, "method": name, "config_hash": f"{name}-{seed}", "device": "cpu",
              "results": rows}
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def _runs(tmp_path: Path) -> list[Path]:
    """Two pipelines over three seeds; the random-init baseline is the same per seed."""
    random = {0: 0.70, 1: 0.72, 2: 0.74}
    ours = {0: 0.80, 1: 0.84, 2: 0.86}
    theirs = {0: 0.75, 1: 0.77, 2: 0.73}
    runs = []
    for seed in range(3):
        runs.append(_write(tmp_path / f"ours-s{seed}", "ours", seed,
                           [_row("ours", ours[seed]), _row("random", random[seed])]))
        runs.append(_write(tmp_path / f"theirs-s{seed}", "theirs", seed,
                           [_row("theirs", theirs[seed]), _row("random", random[seed])]))
    return runs


def test_seeds_are_averaged_per_pipeline_and_a_shared_baseline_appears_once(
    tmp_path: Path,
) -> None:
    merged = compare(_runs(tmp_path), tmp_path / "out", seeds=True)
    rows = {r["init"]: r for r in merged["results"]}
    assert set(rows) == {"ours", "theirs", "random"}
    assert rows["ours"]["value"] == pytest.approx(statistics.fmean([0.80, 0.84, 0.86]))
    assert rows["ours"]["std"] == pytest.approx(statistics.stdev([0.80, 0.84, 0.86]))
    assert rows["ours"]["runs"] == [0.80, 0.84, 0.86] and rows["ours"]["seeds"] == 3
    assert rows["random"]["value"] == pytest.approx(0.72)
    assert [r["seeds"] for r in merged["runs"]] == [3, 3]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "0.8333 ± 0.0306" in text


def test_without_seeds_every_run_is_its_own_column(tmp_path: Path) -> None:
    merged = compare(_runs(tmp_path), tmp_path / "out")
    assert len({r["init"] for r in merged["results"] if r["init"].startswith("ours")}) == 3


def test_the_same_run_twice_is_not_a_second_seed(tmp_path: Path) -> None:
    a = ("a", {"name": "p", "config_hash": "h", "results": [_row("p", 0.5)]})
    b = ("b", {"name": "p", "config_hash": "h", "results": [_row("p", 0.5)]})
    with pytest.raises(ConfigError, match="runs a, b are the same config of 'p'"):
        average_seeds([a, b])


def test_the_cli_flag(tmp_path: Path) -> None:
    runs = [str(p) for p in _runs(tmp_path)]
    result = CliRunner().invoke(app, ["compare", *runs, "--seeds", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "0.8333 ± 0.0306" in result.output


def test_runs_of_one_preset_with_another_setting_are_another_pipeline(tmp_path: Path) -> None:
    """An ablation is the same preset (same name) with one setting changed: its seeds are
    averaged apart from the full method's, and its column is named after its folders."""
    runs = []
    for seed, (full, ablated) in enumerate([(0.80, 0.70), (0.84, 0.72)]):
        for folder, margin, value in (("full", 1.0, full), ("no-margin", 0.0, ablated)):
            run = _write(tmp_path / f"{folder}-s{seed}", "xray", seed, [_row("lvmmed", value)])
            (run / "config.yaml").write_text(
                f"name: xray\nseed: {seed}\npretrain:\n  method:\n    margin: {margin}\n"
            )
            runs.append(run)
    merged = compare(runs, tmp_path / "out", seeds=True)
    rows = {r["init"]: r for r in merged["results"]}
    assert set(rows) == {"lvmmed", "lvmmed (no-margin)"}
    assert rows["lvmmed"]["value"] == pytest.approx(0.82)
    assert rows["lvmmed (no-margin)"]["value"] == pytest.approx(0.71)
    assert [r["run"] for r in merged["runs"]] == ["full", "no-margin"]


def test_long_column_names_stay_aligned() -> None:
    from medssl.pipelines.report import results_table

    rows = [_row("lvmmed", 0.9), _row("lvmmed (abl-second_order)", 0.8), _row("random", 0.7)]
    lines = results_table(rows).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert "  lvmmed (abl-second_order)  " in lines[0]
