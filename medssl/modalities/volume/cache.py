"""The preprocessing cache: each scan is read, reoriented, resampled and normalised once, then
served from memory-mapped .npy files. Entries are keyed by the config and the source files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from medssl.modalities.base import Record
from medssl.modalities.volume.geometry import axis_codes, geometry_mismatch, reorient, resample
from medssl.modalities.volume.intensity import UINT8_SCALE, normalise
from medssl.modalities.volume.prepared import PreparedVolumes
from medssl.modalities.volume.readers import (
    NPZ_ARRAYS,
    npz_layout,
    read_volume,
    split_npz_ref,
    stat_fingerprint,
)
from medssl.modalities.volume.volume import Volume
from medssl.platform.engine.progress import counting
from medssl.platform.errors import DataError
from medssl.platform.io import atomic_write, atomic_write_json, atomic_write_npy

CACHE_VERSION = 1
_PROGRESS_MIN_ITEMS = 4  # fewer entries than this build without a progress bar on a terminal
log = logging.getLogger(__name__)


SERVING_ONLY = frozenset({"patch_size", "foreground_crop_prob", "slice_size", "partitions"})


def config_hash(preprocessing: BaseModel | dict[str, Any]) -> str:
    """sha256 of the preprocessing settings (and the cache format version)."""
    cfg = (
        preprocessing.model_dump(mode="json")
        if isinstance(preprocessing, BaseModel)
        else dict(preprocessing)
    )
    # Settings that only say how cached arrays are served (crops, slices) keep the cache.
    cfg = {k: v for k, v in cfg.items() if k not in SERVING_ONLY}
    text = json.dumps({"version": CACHE_VERSION, "preprocessing": cfg}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def preprocess(volume: Volume, cfg: Any, is_mask: bool = False) -> Volume:
    """read -> canonical orientation -> resample -> intensity; masks skip the intensity step."""
    out = reorient(volume, cfg.orientation)
    if cfg.spacing is not None:
        out = resample(out, tuple(cfg.spacing), is_mask=is_mask)
    if not is_mask:
        values = normalise(
            out.array,
            cfg.intensity,
            tuple(cfg.hu_window),
            tuple(cfg.percentiles),
            source_dtype=_source_dtype(volume),
        )
        # A new Volume: reorient/resample may have returned the caller's own object.
        out = Volume(values, out.affine, dict(out.meta))
    return out


def prepare_volumes(
    records: Sequence[Record],
    cache_dir: str | Path,
    preprocessing: BaseModel,
    reader: Callable[[str], Volume] | None = None,
) -> PreparedVolumes:
    """Build (or reuse) the cache entry of every record and return the handle.

    Concurrent runs with the same config are safe: every file is written to a temporary name
    and renamed into place, and the entry's JSON is renamed last, marking it complete.
    """
    digest = config_hash(preprocessing)
    root = Path(cache_dir) / f"volume-{digest[:16]}"
    root.mkdir(parents=True, exist_ok=True)
    config_file = root / "config.json"
    if not config_file.exists():
        atomic_write_json(config_file, preprocessing.model_dump(mode="json"), sort_keys=True)
    read = reader or read_volume
    entries: list[dict[str, Any] | None] = [None] * len(records)
    todo: list[tuple[int, str]] = []
    npz_groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        npz = split_npz_ref(record.image)
        if npz is not None and record.mask is None:
            npz_groups.setdefault(npz[0], []).append(i)
            continue
        key = _entry_key(digest, record)
        entry = _load_entry(root, key)
        if entry is not None:
            entries[i] = entry
        else:
            todo.append((i, key))
    for npz_file, positions in npz_groups.items():
        for i, entry in zip(
            positions,
            _npz_entries(root, digest, npz_file, records, positions, preprocessing),
            strict=True,
        ):
            entries[i] = entry
    with _progress(len(todo)) as advance:
        for i, key in todo:
            entries[i] = _build_entry(root, key, records[i], preprocessing, read)
            advance()
    index = [
        dict(e, label=r.label, subject_id=r.subject_id)  # type: ignore[arg-type]
        for e, r in zip(entries, records, strict=True)
    ]
    names = hashlib.sha256(json.dumps([e["key"] for e in index]).encode()).hexdigest()[:16]
    atomic_write_json(
        root / f"index-{names}.json",
        {"config": preprocessing.model_dump(mode="json"), "items": index},
        sort_keys=True,
    )
    return PreparedVolumes(records, index, root)


def _entry_key(digest: str, record: Record) -> str:
    parts: list[Any] = [digest]
    for path in (record.image, record.mask):
        if path is None:
            parts.append(None)
            continue
        npz = split_npz_ref(path)
        try:
            parts.append(stat_fingerprint(npz[0]) + [npz[1]] if npz else stat_fingerprint(path))
        except OSError as err:
            raise DataError(f"{path} does not exist; run validate on the dataset") from err
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _load_entry(root: Path, key: str) -> dict[str, Any] | None:
    meta = root / f"{key}.json"
    if not meta.exists():
        return None
    entry = json.loads(meta.read_text())
    files = [entry["image_file"]] + ([entry["mask_file"]] if entry.get("mask_file") else [])
    return entry if all((root / f).exists() for f in files) else None


def _build_entry(
    root: Path, key: str, record: Record, cfg: Any, read: Callable[[str], Volume]
) -> dict[str, Any]:
    image = read(record.image)
    for problem in image.meta.get("problems", []):
        log.warning("%s: %s", record.image, problem)
    mask = None
    if record.mask is not None:
        mask = read(record.mask)
        mismatch = geometry_mismatch(image, mask)
        if mismatch is not None:
            raise DataError(f"{record.mask}: {mismatch}; fix the mask or drop it from the dataset")
    image_out = preprocess(image, cfg)
    entry = _geometry(image_out, key)
    entry.update(
        format=image.meta.get("format"),
        modality=image.meta.get("modality"),
        source=record.image,
        problems=list(image.meta.get("problems", [])),
        fill=float(image_out.array.min()) if image_out.array.size else 0.0,
    )
    atomic_write_npy(root / entry["image_file"], image_out.channels_first.astype(np.float32))
    if mask is not None:
        mask_out = preprocess(mask, cfg, is_mask=True).channels_first
        entry.update(mask_file=f"{key}.mask.npy", mask_source=record.mask)
        atomic_write_npy(root / entry["mask_file"], _as_label_map(mask_out, record.mask))
    atomic_write_json(root / f"{key}.json", entry, sort_keys=True)
    return entry


def _npz_entries(
    root: Path,
    digest: str,
    npz_file: str,
    records: Sequence[Record],
    positions: list[int],
    cfg: Any,
) -> list[dict[str, Any]]:
    """One memmap per split array of the npz, built once; one entry per record into it."""
    key = hashlib.sha256(json.dumps([digest, stat_fingerprint(npz_file)]).encode()).hexdigest()[:32]
    summary = root / f"{key}.json"
    built = json.loads(summary.read_text()) if summary.exists() else None
    if built is None or not all(
        (root / s["entry"]["image_file"]).exists() for s in built["splits"]
    ):
        _build_npz(root, key, npz_file, cfg)
        built = json.loads(summary.read_text())
    out = []
    for i in positions:
        _, index = split_npz_ref(records[i].image)  # type: ignore[misc]
        for split in built["splits"]:
            if index < split["n"]:
                out.append(
                    dict(
                        split["entry"],
                        item=index,
                        key=f"{key}#{split['offset'] + index}",
                        source=records[i].image,
                    )
                )
                break
            index -= split["n"]
        else:
            raise DataError(f"{records[i].image}: item does not exist in {npz_file}")
    return out


def _build_npz(root: Path, key: str, npz_file: str, cfg: Any) -> None:
    arrays = NPZ_ARRAYS.get(npz_file)
    splits, offset = [], 0
    for split, _ in npz_layout(arrays, npz_file):
        images = arrays[f"{split}_images"]
        if images.ndim == 4:
            images = images[:, None]  # (N, 1, X, Y, Z)
        else:
            images = np.moveaxis(images, -1, 1)
        name = f"{key}.{split}_images.npy"
        first = preprocess(
            Volume(images[0].astype(np.float32), np.eye(4), {"dtype": str(images.dtype)}), cfg
        )
        as_is = (
            images.dtype == np.uint8
            and first.channels_first.shape == images.shape[1:]
            and np.allclose(first.affine, np.eye(4))
        )
        entry = _geometry(first, key)
        entry.update(image_file=name, format="npz", modality=None)
        if as_is:
            # Geometry is untouched, so the 8-bit codes are kept and scaled when read.
            entry["scale"] = UINT8_SCALE
            atomic_write_npy(root / name, np.ascontiguousarray(images))
        else:
            _write_npz_processed(root / name, images, cfg, first.channels_first.shape)
        splits.append({"split": split, "n": int(len(images)), "offset": offset, "entry": entry})
        offset += len(images)
    atomic_write_json(
        root / f"{key}.json", {"splits": splits, "source": str(npz_file)}, sort_keys=True
    )


def _write_npz_processed(path: Path, images: np.ndarray, cfg: Any, shape: tuple[int, ...]) -> None:
    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(len(images), *shape)
        )
        with _progress(len(images)) as advance:
            for n, item in enumerate(images):
                vol = Volume(item.astype(np.float32), np.eye(4), {"dtype": str(images.dtype)})
                out[n] = preprocess(vol, cfg).channels_first
                advance()
        out.flush()
        del out

    atomic_write(path, write)


def _geometry(volume: Volume, key: str) -> dict[str, Any]:
    return {
        "key": key,
        "image_file": f"{key}.image.npy",
        "mask_file": None,
        "shape": list(volume.channels_first.shape),
        "spacing": list(volume.spacing),
        "affine": volume.affine.tolist(),
        "orientation": axis_codes(volume.affine),
    }


def _as_label_map(mask: np.ndarray, path: str) -> np.ndarray:
    if mask.size and (np.any(mask != np.round(mask)) or float(mask.min()) < 0):
        raise DataError(
            f"{path} holds negative or non-integer values; save it as an integer label map"
        )
    top = float(mask.max()) if mask.size else 0.0
    dtype = np.uint8 if top < 256 else np.int16 if top < 32768 else np.int32
    return mask.astype(dtype)


def _source_dtype(volume: Volume) -> str | None:
    meta = volume.meta
    return "uint8" if meta.get("dtype") == "uint8" and meta.get("format", "npz") == "npz" else None


def _progress(total: int) -> AbstractContextManager[Callable[[], None]]:
    return counting("preparing volumes", total, unit="volume", bar_from=_PROGRESS_MIN_ITEMS)
