"""The 2-D radiograph adapter registered as "image": discovery, validation, the preprocessing
cache and datasets, behind the `Modality` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from torch.utils.data import Dataset

from medssl.modalities.base import Modality, Problem, Purpose, Record
from medssl.modalities.image.cache import prepare_images
from medssl.modalities.image.dataset import NO_MASKS, ImageDataset
from medssl.modalities.image.manifest import scan_records
from medssl.modalities.image.paired import (
    EcgSettings,
    TextSettings,
    fit_paired,
    paired_problems,
)
from medssl.modalities.image.prepared import PreparedImages
from medssl.modalities.image.validate import validate_dataset
from medssl.modalities.manifest import listed_records
from medssl.platform.batch import ITEMS, SUBJECT_PAIRS
from medssl.platform.errors import ConfigError
from medssl.platform.local_hf import MODEL_KEY, import_hf, model_folder
from medssl.platform.registry import MODALITIES

#: Batch fields of the paired report and ECG, served only when their settings are on.
PAIRED_TEXT = frozenset({"text", "text_mask"})
PAIRED_ECG = frozenset({"ecg", "ecg_present"})
#: The default side of the square images are fitted into: the input size most chest X-ray
#: networks are trained and published at (ImageNet-style 224 x 224).
DEFAULT_IMAGE_SIZE = 224


class ImagePreprocessing(BaseModel):
    """`data.preprocessing` for radiographs, applied once before caching.

    image_size: the (H, W) every image is fitted into, or one int for a square (default
        224; presets use 32 for 28 x 28 MedMNIST). Each image is resized keeping its aspect
        ratio (bilinear, antialiased when shrinking), then centred and padded with its own
        minimum intensity; the pad and the scale are recorded per image.
    intensity: per-image normalisation, computed on the image as read: "percentile" (clip to
        the image's `percentiles`, scale to [0, 1]; default), "minmax" (min to 0, max to 1),
        "zscore" (zero mean, unit standard deviation) or "none". 8-bit npz images (MedMNIST)
        are already windowed by their publisher and are divided by 255 whatever this says.
    percentiles: lower and upper percentile of the "percentile" mode.
    dicom_voi: apply a DICOM file's VOI LUT, or its Window Center/Width, when it has one
        (after RescaleSlope/Intercept; MONOCHROME1 is always inverted so bright is dense).
    text: report text for image-text methods (`TextSettings`: max_tokens, vocab_size,
        min_frequency, lowercase, or model: a local pretrained language model folder); every
        manifest row then needs a `report_text` or `report` cell. None (default): images only.
    ecg: an ECG segment per row for tri-modal methods (`EcgSettings`: fs, length), from an
        `ecg` column; None (default): no ECG.

    Example:
        >>> ImagePreprocessing(image_size=32).size
        (32, 32)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE
    intensity: Literal["percentile", "minmax", "zscore", "none"] = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    dicom_voi: bool = True
    text: TextSettings | None = None
    ecg: EcgSettings | None = None

    @field_validator("image_size")
    @classmethod
    def _size(cls, value: int | tuple[int, int]) -> int | tuple[int, int]:
        sides = (value, value) if isinstance(value, int) else value
        if min(sides) < 1:
            raise ValueError(f"image_size must be positive pixel counts; got {value}")
        return value

    @model_validator(mode="after")
    def _percentiles(self) -> ImagePreprocessing:
        lower, upper = self.percentiles
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"percentiles need 0 <= lower < upper <= 100; got {self.percentiles}")
        return self

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the prepared images."""
        size = self.image_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@MODALITIES.register("image")
class ImageModality(Modality):
    """2-D radiographs from DICOM, PNG and JPEG files (a folder or a manifest CSV/JSON with
    subject_id, image, label, split), MedMNIST-style npz files (`<file.npz>#<index>`), and
    the axial slices of NIfTI volumes a manifest (or data.path) names (`<volume>#<k>`, every
    slice with the volume's subject).

    Items are `{x (1, H, W) float32, index, subject, spacing[, label]}`; the encoder is 2-D
    (encoder.spatial_dims=2), a ResNet unless encoder.name says otherwise.

    Example:
        >>> m = ImageModality({"image_size": 32, "intensity": "minmax"})
        >>> m.contract()["image_size"], m.contract()["layout"]
        (32, '(1, H, W)')
    """

    name: ClassVar[str] = "image"
    provides: ClassVar[frozenset[str]] = frozenset(
        {"subject", "label", "index", "spacing", "text", "text_mask", "ecg", "ecg_present"}
    )
    default_encoder: ClassVar[str] = "resnet"
    Preprocessing: ClassVar[type[BaseModel]] = ImagePreprocessing
    groupings: ClassVar[frozenset[str]] = frozenset({ITEMS, SUBJECT_PAIRS})

    preprocessing: ImagePreprocessing

    def check_run(self, stages: Sequence[str]) -> None:
        """Radiographs feed 2-D encoders only; 'reduce' (slices of volumes) does not apply; a
        language model folder (text.model) must exist and transformers be installed."""
        super().check_run(stages)
        text = self.preprocessing.text
        if text is not None and text.model is not None:
            model_folder(text.model)
            import_hf("transformers", f"a pretrained language model ({MODEL_KEY})")
        if self.encoder_dims is not None and self.encoder_dims != 2:
            raise ConfigError(
                f"encoder.spatial_dims: radiographs are 2-D images, but the encoder is "
                f"{self.encoder_dims}-D; set encoder.spatial_dims=2"
            )

    def input_size(self) -> tuple[str, tuple[int, ...]] | None:
        return "data.preprocessing.image_size", self.preprocessing.size

    def provided_fields(self) -> frozenset[str]:
        """Report tokens only with `text` set, the ECG only with `ecg` set."""
        withheld = set()
        if self.preprocessing.text is None:
            withheld |= PAIRED_TEXT
        if self.preprocessing.ecg is None:
            withheld |= PAIRED_ECG
        return self.provides - withheld

    def withheld_hint(self, fields: frozenset[str], grouping: str) -> str | None:
        if fields & PAIRED_TEXT:
            return (
                "set data.preprocessing.text (e.g. text={max_tokens:128}) and give every "
                "manifest row a report_text or report cell"
            )
        if fields & PAIRED_ECG:
            return (
                "set data.preprocessing.ecg (e.g. ecg={fs:100,length:1000}) and give the "
                "manifest an ecg column of <file.npz>#<k> segments"
            )
        return None

    def scan(self, path: str | Path) -> list[Record]:
        records = scan_records(path)
        problems = paired_problems(path, records, self.preprocessing.text, self.preprocessing.ecg)
        return listed_records(
            path, records, problems, validate="medssl validate --modality image", items="images"
        )

    def validate(self, path: str | Path) -> list[Problem]:
        problems = validate_dataset(path, apply_voi=self.preprocessing.dicom_voi)
        prep = self.preprocessing
        if problems or (prep.text is None and prep.ecg is None):
            return problems
        return paired_problems(path, scan_records(path), prep.text, prep.ecg)

    def prepare(self, records: Sequence[Record], cache_dir: str | Path) -> PreparedImages:
        return prepare_images(records, cache_dir, self.preprocessing)

    def fit(
        self,
        prepared: Any,
        train: Sequence[int],
        folder: str | Path,
        *,
        fitted: str | Path | None = None,
    ) -> dict[str, Any]:
        """Train the report tokenizer on the training reports (or read the one in `fitted`),
        tokenise every report and read every ECG segment; see `fit_paired`."""
        prep = self.preprocessing
        if prep.text is None and prep.ecg is None:
            return {}
        paired, facts = fit_paired(prepared.records, train, folder, prep.text, prep.ecg, fitted)
        prepared.paired = paired
        return facts

    def dataset(
        self, prepared: Any, indices: Sequence[int], purpose: Purpose, seed: int = 0
    ) -> Dataset:
        """Whole prepared images for "pretrain", "classification", "embed" and "evaluate"
        (`seed` is unused: nothing is drawn at random here). "segmentation" raises
        ConfigError: image masks are not supported yet."""
        if purpose == "segmentation":
            raise ConfigError(NO_MASKS)
        return ImageDataset(prepared, indices, purpose)

    def contract(self) -> dict[str, Any]:
        # The pixels' contract: the report and ECG settings belong to the joint space's card
        # (its tokenizer), so an encoder pretrained with reports serves image-only runs too.
        contract = self.preprocessing.model_dump(mode="json", exclude={"text", "ecg"})
        contract["channels"] = ["grey"]
        contract["layout"] = "(1, H, W)"
        return contract
