"""DICOM to `Volume`: series folders, single files and multi-frame files, ordered and
placed by their geometry tags, with every identifying tag left behind.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.volume.volume import Volume
from medssl.platform.errors import DataError, error_summary

#: DICOM patient coordinates are LPS; this flips them to RAS.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_GAP_FACTOR = 1.5  # a step this many times the median step means slices are missing
_UNEVEN_TOLERANCE = 0.01  # relative spread of the steps tolerated before spacing is "uneven"
_HEADER_TAGS = [
    "SeriesInstanceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "InstanceNumber",
    "Modality",
    "RescaleSlope",
    "RescaleIntercept",
]


def has_dicom_preamble(path: str | Path) -> bool:
    """True when the file carries the 'DICM' marker at byte 128 (Part 10 files)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dicom_files(folder: str | Path) -> list[Path]:
    """The DICOM files directly inside a folder (Part 10 marker or a .dcm-like suffix)."""
    folder = Path(folder)
    files = []
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            if f.suffix.lower() in (".dcm", ".dicom", ".ima") or has_dicom_preamble(f):
                files.append(f)
    return files


def read_dicom_file(path: str | Path) -> Volume:
    """One DICOM file: a single slice (Z = 1) or a multi-frame volume."""
    ds = _dcmread(path, headers_only=False)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return _read_multiframe(ds, path)
    array = _slice_values(ds, path)[..., None]
    iop = _orientation(ds)
    step = _float(ds, "SpacingBetweenSlices") or _float(ds, "SliceThickness") or 1.0
    problems: list[str] = []
    if iop is None or ds.get("ImagePositionPatient") is None:
        problems.append("no ImagePositionPatient/ImageOrientationPatient; geometry assumed")
    affine = _affine(ds, iop, _position(ds), step * _normal(iop))
    return Volume(array, LPS_TO_RAS @ affine, _meta(ds, path, 1, problems))


def read_dicom_series(folder: str | Path) -> Volume:
    """A folder of DICOM slices: the largest series, ordered along the slice normal."""
    files = dicom_files(folder)
    if not files:
        raise DataError(f"{folder} holds no DICOM files; point at a folder of .dcm slices")
    headers: list[tuple[Path, Any]] = []
    problems: list[str] = []
    for f in files:
        try:
            headers.append((f, _dcmread(f, headers_only=True)))
        except DataError as err:
            problems.append(str(err))
    if not headers:
        raise DataError(f"{folder} holds no readable DICOM file ({problems[0]})")
    groups: dict[tuple[Any, ...], list[tuple[Path, Any]]] = defaultdict(list)
    for f, ds in headers:
        groups[_series_key(ds)].append((f, ds))
    chosen = max(groups.values(), key=len)
    others = [g for g in groups.values() if g is not chosen]
    if others:
        n_other = sum(len(g) for g in others)
        problems.append(
            f"{len(others) + 1} series in one folder; read the largest ({len(chosen)} files) and "
            f"ignored {n_other} file(s) of the others; put each series in its own folder"
        )
    if len(chosen) == 1:
        volume = read_dicom_file(chosen[0][0])
        volume.meta["problems"] = problems + volume.meta.get("problems", [])
        volume.meta["source"] = str(folder)
        return volume
    return _stack_series(chosen, folder, problems)


