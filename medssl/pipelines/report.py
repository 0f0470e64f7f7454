"""The report of a run: `report.json` (rows of results), a short `report.md`, and plots
(pretraining loss curve, label-efficiency curves); and the report of a run over several
datasets (every dataset's rows plus their averages)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import platform as py_platform
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medssl.pipelines.augmenter import (
    augmenter_summaries,
    augmenter_table,
    plot_augmenter_records,
    verdict_line,
)
from medssl.pipelines.splits import HOLDOUT_SPLITS
from medssl.platform.engine.trainer import launch_world
from medssl.platform.io import atomic_write_json, atomic_write_text, save_figure

if TYPE_CHECKING:
    from medssl.pipelines.context import RunContext
    from medssl.platform.config import PipelineConfig

#: The metric a label-efficiency curve shows for each stage kind, in order of preference.
HEADLINE = ("mean_dice", "auroc", "accuracy")


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({py_platform.processor() or py_platform.machine()}, {torch.get_num_threads()} threads)"


def write_report(ctx: RunContext, *, seconds: float, write: bool = True) -> dict[str, Any]:
    results = ctx.state.results()
    report = {
        "name": ctx.config.name,
        "dataset": ctx.dataset_name,
        "method": ctx.method_name,
        "config_hash": ctx.config.config_hash(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": device_name(),
        "seconds": round(seconds, 1),
        "subjects": {"train": len(ctx.train), "holdout": len(ctx.holdout)},
        # Held-out marks come from a manifest's `split` column or a split by time; without
        # them the hold-out is a draw of subjects (see `split_holdout`).
        "split": "by the data's own train/test marks"
        if any((r.split or "").lower() in HOLDOUT_SPLITS for r in ctx.records)
        else "by subject",
        **work_done(ctx.run_dir),
        "results": results,
    }
    if write and launch_world()[0] == 0:
        plots = ctx.run_dir / "plots"
        plots.mkdir(exist_ok=True)
        made = []
        pretrained = ctx.run_dir / "pretrain"
        # One curve per phase of a stage-wise pretraining (their losses differ in scale).
        for folder in [pretrained, *sorted(pretrained.glob("phase*"))]:
            name = "loss.png" if folder == pretrained else f"loss_{folder.name}.png"
            logs = sorted((folder / "logs").glob("attempt*/csv/metrics.csv"))
            if plot_loss_curve(logs, plots / name):
                made.append(f"plots/{name}")
        made += plot_augmenter_records(ctx.run_dir, plots)
        made += plot_label_efficiency(results, plots)
        made += plot_joint_space(results, plots)
        if (ctx.run_dir / "reduce" / "reduction.png").is_file():
            made.append("reduce/reduction.png")
        report["plots"] = made
        atomic_write_json(ctx.run_dir / "report.json", report)
        atomic_write_text(ctx.run_dir / "report.md", markdown(report))
        print(results_table(results), flush=True)
    return report


def work_done(run_dir: Path) -> dict[str, Any]:
    """What the reduce and pretrain stages of this run did: kept slices, steps and seconds,
    and where AutoTCL pretrained, whether its augmenter collapsed (`augmenter_summaries`)."""
    out: dict[str, Any] = {}
    kept = run_dir / "reduce" / "kept.json"
    if kept.is_file():
        out["reduction"] = json.loads(kept.read_text()).get("summary", {})
    card = run_dir / "pretrain" / "model.json"
    if card.is_file():
        saved = json.loads(card.read_text())
        out["pretraining"] = {k: saved[k] for k in ("steps", "seconds") if k in saved}
    augmenter = augmenter_summaries(run_dir)
    if augmenter:
        out["augmenter"] = augmenter
    return out


def pivot(
    results: list[dict[str, Any]],
) -> tuple[list[str], dict[tuple[str, str, str], dict[str, Any]]]:
    """Rows keyed by (stage, budget, metric) with one column per init."""
    inits: list[str] = []
    table: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(dict)
    for r in results:
        if r["init"] not in inits:
            inits.append(r["init"])
        table[(r["stage"], str(r["label_budget"]), r["metric"])][r["init"]] = r
    return inits, table


def cell(row: dict[str, Any] | None) -> str:
    """`0.7812`, or `0.7812 ± 0.0150` for the mean of repeated runs, or `-` when missing."""
    if row is None or row.get("value") is None:
        return "-"
    text = f"{row['value']:.4f}"
    std = row.get("std")
    if std is not None and std == std:
        text += f" ± {std:.4f}"
    return text


def results_table(results: list[dict[str, Any]]) -> str:
    """A fixed-width table: stage, budget, metric, then one column per initialisation."""
    if not results:
        return "(no results)"
    inits, table = pivot(results)
    width = 20 if any(r.get("std") is not None for r in results) else 12
    width = max(width, 2 + max(len(i) for i in inits))  # long column names stay aligned
    head = f"{'stage':<14} {'labels':>7} {'metric':<18}" + "".join(f"{i:>{width}}" for i in inits)
    lines = [head, "-" * len(head)]
    for (stage, budget, metric), values in table.items():
        cells = "".join(f"{cell(values.get(i)):>{width}}" for i in inits)
        lines.append(f"{stage:<14} {budget:>7} {metric:<18}{cells}")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    results = report["results"]
    inits, table = pivot(results)
    lines = [
        f"# {report['name']}",
        "",
        f"Dataset `{report['dataset']}`, method `{report['method']}`, "
        f"{report['subjects']['train']} training / {report['subjects']['holdout']} held-out items "
        f"(split {report.get('split', 'by subject')}). Device: {report['device']}. Wall time {report['seconds']} s. "
        f"Config hash `{report['config_hash']}`.",
        "",
    ]
    if "reduction" in report:
        r = report["reduction"]
        lines += [
            f"Reduction kept {r.get('slices_kept')} of {r.get('slices_in')} slices "
            f"({r.get('ratio', 0):.1%}) in {r.get('seconds', 0):.1f} s.",
            "",
        ]
    if report.get("pretraining"):
        p = report["pretraining"]
        lines += [f"Pretraining: {p.get('steps')} steps in {p.get('seconds', 'n/a')} s.", ""]
    for folder, summary in report.get("augmenter", {}).items():
        lines += [f"Augmenter ({folder}): {verdict_line(summary)}.", ""]
    if results:
        lines += [
            "| stage | labels | metric | " + " | ".join(inits) + " |",
            "|---|---|---|" + "---|" * len(inits),
        ]
        for (stage, budget, metric), values in table.items():
            cells = [cell(values.get(i)) for i in inits]
            lines.append(f"| {stage} | {budget} | {metric} | " + " | ".join(cells) + " |")
        lines.append("")
    for plot in report.get("plots", []):
        lines.append(f"![{Path(plot).stem}]({plot})")
    return "\n".join(lines) + "\n"


def plot_loss_curve(metrics_csv: Path | list[Path], target: Path) -> bool:
    """The pretraining loss against the step, over every attempt of a resumed run."""
    files = [metrics_csv] if isinstance(metrics_csv, Path) else metrics_csv
    points: dict[int, float] = {}
    for path in files:
        if not path.is_file():
            continue
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("loss"):
                    points[int(row["step"])] = float(row["loss"])  # a later attempt wins
    steps, losses = sorted(points), [points[s] for s in sorted(points)]
    if not steps:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, losses, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("pretraining loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, target, dpi=120)
    plt.close(fig)
    return True


def _budget_value(label: str) -> float | None:
    """A budget as a number (a fraction or a subject count); None for rows that use no
    labels (zero-shot, retrieval: budget "none"), which label-efficiency plots leave out."""
    try:
        return float(label[:-1]) / 100 if label.endswith("%") else float(label)
    except ValueError:
        return None


def plot_label_efficiency(results: list[dict[str, Any]], folder: Path) -> list[str]:
    """One plot per stage: the headline metric against the label budget, one line per init."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for stage in sorted({r["stage"] for r in results}):
        rows = [
            r
            for r in results
            if r["stage"] == stage
            and r["value"] is not None
            and _budget_value(str(r["label_budget"])) is not None
        ]
        metric = next((m for m in HEADLINE if any(r["metric"] == m for r in rows)), None)
        if metric is None:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for init in dict.fromkeys(r["init"] for r in rows):
            pts = sorted(
                (_budget_value(r["label_budget"]), r["value"], r.get("std") or 0.0)
                for r in rows
                if r["init"] == init and r["metric"] == metric
            )
            # Error bars are the spread over repeated fine-tuning runs, when there are any.
            ax.errorbar(
                [p[0] for p in pts],
                [p[1] for p in pts],
                yerr=[p[2] for p in pts],
                marker="o",
                capsize=3,
                label=init,
            )
        ax.set_xlabel("label budget (subjects, or fraction)")
        ax.set_ylabel(metric)
        ax.set_title(stage)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"label_efficiency_{stage.replace('/', '_')}.png"
        save_figure(fig, folder / name, dpi=120)
        plt.close(fig)
        made.append(f"plots/{name}")
    return made


