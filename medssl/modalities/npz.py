"""MedMNIST-style npz collections shared by the adapters: `<file.npz>#<index>` references,
array shapes read from the headers alone, the train/val/test layout, and a one-file cache of
the arrays so reading item after item decompresses the file once.

This module imports no adapter, so every adapter and the shared manifest code can use it.
"""

from __future__ import annotations

import re
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medssl.platform.errors import DataError, error_summary

NPZ_SPLITS = ("train", "val", "test")
_NPZ_REF = re.compile(r"^(?P<file>.+\.npz)#(?P<index>\d+)$")


def split_npz_ref(ref: str) -> tuple[str, int] | None:
    """('<file>.npz', index) for an `<file.npz>#<index>` reference, else None."""
    match = _NPZ_REF.match(str(ref))
    return (match["file"], int(match["index"])) if match else None


class _NpzArrays:
    """The most recently opened npz, so reading item after item decompresses it once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, path: str | Path) -> dict[str, np.ndarray]:
        p = Path(path)
        try:
            stat = p.stat()
        except OSError as err:
            raise DataError(f"{path} does not exist; check the npz path") from err
        key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key != self._key:
                try:
                    with np.load(p, allow_pickle=False) as npz:
                        arrays = {k: np.asarray(npz[k]) for k in npz.files}
                except Exception as err:  # noqa: BLE001
                    raise DataError(
                        f"{path} cannot be read as an npz file ({error_summary(err)})"
                    ) from err
                self._key, self._arrays = key, arrays
            return self._arrays


NPZ_ARRAYS = _NpzArrays()


def npz_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Shape of every array in an npz, from the .npy headers only (nothing is decompressed
    beyond them)."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    continue
                with archive.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shapes[name[: -len(".npy")]] = tuple(read_header(f)[0])
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path} cannot be read as an npz file ({error_summary(err)})") from err
    return shapes


def npz_layout(
    arrays: Mapping[str, np.ndarray | tuple[int, ...]], path: str | Path
) -> list[tuple[str, int]]:
    """[(split, n_items)] for the `<split>_images` arrays present, in train/val/test order.
    A global item index counts through the splits in that order. `arrays` maps names to
    arrays or to their shapes."""
    layout = []
    for split in NPZ_SPLITS:
        value = arrays.get(f"{split}_images")
        if value is not None:
            layout.append((split, int(value[0] if isinstance(value, tuple) else len(value))))
    if not layout:
        raise DataError(
            f"{path} has arrays {sorted(arrays)} but none named train_images, val_images or "
            "test_images (the MedMNIST layout); rename the image array"
        )
    return layout


def npz_locate(layout: list[tuple[str, int]], index: int, path: str | Path) -> tuple[str, int]:
    """(split, position inside that split) of a global item index."""
    for split, n in layout:
        if index < n:
            return split, index
        index -= n
    total = sum(n for _, n in layout)
    raise DataError(f"{path} has {total} items; item #{index} does not exist")
