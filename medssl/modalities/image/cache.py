"""The preprocessing cache: every radiograph is read, normalised, resized and padded once into
one (N, 1, H, W) float32 .npy (an npz of many small images stays one array, not N files),
keyed by the settings and the size / mtime of every source file.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.base import Record, content_key
from medssl.modalities.image.intensity import UINT8_SCALE, normalise_images
from medssl.modalities.image.prepared import PreparedImages
from medssl.modalities.image.readers import Radiograph, npz_images, read_image
from medssl.modalities.image.resize import fit_images
from medssl.modalities.image.slices import read_axial_slices, split_slice_ref
from medssl.modalities.npz import NPZ_ARRAYS, npz_layout, npz_locate, split_npz_ref
from medssl.platform.engine.progress import counting
from medssl.platform.errors import DataError
from medssl.platform.io import atomic_folder

CACHE_VERSION = 1
_NPZ_CHUNK = 1024  # npz images normalised and resized per step (bounds the memory used)
_PROGRESS_MIN_FILES = 32  # fewer image files than this prepare without a progress bar
log = logging.getLogger(__name__)


def cache_key(records: Sequence[Record], preprocessing: Any) -> str:
    """sha256 of the settings, the record list and the size / mtime of every source file."""
    payload = {
        "version": CACHE_VERSION,
        "preprocessing": pixel_settings(preprocessing),
        "images": [r.image for r in records],
    }
    return content_key(payload, [source_file(r.image) for r in records])


def pixel_settings(preprocessing: Any) -> dict[str, Any]:
    """The settings the cached pixels depend on (the paired report and ECG settings do not
    touch them, so changing those keeps the cache)."""
    return preprocessing.model_dump(mode="json", exclude={"text", "ecg"})


def source_file(image: str) -> str:
    """The file behind a record's image: the npz of an item, the volume of a slice."""
    ref = split_npz_ref(image) or split_slice_ref(image)
    return ref[0] if ref else image


class _Arrays:
    """The per-image outputs of one cache build, filled in record order."""

    def __init__(self, images: np.ndarray) -> None:
        n = images.shape[0]
        self.images = images
        self.spacing = np.ones((n, 2), dtype=np.float32)
        self.pad = np.zeros((n, 4), dtype=np.int32)
        self.source_shape = np.zeros((n, 2), dtype=np.int32)
        self.fill = np.zeros(n, dtype=np.float32)
        self.info: list[dict[str, Any]] = [{} for _ in range(n)]

    def put(
        self, rows: Sequence[int], stack: np.ndarray, fit: Any, spacing: Any, fill: Any
    ) -> None:
        rows = list(rows)
        self.images[rows, 0] = stack
        self.spacing[rows] = np.asarray(spacing, dtype=np.float32) / np.asarray(fit.zoom)
        self.pad[rows] = fit.pad
        self.source_shape[rows] = fit.source
        self.fill[rows] = fill


def prepare_images(
    records: Sequence[Record],
    cache_dir: str | Path,
    preprocessing: Any,
    reader: Callable[[str], Radiograph] | None = None,
) -> PreparedImages:
    """Build (or reopen) the cache of `records` under `cache_dir` and return its
    `PreparedImages`. The folder is filled privately and renamed into place, so a killed run
    leaves no half-written cache and of two runs building it at once the first one wins.
    Raises DataError naming the first image that cannot be read."""
    if not records:
        raise ValueError("prepare_images needs at least one record")
    root = Path(cache_dir) / f"image-{cache_key(records, preprocessing)[:16]}"
    if (root / "meta.json").is_file():
        return PreparedImages(records, root)
    size = tuple(preprocessing.size)
    read = reader or (lambda path: read_image(path, apply_voi=preprocessing.dicom_voi))
    npz_rows: dict[str, list[int]] = defaultdict(list)
    volume_rows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    file_rows: list[int] = []
    for row, record in enumerate(records):
        if (ref := split_npz_ref(record.image)) is not None:
            npz_rows[ref[0]].append(row)
        elif (axial := split_slice_ref(record.image)) is not None:
            volume_rows[axial[0]].append((row, axial[1]))
        else:
            file_rows.append(row)
    with atomic_folder(root) as staging:
        images = np.lib.format.open_memmap(
            staging / "images.npy", mode="w+", dtype=np.float32, shape=(len(records), 1, *size)
        )
        arrays = _Arrays(images)
        for npz_file, rows in npz_rows.items():
            _prepare_npz(arrays, npz_file, [records[r] for r in rows], rows, preprocessing)
        with _progress(len(file_rows) + len(volume_rows)) as advance:
            for volume, pairs in volume_rows.items():
                _prepare_slices(arrays, volume, pairs, preprocessing)
                advance()
            for row in file_rows:
                _prepare_file(arrays, row, read(records[row].image), preprocessing)
                advance()
        images.flush()
        del images, arrays.images
        _warn_conversions(records, arrays.info)
        for name in ("spacing", "pad", "source_shape", "fill"):
            np.save(staging / f"{name}.npy", getattr(arrays, name), allow_pickle=False)
        meta = {
            "version": CACHE_VERSION,
            "preprocessing": pixel_settings(preprocessing),
            "size": list(size),
            "items": arrays.info,
        }
        (staging / "meta.json").write_text(json.dumps(meta))
    return PreparedImages(records, root)


