"""Fixtures for the image adapter tests: writers of small synthetic radiographs (PNG, JPEG,
DICOM with a patient identity in its header) and where the real radiographs live."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PATIENT_NAME = "Roentgen^Bertha"
PATIENT_ID = "PID-77310-QX"


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    voi_lut: tuple[int, np.ndarray] | None = None,
    spacing: tuple[float, float] | None = (0.2, 0.3),
    bits_stored: int = 12,
    signed: bool = False,
    patient: tuple[str, str] = (PATIENT_NAME, PATIENT_ID),
) -> Path:
    """Write `stored` (rows, cols) or (frames, rows, cols) as a DX DICOM file.

    window: (center, width); voi_lut: (first mapped stored value, LUT entries (uint16)).
    The patient's name and id are written into the header, to be left behind by readers.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "DX"
    ds.PatientName, ds.PatientID = patient
    ds.PatientBirthDate = "19450704"
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if spacing is not None:
        ds.PixelSpacing = [f"{spacing[0]:g}", f"{spacing[1]:g}"]
    if slope is not None:
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{0.0 if intercept is None else intercept:g}"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
    if voi_lut is not None:
        first, entries = voi_lut
        item = pydicom.Dataset()
        item.LUTDescriptor = [len(entries), first, 16]
        item.add_new((0x0028, 0x3006), "US", [int(v) for v in entries])  # LUTData
        ds.VOILUTSequence = Sequence([item])
    ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_png(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    """Write `pixels` with Pillow (uint8 (H, W) -> L, uint16 -> I;16, (H, W, 3/4) -> RGB/A)."""
    from PIL import Image

    if pixels.dtype == np.uint16:
        image = Image.fromarray(pixels)
        if image.mode != "I;16":
            image = image.convert("I;16")
    else:
        image = Image.fromarray(pixels, mode) if mode else Image.fromarray(pixels)
    image.save(path)
    return path


@pytest.fixture
def dicom_writer() -> Callable[..., Path]:
    """`write_dicom(path, stored, ...)`, see its docstring."""
    return write_dicom


@pytest.fixture
def png_writer() -> Callable[..., Path]:
    return write_png


@pytest.fixture
def patient_identity() -> tuple[str, str]:
    """The (PatientName, PatientID) that `write_dicom` writes by default."""
    return PATIENT_NAME, PATIENT_ID


def ramp(shape: tuple[int, int], top: float = 255.0) -> np.ndarray:
    """A smooth, non-symmetric test picture: values rise along rows and columns."""
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return (top * (2 * rows + cols) / max(1, 2 * (shape[0] - 1) + shape[1] - 1)).astype(np.float64)


@pytest.fixture
def ramp_image() -> Callable[..., np.ndarray]:
    return ramp


@pytest.fixture
def cxr_data(shared_data: Path) -> Path:
    """The real radiograph folder (NIH PNGs, a SIIM DICOM), or a skip."""
    folder = shared_data / "image2d" / "cxr"
    if not folder.is_dir():
        pytest.skip(f"radiographs not found at {folder}; set MEDSSL_TEST_DATA to the data folder")
    return folder


@pytest.fixture
def pneumonia_npz(shared_data: Path) -> Path:
    path = shared_data / "image2d" / "medmnist" / "pneumoniamnist_trainsplit.npz"
    if not path.is_file():
        pytest.skip(f"PneumoniaMNIST not found at {path}; set MEDSSL_TEST_DATA to the data folder")
    return path


def pydicom_test_file(name: str) -> Path:
    """A file shipped inside pydicom's own test data (looked up on disk only: a missing
    one is never downloaded), or a skip."""
    import pydicom.data

    root = Path(pydicom.data.__file__).parent / "test_files"
    found = sorted(root.rglob(name))
    if not found:
        pytest.skip(f"pydicom ships no test file named {name} here")
    return found[0]


def subset_npz(source: Path, target: Path, n: int, **extra: Any) -> Path:
    """The first `n` images and labels of a MedMNIST npz's train split, as a new npz."""
    with np.load(source) as z:
        np.savez(
            target, train_images=z["train_images"][:n], train_labels=z["train_labels"][:n], **extra
        )
    return target
