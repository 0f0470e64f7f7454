"""`medssl compare`: put the reports of several runs side by side (e.g. G^R, G^D and G^D +
local pretraining on the same data), in one report with one column per initialisation."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medssl.pipelines.report import cell, pivot, plot_label_efficiency, results_table
from medssl.platform.errors import ConfigError
from medssl.platform.io import atomic_write_json, atomic_write_text

_KEY = ("dataset", "stage", "init", "label_budget", "metric")


def _read(folder: Path) -> dict[str, Any]:
    path = folder / "report.json" if folder.is_dir() else folder
    if not path.is_file():
        raise ConfigError(f"{folder}: no report.json here; point at a finished run folder")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); rerun its report stage") from None
    if not isinstance(report, dict) or not isinstance(report.get("results"), list):
        raise ConfigError(f"{path} holds no 'results' list; it is not a medssl run report")
    return report


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def merge_results(reports: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """All rows of the reports, in order. A row already present with the same value (the
    same baseline, e.g. `scratch` on the same labelled subset) is kept once; a row whose key
    is taken by a different value has its init suffixed with its run's name."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for run, report in reports:
        for row in report["results"]:
            key = tuple(row.get(k) for k in _KEY)
            if key in merged and _same(merged[key]["value"], row.get("value")):
                continue
            if key in merged:
                row = {**row, "init": f"{row['init']} ({run})"}
                key = tuple(row.get(k) for k in _KEY)
            merged[key] = row
    return list(merged.values())


def compare(folders: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Merge the reports of `folders` (run folders or report.json files) into `out`:
    report.json, report.md and label-efficiency plots. Returns the merged report."""
    if len(folders) < 2:
        raise ConfigError("compare needs at least two run folders")
    names = [Path(f).name if Path(f).is_dir() else Path(f).parent.name for f in folders]
    # Run tags suffix clashing inits, so they must differ even when folder names do not.
    tags = [n if names.count(n) == 1 else f"{n}-{k + 1}" for k, n in enumerate(names)]
    reports = [(tag, _read(Path(f))) for tag, f in zip(tags, folders, strict=True)]
    results = merge_results(reports)
    target = Path(out)
    (target / "plots").mkdir(parents=True, exist_ok=True)
    report = {
        "name": "comparison",
        "runs": [
            {"run": run, "name": r.get("name"), "method": r.get("method"),
             "config_hash": r.get("config_hash"), "device": r.get("device")}
            for run, r in reports
        ],
        "results": results,
        "plots": plot_label_efficiency(results, target / "plots"),
    }
    atomic_write_json(target / "report.json", report)
    atomic_write_text(target / "report.md", _markdown(report))
    print(results_table(results), flush=True)
    return report


def _markdown(report: dict[str, Any]) -> str:
    inits, _ = pivot(report["results"])
    lines = ["# Comparison", "", "| run | pipeline | pretraining | config hash |", "|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['name']} | {r['method']} | `{r['config_hash']}` |"
              for r in report["runs"]]
    lines += ["", "| dataset | stage | labels | metric | " + " | ".join(inits) + " |",
              "|---|---|---|---|" + "---|" * len(inits)]
    # One pivot per dataset, so that two datasets' rows never share a cell.
    for dataset in dict.fromkeys(r["dataset"] for r in report["results"]):
        _, table = pivot([r for r in report["results"] if r["dataset"] == dataset])
        for (stage, budget, metric), values in table.items():
            cells = " | ".join(cell(values.get(i)) for i in inits)
            lines.append(f"| {dataset} | {stage} | {budget} | {metric} | {cells} |")
    lines.append("")
    lines += [f"![{Path(p).stem}]({p})" for p in report["plots"]]
    return "\n".join(lines) + "\n"
