"""Synthetic abdominal CT phantoms, written as real NIfTI files and DICOM series, so that
`medssl demo` and the tests have a labelled dataset without downloading anything.

Each phantom is deterministic in its seed. Label map (one label for both kidneys):

=====  ==========  =============================  ==========================
label  structure   HU of the label region         shape
=====  ==========  =============================  ==========================
0      background  air -1000, fat ~-100, soft      body ellipse-cylinder with a
                   tissue 0..55, bowel gas/fluid   subcutaneous fat layer
1      liver       50..70 (per-subject mean)       two jittered ellipsoids, right
2      kidneys     30..40                          two ellipsoids, posterior
3      spleen      40..50                          ellipsoid, posterior left
4      spine       400..1000 (cancellous + shell)  vertebral bodies, arch, process
=====  ==========  =============================  ==========================

The ranges bound the median HU of each label region (`HU_RANGES`). Voxel arrays are (X, Y, Z)
with an affine to RAS millimetres whose voxel axes run to patient Left, Posterior, Superior,
as in a NIfTI converted from an axial DICOM series.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
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
from scipy import ndimage

#: Label value -> structure name, as written to `labels.json`.
LABEL_MAP: dict[int, str] = {0: "background", 1: "liver", 2: "kidneys", 3: "spleen", 4: "spine"}
#: Label value -> (low, high) bound of the median HU of that label's region.
HU_RANGES: dict[int, tuple[float, float]] = {1: (50, 70), 2: (30, 40), 3: (40, 50), 4: (400, 1000)}
PATIENT_NAME = "PHANTOM^SYNTHETIC"
_RESCALE_INTERCEPT = -1024
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
_UID_SALT = "medssl-phantom-v1"


@dataclass(frozen=True)
class _Subject:
    """Everything random about one phantom, drawn once from its seed in a fixed order."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    half_width: float  # body semi-axis along patient left-right, mm
    half_depth: float  # body semi-axis along anterior-posterior, mm
    fat: float  # subcutaneous fat thickness, mm
    angle: float  # rotation about the cranio-caudal axis, radians
    centre: tuple[float, float]  # body centre offset from the volume centre, mm
    z_origin: float  # table position of the volume centre, mm
    hu: dict[str, float]
    noise: float
    organs: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (centre, semi-axes) in body units
    waves: np.ndarray  # (3, 2, 5): per axis, two sinusoids (kx, ky, kz, phase, amplitude)
    bowel: np.ndarray  # (k, 5): u, v, t, radius, HU
    vertebra_period: float
    vertebra_phase: float


_ORGAN_LAYOUT = {  # centre (u right, v anterior, t superior) and semi-axes, in body units
    "liver_right": ((0.40, 0.02, 0.38), (0.40, 0.52, 0.72)),
    "liver_left": ((-0.05, 0.32, 0.45), (0.33, 0.22, 0.42)),
    "spleen": ((-0.55, -0.22, 0.38), (0.19, 0.28, 0.40)),
    "kidney_right": ((0.42, -0.42, -0.38), (0.15, 0.21, 0.45)),
    "kidney_left": ((-0.42, -0.42, -0.32), (0.15, 0.21, 0.45)),
}


