"""The dataset check run before any training: every scan and mask is read in full and every
problem is listed at once, with its file. Nothing is written anywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medssl.modalities.base import Problem, Record
from medssl.modalities.volume.geometry import geometry_mismatch
from medssl.modalities.volume.manifest import discover
from medssl.modalities.volume.readers import read_volume
from medssl.modalities.volume.volume import Volume
from medssl.platform.errors import DataError


def validate_dataset(path: str | Path) -> list[Problem]:
    """Every problem of the dataset at `path` (folder, manifest or npz), in listing order."""
    records, problems = discover(path)
    already = {p.path for p in problems if "does not exist" in p.message}
    for record in records:
        problems += check_record(record, skip=already)
    return problems


def check_record(record: Record, skip: set[str] | frozenset[str] = frozenset()) -> list[Problem]:
    """Problems of one record: unreadable image or mask, acquisition problems reported by the
    reader (missing slices, uneven spacing), non-finite voxels, and mask geometry and values."""
    problems: list[Problem] = []
    image = _read(record.image, problems, skip)
    if image is not None:
        problems += [Problem(record.image, m) for m in image.meta.get("problems", [])]
        if not np.all(np.isfinite(image.array)):
            problems.append(Problem(record.image, "contains NaN or infinite voxel values"))
    if record.mask is None:
        return problems
    mask = _read(record.mask, problems, skip)
    if mask is None:
        return problems
    problems += [Problem(record.mask, m) for m in mask.meta.get("problems", [])]
    problems += mask_value_problems(mask, record.mask)
    if image is not None:
        mismatch = geometry_mismatch(image, mask)
        if mismatch is not None:
            problems.append(Problem(record.mask, f"{mismatch}; image: {record.image}"))
    return problems


def mask_value_problems(mask: Volume, path: str) -> list[Problem]:
    """A label map must hold non-negative integers and at least one foreground voxel."""
    values = mask.array
    problems = []
    if mask.array.ndim == 4 and mask.array.shape[0] != 1:
        problems.append(
            Problem(path, f"mask has {mask.array.shape[0]} channels; expected one label map")
        )
    finite = np.isfinite(values)
    if not np.all(finite):
        problems.append(Problem(path, "mask contains NaN or infinite values"))
        values = values[finite]
    if values.size and not np.array_equal(values, np.round(values)):
        problems.append(
            Problem(path, "mask has non-integer values; save it as an integer label map")
        )
    if values.size and float(values.min()) < 0:
        problems.append(Problem(path, f"mask has negative label values (min {values.min():g})"))
    if not np.any(values > 0):
        problems.append(Problem(path, "mask is empty (no foreground voxel)"))
    return problems


def _read(path: str, problems: list[Problem], skip: set[str] | frozenset[str]) -> Volume | None:
    if path in skip:
        return None
    try:
        return read_volume(path)
    except DataError as err:
        problems.append(Problem(path, _without_path(str(err), path)))
        return None


def _without_path(message: str, path: str) -> str:
    """Messages start with the path, which Problem already prints."""
    return message[len(path) :].lstrip(" :") if message.startswith(path) else message
