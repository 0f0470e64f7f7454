"""Tests of the synthetic CT phantoms: determinism, anatomy and HU, and the NIfTI / DICOM /
manifest files they are written as, read back with nibabel and pydicom directly."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from medssl.synthetic import (
    HU_RANGES,
    LABEL_MAP,
    PATIENT_NAME,
    cohort,
    generate_phantom,
    mr_from_ct,
    subject_seed,
    write_cohort,
    write_dicom_series,
    write_nifti,
)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask).mean(axis=0)
    return affine[:3, :3] @ ijk + affine[:3, 3]


def _read_series(folder: Path) -> tuple[np.ndarray, np.ndarray, list[pydicom.Dataset]]:
    """Slow, explicit reader: sort by position along the slice normal, rescale, build the
    RAS affine from the LPS header fields."""
    slices = [pydicom.dcmread(p) for p in folder.iterdir()]
    iop = np.array([float(v) for v in slices[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    slices.sort(key=lambda ds: float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))
    volume = np.zeros((slices[0].Columns, slices[0].Rows, len(slices)), dtype=np.float64)
    for k, ds in enumerate(slices):
        stored = ds.pixel_array.astype(np.float64)
        volume[:, :, k] = (stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).T
    first = np.array([float(v) for v in slices[0].ImagePositionPatient])
    last = np.array([float(v) for v in slices[-1].ImagePositionPatient])
    row_spacing, col_spacing = (float(v) for v in slices[0].PixelSpacing)
    affine = np.eye(4)
    affine[:3, 0] = LPS_TO_RAS @ iop[:3] * col_spacing
    affine[:3, 1] = LPS_TO_RAS @ iop[3:] * row_spacing
    affine[:3, 2] = LPS_TO_RAS @ (last - first) / (len(slices) - 1)
    affine[:3, 3] = LPS_TO_RAS @ first
    return volume, affine, slices


def test_same_seed_gives_identical_phantoms() -> None:
    first, second = generate_phantom(11), generate_phantom(11)
    for a, b in zip(first, second, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_seeds_vary_shape_spacing_and_content() -> None:
    phantoms_ = [generate_phantom(seed) for seed in range(5)]
    shapes = {p[0].shape for p in phantoms_}
    spacings = {tuple(np.round(np.linalg.norm(p[2][:3, :3], axis=0), 4)) for p in phantoms_}
    assert len(shapes) == 5 and len(spacings) == 5
    for image, labels, affine in phantoms_:
        nx, ny, nz = image.shape
        assert 76 <= nx <= 96 and 64 <= ny <= 92 and 24 <= nz <= 40 and nx != ny
        sx, sy, sz = np.linalg.norm(affine[:3, :3], axis=0)
        assert 0.8 <= sx <= 1.5 and sx == pytest.approx(sy) and 2.0 <= sz <= 3.0
        assert image.dtype == np.int16 and labels.dtype == np.uint8
        assert labels.shape == image.shape and affine.shape == (4, 4)
        # Voxel axes run to patient Left, Posterior, Superior as in DICOM-derived NIfTI.
        assert nib.aff2axcodes(affine) == ("L", "P", "S")


@pytest.mark.parametrize("seed", range(10))
def test_every_organ_present_with_documented_median_hu(seed: int) -> None:
    image, labels, _ = generate_phantom(seed)
    assert set(np.unique(labels).tolist()) == set(LABEL_MAP)
    for label, (low, high) in HU_RANGES.items():
        region = image[labels == label]
        assert region.size > 200, f"{LABEL_MAP[label]} has only {region.size} voxels"
        assert low <= float(np.median(region)) <= high, LABEL_MAP[label]
    assert ndimage.label(labels == 2)[1] == 2  # left and right kidney share label 2
    corners = image[:4, :4, :]
    assert np.median(corners) <= -950  # air outside the body
    body = image[labels == 0]
    fat = np.count_nonzero((body > -130) & (body < -70))
    assert fat > 0.03 * np.count_nonzero(body > -500)  # a subcutaneous fat layer exists


@pytest.mark.parametrize("seed", range(6))
def test_anatomy_sits_on_the_right_sides_in_world_coordinates(seed: int) -> None:
    _, labels, affine = generate_phantom(seed)
    liver, spleen, spine = (_world_centroid(labels == k, affine) for k in (1, 3, 4))
    assert liver[0] > spine[0] > spleen[0]  # RAS x grows to the patient's right
    assert liver[1] > spine[1]  # spine is posterior
    assert liver[2] > _world_centroid(labels == 2, affine)[2]  # kidneys below the liver


def test_noise_is_ct_like_inside_the_liver() -> None:
    image, labels, _ = generate_phantom(4)
    interior = ndimage.binary_erosion(labels == 1, iterations=2)
    assert 6.0 < float(image[interior].std()) < 25.0


def test_shape_and_spacing_overrides_and_bad_values() -> None:
    image, labels, affine = generate_phantom(2, shape=(48, 40, 16), spacing=(1.2, 1.2, 2.5))
    assert image.shape == labels.shape == (48, 40, 16)
    assert np.allclose(np.linalg.norm(affine[:3, :3], axis=0), (1.2, 1.2, 2.5), atol=1e-6)
    assert {1, 2, 3, 4} <= set(np.unique(labels).tolist())
    with pytest.raises(ValueError, match="shape"):
        generate_phantom(0, shape=(10, 10))
    with pytest.raises(ValueError, match="spacing"):
        generate_phantom(0, spacing=(1.0, 0.0, 2.0))


def test_nifti_round_trip_keeps_values_dtype_and_affine(tmp_path: Path) -> None:
    image, labels, affine = generate_phantom(5)
    write_nifti(tmp_path / "img.nii.gz", image, affine)
    write_nifti(tmp_path / "lab.nii.gz", labels, affine)
    img, lab = nib.load(tmp_path / "img.nii.gz"), nib.load(tmp_path / "lab.nii.gz")
    assert np.asanyarray(img.dataobj).dtype == np.int16
    assert np.asanyarray(lab.dataobj).dtype == np.uint8
    assert np.array_equal(np.asanyarray(img.dataobj), image)
    assert np.array_equal(np.asanyarray(lab.dataobj), labels)
    assert np.array_equal(img.affine, affine)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.nii.gz", "lab.nii.gz"]


def test_dicom_series_reproduces_hu_and_geometry(tmp_path: Path) -> None:
    image, _, affine = generate_phantom(6)
    folder = write_dicom_series(tmp_path / "series", image, affine, seed=6)
    volume, dicom_affine, slices = _read_series(folder)
    assert np.array_equal(volume, image.astype(np.float64))
    assert np.allclose(dicom_affine, affine, atol=1e-4)
    first = slices[0]
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.SOPClassUID == pydicom.uid.CTImageStorage == first.file_meta.MediaStorageSOPClassUID
    assert first.Modality == "CT" and str(first.PatientName) == PATIENT_NAME
    assert first.PatientID.startswith("PHANTOM-")
    assert float(first.SliceThickness) == pytest.approx(affine[2, 2], abs=1e-4)
    assert len({ds.SOPInstanceUID for ds in slices}) == image.shape[2]
    assert len({(ds.SeriesInstanceUID, ds.StudyInstanceUID) for ds in slices}) == 1
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in slices)
    by_name = sorted(folder.iterdir())
    by_position = [Path(ds.filename) for ds in slices]
    assert by_name != by_position  # readers must sort by position, not by file name


def test_dicom_geometry_with_rectangular_pixels_and_an_oblique_affine(tmp_path: Path) -> None:
    image, _, affine = generate_phantom(8, shape=(20, 14, 8), spacing=(0.7, 0.9, 2.5))
    angle = np.deg2rad(10.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0],
                         [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    oblique = affine.copy()
    oblique[:3] = rotation @ affine[:3]
    folder = write_dicom_series(tmp_path / "oblique", image, oblique, seed=8)
    volume, dicom_affine, slices = _read_series(folder)
    assert np.array_equal(volume, image.astype(np.float64))
    assert np.allclose(dicom_affine, oblique, atol=1e-4)
    assert [float(v) for v in slices[0].PixelSpacing] == pytest.approx([0.9, 0.7])
    assert (slices[0].Rows, slices[0].Columns) == (14, 20)


def test_dicom_uids_are_deterministic_in_the_seed(tmp_path: Path) -> None:
    image, _, affine = generate_phantom(1, shape=(16, 12, 8))
    names = []
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        folder = write_dicom_series(tmp_path / run, image, affine, seed=seed)
        names.append(sorted(p.name for p in folder.iterdir()))
    assert names[0] == names[1] and not set(names[0]) & set(names[2])
    given = write_dicom_series(tmp_path / "d", image, affine, seed=3, series_uid="1.2.3.4")
    assert pydicom.dcmread(next(given.iterdir())).SeriesInstanceUID == "1.2.3.4"
    with pytest.raises(ValueError, match="3-D"):
        write_dicom_series(tmp_path / "e", image[:, :, 0], affine, seed=0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _manifest_rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_cohort_is_fast_complete_and_points_at_existing_files(tmp_path: Path) -> None:
    start = time.perf_counter()
    manifest = write_cohort(tmp_path / "cohort", 8, seed=0, dicom_subjects=1)
    assert time.perf_counter() - start < 20.0  # about one second when the machine is idle
    rows = _manifest_rows(manifest)
    assert list(rows[0]) == ["subject_id", "image", "label"]
    assert [r["subject_id"] for r in rows] == [f"phantom_{i:03d}" for i in range(8)]
    assert rows[0]["image"] == "dicom/phantom_000"
    for row in rows:
        image, mask = manifest.parent / row["image"], manifest.parent / row["label"]
        assert image.exists() and mask.is_file()
        assert not Path(row["image"]).is_absolute() and not Path(row["label"]).is_absolute()
    assert (manifest.parent / "dicom" / "phantom_000").is_dir()
    assert not (manifest.parent / "imagesTr" / "phantom_000.nii.gz").exists()
    labels_json = json.loads((manifest.parent / "labels.json").read_text())
    assert labels_json == {str(k): v for k, v in LABEL_MAP.items()}
    leftovers = [p for p in manifest.parent.rglob(".*")]
    assert leftovers == []


def test_cohort_subjects_match_their_generated_phantoms(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path, 3, seed=9, dicom_subjects=1)
    rows = _manifest_rows(manifest)
    for index, row in enumerate(rows):
        image, labels, affine = generate_phantom(subject_seed(9, index))
        mask = nib.load(tmp_path / row["label"])
        assert np.array_equal(np.asanyarray(mask.dataobj), labels)
        if index == 0:
            volume, dicom_affine, slices = _read_series(tmp_path / row["image"])
            assert str(slices[0].PatientID) == "PHANTOM-0001"
        else:
            scan = nib.load(tmp_path / row["image"])
            volume, dicom_affine = np.asanyarray(scan.dataobj), scan.affine
        assert np.array_equal(volume, image) and np.allclose(dicom_affine, affine, atol=1e-4)
    assert _manifest_rows(write_cohort(tmp_path, 3, seed=9)) == rows


def test_interrupted_cohort_leaves_no_manifest(tmp_path: Path, monkeypatch) -> None:
    write_cohort(tmp_path, 2, seed=0)
    assert (tmp_path / "manifest.csv").exists()
    calls = []

    def failing(seed: int, **kwargs):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate_phantom(seed, **kwargs)

    monkeypatch.setattr(cohort, "generate_phantom", failing)
    with pytest.raises(KeyboardInterrupt):
        write_cohort(tmp_path, 2, seed=0)
    assert not (tmp_path / "manifest.csv").exists()


def test_cohort_rejects_bad_counts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_subjects"):
        write_cohort(tmp_path, 0)
    with pytest.raises(ValueError, match="dicom_subjects"):
        write_cohort(tmp_path, 2, dicom_subjects=3)


def test_volume_adapter_reads_the_cohort_back(tmp_path: Path) -> None:
    from medssl.modalities.volume import VolumeModality, read_volume

    manifest = write_cohort(tmp_path, 2, seed=1, dicom_subjects=1)
    records = VolumeModality().scan(manifest)
    assert [r.subject_id for r in records] == ["phantom_000", "phantom_001"]
    for index, record in enumerate(records):
        image, labels, affine = generate_phantom(subject_seed(1, index))
        scan, mask = read_volume(record.image), read_volume(record.mask)
        assert np.array_equal(scan.array, image) and np.array_equal(mask.array, labels)
        assert np.allclose(scan.affine, affine, atol=1e-4)


def test_mr_phantoms_keep_the_anatomy_with_t1_contrast(tmp_path: Path) -> None:
    hu, labels, _ = generate_phantom(5)
    mr = mr_from_ct(hu, 5)
    assert mr.dtype == np.int16 and mr.shape == hu.shape
    assert np.array_equal(mr, mr_from_ct(hu, 5))  # deterministic in the seed
    median = {k: float(np.median(mr[labels == k])) for k in range(1, 4)}
    assert median[1] > max(median[2], median[3])  # T1: liver above spleen and kidneys
    fat = (hu > -150) & (hu < -60) & (labels == 0)
    assert np.median(mr[fat]) > median[1]  # fat is the brightest soft tissue on T1
    manifest = write_cohort(tmp_path / "mr", n_subjects=2, seed=1, dicom_subjects=0, modality="mr")
    rows = manifest.read_text().splitlines()
    assert len(rows) == 3 and all("dicom" not in r for r in rows)
    with pytest.raises(ValueError, match="dicom_subjects=0"):
        write_cohort(tmp_path / "bad", n_subjects=2, modality="mr")