def _draw_subject(
    rng: np.random.Generator, shape: Sequence[int] | None, spacing: Sequence[float] | None
) -> _Subject:
    """Draw every random choice in a fixed order; a given shape or spacing replaces the drawn
    one and the body is sized to the resulting field of view."""
    drawn_x = int(rng.integers(76, 97))
    drawn = (drawn_x, int(rng.integers(64, drawn_x - 3)), int(rng.integers(24, 41)))
    pixel, slice_mm = round(float(rng.uniform(0.8, 1.5)), 4), round(float(rng.uniform(2, 3)), 1)
    nx, ny, nz = drawn if shape is None else tuple(int(n) for n in shape)
    sx, sy, sz = (pixel, pixel, slice_mm) if spacing is None else tuple(map(float, spacing))
    half_width = float(rng.uniform(0.36, 0.42)) * nx * sx
    half_depth = min(float(rng.uniform(0.68, 0.8)) * half_width, 0.43 * ny * sy)
    names = (
        "fat",
        "muscle",
        "abdomen",
        "liver",
        "kidneys",
        "spleen",
        "cancellous",
        "cortical",
        "aorta",
    )
    bounds = (
        (-110, -90),
        (40, 55),
        (0, 15),
        (56, 64),
        (34, 37),
        (43, 47),
        (450, 600),
        (850, 1000),
        (35, 45),
    )
    hu = {name: float(rng.uniform(*bound)) for name, bound in zip(names, bounds, strict=True)}
    organs = {}
    for name, (centre, axes) in _ORGAN_LAYOUT.items():
        c = np.asarray(centre) + rng.uniform(-0.04, 0.04, 3)
        organs[name] = (c, np.asarray(axes) * rng.uniform(0.88, 1.12, 3))
    waves = np.concatenate(
        [
            rng.uniform(-3.0, 3.0, (3, 2, 3)),
            rng.uniform(0, 2 * np.pi, (3, 2, 1)),
            rng.uniform(0.02, 0.05, (3, 2, 1)),
        ],
        axis=-1,
    )
    k = int(rng.integers(3, 7))
    bowel = np.column_stack(
        [
            rng.uniform(-0.45, 0.25, k),
            rng.uniform(0.35, 0.65, k),
            rng.uniform(-0.9, 0.9, k),
            rng.uniform(0.07, 0.13, k),
            np.where(rng.random(k) < 0.4, -950.0, 10.0),
        ]
    )
    return _Subject(
        shape=(nx, ny, nz),
        spacing=(sx, sy, sz),
        half_width=half_width,
        half_depth=half_depth,
        fat=float(rng.uniform(0.06, 0.11)) * half_width,
        angle=float(np.deg2rad(rng.uniform(-8, 8))),
        centre=(
            float(rng.uniform(-0.04, 0.04)) * nx * sx,
            float(rng.uniform(-0.04, 0.04)) * ny * sy,
        ),
        z_origin=float(rng.uniform(-350, -100)),
        hu=hu,
        noise=float(rng.uniform(10, 20)),
        organs=organs,
        waves=waves,
        bowel=bowel,
        vertebra_period=float(rng.uniform(0.45, 0.6)),
        vertebra_phase=float(rng.uniform(0, 1)),
    )


def _affine(shape: Sequence[int], spacing: Sequence[float], z_origin: float) -> np.ndarray:
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + [0.0, 0.0, z_origin]
    # float32 is what NIfTI stores; rounding here makes the file round trip exact.
    return affine.astype(np.float32).astype(np.float64)


