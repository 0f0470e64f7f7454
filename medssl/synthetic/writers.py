"""Phantom volumes as files a scanner or converter would write: NIfTI-1 (qform = sform, mm)
and a CT DICOM series, both deterministic in their inputs and written atomically.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from medssl.platform.io import atomic_folder, atomic_write
from medssl.synthetic.anatomy import HU_LIMITS

PATIENT_NAME = "PHANTOM^SYNTHETIC"
_RESCALE_INTERCEPT = HU_LIMITS[0]
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
_UID_SALT = "medssl-phantom-v1"


def write_nifti(path: str | Path, image: np.ndarray, affine: np.ndarray) -> Path:
    """Write `image` (its dtype kept: int16 HU, uint8 labels) with a scanner-space affine,
    through a temporary file so that a killed run never leaves a truncated volume."""
    path, image = Path(path), np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be 3-D (X, Y, Z), got shape {image.shape}")
    nifti = nib.Nifti1Image(image, np.asarray(affine, dtype=np.float64))
    nifti.header.set_xyzt_units("mm")
    nifti.set_qform(affine, code=1)
    nifti.set_sform(affine, code=1)
    atomic_write(path, lambda tmp: nib.save(nifti, tmp))
    return path


def _uid(seed: int, *parts: object) -> str:
    return str(generate_uid(entropy_srcs=[_UID_SALT, str(seed), *map(str, parts)]))


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _series_geometry(affine: np.ndarray) -> tuple[list[float], list[float], float]:
    """(ImageOrientationPatient, PixelSpacing, SliceThickness) of a RAS affine whose first two
    voxel axes span each slice."""
    columns = _LPS_FROM_RAS @ np.asarray(affine, dtype=np.float64)[:3, :3]
    sizes = np.linalg.norm(columns, axis=0)
    if np.any(sizes <= 0):
        raise ValueError(f"affine has a zero-length voxel axis: {affine.tolist()}")
    row_dir, col_dir = columns[:, 0] / sizes[0], columns[:, 1] / sizes[1]
    orientation = [*row_dir.tolist(), *col_dir.tolist()]
    # PixelSpacing is (between rows, between columns): rows step along the second voxel axis.
    return orientation, [float(sizes[1]), float(sizes[0])], float(sizes[2])


def _slice_dataset(
    image_hu: np.ndarray, affine: np.ndarray, k: int, uids: dict[str, str], patient_id: str
) -> Dataset:
    orientation, pixel_spacing, thickness = _series_geometry(affine)
    position = _LPS_FROM_RAS @ (affine[:3, :3] @ [0.0, 0.0, k] + affine[:3, 3])
    normal = np.cross(orientation[:3], orientation[3:])
    sop_uid = uids["sop"]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientName, ds.PatientID = PATIENT_NAME, patient_id
    ds.PatientBirthDate, ds.PatientSex, ds.PatientPosition = "", "O", "HFS"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
    ds.Manufacturer, ds.SeriesDescription = "medssl", "synthetic abdominal CT phantom"
    ds.SeriesNumber, ds.AcquisitionNumber, ds.InstanceNumber = 1, 1, k + 1
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in orientation]
    ds.PixelSpacing = [_ds(v) for v in pixel_spacing]
    ds.SliceThickness = _ds(thickness)
    ds.SliceLocation = _ds(float(np.dot(normal, position)))
    ds.PositionReferenceIndicator, ds.KVP = "", "120"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = _RESCALE_INTERCEPT, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    stored = np.clip(image_hu[:, :, k].astype(np.int32) - _RESCALE_INTERCEPT, 0, 4095)
    pixels = np.ascontiguousarray(stored.T.astype(np.uint16))  # (rows = Y, columns = X)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    return ds


def write_dicom_series(
    folder: str | Path,
    image_hu: np.ndarray,
    affine: np.ndarray,
    *,
    series_uid: str | None = None,
    seed: int,
    patient_id: str | None = None,
) -> Path:
    """Write one CT Image Storage file per slice (explicit VR little endian, stored value =
    HU + 1024 in 12 bits, so HU outside [-1024, 3071] is clipped), positioned in LPS from the
    RAS `affine`.

    UIDs derive from `seed` (and `series_uid`), so a rewrite gives identical files. Files are
    named by SOPInstanceUID, not by slice order: a reader has to sort by position. The folder
    is filled beside its final name and renamed into place.
    """
    folder = Path(folder)
    image_hu = np.asarray(image_hu)
    if image_hu.ndim != 3 or np.asarray(affine).shape != (4, 4):
        raise ValueError(
            f"need a 3-D image and a 4x4 affine, got shapes {image_hu.shape} and "
            f"{np.asarray(affine).shape}"
        )
    series = series_uid or _uid(seed, "series")
    uids = {"study": _uid(seed, "study"), "series": series, "frame": _uid(seed, "frame")}
    with atomic_folder(folder) as staging:
        for k in range(image_hu.shape[2]):
            uids["sop"] = _uid(seed, series, "slice", k)
            ds = _slice_dataset(
                image_hu,
                np.asarray(affine, dtype=np.float64),
                k,
                uids,
                patient_id or f"PHANTOM-{seed:04d}",
            )
            ds.save_as(staging / f"{uids['sop']}.dcm", enforce_file_format=True)
        # A rewrite replaces the old series (atomic_folder would keep a folder it finds).
        shutil.rmtree(folder, ignore_errors=True)
    return folder
