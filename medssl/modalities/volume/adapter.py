"""The CT/MRI volume adapter registered as "volume": discovery, validation, the preprocessing
cache and datasets, behind the `Modality` protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch.utils.data import Dataset

from medssl.modalities.base import Modality, Problem, Purpose, Record
from medssl.modalities.loaders import LoaderBuilder, LoaderRequest
from medssl.modalities.volume.cache import prepare_volumes
from medssl.modalities.volume.dataset import VolumeDataset
from medssl.modalities.volume.geometry import check_axis_codes
from medssl.modalities.volume.manifest import scan_records
from medssl.modalities.volume.prepared import PreparedVolumes
from medssl.modalities.volume.slices import SliceDataset, axial_slices, partition_slice_loader
from medssl.modalities.volume.validate import validate_dataset
from medssl.platform.batch import ITEMS, PARTITIONS, SUBJECT_PAIRS
from medssl.platform.errors import ConfigError
from medssl.platform.registry import MODALITIES

#: Why a reduction's kept slices cannot feed a 3-D encoder.
ONLY_SLICES_REDUCE = (
    "stages: 'reduce' keeps slices, which only 2-D encoders train on; set "
    "encoder.spatial_dims=2 or remove 'reduce' from stages"
)
#: Batch fields volumes serve only as slices (2-D encoders).
SLICE_FIELDS = frozenset({"partition", "position"})


class VolumePreprocessing(BaseModel):
    """`data.preprocessing` for volumes, applied once before caching (except the crop).

    orientation: axis codes the voxel axes are flipped/permuted to ("RAS", "LPS", ...).
    spacing: target voxel size in mm (x, y, z); None keeps each scan's own spacing.
    intensity: "hu_window" (CT: clip to `hu_window`, scale to [0, 1]), "percentile" (clip to
        the scan's `percentiles`, scale to [0, 1]), "minmax", or "none". 8-bit npz data
        (MedMNIST) are already windowed and are divided by 255 whatever this says.
    patch_size: crop size in voxels for training and embedding; None serves whole volumes.
    foreground_crop_prob: chance that a segmentation crop is centred on a foreground voxel.
    slice_size: (X, Y) axial slices are centre-cropped or padded to, for 2-D encoders.
    partitions: S equal slice-position bins along the slice axis (2-D encoders; the
        partition-aware global contrast of Chaitanya et al. 2020 draws one slice per bin).

    The last four only say how cached volumes are served; changing them keeps the cache.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    orientation: str = "RAS"
    spacing: tuple[float, float, float] | None = None
    intensity: Literal["hu_window", "percentile", "minmax", "none"] = "percentile"
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    percentiles: tuple[float, float] = (0.5, 99.5)
    patch_size: tuple[int, int, int] | None = None
    foreground_crop_prob: float = 0.5
    slice_size: tuple[int, int] | None = None
    partitions: int = Field(4, ge=1)

    @field_validator("orientation")
    @classmethod
    def _orientation(cls, value: str) -> str:
        return check_axis_codes(value)

    @field_validator("spacing")
    @classmethod
    def _spacing(cls, value: tuple[float, float, float] | None) -> Any:
        if value is not None and min(value) <= 0:
            raise ValueError(f"spacing must be positive millimetres; got {value}")
        return value

    @field_validator("patch_size", "slice_size")
    @classmethod
    def _patch(cls, value: tuple[int, ...] | None) -> Any:
        if value is not None and min(value) < 1:
            raise ValueError(f"patch and slice sizes must be positive voxel counts; got {value}")
        return value

    @field_validator("foreground_crop_prob")
    @classmethod
    def _probability(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"foreground_crop_prob must lie in [0, 1]; got {value}")
        return value

    @model_validator(mode="after")
    def _windows(self) -> VolumePreprocessing:
        lo, hi = self.hu_window
        if lo >= hi:
            raise ValueError(f"hu_window needs lower < upper; got {self.hu_window}")
        p_lo, p_hi = self.percentiles
        if not 0.0 <= p_lo < p_hi <= 100.0:
            raise ValueError(f"percentiles need 0 <= lower < upper <= 100; got {self.percentiles}")
        return self


@MODALITIES.register("volume")
class VolumeModality(Modality):
    """CT and MRI volumes from NIfTI, DICOM series, NRRD and MedMNIST-style npz files.

    Example:
        >>> m = VolumeModality({"spacing": (1.5, 1.5, 1.5), "intensity": "hu_window"})
        >>> m.contract()["orientation"]
        'RAS'
    """

    name: ClassVar[str] = "volume"
    provides: ClassVar[frozenset[str]] = frozenset(
        {"subject", "spacing", "label", "mask", "index", "partition", "position"}
    )
    default_encoder: ClassVar[str] = "unet"
    Preprocessing: ClassVar[type[BaseModel]] = VolumePreprocessing
    groupings: ClassVar[frozenset[str]] = frozenset({ITEMS, SUBJECT_PAIRS, PARTITIONS})
    reducible: ClassVar[bool] = True

    preprocessing: VolumePreprocessing

    @property
    def serves_parts(self) -> bool:
        """A 2-D encoder on volumes: every stage but evaluation works on axial slices."""
        return self.encoder_dims == 2

    def provided_fields(self) -> frozenset[str]:
        return self.provides if self.serves_parts else self.provides - SLICE_FIELDS

    def input_size(self) -> tuple[str, tuple[int, ...]] | None:
        """Axial slices of slice_size for a 2-D encoder, else crops of patch_size (if set)."""
        prep = self.preprocessing
        if self.serves_parts and prep.slice_size is not None:
            return "data.preprocessing.slice_size", tuple(prep.slice_size)
        if not self.serves_parts and prep.patch_size is not None:
            return "data.preprocessing.patch_size", tuple(prep.patch_size)
        return None

    def item_sizes(self, prepared: Any) -> list[tuple[str, tuple[int, ...]]] | None:
        """Whole prepared volumes (3-D encoder, no patch_size): each one's spatial shape."""
        if self.serves_parts or self.input_size() is not None:
            return None
        return [(r.image, tuple(prepared.shape(i))[-3:]) for i, r in enumerate(prepared.records)]

    def loaders(self) -> Mapping[str, LoaderBuilder]:
        builders = dict(super().loaders())
        if self.serves_parts:
            builders[PARTITIONS] = _partition_batches
        return builders

    def withheld_hint(self, fields: frozenset[str], grouping: str) -> str | None:
        if not self.serves_parts and (
            (fields and fields <= SLICE_FIELDS) or (not fields and grouping == PARTITIONS)
        ):
            return (
                "volumes provide those only as slices; set encoder.spatial_dims=2 (and "
                "data.preprocessing.slice_size)"
            )
        return None

    def check_run(self, stages: Sequence[str]) -> None:
        """Settings a 2-D encoder on volumes needs, and the stages that need one."""
        if {"reduce", "pretrain"} <= set(stages) and not self.serves_parts:
            raise ConfigError(ONLY_SLICES_REDUCE)
        if not self.serves_parts:
            return
        prep = self.preprocessing
        if prep.slice_size is None:
            raise ConfigError(
                "data.preprocessing.slice_size: a 2-D encoder on volumes trains on axial "
                "slices, which must share a size to be batched; set it, e.g. [128, 128]"
            )
        if prep.orientation[-1:] not in ("S", "I"):
            raise ConfigError(
                f"data.preprocessing.orientation: '{prep.orientation}' does not put the "
                "inferior-superior axis last, so the last axis would not give axial slices; "
                "use RAS or LPS"
            )

    def slices_for_reduction(self, prepared: Any, index: int) -> tuple[Any, int, list[int]]:
        """The axial slices of prepared volume `index` (first channel), inferior to superior."""
        orientation = prepared.meta(index).get("orientation") or "RAS"
        return axial_slices(prepared.image(index)[0], orientation)

    def scan(self, path: str | Path) -> list[Record]:
        return scan_records(path)

    def validate(self, path: str | Path) -> list[Problem]:
        return validate_dataset(path)

    def prepare(self, records: Sequence[Record], cache_dir: str | Path) -> PreparedVolumes:
        return prepare_volumes(records, cache_dir, self.preprocessing)

    def dataset(
        self,
        prepared: Any,
        indices: Sequence[int],
        purpose: Purpose,
        seed: int = 0,
        *,
        slices: bool | None = None,
        kept: Mapping[str, Sequence[int]] | None = None,
    ) -> Dataset:
        """Volumes (3-D encoders), or with `slices` their axial slices (2-D encoders), for
        every purpose but "evaluate", which always serves whole volumes. `slices` defaults to
        `serves_parts`. `kept` (slices only): a dataset-reduction kept-index, Record.image ->
        slice positions to serve."""
        if slices is None:
            slices = self.serves_parts
        if slices and purpose != "evaluate":
            return SliceDataset(
                prepared,
                indices,
                partitions=self.preprocessing.partitions,
                slice_size=self.preprocessing.slice_size,
                kept=kept,
                with_mask=purpose == "segmentation",
            )
        if kept is not None:
            raise ConfigError(ONLY_SLICES_REDUCE)
        return VolumeDataset(
            prepared,
            indices,
            purpose,
            seed=seed,
            patch_size=self.preprocessing.patch_size,
            foreground_crop_prob=self.preprocessing.foreground_crop_prob,
        )

    def contract(self) -> dict[str, Any]:
        contract = self.preprocessing.model_dump(mode="json")
        contract["channels"] = ["image"]
        return contract


def _partition_batches(
    modality: Modality,
    prepared: Any,
    records: Sequence[Record],
    indices: Sequence[int],
    request: LoaderRequest,
) -> Any:
    """The `partitions` grouping: each global batch holds m volumes x S partitions slices,
    one slice of each partition of each volume (Chaitanya et al. 2020)."""
    prep = modality.preprocessing
    parts = prep.partitions  # type: ignore[attr-defined]
    if request.batch_size % (parts * request.world):
        raise ConfigError(
            f"pretrain.batch_size {request.batch_size}: a batch holds volumes x partitions "
            f"slices, so it must be a multiple of data.preprocessing.partitions ({parts}) times "
            f"the processes ({request.world})"
        )
    volumes = request.batch_size // parts // request.world
    try:
        return partition_slice_loader(
            prepared,
            indices,
            volumes_per_batch=volumes,
            partitions=parts,
            seed=request.seed,
            slice_size=prep.slice_size,  # type: ignore[attr-defined]
            kept=request.kept,
            num_workers=request.num_workers,
            num_replicas=request.world,
            rank=request.rank,
        )
    except ValueError as exc:  # more volumes per batch than the training split serves
        raise ConfigError(
            f"pretrain.batch_size {request.batch_size}: a batch holds {volumes} volume(s) x "
            f"data.preprocessing.partitions ({parts}) slices, more than the training split "
            f"serves ({exc})"
        ) from None