def _stack_series(
    slices: list[tuple[Path, Any]], folder: str | Path, problems: list[str]
) -> Volume:
    first = slices[0][1]
    iop = _orientation(first)
    normal = _normal(iop)
    positions = [_position(ds) for _, ds in slices]
    if iop is None or any(p is None for p in positions):
        problems.append(
            "slices lack ImagePositionPatient/ImageOrientationPatient; "
            "ordered by InstanceNumber with an assumed geometry"
        )
        order = sorted(
            range(len(slices)), key=lambda i: int(slices[i][1].get("InstanceNumber") or 0)
        )
        step = _float(first, "SpacingBetweenSlices") or _float(first, "SliceThickness") or 1.0
        step_vector, origin = step * normal, np.zeros(3)
        distances = np.arange(len(slices), dtype=np.float64) * step
    else:
        pos = np.asarray(positions, dtype=np.float64)
        along = pos @ normal
        order = list(np.argsort(along, kind="stable"))
        distances = along[order]
        steps = np.diff(distances)
        problems += spacing_problems(steps)
        # The median step vector keeps gantry tilt (a sheared grid) and ignores one gap.
        step_vector = np.median(np.diff(pos[order], axis=0), axis=0)
        origin = pos[order[0]]
    planes = []
    for i in order:
        path = slices[i][0]
        planes.append(_slice_values(_dcmread(path, headers_only=False), path))
    shapes = {p.shape for p in planes}
    if len(shapes) > 1:
        raise DataError(f"{folder} mixes slice sizes {sorted(shapes)}; keep one series per folder")
    array = np.stack(planes, axis=-1)
    affine = LPS_TO_RAS @ _affine(first, iop, origin, step_vector)
    meta = _meta(first, folder, len(planes), problems)
    meta["slice_positions"] = [round(float(d), 4) for d in distances]
    return Volume(array, affine, meta)


def spacing_problems(steps: np.ndarray) -> list[str]:
    """Missing slices (a step > 1.5x the median) and uneven spacing (> 1 % spread)."""
    if steps.size == 0:
        return []
    problems = []
    if np.any(np.abs(steps) < 1e-6):
        problems.append(f"{int(np.sum(np.abs(steps) < 1e-6))} duplicate slice position(s)")
    median = float(np.median(steps))
    if median <= 1e-6:
        return problems
    gaps = np.flatnonzero(steps > _GAP_FACTOR * median)
    for g in gaps:
        missing = int(round(steps[g] / median)) - 1
        problems.append(
            f"missing slice(s): a gap of {steps[g]:.3g} mm after slice {g} where the median step "
            f"is {median:.3g} mm (about {max(missing, 1)} slice(s) absent)"
        )
    regular = np.delete(steps, gaps)
    regular = regular[np.abs(regular) >= 1e-6]
    if regular.size and (regular.max() - regular.min()) > _UNEVEN_TOLERANCE * median:
        problems.append(
            f"uneven slice spacing: steps range from {regular.min():.4g} to {regular.max():.4g} mm"
        )
    return problems


def _read_multiframe(ds: Any, path: str | Path) -> Volume:
    """Enhanced (multi-frame) DICOM: geometry from the functional groups when present."""
    try:
        frames = np.asarray(ds.pixel_array, dtype=np.float32)
    except Exception as err:  # noqa: BLE001 - decoder errors come in many classes
        raise DataError(f"{path}: its pixel data cannot be decoded ({error_summary(err)})") from err
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    slope, intercept = _rescale(ds, shared)
    values = []
    for k in range(frames.shape[0]):
        group = per_frame[k] if k < len(per_frame) else None
        s, b = _rescale(group, None) if _has_rescale(group) else (slope, intercept)
        values.append(frames[k].T * s + b)
    array = np.stack(values, axis=-1).astype(np.float32)
    plane = _first_item(shared, "PlaneOrientationSequence")
    iop = _orientation(plane) if plane is not None else _orientation(ds)
    measures = _first_item(shared, "PixelMeasuresSequence")
    geo = measures if measures is not None else ds
    positions = []
    for group in per_frame:
        pos_item = _first_item(group, "PlanePositionSequence")
        positions.append(_position(pos_item) if pos_item is not None else None)
    problems: list[str] = []
    normal = _normal(iop)
    step_mm = _float(geo, "SpacingBetweenSlices") or _float(ds, "SpacingBetweenSlices")
    step_mm = step_mm or _float(geo, "SliceThickness") or 1.0
    if iop is None or not positions or any(p is None for p in positions):
        problems.append("no per-frame position/orientation tags; identity orientation assumed")
        origin, step_vector = np.zeros(3), step_mm * normal
    else:
        pos = np.asarray(positions, dtype=np.float64)
        along = pos @ normal
        order = np.argsort(along, kind="stable")
        array, pos = array[..., order], pos[order]
        problems += spacing_problems(np.diff(along[order]))
        step_vector = np.median(np.diff(pos, axis=0), axis=0) if len(pos) > 1 else step_mm * normal
        origin = pos[0]
    affine = LPS_TO_RAS @ _affine(geo, iop, origin, step_vector)
    return Volume(array, affine, _meta(ds, path, array.shape[-1], problems))


