"""The Modality protocol every adapter implements, and the records and problems it speaks in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel
from torch.utils.data import Dataset

from medssl.platform.batch import Batch, collate_items

Purpose = Literal["pretrain", "classification", "segmentation", "embed", "evaluate"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, printed as `<path>: <message>`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Record:
    """One item of a dataset as discovered, before anything is read.

    image: a file, a DICOM series folder, or `<file.npz>#<index>` for array collections.
    mask: a segmentation label map with the image's geometry, if any.
    label: a class label or regression target, if any.
    split: "train", "val" or "test" when the manifest says so, else None.
    """

    subject_id: str
    image: str
    label: float | int | None = None
    mask: str | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: Split names a manifest may use, and the name each stands for.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def manifest_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a manifest: a CSV with a header line, or a JSON list of objects.
    Raises OSError / ValueError when the file cannot be parsed."""
    import csv
    import json

    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [dict(row) for row in csv.DictReader(f)]
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError("a JSON manifest must be a list of objects")
    return data


def content_key(payload: Mapping[str, Any], files: Sequence[str]) -> str:
    """sha256 of a JSON-able `payload` and the size / mtime of each of `files`: a cache key
    that changes when the settings or any source file change.
    Raises DataError naming a file that no longer exists."""
    import hashlib
    import json
    import os

    from medssl.platform.errors import DataError

    stamps = {}
    for name in sorted(set(files)):
        try:
            st = os.stat(name)
        except OSError as err:
            raise DataError(f"{name} does not exist any more; scan the dataset again") from err
        stamps[name] = [st.st_size, st.st_mtime_ns]
    text = json.dumps({**payload, "files": stamps}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_cache_folder(root: Path, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write `<name>.npy` per array (None entries skipped) and `meta.json` into a private
    folder, then rename it to `root`: a killed run leaves no half-written cache, and of two
    runs writing the same cache at once the first rename wins."""
    import json
    import os
    import shutil
    import uuid

    import numpy as np

    tmp = root.with_name(f".{root.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir(parents=True)
    try:
        for name, array in arrays.items():
            if array is not None:
                np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(dict(meta), indent=1))
        try:
            os.replace(tmp, root)
        except OSError:
            if not (root / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Modality(ABC):
    """An adapter: discovers and validates a dataset, preprocesses it once into a
    memory-mapped cache, and serves items that collate into Batches.

    Subclasses declare `name`, the metadata fields they `provide`, their `default_encoder`,
    and a pydantic `Preprocessing` model validated from the config's `data.preprocessing`.
    """

    name: ClassVar[str]
    provides: ClassVar[frozenset[str]]
    default_encoder: ClassVar[str]
    Preprocessing: ClassVar[type[BaseModel]]

    def __init__(self, preprocessing: BaseModel | Mapping[str, Any] | None = None) -> None:
        if preprocessing is None:
            preprocessing = self.Preprocessing()
        elif not isinstance(preprocessing, BaseModel):
            preprocessing = self.Preprocessing.model_validate(dict(preprocessing))
        self.preprocessing = preprocessing

    @abstractmethod
    def scan(self, path: str | Path) -> list[Record]:
        """List the dataset's records (folder, manifest CSV/JSON, or array file).
        Raises DataError listing every problem when the dataset cannot be listed."""

    @abstractmethod
    def validate(self, path: str | Path) -> list[Problem]:
        """Check every record (readable, geometry, labels, duplicates) and return every
        problem at once. Writes nothing."""

    @abstractmethod
    def prepare(self, records: Sequence[Record], cache_dir: str | Path) -> Any:
        """Run deterministic preprocessing once into `cache_dir` (rebuilt when the
        preprocessing config changes) and return a handle for `dataset`."""

    @abstractmethod
    def dataset(
        self, prepared: Any, indices: Sequence[int], purpose: Purpose, seed: int = 0
    ) -> Dataset:
        """A torch Dataset over `indices` of a prepared dataset whose items collate into a
        Batch with `collate`."""

    def label_map(self, path: str | Path) -> dict[int, str] | None:
        """Names of segmentation labels from a `labels.json` ({"1": "liver", ...}) beside the
        manifest or inside the dataset folder, or None when there is none."""
        import json

        root = Path(path)
        candidate = (root if root.is_dir() else root.parent) / "labels.json"
        if not candidate.is_file():
            return None
        try:
            raw = json.loads(candidate.read_text())
            return {int(k): str(v) for k, v in raw.items()}
        except (ValueError, AttributeError):
            return None

    def collate(self, items: list[Mapping[str, Any]]) -> Batch:
        return collate_items(items)

    @abstractmethod
    def contract(self) -> dict[str, Any]:
        """The preprocessing contract written into checkpoint cards."""
