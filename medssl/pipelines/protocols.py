"""The time-series evaluation protocols inside a run: TS2Vec's SVM classification on frozen
global features and its ridge forecast from causal sliding representations (probe kinds)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medssl.platform.errors import ConfigError
from medssl.platform.evaluation.timeseries_protocols import ridge_forecasting, svm_classification

if TYPE_CHECKING:
    from medssl.modalities.timeseries import ForecastWindows
    from medssl.pipelines.context import RunContext
    from medssl.platform.encoders import Encoder

#: Probe kinds that read class labels; `forecast` predicts the series itself.
LABELLED_KINDS = ("linear", "knn", "svm")


def needs_labels(kinds: list[str]) -> bool:
    return any(k in LABELLED_KINDS for k in kinds)


def svm_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, seed: int
) -> dict[str, float]:
    """TS2Vec's classification protocol on global features (max-pooled over time by series
    encoders): accuracy, balanced accuracy and AUROC of an RBF SVM whose C is chosen by
    cross-validation on the training features alone, and that cross-validated accuracy
    (`cv_accuracy`: training folds only, never the test set; the score to select settings by)."""
    out = svm_classification(train_x, train_y, test_x, test_y, seed=seed)
    return {k: float(out[k]) for k in ("accuracy", "balanced_accuracy", "auroc", "cv_accuracy")}


def forecast_table(ctx: RunContext) -> ForecastWindows:
    """The run's forecasting table, split and normalised exactly as the adapter prepared it."""
    settings = getattr(ctx.modality.preprocessing, "forecasting", None)
    if settings is None:
        raise ConfigError(
            "probe.kinds: 'forecast' needs a forecasting table; set data.modality=timeseries "
            "and data.preprocessing.forecasting (e.g. {target: OT}), or drop 'forecast'"
        )
    from medssl.modalities.timeseries.prepared import forecast_windows

    return forecast_windows(str(ctx.config.data.path), settings)


def sliding_representations(encoder: Encoder, windows: ForecastWindows, window: int) -> np.ndarray:
    """(T, D) causal representation of every row of the table: row t is encoded from rows
    t - window .. t alone (TS2Vec's sliding encoding), on a GPU when there is one."""
    from medssl.platform.encoders.ts2vec import causal_sliding_representations

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    series = torch.from_numpy(windows.encoder_input()).to(device)
    moved = encoder.to(device)
    try:
        reps = causal_sliding_representations(moved, series, window=window)
    finally:
        encoder.to("cpu")
    return reps[0].float().cpu().numpy()


def forecast_metrics(
    representations: np.ndarray,
    targets: np.ndarray,
    splits: dict[str, slice],
    horizons: list[int],
    train_drop: int,
) -> dict[int, dict[str, Any]]:
    """Per horizon H: {"mse", "mae", "alpha", "val_mse", "val_mae"} of a ridge map from the representation at t to
    the targets at t+1..t+H, alpha chosen on the validation rows only; the test rows are read
    once, to score. `representations` (T, D) and `targets` (T, V) cover every row; `splits`
    cuts them by time. `train_drop` skips the first training rows, whose window was padded."""
    parts = {name: (representations[rows], targets[rows]) for name, rows in splits.items()}
    out = {}
    for horizon in horizons:
        result = ridge_forecasting(
            parts["train"], parts["val"], parts["test"], horizon, train_drop=train_drop
        )
        out[horizon] = {k: result[k] for k in ("mse", "mae", "alpha", "val_mse", "val_mae")}
    return out


def check_forecast_fits(splits: dict[str, slice], horizons: list[int], window: int) -> None:
    """ConfigError naming `probe.horizons` or `probe.forecast_window` when a split holds no
    (representation, next H rows) pair: checked before the (slow) sliding encoding."""
    for split, rows in splits.items():
        steps = rows.stop - rows.start
        drop = window if split == "train" else 0  # the first training rows lack their context
        for horizon in horizons:
            if steps - horizon - drop >= 1:
                continue
            if steps - horizon >= 1:
                raise ConfigError(
                    f"probe.forecast_window: {window} past steps leave no pair for horizon "
                    f"{horizon} in the {steps} training rows; lower it below {steps - horizon}"
                )
            raise ConfigError(
                f"probe.horizons: horizon {horizon} is not shorter than the {steps} {split} "
                "rows; use shorter horizons or longer data.preprocessing.forecasting splits"
            )


def forecast_probe(ctx: RunContext, encoder: Encoder, init: str) -> list[dict[str, Any]]:
    """Rows `probe/forecast` of TS2Vec's forecasting protocol on normalised data: mse/H<h> and
    mae/H<h> for every horizon of `probe.horizons`, and their means over the horizons
    (mse/avg, mae/avg, the figure papers quote per dataset), plus val_mse/avg and val_mae/avg
    on the validation months (compare pretraining settings by these, never by the test)."""
    cfg = ctx.config.probe
    windows = forecast_table(ctx)
    check_forecast_fits(windows.splits, cfg.horizons, cfg.forecast_window)
    reps = sliding_representations(encoder, windows, cfg.forecast_window)
    results = forecast_metrics(
        reps, windows.targets, windows.splits, cfg.horizons, train_drop=cfg.forecast_window
    )
    rows = []
    for horizon, metrics in results.items():
        print(f"  [forecast] H={horizon}: ridge alpha {metrics['alpha']:g} (chosen on val)")
        for name in ("mse", "mae"):
            rows.append(
                ctx.row("probe/forecast", init, "100%", f"{name}/H{horizon}", metrics[name])
            )
    # val_*: the validation months' errors, the only ones to compare settings by.
    for name in ("mse", "mae", "val_mse", "val_mae"):
        mean = float(np.mean([m[name] for m in results.values()]))
        rows.append(ctx.row("probe/forecast", init, "100%", f"{name}/avg", mean))
    return rows
