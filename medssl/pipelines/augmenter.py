"""What an AutoTCL run's learned augmenter does to each input channel: the mean keep
probability and scale of every channel over the run's training series, read from the last
checkpoint of its AutoTCL pretraining phase.

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
from medssl.platform.engine.trainer import last_checkpoint
from medssl.platform.errors import ConfigError, DataError
from medssl.platform.io import save_figure
from medssl.platform.methods.autotcl import AutoTCL
from medssl.platform.resume_io import load_resume_state


def _autotcl_phase(config: Any, run_dir: Path) -> tuple[int, Path]:
    """(phase index, checkpoint folder) of the run's first AutoTCL phase."""
    for k in range(len(config.pretrain.phases())):
        if method_class(config, k) is AutoTCL:
            return k, phase_folder(run_dir, config, k)
    raise ConfigError(
        f"{run_dir}: no pretraining phase of this run uses pretrain.method.name: autotcl"
    )


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
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise DataError(f"{run_dir} has no config.yaml; give the folder of a medssl run")
    config = load_config([config_file])
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

