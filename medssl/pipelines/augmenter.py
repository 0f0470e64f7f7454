"""What an AutoTCL run's learned augmenter does to each input channel: the mean keep
probability and scale of every channel over the run's training series, read from the last
checkpoint of its AutoTCL pretraining phase; and how its keep probability moved during
training (the records of every augmenter step), with the rule that says whether it collapsed.

A keep probability near 0 means the views never show that channel to the encoder, which then
learns to give the same representation with or without it (`docs/methods/autotcl.md`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medssl.pipelines.context import method_class, phase_folder
from medssl.pipelines.prepare import prepare_context
from medssl.platform.config import load_config
from medssl.platform.engine.records import RECORDS_FILE, read_records
from medssl.platform.engine.trainer import last_checkpoint
from medssl.platform.errors import ConfigError, DataError
from medssl.platform.io import save_figure
from medssl.platform.methods.autotcl import AutoTCL
from medssl.platform.methods.autotcl_monitor import MIN_UNDECIDED, keep_collapse
from medssl.platform.resume_io import load_resume_state


def _autotcl_phase(config: Any, run_dir: Path) -> tuple[int, Path]:
    """(phase index, checkpoint folder) of the run's first AutoTCL phase."""
    for k in range(len(config.pretrain.phases())):
        if method_class(config, k) is AutoTCL:
            return k, phase_folder(run_dir, config, k)
    raise ConfigError(
        f"{run_dir}: no pretraining phase of this run uses pretrain.method.name: autotcl"
    )


def _run_config(run_dir: Path) -> Any:
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise DataError(f"{run_dir} has no config.yaml; give the folder of a medssl run")
    return load_config([config_file])


def augmenter_channels(
    run_dir: str | Path, plot: str | Path | None = None, plot_steps: int | None = None
) -> list[dict[str, Any]]:
    """One row per input channel: `channel`, `name`, `keep` (mean keep probability p) and
    `scale` (mean g), averaged over the run's training series. With `plot`, also draws p of
    every channel along the first training series there (its first `plot_steps` steps; PNG):
    a fixed channel selection shows as full and empty rows, a temporal mask as stripes.

    Raises DataError when the run folder has no config or no AutoTCL checkpoint yet.

    Example:
        >>> for row in augmenter_channels("runs/ett-autotcl"):  # doctest: +SKIP
        ...     print(row["name"], round(row["keep"], 2))
    """
    run_dir = Path(run_dir)
    config = _run_config(run_dir)
    phase, folder = _autotcl_phase(config, run_dir)
    checkpoint = last_checkpoint(folder)
    if checkpoint is None:
        raise DataError(
            f"{folder} holds no checkpoint; let the run's AutoTCL pretraining save one "
            "(pretrain.checkpoint_every_n_steps) or finish"
        )
    ctx = prepare_context(config, run_dir)
    settings = {k: v for k, v in config.pretrain.phases()[phase].method.items() if k != "name"}
    method = AutoTCL(ctx.build_encoder(), settings)
    state = load_resume_state(checkpoint, map_location="cpu")["state_dict"]
    method.load_state_dict(
        {k.removeprefix("method."): v for k, v in state.items() if k.startswith("method.")}
    )
    method.eval()
    prepared = ctx.prepared
    keep = torch.zeros(prepared.channels)
    scale = torch.zeros(prepared.channels)
    for i in ctx.train:
        p, g = method.channel_keep(torch.as_tensor(prepared.series(i))[None])
        keep += p / len(ctx.train)
        scale += g / len(ctx.train)
    names = list(getattr(prepared, "channel_names", ())) or [str(c) for c in range(len(keep))]
    if plot is not None:
        first = torch.as_tensor(prepared.series(ctx.train[0]))[None, :, :plot_steps]
        _plot_keep(method, first, names, Path(plot))
    return [
        {"channel": c, "name": names[c], "keep": float(keep[c]), "scale": float(scale[c])}
        for c in range(len(keep))
    ]


