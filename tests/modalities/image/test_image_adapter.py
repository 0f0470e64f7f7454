"""The "image" adapter: registration and contract, discovery of folders, manifests and npz
files, the items every purpose serves, and the run settings it refuses."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import medssl.modalities  # noqa: F401  (registers the adapters)
from medssl.modalities.image import ImageModality
from medssl.modalities.loaders import LoaderRequest
from medssl.platform.batch import ITEMS, SUBJECT_PAIRS, BatchSpec, batch_fields
from medssl.platform.encoders import build_encoder
from medssl.platform.errors import CompatibilityError, ConfigError, DataError
from medssl.platform.registry import MODALITIES


def _npz(path: Path, sizes: dict[str, int], side: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in sizes.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


def _folder(root: Path, png_writer: Callable, names: list[str]) -> Path:
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        png_writer(root / name, rng.integers(0, 256, (10, 14)).astype(np.uint8))
    return root


# ----------------------------------------------------------------------------- declarations


def test_registered_with_its_declarations() -> None:
    cls = MODALITIES.get("image")
    assert cls is ImageModality
    paired = {"text", "text_mask", "ecg", "ecg_present"}
    assert cls.provides == frozenset({"subject", "label", "index", "spacing"} | paired)
    assert cls.provides <= set(batch_fields())
    # The report and ECG fields are served only when their settings are on.
    assert ImageModality().provided_fields() == cls.provides - paired
    with_text = ImageModality({"text": {"max_tokens": 32}})
    assert with_text.provided_fields() == cls.provides - {"ecg", "ecg_present"}
    assert cls.default_encoder == "resnet" and cls.groupings == {ITEMS, SUBJECT_PAIRS}
    assert not cls.reducible


def test_contract_is_json_and_complete() -> None:
    contract = json.loads(json.dumps(ImageModality({"image_size": [32, 48]}).contract()))
    assert contract == {
        "image_size": [32, 48],
        "intensity": "percentile",
        "percentiles": [0.5, 99.5],
        "dicom_voi": True,
        "channels": ["grey"],
        "layout": "(1, H, W)",
    }


def test_run_settings_are_checked_before_any_data_is_read() -> None:
    with pytest.raises(ConfigError, match=r"encoder\.spatial_dims.*set encoder\.spatial_dims=2"):
        ImageModality(encoder_dims=3).check_run(["pretrain"])
    with pytest.raises(ConfigError, match="remove 'reduce'"):
        ImageModality(encoder_dims=2).check_run(["reduce", "pretrain"])
    ImageModality(encoder_dims=2).check_run(["pretrain", "probe", "finetune", "evaluate"])
    ImageModality().check_run(["pretrain"])  # encoder not known yet (validate, embed)
    with pytest.raises(CompatibilityError, match="partition"):
        ImageModality(encoder_dims=2).check_batches(
            "global_contrast", BatchSpec(ITEMS, frozenset({"partition"})), "pretrain.method"
        )


def test_pipeline_config_with_a_3d_encoder_is_refused_by_key() -> None:
    from medssl.pipelines.context import check_compatibility
    from medssl.platform.config import load_config

    config = load_config(None, ["data.modality=image", "data.path=x.npz", "stages=[pretrain]"])
    with pytest.raises(ConfigError, match="encoder.spatial_dims"):
        check_compatibility(config)
    check_compatibility(
        load_config(
            None,
            [
                "data.modality=image",
                "data.path=x.npz",
                "stages=[pretrain]",
                "encoder.spatial_dims=2",
            ],
        )
    )


# ----------------------------------------------------------------------------- discovery


def test_folder_scan_finds_images_and_leaves_other_files(
    tmp_path: Path, png_writer: Callable, dicom_writer: Callable
) -> None:
    root = _folder(tmp_path / "cxr", png_writer, ["a.png", "b.jpg", "x/c.png", "y/c.png"])
    dicom_writer(root / "d.dcm", np.zeros((4, 4), np.uint16))
    (root / "reports.tgz").write_bytes(b"\x1f\x8b not images")
    (root / "notes.txt").write_text("ignored")
    (root / ".hidden.png").write_text("ignored")
    records = ImageModality().scan(root)
    assert sorted(Path(r.image).relative_to(root).as_posix() for r in records) == [
        "a.png",
        "b.jpg",
        "d.dcm",
        "x/c.png",
        "y/c.png",
    ]
    subjects = {Path(r.image).relative_to(root).as_posix(): r.subject_id for r in records}
    assert subjects["a.png"] == "a" and subjects["d.dcm"] == "d"
    assert subjects["x/c.png"] == "x/c" and subjects["y/c.png"] == "y/c"  # stems clash
    assert all(r.label is None and r.split is None for r in records)


def test_manifest_csv_and_json(tmp_path: Path, png_writer: Callable) -> None:
    root = _folder(tmp_path, png_writer, ["img/p1_a.png", "img/p1_b.png", "img/p2.png"])
    npz = _npz(root / "m.npz", {"train": 3})
    (root / "manifest.csv").write_text(
        "subject_id,image,label,split,site\n"
        "p1,img/p1_a.png,1,train,north\n"
        "p1,img/p1_b.png,1,training,north\n"
        "p2,img/p2.png,0,test,south\n"
        "p3,m.npz#2,,val,south\n"
    )
    records = ImageModality().scan(root / "manifest.csv")
    assert [r.subject_id for r in records] == ["p1", "p1", "p2", "p3"]
    assert [r.label for r in records] == [1, 1, 0, None]
    assert [r.split for r in records] == ["train", "train", "test", "val"]
    assert records[0].image == str(root / "img" / "p1_a.png") and records[0].extra == {
        "site": "north"
    }
    assert records[3].image == f"{npz}#2"
    rows = [{"subject_id": "p2", "image": "img/p2.png", "label": 2.5}]
    (root / "manifest.json").write_text(json.dumps(rows))
    (record,) = ImageModality().scan(root / "manifest.json")
    assert record.label == 2.5 and record.split is None


def test_manifest_problems_are_listed_together(tmp_path: Path, png_writer: Callable) -> None:
    _folder(tmp_path, png_writer, ["a.png"])
    (tmp_path / "bad.csv").write_text(
        "subject_id,image,label,split,mask\n"
        "s1,a.png,abc,,\n"
        "s2,ghost.png,1,,\n"
        ",a.png,1,,\n"
        "s4,a.png,1,later,\n"
        "s5,a.png,1,,a_mask.png\n"
    )
    with pytest.raises(DataError) as caught:
        ImageModality().scan(tmp_path / "bad.csv")
    text = "\n".join(caught.value.problems)
    assert "label 'abc' is not a number" in text
    assert f"{tmp_path / 'ghost.png'}: does not exist" in text
    assert "row 4 has an empty subject_id" in text
    assert "split 'later' is not train/val/test" in text
    assert "image masks are not supported yet" in text
    assert "listed under" in text  # a.png under several subjects
    (tmp_path / "nocol.csv").write_text("image\na.png\n")
    with pytest.raises(DataError, match="no 'subject_id' column"):
        ImageModality().scan(tmp_path / "nocol.csv")


def test_npz_records_carry_split_label_and_one_subject_per_image(tmp_path: Path) -> None:
    path = _npz(tmp_path / "m.npz", {"train": 3, "val": 2, "test": 1})
    records = ImageModality().scan(path)
    assert [r.image for r in records] == [f"{path}#{k}" for k in range(6)]
    assert [r.split for r in records] == ["train"] * 3 + ["val"] * 2 + ["test"]
    assert [r.label for r in records] == [0, 1, 0, 0, 1, 0]
    assert len({r.subject_id for r in records}) == 6
    np.savez(tmp_path / "vol.npz", train_images=np.zeros((2, 8, 8, 8), np.uint8))
    with pytest.raises(DataError, match="data.modality=volume"):
        ImageModality().scan(tmp_path / "vol.npz")


# ----------------------------------------------------------------------------- datasets


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[ImageModality, object]:
    path = _npz(tmp_path / "m.npz", {"train": 6, "test": 2})
    modality = ImageModality({"image_size": 16}, encoder_dims=2)
    return modality, modality.prepare(modality.scan(path), tmp_path / "cache")


@pytest.mark.parametrize("purpose", ["pretrain", "classification", "embed", "evaluate"])
def test_every_purpose_serves_whole_images_with_metadata(prepared, purpose: str) -> None:
    modality, data = prepared
    dataset = modality.dataset(data, [5, 1, 7], purpose)
    item = dataset[0]
    assert set(item) == {"x", "index", "subject", "spacing", "label"}
    assert item["x"].shape == (1, 16, 16) and item["x"].dtype == np.float32
    assert item["index"] == 5 and item["index"].dtype == np.int64
    assert item["spacing"].shape == (2,) and item["spacing"].dtype == np.float32
    assert item["label"].dtype == np.int64 and int(item["label"]) == 1
    batch = modality.collate([dataset[k] for k in range(3)])
    assert batch["x"].shape == (3, 1, 16, 16) and batch["subject"].tolist() != [0, 0, 0]
    item["x"][:] = -1  # a copy: the memory-mapped cache is read-only
    assert dataset[0]["x"].min() >= 0.0


def test_labels_missing_and_segmentation(tmp_path: Path, png_writer: Callable) -> None:
    root = _folder(tmp_path / "imgs", png_writer, ["a.png", "b.png"])
    modality = ImageModality({"image_size": 8})
    data = modality.prepare(modality.scan(root), tmp_path / "cache")
    assert "label" not in modality.dataset(data, [0, 1], "pretrain")[0]
    assert "label" not in modality.dataset(data, [0, 1], "evaluate")[0]
    with pytest.raises(DataError, match=r"a\.png has no label; classification needs"):
        modality.dataset(data, [0, 1], "classification")
    with pytest.raises(ConfigError, match="finetune.task: segmentation needs masks"):
        modality.dataset(data, [0, 1], "segmentation")
    with pytest.raises(DataError, match="no segmentation masks"):
        data.max_mask_label()
    assert not data.has_mask(0) and data.channels == 1


def test_items_feed_a_2d_resnet(prepared) -> None:
    modality, data = prepared
    encoder = build_encoder(
        modality.default_encoder,
        spatial_dims=2,
        in_channels=data.channels,
        depth=10,
        widen_factor=0.25,
        conv1_t_stride=1,
        no_max_pool=True,
    )
    batch = modality.collate([modality.dataset(data, range(4), "embed")[k] for k in range(4)])
    with torch.no_grad():
        features = encoder.global_features(batch["x"])
    assert features.shape == (4, encoder.feature_dim)


def test_pretraining_loaders_in_both_groupings(
    prepared, tmp_path: Path, png_writer: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    modality, data = prepared
    request = LoaderRequest(method="simclr", spec=BatchSpec(ITEMS), batch_size=4)
    batch = next(iter(modality.pretrain_loader(data, data.records, list(range(8)), request)))
    assert batch["x"].shape == (4, 1, 16, 16)
    pairs = LoaderRequest(method="participant", spec=BatchSpec(SUBJECT_PAIRS), batch_size=4)
    with caplog.at_level(logging.WARNING, logger="medssl"):
        modality.pretrain_loader(data, data.records, list(range(8)), pairs)
    assert "positives fall back" in caplog.text  # MedMNIST: one image per subject
    root = _folder(
        tmp_path / "pairs", png_writer, [f"p{s}_{k}.png" for s in range(4) for k in range(2)]
    )
    rows = [f"p{s},p{s}_{k}.png" for s in range(4) for k in range(2)]
    (root / "manifest.csv").write_text("subject_id,image\n" + "\n".join(rows) + "\n")
    paired = ImageModality({"image_size": 8})
    records = paired.scan(root / "manifest.csv")
    cached = paired.prepare(records, tmp_path / "cache")
    batch = next(iter(paired.pretrain_loader(cached, records, list(range(8)), pairs)))
    subjects = batch["subject"].tolist()
    assert subjects[0] == subjects[1] and subjects[2] == subjects[3]
