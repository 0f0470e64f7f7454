"""Tests of the run report: the results table and markdown pivot (one column per
initialisation), the loss curve and the label-efficiency plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from medssl.pipelines.report import (
    markdown,
    plot_label_efficiency,
    plot_loss_curve,
    results_table,
)

matplotlib.use("Agg")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(stage: str, init: str, budget: str, metric: str, value: float | None) -> dict[str, Any]:
    return {"dataset": "toy", "stage": stage, "init": init, "label_budget": budget,
            "metric": metric, "value": value}


ROWS = [
    row("probe/linear", "simclr", "10%", "auroc", 0.81234),
    row("probe/linear", "random", "10%", "auroc", 0.6),
    row("probe/linear", "simclr", "100%", "auroc", 0.9),
    row("probe/linear", "random", "100%", "auroc", None),
    row("finetune", "scratch", "4", "accuracy", 0.5),
]


def _report(results: list[dict[str, Any]], plots: list[str] | None = None) -> dict[str, Any]:
    report = {"name": "toy-run", "dataset": "toy", "method": "simclr", "config_hash": "abc123",
              "device": "CPU", "seconds": 1.5, "subjects": {"train": 8, "holdout": 2},
              "results": results}
    if plots is not None:
        report["plots"] = plots
    return report


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


# ----------------------------------------------------------------------------- tables


def test_results_table_pivots_inits_into_columns() -> None:
    lines = results_table(ROWS).splitlines()
    assert lines[0].split() == ["stage", "labels", "metric", "simclr", "random", "scratch"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    body = [ln.split() for ln in lines[2:]]
    assert body == [
        ["probe/linear", "10%", "auroc", "0.8123", "0.6000", "-"],
        ["probe/linear", "100%", "auroc", "0.9000", "-", "-"],
        ["finetune", "4", "accuracy", "-", "-", "0.5000"],
    ]
    for line in lines[2:]:  # fixed width: every cell ends in its header's column
        assert len(line) == len(lines[0])


def test_results_table_without_rows() -> None:
    assert results_table([]) == "(no results)"


def test_markdown_table_and_plot_links() -> None:
    text = markdown(_report(ROWS, ["plots/loss.png", "plots/label_efficiency_finetune.png"]))
    lines = text.splitlines()
    assert lines[0] == "# toy-run"
    assert "8 training / 2 held-out" in text and "`abc123`" in text
    table = [ln for ln in lines if ln.startswith("|")]
    assert table[0] == "| stage | labels | metric | simclr | random | scratch |"
    assert table[1] == "|---|---|---|---|---|---|"
    assert table[2:] == [
        "| probe/linear | 10% | auroc | 0.8123 | 0.6000 | - |",
        "| probe/linear | 100% | auroc | 0.9000 | - | - |",
        "| finetune | 4 | accuracy | - | - | 0.5000 |",
    ]
    assert "![loss](plots/loss.png)" in lines
    assert "![label_efficiency_finetune](plots/label_efficiency_finetune.png)" in lines
    assert text.endswith("\n")


def test_markdown_without_results_has_no_table() -> None:
    text = markdown(_report([]))
    assert "|" not in text and text.startswith("# toy-run\n")


# ----------------------------------------------------------------------------- plots


def test_loss_curve_from_a_lightning_metrics_csv(tmp_path: Path) -> None:
    csv = tmp_path / "metrics.csv"
    # Lightning's CSVLogger writes one row per logging call; other metrics leave loss empty.
    csv.write_text("epoch,loss,lr,step\n0,2.5,,0\n0,,0.001,0\n0,2.25,,5\n1,2.0,,10\n")
    target = tmp_path / "loss.png"
    assert plot_loss_curve(csv, target) is True
    assert _is_png(target)


def test_loss_curve_without_data_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "loss.png"
    assert plot_loss_curve(tmp_path / "missing.csv", target) is False
    empty = tmp_path / "metrics.csv"
    empty.write_text("epoch,loss,lr,step\n0,,0.001,0\n")
    assert plot_loss_curve(empty, target) is False
    assert not target.exists()


@pytest.fixture
def plotted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[float], list[float]]]:
    """Every line drawn on an Axes: (label, x, y)."""
    from matplotlib.axes import Axes

    calls: list[tuple[str, list[float], list[float]]] = []
    original = Axes.errorbar

    def record(self: Axes, x: Any, y: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append((str(kwargs.get("label")), list(x), list(y)))
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "errorbar", record)
    return calls


def test_label_efficiency_one_plot_per_stage(
    tmp_path: Path, plotted: list[tuple[str, list[float], list[float]]]
) -> None:
    rows = [
        row("probe/linear", "simclr", "100%", "auroc", 0.9),
        row("probe/linear", "simclr", "10%", "auroc", 0.8),
        row("probe/linear", "simclr", "10%", "accuracy", 0.7),  # not the headline metric
        row("probe/linear", "random", "10%", "auroc", 0.6),
        row("probe/linear", "random", "100%", "auroc", None),  # failed sub-run: left out
        row("finetune", "scratch", "4", "accuracy", 0.5),
        row("finetune", "scratch", "2", "accuracy", 0.4),
        row("pretrain", "simclr", "-", "loss", 1.0),  # no headline metric: no plot
    ]
    made = plot_label_efficiency(rows, tmp_path)
    assert made == ["plots/label_efficiency_finetune.png",
                    "plots/label_efficiency_probe_linear.png"]
    for name in made:
        assert _is_png(tmp_path / Path(name).name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(n).name for n in made]
    assert plotted == [
        ("scratch", [2.0, 4.0], [0.4, 0.5]),
        ("simclr", [0.1, 1.0], [0.8, 0.9]),
        ("random", [0.1], [0.6]),
    ]


def test_label_efficiency_skips_stages_without_values(tmp_path: Path) -> None:
    rows = [row("finetune", "scratch", "4", "accuracy", None)]
    assert plot_label_efficiency(rows, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_label_efficiency_plots_segmentation_dice(tmp_path: Path) -> None:
    rows = [row("finetune", init, budget, metric, value)
            for init in ("simclr", "scratch") for budget in ("2", "4")
            for metric, value in (("mean_dice", 0.7), ("mean_hd95", 9.0), ("dice/1", 0.8))]
    assert plot_label_efficiency(rows, tmp_path) == ["plots/label_efficiency_finetune.png"]


def test_repeated_runs_show_mean_and_spread() -> None:
    rows = [
        {**row("finetune", "simclr", "10%", "auroc", 0.78), "std": 0.015, "runs": [0.77, 0.79]},
        row("finetune", "scratch", "10%", "auroc", 0.75),
    ]
    table = results_table(rows).splitlines()
    assert table[-1].split() == ["finetune", "10%", "auroc", "0.7800", "±", "0.0150", "0.7500"]


def test_report_records_reduction_and_pretraining_work(tmp_path: Path) -> None:
    from medssl.pipelines.report import markdown, work_done

    (tmp_path / "reduce").mkdir()
    (tmp_path / "pretrain").mkdir()
    summary = {"volumes": 2, "slices_in": 40, "slices_kept": 10, "ratio": 0.25, "seconds": 1.5}
    (tmp_path / "reduce" / "kept.json").write_text(json.dumps({"summary": summary}))
    (tmp_path / "pretrain" / "model.json").write_text(json.dumps({"steps": 30, "seconds": 12.5}))
    work = work_done(tmp_path)
    assert work == {"reduction": summary, "pretraining": {"steps": 30, "seconds": 12.5}}
    report = {"name": "r", "dataset": "d", "method": "m", "subjects": {"train": 1, "holdout": 1},
              "device": "cpu", "seconds": 1, "config_hash": "h", "results": [], **work}
    text = markdown(report)
    assert "Reduction kept 10 of 40 slices (25.0%) in 1.5 s." in text
    assert "Pretraining: 30 steps in 12.5 s." in text