@torch.no_grad()
def _plot_keep(method: AutoTCL, x: torch.Tensor, names: list[str], target: Path) -> None:
    """Heat map of the keep probability of each channel of `x` (1, C, T) along time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = method.keep_map(x)[0][0].float()
    p[torch.isnan(x[0])] = float("nan")
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.4))
    image = ax.imshow(p.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("step of the first training series")
    ax.set_title("augmenter keep probability p")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    save_figure(fig, target, dpi=110)
    plt.close(fig)



def keep_records(folder: Path) -> list[dict[str, Any]]:
    """The augmenter records a pretraining folder holds (those of an AutoTCL phase), or []."""
    records = read_records(folder / RECORDS_FILE)
    return records if records and "undecided" in records[0] else []


def augmenter_verdict(run_dir: str | Path) -> dict[str, Any]:
    """Whether the augmenter of a run's (first) AutoTCL pretraining collapsed into a fixed
    mask: `keep_collapse` over the records of its augmenter steps (`collapsed`, `reasons`,
    and the end values of the mean keep probability, its entropy, the undecided fraction and
    each channel's mean keep probability).

    Raises DataError when the run has no augmenter records yet (they are written at every
    checkpoint and at the end of pretraining).

    Example:
        >>> augmenter_verdict("runs/ucr-autotcl/GunPoint")["collapsed"]  # doctest: +SKIP
        True
    """
    run_dir = Path(run_dir)
    _, folder = _autotcl_phase(_run_config(run_dir), run_dir)
    records = keep_records(folder)
    if not records:
        raise DataError(
            f"{folder} holds no augmenter records ({RECORDS_FILE}); let the run's AutoTCL "
            "pretraining reach a checkpoint or finish"
        )
    return keep_collapse(records)


def verdict_text(run_dir: str | Path) -> str | None:
    """`verdict_line` of the run's `augmenter_verdict`, or None when it has no records (a run
    from before they were kept, or one that has not reached a checkpoint)."""
    try:
        return verdict_line(augmenter_verdict(run_dir))
    except DataError:
        return None


def _record_folders(run_dir: Path) -> list[tuple[str, Path, list[dict[str, Any]]]]:
    """(name, folder, records) of each pretraining folder of the run with augmenter records."""
    pretrained = run_dir / "pretrain"
    found = []
    for folder in [pretrained, *sorted(pretrained.glob("phase*"))]:
        records = keep_records(folder)
        if records:
            found.append((folder.relative_to(run_dir).as_posix(), folder, records))
    return found


def augmenter_summaries(run_dir: Path) -> dict[str, dict[str, Any]]:
    """For a run's report: the `keep_collapse` summary of each pretraining folder that holds
    augmenter records, keyed by the folder relative to the run ({} for other methods)."""
    return {name: keep_collapse(records) for name, _, records in _record_folders(run_dir)}


def plot_augmenter_records(run_dir: Path, plots: Path) -> list[str]:
    """Draw the records of each pretraining folder that holds augmenter records into `plots`
    (`plot_keep_records`); the plots made, relative to the run."""
    made = []
    for _, folder, records in _record_folders(run_dir):
        suffix = "" if folder.name == "pretrain" else f"_{folder.name}"
        plot_keep_records(records, plots / f"augmenter_keep{suffix}.png")
        made.append(f"plots/augmenter_keep{suffix}.png")
    return made


def augmenter_table(per_dataset: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines for a report over several datasets: a row per dataset whose pretraining
    has augmenter records, with the end values and the verdict ([] when none has)."""
    rows = [
        (dataset, summary)
        for dataset, entry in per_dataset.items()
        for summary in entry.get("augmenter", {}).values()
    ]
    if not rows:
        return []
    lines = [
        "## AutoTCL augmenter at the end of pretraining",
        "",
        "| dataset | mean p | entropy (bits) | undecided | smallest channel mean p | collapsed |",
        "|---|---|---|---|---|---|",
    ]
    for dataset, s in rows:
        lines.append(
            f"| {dataset} | {s['keep']:.3f} | {s['entropy']:.3f} | {s['undecided']:.1%} | "
            f"{s['channel_min']:.3f} | {'yes' if s['collapsed'] else 'no'} |"
        )
    return [*lines, ""]


def verdict_line(summary: dict[str, Any]) -> str:
    """One sentence: the end values of a `keep_collapse` summary and the verdict."""
    verdict = "not collapsed"
    if summary["collapsed"]:
        verdict = "collapsed: " + "; ".join(summary["reasons"])
    return (
        f"mean keep probability {summary['keep']:.3f}, entropy {summary['entropy']:.3f} bits, "
        f"{summary['undecided']:.1%} of cells undecided, smallest channel mean "
        f"{summary['channel_min']:.3f} (last {summary['end_records']} of "
        f"{summary['records']} augmenter steps): {verdict}"
    )


def plot_keep_records(records: list[dict[str, Any]], target: Path) -> None:
    """The mean keep probability, its mean entropy (bits), the undecided fraction and each
    channel's mean keep probability against the augmenter step (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    channels = list(zip(*(r["channel_keep"] for r in records), strict=True))
    for c, values in enumerate(channels):
        label = "mean p of each channel" if c == 0 else None
        ax.plot(steps, values, lw=0.7, color="0.6", label=label)
    ax.plot(steps, [r["keep"] for r in records], lw=1.4, label="mean p")
    ax.plot(steps, [r["entropy"] for r in records], lw=1.4, label="mean entropy of p (bits)")
    ax.plot(steps, [r["undecided"] for r in records], lw=1.4, label="undecided: p in (0.05, 0.95)")
    ax.axhline(MIN_UNDECIDED, color="k", lw=0.6, ls="--")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("augmenter step")
    collapsed = keep_collapse(records)["collapsed"]
    ax.set_title("AutoTCL augmenter: " + ("collapsed" if collapsed else "not collapsed"))
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, target, dpi=120)
    plt.close(fig)