def _prepare_file(arrays: _Arrays, row: int, image: Radiograph, cfg: Any) -> None:
    values = normalise_images(image.pixels[None], cfg.intensity, tuple(cfg.percentiles))
    fill = values.min(axis=(1, 2))
    stack, fit = fit_images(values, tuple(cfg.size), fill)
    arrays.put([row], stack, fit, image.spacing or (1.0, 1.0), fill)
    info = {k: v for k, v in image.meta.items() if v is not None}
    info["spacing_known"] = image.spacing is not None
    arrays.info[row] = info


def _prepare_slices(
    arrays: _Arrays, volume: str, pairs: Sequence[tuple[int, int]], cfg: Any
) -> None:
    """The axial slices records name of one volume, which is read once."""
    slices, spacing = read_axial_slices(volume)
    outside = sorted({k for _, k in pairs if k >= len(slices)})
    if outside:
        raise DataError(
            f"{volume} has {len(slices)} axial slices; slice(s) {outside[:5]} do not exist; "
            "scan the dataset again"
        )
    values = normalise_images(slices[[k for _, k in pairs]], cfg.intensity, tuple(cfg.percentiles))
    fill = values.min(axis=(1, 2))
    stack, fit = fit_images(values, tuple(cfg.size), fill)
    arrays.put([row for row, _ in pairs], stack, fit, spacing, fill)
    for row, k in pairs:
        arrays.info[row] = {"format": "nifti-slice", "slice": k, "spacing_known": True}


def _prepare_npz(
    arrays: _Arrays, npz_file: str, records: Sequence[Record], rows: Sequence[int], cfg: Any
) -> None:
    """The npz's arrays are decompressed once; its images go through in chunks of one size.
    8-bit codes (MedMNIST) are already windowed: they are divided by 255 whatever
    `intensity` says."""
    layout = npz_layout(NPZ_ARRAYS.get(npz_file), npz_file)
    by_split: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row, record in zip(rows, records, strict=True):
        _, index = split_npz_ref(record.image)  # type: ignore[misc]
        split, local = npz_locate(layout, index, npz_file)
        by_split[split].append((row, local))
    for split, pairs in by_split.items():
        raw = NPZ_ARRAYS.get(npz_file)[f"{split}_images"]
        images = npz_images(npz_file, split)
        info = {"format": "npz", "dtype": str(raw.dtype), "split": split, "spacing_known": False}
        if raw.ndim == 4 and raw.shape[-1] >= 3:
            info["converted"] = "RGB to grey"
        eight_bit = raw.dtype == np.uint8
        for start in range(0, len(pairs), _NPZ_CHUNK):
            chunk = pairs[start : start + _NPZ_CHUNK]
            picked = images[[local for _, local in chunk]]
            if eight_bit:
                values = picked.astype(np.float32) * UINT8_SCALE
            else:
                values = normalise_images(picked, cfg.intensity, tuple(cfg.percentiles))
            fill = values.min(axis=(1, 2))
            stack, fit = fit_images(values, tuple(cfg.size), fill)
            targets = [row for row, _ in chunk]
            arrays.put(targets, stack, fit, (1.0, 1.0), fill)
            for row in targets:
                arrays.info[row] = info


def _warn_conversions(records: Sequence[Record], info: list[dict[str, Any]]) -> None:
    converted = [k for k, entry in enumerate(info) if entry.get("converted")]
    if converted:
        first = converted[0]
        log.warning(
            "%d of %d images are in colour and were collapsed to grey (BT.601 luma), "
            "first: %s (%s)",
            len(converted),
            len(records),
            records[first].image,
            info[first]["converted"],
        )


def _progress(total: int) -> AbstractContextManager[Callable[[], None]]:
    """A transient rich bar on a terminal when there are enough files to wait for; progress
    lines in logs."""
    return counting("preparing radiographs", total, unit="file", bar_from=_PROGRESS_MIN_FILES)
