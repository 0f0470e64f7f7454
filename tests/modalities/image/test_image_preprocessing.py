"""Preprocessing of radiographs: per-image intensity modes against loop references, the
aspect-preserving resize and its recorded pad, the settings model, and the one-array cache
(keyed by settings and file stamps, reused, rebuilt, written whole)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from medssl.modalities.image import ImageModality, ImagePreprocessing
from medssl.modalities.image.intensity import normalise_images
from medssl.modalities.image.resize import fit_geometry, fit_images

# ----------------------------------------------------------------------------- intensity


def test_percentile_mode_matches_a_per_image_reference() -> None:
    rng = np.random.default_rng(0)
    stack = rng.gamma(2.0, 300.0, size=(3, 17, 13))
    out = normalise_images(stack, "percentile", (2.0, 98.0))
    for k in range(3):
        lo, hi = np.percentile(stack[k].astype(np.float64), [2.0, 98.0])
        ref = (np.clip(stack[k], lo, hi) - lo) / (hi - lo)
        np.testing.assert_allclose(out[k], ref, atol=1e-5)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == pytest.approx(1.0)


def test_minmax_zscore_none_and_constant_images() -> None:
    stack = np.stack([np.arange(12.0).reshape(3, 4), np.full((3, 4), 7.0)])
    minmax = normalise_images(stack, "minmax")
    np.testing.assert_allclose(minmax[0], np.arange(12.0).reshape(3, 4) / 11.0, atol=1e-6)
    np.testing.assert_array_equal(minmax[1], 0.0)
    z = normalise_images(stack, "zscore")
    assert z[0].mean() == pytest.approx(0.0, abs=1e-6) and z[0].std() == pytest.approx(
        1.0, abs=1e-5
    )
    np.testing.assert_array_equal(z[1], 0.0)
    np.testing.assert_array_equal(normalise_images(stack, "none"), stack.astype(np.float32))
    with pytest.raises(ValueError, match="not one of"):
        normalise_images(stack, "hu_window")


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("source", "target", "resized", "pad"),
    [
        ((512, 256), (224, 224), (224, 112), (0, 0, 56, 56)),
        ((100, 300), (64, 64), (21, 64), (21, 22, 0, 0)),
        ((28, 28), (32, 32), (32, 32), (0, 0, 0, 0)),
        ((30, 40), (60, 40), (30, 40), (15, 15, 0, 0)),
    ],
)
def test_fit_keeps_the_aspect_ratio_and_centres(source, target, resized, pad) -> None:
    fit = fit_geometry(source, target)
    assert (fit.resized, fit.pad) == (resized, pad)
    assert fit.resized[0] + pad[0] + pad[1] == target[0]
    assert fit.resized[1] + pad[2] + pad[3] == target[1]


def test_fit_images_pads_with_each_fill_and_resizes_antialiased() -> None:
    rng = np.random.default_rng(0)
    stack = rng.random((2, 40, 20)).astype(np.float32)
    out, fit = fit_images(stack, (16, 16), fill=np.array([-1.0, -2.0]))
    top, bottom, left, right = fit.pad
    assert out.shape == (2, 16, 16) and fit.resized == (16, 8) and (left, right) == (4, 4)
    assert np.all(out[0, :, :left] == -1.0) and np.all(out[1, :, -right:] == -2.0)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(stack)[:, None], size=(16, 8), mode="bilinear", antialias=True
    )[:, 0].numpy()
    np.testing.assert_allclose(out[:, :, left : left + 8], ref, atol=1e-6)
    # Interpolation of [0, 1] data stays in [0, 1]; a constant image stays constant.
    inner = out[:, :, left : left + 8]
    assert inner.min() >= 0.0 and inner.max() <= 1.0
    flat, _ = fit_images(np.full((1, 9, 9), 0.25, np.float32), (32, 32), np.zeros(1))
    np.testing.assert_allclose(flat, 0.25, atol=1e-6)


# ----------------------------------------------------------------------------- settings


def test_preprocessing_defaults_and_refusals() -> None:
    prep = ImagePreprocessing()
    assert prep.size == (224, 224) and prep.intensity == "percentile"
    assert prep.percentiles == (0.5, 99.5) and prep.dicom_voi is True
    assert ImagePreprocessing(image_size=[48, 64]).size == (48, 64)
    with pytest.raises(ValidationError, match="extra"):
        ImagePreprocessing(spacing=[1, 1])
    with pytest.raises(ValidationError, match="positive"):
        ImagePreprocessing(image_size=0)
    with pytest.raises(ValidationError, match="percentiles"):
        ImagePreprocessing(percentiles=(50, 10))
    with pytest.raises(ValidationError):
        ImagePreprocessing(intensity="hu_window")
    with pytest.raises(ValidationError, match="frozen"):
        prep.image_size = 32  # type: ignore[misc]


# ----------------------------------------------------------------------------- cache


def _npz(path: Path, n: int = 50, size: int = 28, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        train_images=rng.integers(0, 256, (n, size, size), dtype=np.uint8),
        train_labels=rng.integers(0, 2, (n, 1), dtype=np.uint8),
    )
    return path


def _cache_entries(cache: Path) -> list[Path]:
    return sorted(cache.iterdir())


def test_npz_cache_is_one_array_of_codes_over_255(tmp_path: Path) -> None:
    path = _npz(tmp_path / "m.npz")
    modality = ImageModality({"image_size": 32, "intensity": "zscore"})  # 8-bit: /255 anyway
    prepared = modality.prepare(modality.scan(path), tmp_path / "cache")
    (root,) = _cache_entries(tmp_path / "cache")
    assert sorted(p.name for p in root.iterdir()) == [
        "fill.npy",
        "images.npy",
        "meta.json",
        "pad.npy",
        "source_shape.npy",
        "spacing.npy",
    ]
    images = np.load(root / "images.npy", mmap_mode="r")
    assert images.shape == (50, 1, 32, 32) and images.dtype == np.float32
    with np.load(path) as z:
        codes = z["train_images"].astype(np.float32) / 255.0
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(codes)[:, None], size=(32, 32), mode="bilinear"
    ).numpy()
    np.testing.assert_allclose(images, ref, atol=1e-6)
    assert prepared.spacing(0) == pytest.approx((28 / 32, 28 / 32))
    assert prepared.meta(3)["format"] == "npz" and prepared.meta(3)["split"] == "train"


def test_cache_is_reused_and_rebuilt_when_settings_or_files_change(tmp_path: Path) -> None:
    path = _npz(tmp_path / "m.npz")
    cache = tmp_path / "cache"
    modality = ImageModality({"image_size": 32})
    records = modality.scan(path)
    first = modality.prepare(records, cache)
    stamp = (first.root / "images.npy").stat().st_mtime_ns
    again = modality.prepare(records, cache)
    assert again.root == first.root and (again.root / "images.npy").stat().st_mtime_ns == stamp
    other = ImageModality({"image_size": 24}).prepare(records, cache)
    assert other.root != first.root and other.image(0).shape == (1, 24, 24)
    _npz(path, seed=1)  # the same name, new content
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    rebuilt = modality.prepare(modality.scan(path), cache)
    assert rebuilt.root not in (first.root, other.root)
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "a staging folder was left"


def test_a_failed_build_leaves_no_cache(tmp_path: Path, png_writer: Callable) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    png_writer(folder / "a.png", np.zeros((8, 8), np.uint8))
    modality = ImageModality({"image_size": 16})
    records = modality.scan(folder)
    (folder / "a.png").write_text("now broken")
    with pytest.raises(Exception, match=r"a\.png cannot be read as PNG"):
        modality.prepare(records, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_folder_of_mixed_sizes_is_padded_and_spacing_follows_the_resize(
    tmp_path: Path, png_writer: Callable, dicom_writer: Callable, ramp_image: Callable
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    png_writer(folder / "tall.png", ramp_image((64, 32)).astype(np.uint8))
    dicom_writer(
        folder / "wide.dcm", ramp_image((20, 40), top=4000).astype(np.uint16), spacing=(0.2, 0.2)
    )
    modality = ImageModality({"image_size": 16, "intensity": "minmax"})
    prepared = modality.prepare(modality.scan(folder), tmp_path / "cache")
    by_name = {Path(prepared.records[i].image).name: i for i in range(len(prepared))}
    tall, wide = by_name["tall.png"], by_name["wide.dcm"]
    assert prepared.pad(tall) == (0, 0, 4, 4) and prepared.pad(wide) == (4, 4, 0, 0)
    assert prepared.spacing(wide) == pytest.approx((0.2 * 40 / 16, 0.2 * 40 / 16))
    assert prepared.meta(wide)["spacing_known"] and not prepared.meta(tall)["spacing_known"]
    x = prepared.image(tall)
    assert x.shape == (1, 16, 16) and np.all(x[0, :, :4] == 0.0)
    assert x.min() >= 0.0 and x.max() <= 1.0 and x[0, :, 4:12].max() > 0.9


def test_colour_images_are_prepared_with_one_warning(
    tmp_path: Path, png_writer: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        png_writer(folder / f"c{k}.png", rng.integers(0, 256, (10, 10, 3)).astype(np.uint8))
    png_writer(folder / "grey.png", rng.integers(0, 256, (10, 10)).astype(np.uint8))
    modality = ImageModality({"image_size": 8})
    with caplog.at_level(logging.WARNING, logger="medssl"):
        modality.prepare(modality.scan(folder), tmp_path / "cache")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3 of 4 images are in colour and were collapsed to grey" in warnings[0].getMessage()
    assert str(folder / "c0.png") in warnings[0].getMessage()