def _body_frame(s: _Subject, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotated body coordinates in mm (qx to patient right, qy anterior) and t in [-1, 1]."""
    i, j = (np.arange(n, dtype=np.float32) for n in s.shape[:2])
    # World RAS offsets from the volume centre; the body sits near it, shifted by `centre`.
    x = affine[0, 0] * (i - (s.shape[0] - 1) / 2)
    y = affine[1, 1] * (j - (s.shape[1] - 1) / 2)
    px, py = x[:, None] - s.centre[0], y[None, :] - s.centre[1]
    cos, sin = np.cos(s.angle), np.sin(s.angle)
    qx = (cos * px + sin * py).astype(np.float32)[..., None]
    qy = (-sin * px + cos * py).astype(np.float32)[..., None]
    t = np.linspace(-1.0, 1.0, s.shape[2], dtype=np.float32)[None, None, :]
    return qx, qy, t


def _jitter(s: _Subject, u: np.ndarray, v: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """Smooth random displacement of body coordinates, so organs bend a little between
    subjects (a cheap stand-in for elastic deformation)."""
    out = []
    for axis, base in enumerate((u, v, t)):
        shifted = base
        for kx, ky, kz, phase, amp in s.waves[axis]:
            shifted = shifted + np.float32(amp) * np.sin(kx * u + ky * v + kz * t + phase)
        out.append(shifted.astype(np.float32))
    return out


def _ellipsoid(coords: Sequence[np.ndarray], centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return sum(((c - m) / a) ** 2 for c, m, a in zip(coords, centre, axes, strict=True)) <= 1.0


def _paint_spine(
    s: _Subject,
    qx: np.ndarray,
    qy: np.ndarray,
    t: np.ndarray,
    hu: np.ndarray,
    labels: np.ndarray,
    muscle: np.ndarray,
) -> None:
    """Vertebrae (cancellous core, cortical shell, arch, spinous process; label 4) between
    discs, the spinal canal, and paraspinal muscles where no organ lies."""
    a = s.half_width
    body_y = -0.38 * s.half_depth
    canal_y = body_y - 0.2 * a
    r2 = qx**2 + (qy - body_y) ** 2
    c2 = qx**2 + (qy - canal_y) ** 2
    disc = ((t / s.vertebra_period + s.vertebra_phase) % 1.0) < 0.22
    paraspinal = ((np.abs(qx) - 0.16 * a) / (0.1 * a)) ** 2 + ((qy - canal_y) / (0.13 * a)) ** 2
    hu[np.broadcast_to(paraspinal <= 1.0, s.shape) & muscle & (labels == 0)] = s.hu["muscle"]
    vertebra = (r2 <= (0.13 * a) ** 2) & ~disc & muscle
    shell = vertebra & (r2 >= (0.13 * a - 1.2 * s.spacing[0]) ** 2)
    arch = (c2 <= (0.095 * a) ** 2) & (c2 > (0.055 * a) ** 2) & (qy < canal_y + 0.02 * a)
    process = (np.abs(qx) <= 0.03 * a) & (qy < canal_y) & (qy > canal_y - 0.16 * a)
    posterior = (arch | process) & ~disc & muscle
    hu[(r2 <= (0.13 * a) ** 2) & disc & muscle] = 80.0  # intervertebral discs
    hu[np.broadcast_to(c2 <= (0.055 * a) ** 2, s.shape) & muscle] = 10.0  # spinal canal
    hu[vertebra] = s.hu["cancellous"]
    hu[shell | posterior] = s.hu["cortical"]
    labels[vertebra | posterior] = 4


def _paint(s: _Subject, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    qx, qy, t = _body_frame(s, affine)
    a = s.half_width * (1.0 + 0.04 * t)  # slight taper towards the pelvis
    b = s.half_depth * (1.0 + 0.03 * t)
    body = (qx / a) ** 2 + (qy / b) ** 2 <= 1.0
    muscle = (qx / (a - s.fat)) ** 2 + (qy / (b - s.fat)) ** 2 <= 1.0
    wall = 0.05 * s.half_width
    cavity = (qx / (a - s.fat - wall)) ** 2 + (qy / (b - s.fat - wall)) ** 2 <= 1.0
    inside = (qx / (a - s.fat - 1.5 * wall)) ** 2 + (qy / (b - s.fat - 1.5 * wall)) ** 2 <= 1.0
    hu = np.full(s.shape, -1000.0, dtype=np.float32)
    labels = np.zeros(s.shape, dtype=np.uint8)
    hu[np.broadcast_to(body, s.shape)] = s.hu["fat"]
    hu[np.broadcast_to(muscle, s.shape)] = s.hu["muscle"]
    hu[np.broadcast_to(cavity, s.shape)] = s.hu["abdomen"]
    u, v = qx / s.half_width, qy / s.half_depth
    coords = _jitter(s, u, v, t)
    for bu, bv, bt, radius, value in s.bowel:
        gut = _ellipsoid(coords, np.array([bu, bv, bt]), np.full(3, radius))
        hu[gut & cavity] = value
    aorta = (qx + 0.1 * s.half_width) ** 2 + (qy + 0.38 * s.half_depth - 0.2 * s.half_width) ** 2
    hu[np.broadcast_to(aorta <= (0.065 * s.half_width) ** 2, s.shape)] = s.hu["aorta"]
    # Painted in this order so that small organs stay whole where large ones reach them.
    for name, label, value in (
        ("liver_right", 1, "liver"),
        ("liver_left", 1, "liver"),
        ("spleen", 3, "spleen"),
        ("kidney_right", 2, "kidneys"),
        ("kidney_left", 2, "kidneys"),
    ):
        organ = _ellipsoid(coords, *s.organs[name]) & inside
        hu[organ] = s.hu[value]
        labels[organ] = label
    _paint_spine(s, qx, qy, t, hu, labels, np.broadcast_to(muscle, s.shape))
    return hu, labels


def generate_phantom(
    seed: int,
    *,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic abdominal CT: (image in HU int16 (X, Y, Z), labels uint8, 4x4 RAS affine).

    Body size, organ sizes and positions (with smooth jitter), rotation about the
    cranio-caudal axis (±8°), pixel spacing (0.8-1.5 mm), slice spacing (2-3 mm), array shape
    (76-96 x 64-92 x 24-40), tissue HU and noise (σ 10-20 HU, slightly correlated) all vary
    with `seed`; `shape` and `spacing` override the drawn ones without changing the rest.

    Example:
        >>> image, labels, affine = generate_phantom(3)
        >>> image.dtype, labels.max(), affine.shape
        (dtype('int16'), np.uint8(4), (4, 4))
    """
    if shape is not None and (len(shape) != 3 or any(int(n) != n or n < 8 for n in shape)):
        raise ValueError(f"shape must be three integers >= 8, got {shape!r}")
    if spacing is not None and (
        len(spacing) != 3 or not all(np.isfinite(d) and d > 0 for d in spacing)
    ):
        raise ValueError(f"spacing must be three positive millimetre sizes, got {spacing!r}")
    rng = np.random.default_rng(seed)
    subject = _draw_subject(rng, shape, spacing)
    affine = _affine(subject.shape, subject.spacing, subject.z_origin)
    hu, labels = _paint(subject, affine)
    # Partial volume at edges, then noise with a short correlation length as CT noise has.
    hu = ndimage.gaussian_filter(hu, sigma=(0.45, 0.45, 0.3))
    noise = ndimage.gaussian_filter(rng.standard_normal(subject.shape, dtype=np.float32), 0.6)
    hu += noise * np.float32(subject.noise / max(float(noise.std()), 1e-6))
    image = np.clip(np.rint(hu), _RESCALE_INTERCEPT, 3071).astype(np.int16)
    return image, labels, affine


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{''.join(path.suffixes[-2:])}")
    nib.save(nifti, tmp)
    os.replace(tmp, path)
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
    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
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
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return folder


def _subject_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


#: HU -> T1-weighted signal knots for `mr_from_ct`: air dark, fat bright, fluid darker than
#: soft tissue, liver brighter than spleen and kidneys, marrow bright, cortical bone dark.
_T1_KNOTS = (
    (-1000.0, -400.0, -150.0, -50.0, 0.0, 30.0, 45.0, 60.0, 150.0, 400.0, 1000.0),
    (0.02, 0.10, 0.95, 0.90, 0.35, 0.45, 0.50, 0.62, 0.50, 0.65, 0.20),
)


def mr_from_ct(hu: np.ndarray, seed: int) -> np.ndarray:
    """A T1-weighted-looking MR image (int16 arbitrary units, about 0..1000) from a phantom's
    HU image: a tissue contrast that is not monotonic in HU (`_T1_KNOTS`), a smooth
    multiplicative bias field (coil inhomogeneity, about ±20 %) and Rician noise."""
    rng = np.random.default_rng([seed, 1])
    signal = np.interp(hu.astype(np.float32), *_T1_KNOTS).astype(np.float32)
    field = ndimage.gaussian_filter(
        rng.standard_normal(hu.shape).astype(np.float32), sigma=[s / 3 for s in hu.shape]
    )
    field /= max(float(np.abs(field).max()), 1e-6)
    signal *= np.exp(0.2 * field)
    sigma = rng.uniform(0.015, 0.035)
    real = signal + rng.normal(0.0, sigma, hu.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, hu.shape).astype(np.float32)
    return np.round(1000.0 * np.sqrt(real**2 + imaginary**2)).astype(np.int16)


def write_cohort(
    folder: str | Path,
    n_subjects: int = 8,
    *,
    seed: int = 0,
    dicom_subjects: int = 1,
    modality: str = "ct",
) -> Path:
    """Write a labelled phantom cohort and return its manifest (`manifest.csv`). With
    `modality="mr"` the images are T1-weighted-looking MR (`mr_from_ct`), same anatomy.

    Layout: `imagesTr/<id>.nii.gz` (int16 HU), `labelsTr/<id>.nii.gz` (uint8, `LABEL_MAP`),
    `dicom/<id>/` (a DICOM series instead of the NIfTI image, for the first `dicom_subjects`),
    `labels.json`, and `manifest.csv` with columns subject_id,image,label (label = mask path,
    relative to the manifest). The manifest is removed first and written last, so it never
    lists a file that is missing.

    Example:
        >>> manifest = write_cohort(tmp_path / "phantoms", n_subjects=2)  # doctest: +SKIP
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    if not 0 <= dicom_subjects <= n_subjects:
        raise ValueError(f"dicom_subjects must be in [0, {n_subjects}], got {dicom_subjects}")
    if modality not in ("ct", "mr"):
        raise ValueError(f"modality must be 'ct' or 'mr', got {modality!r}")
    if modality == "mr" and dicom_subjects:
        raise ValueError("MR phantoms are written as NIfTI only; set dicom_subjects=0")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.csv"
    manifest.unlink(missing_ok=True)
    rows = []
    for index in range(n_subjects):
        subject_id = f"phantom_{index:03d}"
        subject_seed = _subject_seed(seed, index)
        image, labels, affine = generate_phantom(subject_seed)
        if modality == "mr":
            image = mr_from_ct(image, subject_seed)
        label_ref = f"labelsTr/{subject_id}.nii.gz"
        write_nifti(root / label_ref, labels, affine)
        if index < dicom_subjects:
            image_ref = f"dicom/{subject_id}"
            write_dicom_series(
                root / image_ref,
                image,
                affine,
                seed=subject_seed,
                patient_id=f"PHANTOM-{index + 1:04d}",
            )
        else:
            image_ref = f"imagesTr/{subject_id}.nii.gz"
            write_nifti(root / image_ref, image, affine)
        rows.append({"subject_id": subject_id, "image": image_ref, "label": label_ref})
    _write_atomic(
        root / "labels.json", json.dumps({str(k): v for k, v in LABEL_MAP.items()}, indent=2) + "\n"
    )
    _write_atomic(manifest, _csv_text(rows))
    return manifest


def _csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["subject_id", "image", "label"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
