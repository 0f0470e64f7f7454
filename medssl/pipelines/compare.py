"""`medssl compare`: put the reports of several runs side by side (e.g. G^R, G^D and G^D +
local pretraining on the same data), in one report with one column per initialisation; with
`seeds`, runs of the same pipeline are seeds, and each result is their mean and spread."""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from medssl.pipelines.report import (
    cell,
    pivot,
    plot_joint_space,
    plot_label_efficiency,
    results_table,
)
from medssl.platform.errors import ConfigError
from medssl.platform.io import atomic_write_json, atomic_write_text

_KEY = ("dataset", "stage", "init", "label_budget", "metric")
_SEED_SUFFIX = re.compile(r"-s(eed)?\d+$")


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
    config = path.parent / "config.yaml"
    if config.is_file():
        # What the run was, less its seed: the runs of one pipeline over seeds share it.
        settings = yaml.safe_load(config.read_text()) or {}
        if isinstance(settings, dict):
            settings.pop("seed", None)
            blob = json.dumps(settings, sort_keys=True, default=str).encode()
            report["seedless_config"] = hashlib.sha256(blob).hexdigest()[:12]
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


def average_seeds(reports: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """One report per pipeline: runs whose configs differ only in `seed` (or, without their
    config, that share the report's `name`) are seeds of one pipeline. Each result is the
    mean over the runs that have it, `std` their sample standard deviation (None for one
    run), `runs` the values of each run and `seeds` how many there are; the group is tagged
    with its first run's tag less a `-s<seed>` ending. Raises ConfigError when two runs of a
    pipeline have the same config (the same run given twice is no second seed)."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for tag, report in reports:
        groups.setdefault(str(report.get("seedless_config", report.get("name"))), []).append(
            (tag, report)
        )
    averaged = []
    for members in groups.values():
        name = str(members[0][1].get("name"))
        hashes = [r.get("config_hash") for _, r in members]
        for h in dict.fromkeys(hashes):
            twins = [tag for (tag, _), other in zip(members, hashes, strict=True) if other == h]
            if h is not None and len(twins) > 1:
                raise ConfigError(
                    f"runs {', '.join(twins)} are the same config of '{name}' (hash {h}); "
                    "give runs that differ in their seed"
                )
        values: dict[tuple[Any, ...], list[float]] = {}
        first: dict[tuple[Any, ...], dict[str, Any]] = {}
        for _, report in members:
            for row in report["results"]:
                if row.get("value") is None:
                    continue
                key = tuple(row.get(k) for k in _KEY)
                first.setdefault(key, row)
                values.setdefault(key, []).append(float(row["value"]))
        rows = [
            {
                **{k: first[key].get(k) for k in _KEY},
                "value": statistics.fmean(runs),
                "std": statistics.stdev(runs) if len(runs) > 1 else None,
                "runs": runs,
                "seeds": len(runs),
            }
            for key, runs in values.items()
        ]
        tag = _SEED_SUFFIX.sub("", members[0][0])
        averaged.append((tag, {**members[0][1], "results": rows, "seeds": len(members)}))
    return averaged


def compare(
    folders: Sequence[str | Path], out: str | Path, seeds: bool = False
) -> dict[str, Any]:
    """Merge the reports of `folders` (run folders or report.json files) into `out`:
    report.json, report.md and label-efficiency plots. With `seeds`, runs of the same
    pipeline are first averaged (`average_seeds`). Returns the merged report."""
    if len(folders) < 2:
        raise ConfigError("compare needs at least two run folders")
    names = [Path(f).name if Path(f).is_dir() else Path(f).parent.name for f in folders]
    # Run tags suffix clashing inits, so they must differ even when folder names do not.
    tags = [n if names.count(n) == 1 else f"{n}-{k + 1}" for k, n in enumerate(names)]
    reports = [(tag, _read(Path(f))) for tag, f in zip(tags, folders, strict=True)]
    if seeds:
        reports = average_seeds(reports)
    results = merge_results(reports)
    target = Path(out)
    (target / "plots").mkdir(parents=True, exist_ok=True)
    report = {
        "name": "comparison",
        "runs": [
            {"run": run, "name": r.get("name"), "method": r.get("method"),
             "config_hash": r.get("config_hash"), "device": r.get("device"),
             **({"seeds": r["seeds"]} if "seeds" in r else {})}
            for run, r in reports
        ],
        "results": results,
        "plots": plot_label_efficiency(results, target / "plots")
        + plot_joint_space(results, target / "plots"),
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
