"""The Modality protocol every adapter implements, and the records and problems it speaks in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel
from torch.utils.data import Dataset

from medssl.platform.batch import ITEMS, SUBJECT_PAIRS, Batch, BatchSpec, collate_items
from medssl.platform.errors import CompatibilityError, ConfigError

if TYPE_CHECKING:
    from medssl.modalities.loaders import LoaderBuilder, LoaderRequest

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

    import numpy as np

    from medssl.platform.io import atomic_folder

    text = json.dumps(dict(meta), indent=1)  # fails before anything touches the disk
    with atomic_folder(root) as staging:
        for name, array in arrays.items():
            if array is not None:
                np.save(staging / f"{name}.npy", array, allow_pickle=False)
        (staging / "meta.json").write_text(text)


def supporting_modalities(spec: BatchSpec) -> list[str]:
    """Registered adapters that can serve `spec` under some setting of theirs."""
    from medssl.platform.registry import MODALITIES

    return [
        name
        for name in MODALITIES.names()
        if spec.fields <= MODALITIES.get(name).provides
        and spec.grouping in MODALITIES.get(name).groupings
    ]


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
    #: Batch groupings the adapter's loaders can build under some setting (`loaders` says
    #: which they build under this one).
    groupings: ClassVar[frozenset[str]] = frozenset({ITEMS, SUBJECT_PAIRS})
    #: Whether dataset reduction can select parts (slices) of this adapter's records.
    reducible: ClassVar[bool] = False

    def __init__(
        self,
        preprocessing: BaseModel | Mapping[str, Any] | None = None,
        *,
        encoder_dims: int | None = None,
    ) -> None:
        if preprocessing is None:
            preprocessing = self.Preprocessing()
        elif not isinstance(preprocessing, BaseModel):
            preprocessing = self.Preprocessing.model_validate(dict(preprocessing))
        self.preprocessing = preprocessing
        #: Spatial dimensions of the encoder the items feed (None: not known, e.g. validate).
        self.encoder_dims = encoder_dims

    # ------------------------------------------------------------ what the adapter serves

    @property
    def serves_parts(self) -> bool:
        """Whether items are parts of records (axial slices of volumes for a 2-D encoder):
        per-record scores then pool the items of each record."""
        return False

    def provided_fields(self) -> frozenset[str]:
        """The batch fields this adapter serves with its settings and encoder."""
        return self.provides

    def input_size(self) -> tuple[str, tuple[int, ...]] | None:
        """(config key, spatial sides) of the items the encoder trains on when the settings
        fix them (a crop, slice or image size); None when items keep their records' sizes."""
        return None

    def item_sizes(self, prepared: Any) -> list[tuple[str, tuple[int, ...]]] | None:
        """(source, spatial sides) of every prepared item the encoder is fed whole, when
        `input_size` is None and items keep their records' sizes; None when the settings fix
        the size or the adapter's items have no spatial sides to check."""
        return None

    def loaders(self) -> Mapping[str, LoaderBuilder]:
        """grouping -> builder of the pretraining loaders this adapter can build now."""
        from medssl.modalities.loaders import shuffled_items, subject_pairs

        return {ITEMS: shuffled_items, SUBJECT_PAIRS: subject_pairs}

    def withheld_hint(self, fields: frozenset[str], grouping: str) -> str | None:
        """How to get `fields` or `grouping` that a setting of this adapter withholds, or
        None when the adapter cannot serve them at all."""
        return None

    def check_run(self, stages: Sequence[str]) -> None:
        """Refuse, before any data is read, settings this adapter cannot run `stages` with
        (ConfigError naming the key). Adapters with such constraints override it."""
        if "reduce" in stages and not self.reducible:
            raise self._no_slices()

    def check_batches(self, method: str, spec: BatchSpec, key: str) -> None:
        """Refuse a method whose batches this adapter cannot serve: CompatibilityError naming
        the method (set at config `key`), what is missing, and the adapters that serve it."""
        missing = sorted(spec.fields - self.provided_fields())
        grouping_ok = spec.grouping in self.loaders()
        if not missing and grouping_ok:
            return
        hint = self.withheld_hint(frozenset(missing), spec.grouping)
        if missing:
            what = f"batch field(s) {missing}"
        else:
            what = f"batches grouped as '{spec.grouping}'"
        if hint:
            raise CompatibilityError(f"{key}.name: method '{method}' needs {what}; {hint}")
        raise CompatibilityError(
            f"{key}.name: method '{method}' needs {what} that modality '{self.name}' does not "
            f"provide; modalities that do: {', '.join(supporting_modalities(spec)) or 'none yet'}"
        )

    def pretrain_loader(
        self,
        prepared: Any,
        records: Sequence[Record],
        indices: Sequence[int],
        request: LoaderRequest,
    ) -> Any:
        """Pretraining batches over `indices` in the grouping the method asked for."""
        builders = self.loaders()
        if request.spec.grouping not in builders:
            raise ConfigError(
                f"pretrain.method.name: method '{request.method}' needs batches grouped as "
                f"'{request.spec.grouping}', which modality '{self.name}' cannot build "
                f"(it builds {sorted(builders)})"
            )
        return builders[request.spec.grouping](self, prepared, records, indices, request)

    def slices_for_reduction(self, prepared: Any, index: int) -> tuple[Any, int, list[int]]:
        """(slices (n, rows, cols), axis, positions) of record `index` in physical order, for
        dataset reduction; adapters with `reducible` implement it."""
        raise self._no_slices()

    def _no_slices(self) -> ConfigError:
        return ConfigError(
            f"stages: 'reduce' selects slices of volumes, and modality '{self.name}' has none; "
            "remove 'reduce' from stages"
        )

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

    def fit(
        self,
        prepared: Any,
        train: Sequence[int],
        folder: str | Path,
        *,
        fitted: str | Path | None = None,
    ) -> dict[str, Any]:
        """Preprocessing learnt from the training items only (a report tokenizer), after the
        subject-level split: saved into `folder` and attached to `prepared`, or, when
        `fitted` names a folder an earlier fit saved into (a pretrained model's), read from
        there so the data is encoded as the model learned it. Returns the facts methods size
        their heads by (vocabulary size, ECG leads, ...); adapters with nothing to learn
        return {}."""
        return {}

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
