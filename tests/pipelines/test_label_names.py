"""Segmentation metrics carry the dataset's label names when a labels.json says them."""

from __future__ import annotations

import json
from pathlib import Path

from medssl.modalities.volume import VolumeModality
from medssl.pipelines.finetune import named_metric as _named


def test_label_map_is_read_beside_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("subject_id,image\n")
    modality = VolumeModality()
    assert modality.label_map(tmp_path / "manifest.csv") is None
    (tmp_path / "labels.json").write_text(json.dumps({"0": "background", "1": "liver"}))
    assert modality.label_map(tmp_path / "manifest.csv") == {0: "background", 1: "liver"}
    assert modality.label_map(tmp_path) == {0: "background", 1: "liver"}
    (tmp_path / "labels.json").write_text("[1, 2]")
    assert modality.label_map(tmp_path) is None


def test_metric_names_use_label_names() -> None:
    names = {1: "liver", 2: "kidneys"}
    assert _named("dice/1", names) == "dice/liver"
    assert _named("hd95/2", names) == "hd95/kidneys"
    assert _named("dice/3", names) == "dice/3"
    assert _named("mean_dice", names) == "mean_dice"
