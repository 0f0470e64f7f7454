"""The 2-D slice path through the pipeline: stage-wise pretraining (global then local
contrast) on axial slices, phase-snapshot inits, unlabelled scans kept out of label budgets,
slice-by-slice scoring in 3-D, and `medssl compare`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medssl.pipelines.compare import compare, merge_results
from medssl.pipelines.runner import run
from medssl.pipelines.tasks.segmentation import SliceWise
from medssl.platform.errors import ConfigError


def _row(init: str, value: float, budget: str = "1") -> dict:
    return {"dataset": "ct", "stage": "finetune", "init": init, "label_budget": budget,
            "metric": "mean_dice", "value": value}


def test_slicewise_applies_the_2d_model_to_every_axial_slice() -> None:
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 3, 3, padding=1)
    volume = torch.randn(2, 1, 8, 6, 5)
    out = SliceWise(net)(volume)
    assert out.shape == (2, 3, 8, 6, 5)
    for z in range(5):
        torch.testing.assert_close(out[..., z], net(volume[..., z]))


def test_merge_keeps_a_shared_baseline_once_and_names_clashes_by_run() -> None:
    a = {"results": [_row("GD+local", 0.7), _row("scratch", 0.5)]}
    b = {"results": [_row("GR", 0.6), _row("scratch", 0.5)]}
    c = {"results": [_row("scratch", 0.4)]}  # another seed: not the same baseline
    merged = merge_results([("a", a), ("b", b), ("c", c)])
    assert [(r["init"], r["value"]) for r in merged] == [
        ("GD+local", 0.7), ("scratch", 0.5), ("GR", 0.6), ("scratch (c)", 0.4)
    ]


def test_compare_writes_one_report(tmp_path: Path) -> None:
    for name, init, value in (("gr", "GR", 0.6), ("gd", "GD", 0.65)):
        folder = tmp_path / name
        folder.mkdir()
        report = {"name": name, "method": init, "config_hash": "x", "device": "cpu",
                  "results": [_row(init, value), _row("scratch", 0.5)]}
        (folder / "report.json").write_text(json.dumps(report))
    merged = compare([tmp_path / "gr", tmp_path / "gd"], tmp_path / "out")
    assert {r["init"] for r in merged["results"]} == {"GR", "GD", "scratch"}
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| ct | finetune | 1 | mean_dice | 0.6000 | 0.5000 | 0.6500 |" in text
    assert (tmp_path / "out" / "plots" / "label_efficiency_finetune.png").is_file()
    with pytest.raises(ConfigError, match="no report.json"):
        compare([tmp_path / "gr", tmp_path / "missing"], tmp_path / "out2")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five labelled CT phantoms and one unlabelled scan (a sixth phantom without its mask)."""
    from medssl.synthetic import write_cohort

    root = tmp_path_factory.mktemp("cohort")
    manifest = write_cohort(root, n_subjects=6, seed=2, dicom_subjects=0)
    rows = list(csv.DictReader(manifest.open()))
    rows[-1]["label"] = ""  # phantom 5 joins pretraining only
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["subject_id", "image", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def test_global_then_local_pipeline_on_slices(tmp_path: Path, cohort: Path) -> None:
    config = {
        "name": "tiny-gl",
        "stages": ["pretrain", "finetune", "evaluate", "report"],
        "data": {
            "path": str(cohort), "cache_dir": str(tmp_path / "cache"), "holdout_fraction": 0.34,
            "preprocessing": {"spacing": [4.0, 4.0, 6.0], "intensity": "hu_window",
                              "hu_window": [-200, 300], "slice_size": [32, 32], "partitions": 3},
        },
        "encoder": {"name": "unet", "spatial_dims": 2,
                    "kwargs": {"features": [4, 4, 8, 8, 8, 4], "norm": "batch"}},
        "pretrain": {
            "label": "GD", "method": {"name": "global_contrast", "strategy": "GD"},
            "batch_size": 6, "max_steps": 2, "lr": 0.001,
            "then": [{"label": "local", "method": {"name": "local_contrast", "decoder_blocks": 2},
                      "batch_size": 4, "max_steps": 2}],
        },
        "finetune": {"task": "segmentation", "label_budgets": [1], "batch_size": 4,
                     "inits": ["phase1", "pretrained", "scratch"], "max_steps": 2},
        "trainer": {"progress_bar": False},
    }
    path = tmp_path / "gl.yaml"
    path.write_text(yaml.safe_dump(config))
    report = run(path, out=tmp_path / "run")
    rows = [r for r in report["results"] if r["metric"] == "mean_dice"]
    assert sorted(r["init"] for r in rows) == ["GD", "GD+local", "scratch"]
    assert report["dataset"] == "cohort" or report["dataset"].startswith("cohort")

    # The final model initialises the decoder blocks the local stage trained; G^D alone not.
    final = json.loads((tmp_path / "run" / "pretrain" / "model.json").read_text())
    first = json.loads(
        (tmp_path / "run" / "pretrain" / "phase1-global_contrast" / "model.json").read_text()
    )
    assert any(k.startswith("net.upcat_4.") for k in final["initialises"])
    assert not any(k.startswith("net.upcat") for k in first["initialises"])
    assert set(first["initialises"]) <= set(final["initialises"])

    # The unlabelled phantom never enters a label budget, and only masked scans are scored.
    for folder in (tmp_path / "run" / "finetune").iterdir():
        card = json.loads((folder / "model.json").read_text())
        assert card["labelled_scans"] == 1
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert "pretrain:1" in state["done"] and "pretrain:2" in state["done"]
    assert all(np.isfinite(r["value"]) for r in rows)


def test_more_volumes_per_batch_than_the_training_split_is_a_config_error(
    tmp_path: Path, cohort: Path
) -> None:
    overrides = [
        f"data.path={cohort}", f"data.cache_dir={tmp_path / 'cache'}", "stages=[pretrain]",
        "data.preprocessing={slice_size: [32, 32], partitions: 3, spacing: [4.0, 4.0, 6.0]}",
        "encoder.name=unet", "encoder.spatial_dims=2",
        "encoder.kwargs={features: [4, 4, 8, 8, 8, 4]}",
        "pretrain.method={name: global_contrast}", "pretrain.batch_size=60",
        "pretrain.max_steps=1", "trainer.progress_bar=false",
    ]
    with pytest.raises(ConfigError, match=r"pretrain.batch_size 60: a batch holds 20 volume\(s\)"):
        run([], overrides, out=tmp_path / "run")


def test_local_contrast_on_an_encoder_without_its_decoder_is_a_config_error(
    tmp_path: Path, cohort: Path
) -> None:
    overrides = [
        f"data.path={cohort}", f"data.cache_dir={tmp_path / 'cache'}", "stages=[pretrain]",
        "data.preprocessing={slice_size: [32, 32], partitions: 3, spacing: [4.0, 4.0, 6.0]}",
        "encoder.name=resnet", "encoder.spatial_dims=2", "encoder.kwargs={depth: 10}",
        "pretrain.method={name: global_contrast}", "pretrain.batch_size=6",
        "pretrain.max_steps=1", "trainer.progress_bar=false",
        "pretrain.then=[{method: {name: local_contrast}, batch_size: 6, max_steps: 1}]",
    ]
    with pytest.raises(ConfigError, match=r"pretrain.then.0.method.name: local_contrast needs"):
        run([], overrides, out=tmp_path / "run")


def test_unknown_phase_init_is_a_config_error(tmp_path: Path, cohort: Path) -> None:
    with pytest.raises(ConfigError, match="phase<k>"):
        from medssl.platform.config import load_config

        load_config(None, [f"data.path={cohort}", "finetune.inits=[phase0]"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["pretrain.method={name: global_contrast}"], "encoder.spatial_dims=2"),
        (["encoder.spatial_dims=2", "pretrain.method={name: global_contrast}"],
         "data.preprocessing.slice_size"),
        (["encoder.spatial_dims=2", "data.preprocessing={slice_size: [32, 32], orientation: SAR}",
          "pretrain.method={name: global_contrast}"], "data.preprocessing.orientation"),
        (["stages=[reduce, pretrain]"], "stages: 'reduce'"),
        (["stages=[pretrain, finetune]", "finetune.inits=[phase2]"], "finetune.inits: 'phase2'"),
        (["pretrain.then=[{method: {name: simclr, temprature: 0.2}}]"], "pretrain.then.0.method"),
        (["encoder.kwargs={bogus: 1}"], "encoder.kwargs.bogus"),
        (["encoder.name=unet", "encoder.spatial_dims=1"], "encoder.spatial_dims"),
        (["stages=[finetune]", "encoder.kwargs={bogus: 1}"], "encoder.kwargs.bogus"),
        (["pretrain.method={name: simclr, augment: {output_size: [16, 16]}}"],
         "pretrain.method.augment.output_size: [16, 16] has 2 sides but encoder.spatial_dims is 3"),
    ],
)
def test_bad_slice_and_phase_settings_fail_before_any_data_is_read(
    overrides: list[str], message: str
) -> None:
    from medssl.pipelines.context import check_compatibility
    from medssl.platform.config import load_config

    config = load_config(None, ["data.path=nowhere.csv", *overrides])
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        check_compatibility(config)
