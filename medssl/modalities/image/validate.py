"""The dataset check run before any training: every radiograph is decoded in full and every
problem is listed at once, with its file. Nothing is written anywhere.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from medssl.modalities.base import Problem, Record
from medssl.modalities.image.manifest import discover
from medssl.modalities.image.readers import npz_image_problem, read_image
from medssl.modalities.image.slices import read_axial_slices, split_slice_ref
from medssl.modalities.npz import NPZ_ARRAYS, npz_layout, split_npz_ref
from medssl.platform.errors import DataError


def validate_dataset(path: str | Path, *, apply_voi: bool = True) -> list[Problem]:
    """Every problem of the dataset at `path` (folder, manifest, npz or one image), in
    listing order: unreadable, truncated or mislabelled files, multi-frame DICOM, empty or
    non-finite images, unreadable npz arrays."""
    records, problems = discover(path)
    already = {p.path for p in problems}
    npz_items: dict[str, list[int]] = defaultdict(list)
    volume_slices: dict[str, list[int]] = defaultdict(list)
    for record in records:
        if (npz := split_npz_ref(record.image)) is not None:
            npz_items[npz[0]].append(npz[1])
        elif (axial := split_slice_ref(record.image)) is not None:
            volume_slices[axial[0]].append(axial[1])
        elif record.image not in already:
            problems += check_image(record, apply_voi=apply_voi)
    for npz_file, indices in npz_items.items():
        if npz_file not in already:
            problems += check_npz(npz_file, indices)
    for volume, indices in volume_slices.items():
        if volume not in already:
            problems += check_volume(volume, indices)
    return problems


def check_image(record: Record, *, apply_voi: bool = True) -> list[Problem]:
    """Problems of one image file: it cannot be decoded, it is empty, or it holds NaN/inf."""
    try:
        image = read_image(record.image, apply_voi=apply_voi)
    except DataError as err:
        return [Problem(record.image, _without_path(str(err), record.image))]
    if min(image.shape) < 1:
        return [Problem(record.image, f"holds an empty image of shape {image.shape}")]
    if not np.all(np.isfinite(image.pixels)):
        return [Problem(record.image, "contains NaN or infinite pixel values")]
    return []


def check_npz(path: str, indices: list[int]) -> list[Problem]:
    """Problems of an npz's image arrays (decoded once): shapes, the items the records name,
    non-finite values."""
    try:
        arrays = NPZ_ARRAYS.get(path)
        layout = npz_layout(arrays, path)
    except DataError as err:
        return [Problem(path, _without_path(str(err), path))]
    problems = []
    for split, _ in layout:
        images = arrays[f"{split}_images"]
        problem = npz_image_problem(tuple(images.shape), f"{split}_images")
        if problem is not None:
            problems.append(Problem(path, problem))
        elif not np.issubdtype(images.dtype, np.number):
            problems.append(Problem(path, f"{split}_images holds {images.dtype}, not numbers"))
        elif np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
            problems.append(Problem(path, f"{split}_images contains NaN or infinite values"))
    total = sum(n for _, n in layout)
    outside = sorted({i for i in indices if i >= total})
    if outside:
        problems.append(
            Problem(
                path, f"has {total} images; item(s) {outside[:5]} named in the dataset do not exist"
            )
        )
    return problems


def check_volume(path: str, indices: list[int]) -> list[Problem]:
    """Problems of a volume whose axial slices are served: unreadable, missing slices the
    records name, non-finite voxels."""
    try:
        slices, _ = read_axial_slices(path)
    except DataError as err:
        return [Problem(path, _without_path(str(err), path))]
    outside = sorted({k for k in indices if k >= len(slices)})
    if outside:
        return [
            Problem(path, f"has {len(slices)} axial slices; slice(s) {outside[:5]} do not exist")
        ]
    if not np.all(np.isfinite(slices)):
        return [Problem(path, "contains NaN or infinite voxel values")]
    return []


def _without_path(message: str, path: str) -> str:
    """Messages start with the path, which Problem already prints."""
    return message[len(path) :].lstrip(" :") if message.startswith(path) else message
