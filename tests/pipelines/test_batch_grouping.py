"""The batch-building contract end to end: a method declares a grouping and fields nobody had
before, an adapter that can build them plugs in, and a run pretrains with them, all without a
line of medssl/pipelines changing; other adapters refuse the method before any data is read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict
from torch.utils.data import DataLoader, Dataset, Sampler

from medssl.modalities.base import Modality, Problem, Purpose, Record
from medssl.modalities.loaders import LoaderBuilder, LoaderRequest
from medssl.pipelines.runner import run_config
from medssl.platform.batch import (
    ITEMS,
    Batch,
    BatchSpec,
    batch_fields,
    groupings,
    register_field,
    register_grouping,
)
from medssl.platform.config import load_config
from medssl.platform.errors import CompatibilityError, ConfigError
from medssl.platform.methods.base import Method
from medssl.platform.registry import METHODS, MODALITIES

TRIPLETS = register_grouping("toy_triplets", "rows 3k..3k+2 are three items of one subject")
VISIT = register_field("toy_visit", "visit number of the item within its subject (int64)")
SEEN: list[Batch] = []


class TripletSampler(Sampler[list[int]]):
    """Batches of `batch_size` / 3 subjects, the three items of each subject side by side."""

    def __init__(self, subjects: Sequence[str], batch_size: int, seed: int) -> None:
        by_subject: dict[str, list[int]] = {}
        for position, subject in enumerate(subjects):
            by_subject.setdefault(subject, []).append(position)
        self.triplets = [items[:3] for items in by_subject.values() if len(items) >= 3]
        self.per_batch, self.seed = batch_size // 3, seed

    def __len__(self) -> int:
        return len(self.triplets) // self.per_batch

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng(self.seed).permutation(len(self.triplets))
        for b in range(len(self)):
            chosen = order[b * self.per_batch : (b + 1) * self.per_batch]
            yield [i for t in chosen for i in self.triplets[t]]


def triplet_loader(
    modality: Modality,
    prepared: Any,
    records: Sequence[Record],
    indices: Sequence[int],
    request: LoaderRequest,
) -> DataLoader:
    dataset = modality.dataset(prepared, list(indices), "pretrain", seed=request.seed)
    subjects = [records[i].subject_id for i in indices]
    sampler = TripletSampler(subjects, request.batch_size, request.seed)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=modality.collate)


class PointSeries(Dataset):
    def __init__(self, arrays: np.ndarray, indices: Sequence[int]) -> None:
        self.arrays, self.indices = arrays, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i = self.indices[k]
        return {
            "x": torch.from_numpy(self.arrays[i]),
            "index": torch.tensor(i),
            "subject": torch.tensor(i // 3),
            VISIT: torch.tensor(i % 3),
        }


class ToyPreprocessing(BaseModel):
    model_config = ConfigDict(extra="forbid")


@MODALITIES.register("toy_points")
class ToyPoints(Modality):
    """A .npy file of (N, 1, T) series, three consecutive rows per subject."""

    name: ClassVar[str] = "toy_points"
    provides: ClassVar[frozenset[str]] = frozenset({"index", "subject", VISIT})
    default_encoder: ClassVar[str] = "ts2vec"
    Preprocessing: ClassVar[type[BaseModel]] = ToyPreprocessing
    groupings: ClassVar[frozenset[str]] = frozenset({ITEMS, TRIPLETS})

    def scan(self, path: str | Path) -> list[Record]:
        n = np.load(path, mmap_mode="r").shape[0]
        return [Record(subject_id=f"s{i // 3}", image=f"{path}#{i}") for i in range(n)]

    def validate(self, path: str | Path) -> list[Problem]:
        return []

    def prepare(self, records: Sequence[Record], cache_dir: str | Path) -> Any:
        return np.load(records[0].image.split("#")[0]).astype(np.float32)

    def dataset(
        self, prepared: Any, indices: Sequence[int], purpose: Purpose, seed: int = 0
    ) -> Dataset:
        return PointSeries(prepared, indices)

    def loaders(self) -> Mapping[str, LoaderBuilder]:
        return {**super().loaders(), TRIPLETS: triplet_loader}

    def contract(self) -> dict[str, Any]:
        return {"channels": ["value"]}


@METHODS.register("toy_triplet")
class ToyTriplet(Method):
    """Pulls the three visits of a subject together (a stand-in for any new grouping)."""

    name: ClassVar[str] = "toy_triplet"
    requires: ClassVar[frozenset[str]] = frozenset({"index", "subject", VISIT})
    grouping: ClassVar[str] = TRIPLETS

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, encoder: Any, config: Any = None) -> None:
        super().__init__(encoder)
        self.config = self.validate_config(config)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        SEEN.append(batch)
        z = self.encoder.global_features(batch["x"]).reshape(-1, 3, self.encoder.feature_dim)
        loss = (z - z.mean(dim=1, keepdim=True)).pow(2).mean()
        return {"loss": loss}


def _series(path: Path, subjects: int = 8) -> Path:
    rng = np.random.default_rng(0)
    np.save(path, rng.normal(size=(3 * subjects, 1, 32)).astype(np.float32))
    return path


def test_registered_names_are_listed_and_checked() -> None:
    assert VISIT in batch_fields() and TRIPLETS in groupings()
    with pytest.raises(ValueError, match="unknown grouping 'nope'"):
        BatchSpec("nope")
    with pytest.raises(ValueError, match="unknown batch field"):
        BatchSpec(ITEMS, frozenset({"not_a_field"}))
    with pytest.raises(ValueError, match="already registered"):
        register_field(VISIT, "something else")
    assert Batch(x=torch.zeros(2, 1), toy_visit=torch.tensor([0, 1])).fields == {VISIT}
    with pytest.raises(ValueError, match="unknown Batch field"):
        Batch(x=torch.zeros(2, 1), not_a_field=torch.tensor([0, 1]))


def _config(data: Path, tmp: Path, modality: str = "toy_points") -> Any:
    return load_config(
        None,
        [
            f"data.path={data}",
            f"data.modality={modality}",
            f"data.cache_dir={tmp / 'cache'}",
            "data.holdout_fraction=0.25",
            "stages=[pretrain]",
            "encoder.spatial_dims=1",
            "encoder.kwargs={hidden_dim: 8, output_dim: 8, depth: 1}",
            "pretrain.method={name: toy_triplet}",
            "pretrain.batch_size=6",
            "pretrain.max_steps=2",
            "pretrain.warmup_fraction=0.0",
            "trainer.progress_bar=false",
        ],
    )


def test_a_new_grouping_runs_through_the_unchanged_pipeline(tmp_path: Path) -> None:
    SEEN.clear()
    config = _config(_series(tmp_path / "points.npy"), tmp_path)
    run_config(config, tmp_path / "run")
    assert (tmp_path / "run" / "pretrain" / "model.safetensors").is_file()
    assert len(SEEN) == 2
    for batch in SEEN:
        subject, visit = batch["subject"], batch[VISIT]
        assert batch.batch_size == 6
        assert (subject[0::3] == subject[1::3]).all() and (subject[1::3] == subject[2::3]).all()
        assert sorted(visit[:3].tolist()) == [0, 1, 2]


def test_an_adapter_without_the_grouping_refuses_the_method_naming_who_has_it(
    tmp_path: Path,
) -> None:
    from medssl.pipelines.context import check_compatibility

    config = _config(tmp_path / "series.npy", tmp_path, modality="timeseries")
    with pytest.raises(CompatibilityError, match="toy_triplet") as info:
        check_compatibility(config)
    assert "toy_points" in str(info.value) and "pretrain.method.name" in str(info.value)


def test_a_loader_asked_for_a_grouping_it_cannot_build_says_so(tmp_path: Path) -> None:
    modality = MODALITIES.get("timeseries")()
    request = LoaderRequest("toy_triplet", BatchSpec(TRIPLETS), batch_size=6)
    with pytest.raises(ConfigError, match="'toy_triplets'.*cannot build"):
        modality.pretrain_loader(None, [], [], request)
