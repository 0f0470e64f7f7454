"""The time-series protocols inside runs: several UCR sets in one run and one report, the
forecast probe (alpha on validation only), forecasting pretraining on training rows only, and
AutoTCL with a tsai backbone, its augmenter's records, plot, verdict and report rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medssl.pipelines import protocols
from medssl.pipelines.context import method_settings
from medssl.pipelines.prepare import prepare_context
from medssl.pipelines.presets import resolve
from medssl.pipelines.runner import run_config
from medssl.platform.config import PipelineConfig, load_config
from medssl.platform.errors import ConfigError, DataError

TINY = [
    "encoder.kwargs={hidden_dim: 8, output_dim: 16, depth: 1}",
    "pretrain.max_steps=2",
    "pretrain.batch_size=4",
    "trainer.progress_bar=false",
]


def _test_series_count(path: Path) -> int:
    """Series in a UCR .tsv (one a line) or a .ts file (one a line after @data)."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if path.suffix == ".tsv":
        return len(lines)
    start = next(k for k, ln in enumerate(lines) if ln.strip().lower() == "@data")
    return len(lines) - start - 1


@pytest.mark.integration
def test_two_ucr_sets_run_into_one_report(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "timeseries"
    config = load_config(
        [resolve("ucr-ts2vec")],
        [
            f"data.root={root}",
            "data.path=[ucr/Chinatown, ucr/ItalyPowerDemand]",
            "data.cache_dir=" + str(tmp_path / "cache"),
            "probe.inits=[pretrained]",
            *TINY,
        ],
    )
    report = run_config(config, tmp_path / "run")

    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["datasets"] == ["Chinatown", "ItalyPowerDemand"]
    accuracy = {
        r["dataset"]: r["value"]
        for r in saved["results"]
        if r["stage"] == "probe/svm" and r["metric"] == "accuracy"
    }
    assert set(accuracy) == {"Chinatown", "ItalyPowerDemand", "average"}
    assert all(0.0 <= v <= 1.0 for v in accuracy.values())
    assert accuracy["average"] == pytest.approx(
        (accuracy["Chinatown"] + accuracy["ItalyPowerDemand"]) / 2
    )
    # Each dataset ran in its own folder, trained on its TRAIN file, scored on its TEST file.
    for name, test_file in (
        ("Chinatown", root / "ucr" / "Chinatown_TEST.tsv"),
        ("ItalyPowerDemand", root / "ucr" / "ItalyPowerDemand_TEST.ts"),
    ):
        assert (tmp_path / "run" / name / "pretrain" / "model.safetensors").is_file()
        assert saved["per_dataset"][name]["subjects"]["holdout"] == _test_series_count(test_file)
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "Chinatown" in markdown and "ItalyPowerDemand" in markdown and "average" in markdown

    # A second run of the same config resumes: every stage is done, the rows are the same.
    again = run_config(config, tmp_path / "run")
    assert again["results"] == report["results"]


def _ridge_reference(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with an intercept, in closed form and float64: (weights, intercept)."""
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
    return w, my - mx @ w


def _pairs(reps: np.ndarray, targets: np.ndarray, horizon: int, drop: int = 0):
    t = np.arange(drop, len(reps) - horizon)
    return reps[t], np.stack([targets[k + 1 : k + 1 + horizon, 0] for k in t])


@pytest.mark.integration
def test_a_missing_dataset_at_the_end_of_the_list_stops_the_run_before_any_training(
    shared_data: Path, tmp_path: Path
) -> None:
    config = load_config(
        [resolve("ucr-ts2vec")],
        [f"data.root={shared_data / 'timeseries'}", "data.path=[ucr/Coffee, ucr/NoSuchSet]", *TINY],
    )
    with pytest.raises(DataError, match=r"NoSuchSet: does not exist.*before any of them was trained"):
        run_config(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_forecast_alpha_comes_from_validation_rows_only() -> None:
    rng = np.random.default_rng(0)
    rows, dims = 300, 6
    signal = np.cumsum(rng.normal(size=rows))[:, None]
    reps = np.c_[signal, rng.normal(size=(rows, dims - 1))]
    splits = {"train": slice(0, 180), "val": slice(180, 240), "test": slice(240, 300)}
    results = protocols.forecast_metrics(reps, signal, splits, [3, 7], train_drop=10)

    for horizon in (3, 7):
        xtr, ytr = _pairs(reps[splits["train"]], signal[splits["train"]], horizon, drop=10)
        xva, yva = _pairs(reps[splits["val"]], signal[splits["val"]], horizon)
        scores = {}
        for alpha in protocols_alphas():
            w, b = _ridge_reference(xtr, ytr, alpha)
            err = xva @ w + b - yva
            scores[alpha] = np.sqrt(np.mean(err**2)) + np.mean(np.abs(err))
        best = min(scores, key=scores.get)
        assert results[horizon]["alpha"] == best
        w, b = _ridge_reference(xtr, ytr, best)
        xte, yte = _pairs(reps[splits["test"]], signal[splits["test"]], horizon)
        assert results[horizon]["mse"] == pytest.approx(np.mean((xte @ w + b - yte) ** 2), rel=1e-6)

    # Test rows changed beyond recognition: the scores move, the chosen alphas do not.
    wild_reps, wild_signal = reps.copy(), signal.copy()
    wild_reps[240:] = rng.normal(scale=50, size=(60, dims))
    wild_signal[240:] = rng.normal(scale=50, size=(60, 1))
    wild = protocols.forecast_metrics(wild_reps, wild_signal, splits, [3, 7], train_drop=10)
    for horizon in (3, 7):
        assert wild[horizon]["alpha"] == results[horizon]["alpha"]
        assert wild[horizon]["mse"] != pytest.approx(results[horizon]["mse"])


def protocols_alphas() -> tuple[float, ...]:
    from medssl.platform.evaluation.timeseries_protocols import RIDGE_ALPHAS

    return RIDGE_ALPHAS


def _ett_slice(shared_data: Path, target: Path, rows: int, scramble_last: int = 0) -> Path:
    """The first `rows` data rows of the real ETTh2 table; with `scramble_last`, the OT values
    of the last rows (the test split) are reversed."""
    lines = (shared_data / "timeseries" / "ett" / "ETTh2.csv").read_text().splitlines()
    body = [ln.split(",") for ln in lines[1 : rows + 1]]
    if scramble_last:
        tail = [row[-1] for row in body[-scramble_last:]][::-1]
        for row, value in zip(body[-scramble_last:], tail, strict=True):
            row[-1] = value
    target.write_text("\n".join([lines[0], *(",".join(row) for row in body)]) + "\n")
    return target


def _forecast_config(
    csv: Path, tmp_path: Path, stages: str, extra: tuple[str, ...] = ()
) -> PipelineConfig:
    return load_config(
        [resolve("ett-ts2vec")],
        [
            f"data.path={csv}",
            "data.root=",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.preprocessing.forecasting.section_length=200",
            f"stages={stages}",
            "probe.horizons=[4, 12]",
            "probe.forecast_window=16",
            *TINY,
            *extra,
        ],
    )


@pytest.mark.integration
def test_forecast_probe_on_real_ett_slice(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[int, dict[str, float]]] = []
    original = protocols.forecast_metrics

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(protocols, "forecast_metrics", spy)
    reports = []
    for k, scramble in enumerate((0, 100)):  # 500 rows by fractions: the test split is 100 rows
        csv = _ett_slice(shared_data, tmp_path / f"ett{k}.csv", 500, scramble_last=scramble)
        config = _forecast_config(csv, tmp_path, "[probe, report]", ("probe.inits=[random]",))
        reports.append(run_config(config, tmp_path / f"run{k}"))

    metrics = {r["metric"]: r["value"] for r in reports[0]["results"]}
    assert set(metrics) == {
        "mse/H4",
        "mae/H4",
        "mse/H12",
        "mae/H12",
        "mse/avg",
        "mae/avg",
        "val_mse/avg",
        "val_mae/avg",
    }
    assert all(r["stage"] == "probe/forecast" for r in reports[0]["results"])
    assert all(np.isfinite(v) and v > 0 for v in metrics.values())
    assert metrics["mse/avg"] == pytest.approx((metrics["mse/H4"] + metrics["mse/H12"]) / 2)
    # Reversing the test rows changes the test errors but not the alphas chosen on validation.
    assert [seen[0][h]["alpha"] for h in (4, 12)] == [seen[1][h]["alpha"] for h in (4, 12)]
    assert seen[0][4]["mse"] != pytest.approx(seen[1][4]["mse"])
    assert seen[0][4]["val_mse"] == seen[1][4]["val_mse"]


def test_forecast_settings_that_leave_no_pair_name_their_key() -> None:
    splits = {"train": slice(0, 100), "val": slice(100, 130), "test": slice(130, 160)}
    protocols.check_forecast_fits(splits, [4, 12], window=16)
    with pytest.raises(ConfigError, match=r"probe.horizons: horizon 30 .* the 30 val rows"):
        protocols.check_forecast_fits(splits, [4, 30], window=16)
    with pytest.raises(ConfigError, match=r"probe.forecast_window: 97 .* lower it below 96"):
        protocols.check_forecast_fits(splits, [4], window=97)


@pytest.mark.integration
def test_forecast_horizon_longer_than_a_split_is_a_config_error(
    shared_data: Path, tmp_path: Path
) -> None:
    csv = _ett_slice(shared_data, tmp_path / "ett.csv", 500)  # by fractions: 100 test rows
    config = _forecast_config(
        csv, tmp_path, "[probe, report]", ("probe.inits=[random]", "probe.horizons=[4, 200]")
    )
    with pytest.raises(ConfigError, match="probe.horizons: horizon 200"):
        run_config(config, tmp_path / "run")


@pytest.mark.integration
def test_forecast_pretraining_items_come_from_training_rows_only(
    shared_data: Path, tmp_path: Path
) -> None:
    from medssl.modalities.timeseries import ForecastWindows

    csv = _ett_slice(shared_data, tmp_path / "ett.csv", 1000)
    config = _forecast_config(csv, tmp_path, "[pretrain, report]")
    ctx = prepare_context(config, tmp_path / "run")
    windows = ForecastWindows(csv, target="OT", mode="univariate")
    train = windows.splits["train"]
    assert train.stop == 600  # 60 % of 1000 rows

    # Every item the pretraining loader serves, padding removed, in order of its first row.
    items = []
    cls, settings = method_settings(config)
    for batch in ctx.pretrain_loader(cls.name, cls.batch_spec(settings), batch_size=1):
        x = np.asarray(batch["x"])[0]
        items.append(x[:, ~np.isnan(x).all(axis=0)])
    items.sort(key=lambda a: np.flatnonzero((windows.inputs.T == a[:, :1]).all(axis=0))[0])
    served = np.concatenate(items, axis=1)
    # Exactly the training rows, each once: a validation or test row would make this longer.
    np.testing.assert_array_equal(served, windows.inputs[train].T)


@pytest.mark.integration
def test_augmenter_command_reports_each_channel_of_an_autotcl_run(
    shared_data: Path, tmp_path: Path, medssl_cli
) -> None:
    from medssl.pipelines.augmenter import augmenter_channels

    csv = _ett_slice(shared_data, tmp_path / "ett.csv", 1000)  # 3 training sections
    config = _forecast_config(
        csv,
        tmp_path,
        "[pretrain]",
        (
            "pretrain.method={name: autotcl, augmenter_depth: 1, fixed_channels: [0, 1, 2]}",
            "pretrain.batch_size=2",
        ),
    )
    run_config(config, tmp_path / "run")
    rows = augmenter_channels(tmp_path / "run", plot=tmp_path / "keep.png")
    assert (tmp_path / "keep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = ["minute", "hour", "dayofweek", "day", "dayofyear", "month", "weekofyear", "OT"]
    assert [r["name"] for r in rows] == names
    assert all(r["keep"] == 1.0 and r["scale"] == 1.0 for r in rows[:3])
    assert all(0.0 < r["keep"] < 1.0 and 0.0 < r["scale"] < 1.0 for r in rows[3:])

    shown = medssl_cli("augmenter", str(tmp_path / "run"), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-2].split()[:2] == ["7", "OT"]
    assert "during training: mean keep probability" in shown.stdout
    assert (tmp_path / "run" / "plots" / "augmenter.png").is_file()
    ts2vec = _forecast_config(csv, tmp_path, "[pretrain]", ("pretrain.batch_size=2",))
    run_config(ts2vec, tmp_path / "ts2vec")
    refused = medssl_cli("augmenter", str(tmp_path / "ts2vec"), cwd=tmp_path)
    assert refused.returncode == 1
    assert "no pretraining phase of this run uses pretrain.method.name: autotcl" in refused.stderr


@pytest.mark.integration
def test_autotcl_trains_a_tsai_backbone_on_coffee_and_reports_its_augmenter(
    shared_data: Path, tmp_path: Path
) -> None:
    from medssl.pipelines.augmenter import augmenter_verdict

    config = load_config(
        [resolve("ucr-autotcl")],
        [
            f"data.root={shared_data / 'timeseries'}",
            "data.path=[ucr/Coffee]",
            "data.cache_dir=" + str(tmp_path / "cache"),
            "encoder.name=inception_time_plus",
            "encoder.kwargs={nf: 4, depth: 3}",
            "pretrain.method.augmenter_depth=1",
            "pretrain.method.entropy_floor=0.5",
            "pretrain.method.min_channel_keep=0.1",
            "pretrain.method.mmd_reference=fresh",
            "pretrain.max_steps=3",
            "pretrain.batch_size=4",
            "probe.inits=[pretrained]",
            "trainer.progress_bar=false",
        ],
    )
    run_config(config, tmp_path / "run")
    coffee = tmp_path / "run" / "Coffee"
    card = json.loads((coffee / "pretrain" / "model.json").read_text())
    assert card["architecture"]["encoder"] == "inception_time_plus"
    assert card["method"]["mmd_reference"] == "fresh" and card["method"]["entropy_floor"] == 0.5
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    accuracy = [r["value"] for r in saved["results"] if r["metric"] == "accuracy"]
    assert len(accuracy) == 1 and 0.0 <= accuracy[0] <= 1.0
    # One record per augmenter step, a plot of them, and the verdict in both reports.
    records = json.loads((coffee / "pretrain" / "training_records.json").read_text())["records"]
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all(len(r["channel_keep"]) == 1 and 0.0 <= r["undecided"] <= 1.0 for r in records)
    assert (coffee / "plots" / "augmenter_keep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    verdict = augmenter_verdict(coffee)
    assert isinstance(verdict["collapsed"], bool) and verdict["records"] == 3
    own = json.loads((coffee / "report.json").read_text())
    assert own["augmenter"]["pretrain"] == verdict
    assert "plots/augmenter_keep.png" in own["plots"]
    assert "Augmenter (pretrain): mean keep probability" in (coffee / "report.md").read_text()
    assert saved["per_dataset"]["Coffee"]["augmenter"]["pretrain"] == verdict
    collection = (tmp_path / "run" / "report.md").read_text()
    assert "AutoTCL augmenter at the end of pretraining" in collection