def plot_joint_space(results: list[dict[str, Any]], folder: Path) -> list[str]:
    """Zero-shot scores and Recall@K of the image-text probes, one group of bars per
    initialisation (with the spread over seeds as error bars, when rows carry a `std`);
    nothing when the results have neither."""
    rows = [r for r in results if r["stage"] in ("zeroshot", "retrieval") and r["value"] is not None]
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in ("zeroshot", "retrieval") if any(r["stage"] == s for r in rows)]
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 3.4), squeeze=False)
    inits = list(dict.fromkeys(r["init"] for r in rows))
    for ax, stage in zip(axes[0], stages, strict=True):
        metrics = list(dict.fromkeys(r["metric"] for r in rows if r["stage"] == stage))
        width = 0.8 / len(inits)
        for k, init in enumerate(inits):
            mine = {r["metric"]: r for r in rows if r["stage"] == stage and r["init"] == init}
            xs = [m + (k - (len(inits) - 1) / 2) * width for m in range(len(metrics))]
            heights = [mine[m]["value"] if m in mine else 0.0 for m in metrics]
            # Error bars: the spread over seeds, in a comparison of seeded runs.
            spread = [(mine[m].get("std") or 0.0) if m in mine else 0.0 for m in metrics]
            ax.bar(xs, heights, width, yerr=spread, capsize=2, label=init)
        ax.set_xticks(range(len(metrics)), metrics, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title("zero-shot (held-out)" if stage == "zeroshot" else "retrieval (held-out)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, folder / "joint_space.png", dpi=120)
    plt.close(fig)
    return ["plots/joint_space.png"]


# ----------------------------------------------------------------------------- several datasets


def dataset_averages(results: list[dict[str, Any]], datasets: list[str]) -> list[dict[str, Any]]:
    """Rows of dataset `average`: the mean over the datasets of every (stage, init, budget,
    metric) that each of them reports with a value (e.g. the mean SVM accuracy over UCR
    sets, the number papers quote); nothing for a single dataset."""
    if len(datasets) < 2:
        return []
    values: dict[tuple[str, str, str, str], dict[str, float]] = defaultdict(dict)
    for r in results:
        key = (r["stage"], r["init"], r["label_budget"], r["metric"])
        if r["value"] is not None:
            values[key][r["dataset"]] = r["value"]
    rows = []
    for (stage, init, budget, metric), by_dataset in values.items():
        if set(by_dataset) >= set(datasets):
            mean = sum(by_dataset[d] for d in datasets) / len(datasets)
            rows.append(
                {
                    "dataset": "average",
                    "stage": stage,
                    "init": init,
                    "label_budget": budget,
                    "metric": metric,
                    "value": mean,
                }
            )
    return rows


def write_collection_report(
    config: PipelineConfig,
    run_dir: Path,
    reports: list[dict[str, Any]],
    *,
    seconds: float,
    write: bool = True,
) -> dict[str, Any]:
    """`report.json` / `report.md` of a run over several datasets: every dataset's rows, the
    average rows, and each dataset's wall time and split sizes."""
    names = [r["dataset"] for r in reports]
    results = [row for r in reports for row in r["results"]]
    report = {
        "name": config.name,
        "datasets": names,
        "method": config.pretrain.init_label(),
        "config_hash": config.config_hash(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": device_name(),
        "seconds": round(seconds, 1),
        "per_dataset": {
            r["dataset"]: {
                "seconds": r["seconds"],
                "subjects": r["subjects"],
                **({"augmenter": r["augmenter"]} if "augmenter" in r else {}),
            }
            for r in reports
        },
        "results": results + dataset_averages(results, names),
    }
    if write and launch_world()[0] == 0:
        atomic_write_json(run_dir / "report.json", report)
        atomic_write_text(run_dir / "report.md", collection_markdown(report))
        print(collection_markdown(report), flush=True)
    return report


def collection_markdown(report: dict[str, Any]) -> str:
    """One table per (stage, label budget, init): a row per dataset (and the average row),
    a column per metric."""
    lines = [
        f"# {report['name']}",
        "",
        f"{len(report['datasets'])} dataset(s), method `{report['method']}`. Device: "
        f"{report['device']}. Wall time {report['seconds']} s. Config hash "
        f"`{report['config_hash']}`. Each dataset's own run is in its sub-folder.",
        "",
    ]
    tables: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in report["results"]:
        tables[(r["stage"], r["label_budget"], r["init"])].setdefault(r["dataset"], {})[
            r["metric"]
        ] = r
    for (stage, budget, init), by_dataset in tables.items():
        metrics = list(dict.fromkeys(m for row in by_dataset.values() for m in row))
        lines += [
            f"## {stage}, {init}, labels {budget}",
            "",
            "| dataset | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for dataset, row in by_dataset.items():
            seconds = report["per_dataset"].get(dataset, {}).get("seconds")
            label = dataset if seconds is None else f"{dataset} ({seconds:.0f} s)"
            lines.append(f"| {label} | " + " | ".join(cell(row.get(m)) for m in metrics) + " |")
        lines.append("")
    lines += augmenter_table(report["per_dataset"])
    return "\n".join(lines)