def _dcmread(path: str | Path, headers_only: bool) -> Any:
    import pydicom

    try:
        if headers_only:
            return pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        return pydicom.dcmread(str(path))
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path} cannot be read as DICOM ({error_summary(err)})") from err


def _slice_values(ds: Any, path: str | Path) -> np.ndarray:
    """One slice as (columns, rows) float32 after RescaleSlope/Intercept."""
    if "PixelData" not in ds:
        raise DataError(f"{path} is a DICOM file without pixel data; remove it from the series")
    try:
        pixels = np.asarray(ds.pixel_array, dtype=np.float32)
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path}: its pixel data cannot be decoded ({error_summary(err)})") from err
    if pixels.ndim != 2:
        raise DataError(f"{path} has pixel data of shape {pixels.shape}; expected one grey slice")
    slope, intercept = _rescale(ds, None)
    # pixel_array is (rows, columns); the volume's first axis walks along a row (columns).
    return np.ascontiguousarray(pixels.T * slope + intercept, dtype=np.float32)


def _rescale(ds: Any, shared: Any) -> tuple[float, float]:
    for source in (ds, shared):
        if source is None:
            continue
        item = _first_item(source, "PixelValueTransformationSequence")
        for holder in (item, source):
            if holder is not None and holder.get("RescaleSlope") is not None:
                return float(holder.RescaleSlope), float(holder.get("RescaleIntercept") or 0.0)
    return 1.0, 0.0


def _has_rescale(group: Any) -> bool:
    return group is not None and _first_item(group, "PixelValueTransformationSequence") is not None


def _series_key(ds: Any) -> tuple[Any, ...]:
    iop = _orientation(ds)
    iop_key = tuple(np.round(iop, 3)) if iop is not None else None
    return (str(ds.get("SeriesInstanceUID", "") or ""), ds.get("Rows"), ds.get("Columns"), iop_key)


def _orientation(ds: Any) -> np.ndarray | None:
    value = ds.get("ImageOrientationPatient") if ds is not None else None
    if value is None or len(value) != 6:
        return None
    return np.asarray([float(v) for v in value], dtype=np.float64)


def _position(ds: Any) -> np.ndarray | None:
    value = ds.get("ImagePositionPatient") if ds is not None else None
    if value is None or len(value) != 3:
        return None
    return np.asarray([float(v) for v in value], dtype=np.float64)


def _normal(iop: np.ndarray | None) -> np.ndarray:
    if iop is None:
        return np.array([0.0, 0.0, 1.0])
    normal = np.cross(iop[:3], iop[3:])
    return normal / (np.linalg.norm(normal) or 1.0)


def _affine(
    ds: Any, iop: np.ndarray | None, origin: np.ndarray | None, step_vector: np.ndarray
) -> np.ndarray:
    """Voxel (column, row, slice) -> LPS. PixelSpacing is (between rows, between columns)."""
    if iop is None:
        iop = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    spacing = ds.get("PixelSpacing") if ds is not None else None
    row_mm, col_mm = (float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0)
    affine = np.eye(4)
    affine[:3, 0] = iop[:3] * col_mm
    affine[:3, 1] = iop[3:] * row_mm
    affine[:3, 2] = step_vector
    affine[:3, 3] = origin if origin is not None else np.zeros(3)
    return affine


def _meta(ds: Any, path: str | Path, n_slices: int, problems: list[str]) -> dict[str, Any]:
    """Only what describes the pixels; nothing that names or dates a patient or a study."""
    slope, intercept = _rescale(ds, _first_item(ds, "SharedFunctionalGroupsSequence"))
    return {
        "format": "dicom",
        "source": str(path),
        "modality": str(ds.get("Modality", "") or ""),
        "n_slices": int(n_slices),
        "rescale_slope": slope,
        "rescale_intercept": intercept,
        "problems": list(problems),
    }


def _first_item(ds: Any, keyword: str) -> Any:
    seq = ds.get(keyword) if ds is not None else None
    return seq[0] if seq else None


def _float(ds: Any, keyword: str) -> float | None:
    value = ds.get(keyword) if ds is not None else None
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
