"""Fixtures for the volume adapter tests: a writer of small synthetic CT DICOM series."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-83421-XQ"


def write_ct_series(
    folder: Path,
    hu: np.ndarray,
    spacing: tuple[float, float] = (0.8, 0.7),
    positions: list[list[float]] | None = None,
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    slope: float = 1.0,
    intercept: float = -1024.0,
    names: list[str] | None = None,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    patient: tuple[str, str] = (PATIENT_NAME, PATIENT_ID),
) -> list[Path]:
    """Write `hu` (columns, rows, slices) as one CT slice per file; return the files.

    spacing: PixelSpacing (between rows, between columns). positions: ImagePositionPatient
    per slice (default 2.5 mm steps along the slice normal). names: file names per slice.
    patient: (PatientName, PatientID) written into every file.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    n = hu.shape[2]
    iop = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    if positions is None:
        positions = [list(np.array([-20.0, 15.0, 40.0]) + k * 2.5 * normal) for k in range(n)]
    files = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = f"{series_uid}.{k + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = names[k] if names else f"slice_{k:03d}.dcm"
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = series_uid + ".0"
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID = patient
        ds.PatientBirthDate = "19700101"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.PixelSpacing = [f"{spacing[0]:g}", f"{spacing[1]:g}"]
        ds.SliceThickness = "2.5"
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        stored = np.round((hu[:, :, k].T - intercept) / slope).astype(np.int16)
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.PixelData = stored.tobytes()
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


@pytest.fixture
def ct_series_writer() -> Callable[..., list[Path]]:
    """`write_ct_series(folder, hu, ...)`, see its docstring."""
    return write_ct_series


def random_hu(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Integer HU values in [-1024, 2000), distinct per voxel position."""
    return np.random.default_rng(seed).integers(-1024, 2000, size=shape).astype(np.float32)


@pytest.fixture
def hu_volume() -> Callable[..., np.ndarray]:
    return random_hu


@pytest.fixture
def patient_identity() -> tuple[str, str]:
    """The (PatientName, PatientID) that `write_ct_series` writes by default."""
    return PATIENT_NAME, PATIENT_ID
