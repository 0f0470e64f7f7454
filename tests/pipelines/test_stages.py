"""Errors a user can reach through the stages (probe, finetune, pretrain) on their config or
data: each is a ConfigError or DataError naming the key or the dataset, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medssl.modalities.base import Record
from medssl.pipelines import api
from medssl.pipelines.stages import check_probe_classes, num_classes
from medssl.platform.config import PipelineConfig
from medssl.platform.errors import ConfigError, DataError

#: A small, fast run of the 2-D image preset: a few steps of each stage on 28x28 images.
QUICK = [
    "pretrain.max_steps=2",
    "pretrain.batch_size=8",
    "finetune.max_steps=2",
    "finetune.repeats=1",
    "finetune.label_budgets=[0.5]",
    "finetune.validation_fraction=0",
    "probe.label_budgets=[1.0]",
    "encoder.kwargs.depth=10",
    "trainer.progress_bar=false",
]


def _images(folder: Path, labels: list[int]) -> Path:
    """Random 28x28 radiographs in the MedMNIST layout with the given labels."""
    rng = np.random.default_rng(0)
    path = folder / "images.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 255, (len(labels), 28, 28), dtype=np.uint8),
        train_labels=np.asarray(labels, np.uint8)[:, None],
    )
    return path


def _ctx(path: str, **data: object) -> SimpleNamespace:
    config = PipelineConfig.model_validate({"data": {"path": path, **data}})
    return SimpleNamespace(config=config)


# ----------------------------------------------------------------------------- probe


def test_probe_on_labels_of_one_class_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"scans\.csv: every labelled item has class \[0\]"):
        check_probe_classes(_ctx("scans.csv"), 1.0, np.zeros(6, int), np.zeros(2, int))  # type: ignore[arg-type]


def test_probe_with_a_held_out_class_never_trained_on_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"scans\.csv: held-out class\(es\) \[2\].*at label budget 10%"):
        check_probe_classes(_ctx("scans.csv"), 0.1, np.r_[0, 1, 1], np.r_[0, 2])  # type: ignore[arg-type]
    check_probe_classes(_ctx("scans.csv"), 0.1, np.r_[0, 1, 2], np.r_[0, 2])  # type: ignore[arg-type]


def test_cli_probe_on_one_class_prints_one_line(tmp_path: Path, medssl_cli) -> None:  # type: ignore[no-untyped-def]
    data = _images(tmp_path, [0] * 12)
    result = medssl_cli(
        "run", "xray-simclr", f"data.path={data}", *QUICK, "stages=[probe]",
        "probe.inits=[random]", "--out", str(tmp_path / "run"), cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "ValueError" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "images.npz: every labelled item has class [0]" in errors[0]


# ----------------------------------------------------------------------------- finetune


def test_num_classes_below_the_labels_is_a_config_error() -> None:
    ctx = _ctx("scans.csv", num_classes=2)
    ctx.config.finetune.task = "classification"
    ctx.records = [Record(subject_id=f"s{i}", image=f"s{i}.png", label=i) for i in range(4)]
    ctx.train, ctx.holdout = [0, 1, 2], [3]
    with pytest.raises(ConfigError, match=r"data.num_classes: 2 classes .* has label 3; set it to 4"):
        num_classes(ctx)  # type: ignore[arg-type]
    ctx.config.data.num_classes = 4
    assert num_classes(ctx) == 4  # type: ignore[arg-type]
    ctx.config.data.num_classes = None
    assert num_classes(ctx) == 4  # type: ignore[arg-type]


def test_num_classes_below_the_mask_values_is_a_config_error() -> None:
    ctx = _ctx("scans.csv", num_classes=3)
    ctx.prepared = SimpleNamespace(max_mask_label=lambda: 5)
    with pytest.raises(ConfigError, match=r"data.num_classes: 3 classes .* has mask value 5"):
        num_classes(ctx)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- diverged loss


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["stages=[pretrain]", "pretrain.lr=1e30"], "pretrain.lr"),
        (
            ["stages=[pretrain]", "pretrain.then=[{method: {name: simclr}, max_steps: 2, "
             "batch_size: 8, lr: 1.0e+30}]"],
            "pretrain.then.0.lr",
        ),
        (["stages=[finetune]", "finetune.inits=[scratch]", "finetune.lr=1e30"], "finetune.lr"),
    ],
)
def test_a_diverged_loss_names_the_learning_rate(
    tmp_path: Path, overrides: list[str], key: str
) -> None:
    data = _images(tmp_path, [0, 1] * 8)
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)} 1e\+30: .*loss became nan"):
        api.run("xray-simclr", [f"data.path={data}", *QUICK, *overrides], tmp_path / "run")


# ----------------------------------------------------------------------------- sizes the config decides


def _checked(presets: list[str], overrides: list[str]) -> None:
    """check_compatibility of a preset stack with overrides: it reads no data."""
    from medssl.pipelines import presets as known
    from medssl.pipelines.context import check_compatibility
    from medssl.platform.config import load_config

    check_compatibility(load_config([known.resolve(p) for p in presets], overrides))


@pytest.mark.parametrize(
    ("overrides", "world", "message"),
    [
        (["pretrain.batch_size=2"], 1, "pretrain.batch_size: 2 is too small for method "
         "'participant', which trains on batches of at least 4 items; set pretrain.batch_size "
         "to 4 or more"),
        (["pretrain.batch_size=1", "pretrain.method.positives=segment"], 1, "at least 2 items;"),
        (["pretrain.batch_size=6"], 2, "at least 8 items (4 per process x 2 processes)"),
    ],
)
def test_a_batch_below_what_participant_contrast_trains_on_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, overrides: list[str], world: int, message: str
) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(world))
    with pytest.raises(ConfigError, match=re.escape(message)):
        _checked(["ecg-participant"], ["data.path=nowhere", *overrides])
    monkeypatch.setenv("WORLD_SIZE", "1")
    _checked(["ecg-participant"], ["data.path=nowhere", "pretrain.batch_size=4"])


UNET_16 = "does not fit encoder 'unet', which needs every side divisible by 16 (four 2x max-poolings)"


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        ("ct-global-local", ["data.preprocessing.slice_size=[40, 40]"],
         f"data.preprocessing.slice_size: [40, 40] {UNET_16}; set it to e.g. [32, 32] or [48, 48]"),
        ("ct-global-local", ["stages=[finetune]", "encoder.spatial_dims=3",
                             "data.preprocessing.patch_size=[40, 40, 20]"],
         f"data.preprocessing.patch_size: [40, 40, 20] {UNET_16}; set it to e.g. [32, 32, 16] "
         "or [48, 48, 32]"),
        ("xray-simclr", ["encoder.name=unet", "encoder.kwargs={}",
                         "pretrain.method.augment.output_size=[24, 24]"],
         f"pretrain.method.augment.output_size: [24, 24] {UNET_16}"),
        ("xray-simclr", ["encoder.name=unet", "encoder.kwargs={}", "stages=[probe]",
                         "data.preprocessing.image_size=[28, 32]"],
         f"data.preprocessing.image_size: [28, 32] {UNET_16}"),
    ],
)
def test_an_input_size_the_encoder_cannot_take_is_a_config_error(
    preset: str, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _checked([preset], ["data.path=nowhere", *overrides])


def test_views_warped_to_a_fitting_output_size_let_pretraining_take_any_image_size() -> None:
    unet = ["data.path=nowhere", "encoder.name=unet", "encoder.kwargs={}"]
    sizes = ["data.preprocessing.image_size=30", "pretrain.method.augment.output_size=[32, 32]"]
    _checked(["xray-simclr"], [*unet, *sizes, "stages=[pretrain]"])
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.image_size: \[30, 30\]"):
        _checked(["xray-simclr"], [*unet, *sizes, "stages=[pretrain, probe]"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["pretrain.then.0.method.region=20"],
         "pretrain.then.0.method.region: 20 is larger than the 12 x 12 decoder map that "
         "decoder_blocks 2 gives for 48 x 48 inputs; set region to at most 8 or raise "
         "decoder_blocks or set positions: all"),
        (["pretrain.then.0.method.region=10"],
         "pretrain.then.0.method.region: 10 leaves 3 region starts per side on the 12 x 12"),
        (["pretrain.then.0.method.region=13", "pretrain.then.0.method.positions=all"],
         "set region to at most 12 or raise decoder_blocks"),
        (["pretrain.method={name: local_contrast, decoder_blocks: 4, region: 17}",
          "pretrain.then=[]", "finetune.inits=[pretrained]",
          "data.preprocessing.slice_size=[16, 16]"],
         "pretrain.method.region: 17 is larger than the 16 x 16 decoder map that decoder_blocks "
         "4 gives for 16 x 16 inputs; set region to at most 12 or use larger inputs or set "
         "positions: all"),
        (["pretrain.then.0.method.region=1", "data.preprocessing.slice_size=[16, 16]"],
         "region: 1 leaves 4 region starts per side on the 4 x 4 decoder map that decoder_blocks "
         "2 gives for 16 x 16 inputs, and positions paper13 needs 5; raise decoder_blocks or set "
         "positions: all"),
    ],
)
def test_a_local_contrast_region_beyond_the_decoder_map_is_a_config_error(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _checked(["ct-global-local"], ["data.path=nowhere", *overrides])
    _checked(["ct-global-local"], ["data.path=nowhere", "pretrain.then.0.method.region=8"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["finetune.roi_size=[40, 40, 8]"],
         "finetune.roi_size: the window [40, 40, 8] does not fit encoder 'unet' (2-D, sides "
         "divisible by 16); set finetune.roi_size to e.g. [48, 48, 8]"),
        (["stages=[finetune]", "finetune.validation_fraction=0.5", "encoder.spatial_dims=3",
          "data.preprocessing.patch_size=[32, 32, 16]", "finetune.roi_size=[32, 32, 20]"],
         "finetune.roi_size: the window [32, 32, 20] does not fit encoder 'unet' (3-D"),
        (["encoder.spatial_dims=3", "stages=[finetune, evaluate]"],
         "finetune.roi_size: segmentation is scored on whole volumes in a sliding window, and "
         "neither it nor data.preprocessing.patch_size is set"),
    ],
)
def test_a_segmentation_window_that_does_not_fit_fails_before_fine_tuning(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _checked(["ct-global-local"], ["data.path=nowhere", *overrides])
    # Without scoring (no validation, no evaluate stage) the window is never used.
    _checked(["ct-global-local"], ["data.path=nowhere", *overrides, "stages=[finetune]",
                                   "finetune.validation_fraction=0"])


def test_whole_volumes_the_encoder_cannot_take_are_named_before_training(tmp_path: Path) -> None:
    """Without a patch size the volumes are fed whole; sides the UNet cannot pool are found
    once the data is prepared, naming the first volume and the patch size to set."""
    from medssl.modalities.volume import VolumeModality
    from medssl.pipelines.preflight import check_item_sizes
    from medssl.platform.config import load_config
    from medssl.platform.errors import DataError
    from medssl.synthetic import write_cohort

    manifest = write_cohort(tmp_path / "cohort", n_subjects=2, seed=0, dicom_subjects=0)
    modality = VolumeModality({"spacing": [4.0, 4.0, 6.0]})
    prepared = modality.prepare(modality.scan(manifest), tmp_path / "cache")
    config = load_config(
        None,
        [f"data.path={manifest}", "data.preprocessing.spacing=[4.0,4.0,6.0]", "stages=[pretrain]",
         "encoder.name=unet", "encoder.spatial_dims=3"],
    )
    with pytest.raises(DataError, match=r"fed whole at \[.*unet.*patch_size, e\.g\."):
        check_item_sizes(config, modality, prepared)
    # Views warped to a fitting output_size in every phase are not fed whole.
    warped = load_config(
        None,
        [f"data.path={manifest}", "stages=[pretrain]", "encoder.name=unet",
         "encoder.spatial_dims=3", "pretrain.method.augment.output_size=[32,32,16]"],
    )
    check_item_sizes(warped, modality, prepared)
