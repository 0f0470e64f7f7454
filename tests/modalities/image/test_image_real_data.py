"""The image adapter on real files: NIH ChestX-ray14 PNGs, a SIIM pneumothorax DICOM,
PneumoniaMNIST (4708 images in one npz) and pydicom's own MONOCHROME1 / windowed files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from conftest import pydicom_test_file

from medssl.modalities.image import ImageModality, read_image
from medssl.platform.errors import DataError

pytestmark = pytest.mark.integration

NIH = ("00000001_000.png", "00027426_000.png")


def _siim(cxr_data: Path) -> Path:
    found = sorted(cxr_data.glob("*.dcm"))
    if not found:
        pytest.skip(f"no SIIM DICOM in {cxr_data}")
    return found[0]


def test_nih_pngs_are_8_bit_grey_512(cxr_data: Path) -> None:
    for name in NIH:
        image = read_image(cxr_data / name)
        assert image.shape == (512, 512) and image.meta["format"] == "png"
        assert image.meta["dtype"] == "uint8" and image.meta["converted"] is None
        assert 0.0 <= image.pixels.min() < 30.0 and 220.0 < image.pixels.max() <= 255.0
        # A PA chest film: the mediastinum (centre) is brighter than the lungs beside it.
        centre = image.pixels[200:320, 236:276].mean()
        lungs = image.pixels[200:320, [100, 140, 372, 412]].mean()
        assert centre > lungs


def test_siim_dicom_keeps_spacing_and_no_identity(cxr_data: Path, tmp_path: Path) -> None:
    path = _siim(cxr_data)
    image = read_image(path)
    assert image.shape == (1024, 1024) and image.spacing == pytest.approx((0.168, 0.168))
    assert image.meta["modality"] == "CR" and image.meta["photometric"] == "MONOCHROME2"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    identity = [str(ds.PatientName), str(ds.PatientID)]
    assert all(identity)
    modality = ImageModality()
    prepared = modality.prepare(modality.scan(path), tmp_path / "cache")
    for blob in (
        json.dumps(image.meta),
        json.dumps(prepared.meta(0)),
        (prepared.root / "meta.json").read_text(),
    ):
        assert not any(value in blob for value in identity)


def test_cxr_folder_validates_and_prepares_at_224(cxr_data: Path, tmp_path: Path) -> None:
    modality = ImageModality()
    assert modality.validate(cxr_data) == []  # the report archive beside them is left alone
    records = modality.scan(cxr_data)
    assert sorted(Path(r.image).suffix for r in records) == [".dcm", ".png", ".png"]
    prepared = modality.prepare(records, tmp_path / "cache")
    images = prepared.images
    assert images.shape == (3, 1, 224, 224)
    assert float(images.min()) == 0.0 and float(images.max()) == pytest.approx(1.0)
    dicom = next(i for i, r in enumerate(records) if r.image.endswith(".dcm"))
    assert prepared.spacing(dicom) == pytest.approx((0.168 * 1024 / 224,) * 2, rel=1e-5)
    assert prepared.pad(dicom) == (0, 0, 0, 0)


def test_pneumoniamnist_scans_validates_and_prepares_fast(
    pneumonia_npz: Path, tmp_path: Path
) -> None:
    modality = ImageModality({"image_size": 32})
    records = modality.scan(pneumonia_npz)
    assert len(records) == 4708 and {r.split for r in records} == {"train"}
    labels = np.array([r.label for r in records])
    assert np.bincount(labels).tolist() == [1214, 3494]
    assert len({r.subject_id for r in records}) == 4708
    assert modality.validate(pneumonia_npz) == []
    started = time.perf_counter()
    prepared = modality.prepare(records, tmp_path / "cache")
    seconds = time.perf_counter() - started
    assert seconds < 5.0, f"preparing PneumoniaMNIST took {seconds:.1f} s"
    (root,) = list((tmp_path / "cache").iterdir())
    assert len(list(root.iterdir())) == 6  # one array of images, not 4708 files
    assert prepared.images.shape == (4708, 1, 32, 32)
    with np.load(pneumonia_npz) as z:
        first = z["train_images"][:8].astype(np.float32) / 255.0
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(first)[:, None], size=(32, 32), mode="bilinear"
    )
    np.testing.assert_allclose(prepared.images[:8], ref.numpy(), atol=1e-6)
    item = modality.dataset(prepared, [4707], "classification")[0]
    assert item["x"].shape == (1, 32, 32) and int(item["label"]) == records[4707].label


def test_pydicom_monochrome1_cr_with_window_and_rescale() -> None:
    path = pydicom_test_file("6154")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and "WindowCenter" in ds
    stored = ds.pixel_array.astype(np.float64)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    lo, hi = intercept, (2**ds.BitsStored - 1) * slope + intercept
    values = stored * slope + intercept
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    c, w = center - 0.5, width - 1.0
    windowed = np.where(
        values <= c - w / 2,
        lo,
        np.where(values > c + w / 2, hi, ((values - c) / w + 0.5) * (hi - lo) + lo),
    )
    image = read_image(path)
    np.testing.assert_allclose(image.pixels, lo + hi - windowed, rtol=1e-5, atol=1e-2)
    assert image.meta["voi"] == "window" and image.spacing == pytest.approx((0.1, 0.1))
    # MONOCHROME1 shows its largest code darkest: it must come out as the minimum.
    assert image.pixels.flat[np.argmax(stored)] == image.pixels.min()


def test_pydicom_ct_and_mr_small() -> None:
    ct = read_image(pydicom_test_file("CT_small.dcm"))
    raw = pydicom.dcmread(pydicom_test_file("CT_small.dcm")).pixel_array
    np.testing.assert_allclose(ct.pixels, raw.astype(np.float64) - 1024.0)  # HU, no window
    assert ct.meta["voi"] is None and ct.spacing == pytest.approx((0.661468, 0.661468))
    mr = read_image(pydicom_test_file("MR_small.dcm"))
    assert mr.meta["voi"] == "window" and mr.shape == (64, 64)


def test_multi_frame_mri_is_refused(shared_data: Path) -> None:
    path = shared_data / "image3d" / "pydicom" / "emri_small.dcm"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with pytest.raises(DataError, match=r"multi-frame DICOM \(10 frames\)"):
        read_image(path)
    (problem,) = ImageModality().validate(path)
    assert problem.path == str(path) and "data.modality=volume" in problem.message
