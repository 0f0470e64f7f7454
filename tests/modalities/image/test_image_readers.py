"""Radiograph readers: 8/16-bit and colour PNG, JPEG, and DICOM as displayed (rescale,
MONOCHROME1, window, VOI LUT), checked against the DICOM definitions written out here."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medssl.modalities.image.readers import LUMA, read_image, to_grey
from medssl.platform.errors import DataError


def _stored(shape: tuple[int, int] = (6, 5), top: int = 4095, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, top + 1, size=shape).astype(np.uint16)


def _linear_window(x: np.ndarray, center: float, width: float, lo: float, hi: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR), element by element in float64."""
    out = np.empty(x.shape, dtype=np.float64)
    for k, v in np.ndenumerate(x.astype(np.float64)):
        if v <= center - 0.5 - (width - 1) / 2:
            out[k] = lo
        elif v > center - 0.5 + (width - 1) / 2:
            out[k] = hi
        else:
            out[k] = ((v - (center - 0.5)) / (width - 1) + 0.5) * (hi - lo) + lo
    return out


# ----------------------------------------------------------------------------- PNG / JPEG


def test_8_and_16_bit_grey_png_keep_their_values(tmp_path: Path, png_writer: Callable) -> None:
    eight = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    sixteen = (np.arange(30, dtype=np.uint16).reshape(5, 6) * 2000).astype(np.uint16)
    a = read_image(png_writer(tmp_path / "a.png", eight))
    b = read_image(png_writer(tmp_path / "b.png", sixteen))
    np.testing.assert_array_equal(a.pixels, eight.astype(np.float32))
    np.testing.assert_array_equal(b.pixels, sixteen.astype(np.float32))
    assert a.pixels.dtype == np.float32 and a.shape == (5, 6)
    assert (a.meta["dtype"], b.meta["dtype"]) == ("uint8", "uint16")
    assert a.meta["converted"] is None and a.spacing is None


@pytest.mark.parametrize("channels", [3, 4])
def test_colour_png_is_collapsed_to_luma_and_marked(
    tmp_path: Path, png_writer: Callable, channels: int
) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, size=(4, 5, channels)).astype(np.uint8)
    image = read_image(png_writer(tmp_path / "c.png", rgb))
    expected = rgb[..., :3].astype(np.float64) @ LUMA.astype(np.float64)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-3)
    assert image.meta["converted"] == ("RGB" if channels == 3 else "RGBA") + " to grey"


def test_jpeg_is_read_close_to_what_was_written(tmp_path: Path, ramp_image: Callable) -> None:
    from PIL import Image

    picture = ramp_image((32, 40)).round().astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "x.jpeg", quality=95)
    image = read_image(tmp_path / "x.jpeg")
    assert image.meta["format"] == "jpeg" and image.shape == (32, 40)
    assert np.abs(image.pixels - picture).mean() < 2.0  # lossy, but a smooth ramp survives


def test_truncated_and_fake_images_are_refused_with_their_path(
    tmp_path: Path, png_writer: Callable
) -> None:
    good = png_writer(
        tmp_path / "good.png", np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8)
    )
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image\n")
    with pytest.raises(DataError, match=r"truncated\.png cannot be read as PNG"):
        read_image(truncated)
    with pytest.raises(DataError, match=r"notes\.jpg cannot be read as JPEG"):
        read_image(text)
    with pytest.raises(DataError, match="does not exist"):
        read_image(tmp_path / "ghost.png")


def test_to_grey_passes_grey_through() -> None:
    grey = np.arange(6, dtype=np.uint16).reshape(2, 3)
    np.testing.assert_array_equal(to_grey(grey), grey.astype(np.float32))


# ----------------------------------------------------------------------------- DICOM


def test_dicom_rescale_and_spacing(tmp_path: Path, dicom_writer: Callable) -> None:
    stored = _stored()
    image = read_image(dicom_writer(tmp_path / "a.dcm", stored, slope=2.0, intercept=-100.0))
    np.testing.assert_allclose(image.pixels, stored * 2.0 - 100.0)
    assert image.spacing == pytest.approx((0.2, 0.3))
    assert image.meta["rescale"] == [2.0, -100.0] and image.meta["voi"] is None


def test_monochrome1_is_inverted_inside_the_output_range(
    tmp_path: Path, dicom_writer: Callable
) -> None:
    stored = _stored()
    plain = read_image(dicom_writer(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1"))
    np.testing.assert_allclose(plain.pixels, 4095.0 - stored)
    rescaled = read_image(
        dicom_writer(
            tmp_path / "m1r.dcm", stored, photometric="MONOCHROME1", slope=0.5, intercept=10
        )
    )
    lo, hi = 10.0, 4095 * 0.5 + 10.0
    np.testing.assert_allclose(rescaled.pixels, lo + hi - (stored * 0.5 + 10.0), rtol=1e-6)
    # Bright means dense either way: MONOCHROME1 of inverted codes is MONOCHROME2 of the codes.
    twin = read_image(dicom_writer(tmp_path / "m2.dcm", (4095 - stored).astype(np.uint16)))
    np.testing.assert_allclose(plain.pixels, twin.pixels)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_window_center_width_is_applied(
    tmp_path: Path, dicom_writer: Callable, photometric: str
) -> None:
    stored = _stored((8, 7))
    path = dicom_writer(
        tmp_path / "w.dcm",
        stored,
        photometric=photometric,
        slope=1.0,
        intercept=-1024.0,
        window=(400.0, 1500.0),
    )
    image = read_image(path)
    lo, hi = -1024.0, 4095.0 - 1024.0
    expected = _linear_window(stored - 1024.0, 400.0, 1500.0, lo, hi)
    if photometric == "MONOCHROME1":
        expected = lo + hi - expected
    np.testing.assert_allclose(image.pixels, expected, rtol=1e-5, atol=1e-2)
    assert image.meta["voi"] == "window"
    raw = read_image(path, apply_voi=False)
    assert raw.meta["voi"] is None
    if photometric == "MONOCHROME2":
        np.testing.assert_allclose(raw.pixels, stored - 1024.0)


def test_voi_lut_sequence_is_applied(tmp_path: Path, dicom_writer: Callable) -> None:
    stored = _stored((5, 5), top=255)
    first = 10
    lut = (np.arange(200, dtype=np.float64) ** 2).astype(np.uint16)  # a non-linear VOI
    image = read_image(
        dicom_writer(tmp_path / "v.dcm", stored, voi_lut=(first, lut), bits_stored=8)
    )
    expected = lut[np.clip(stored.astype(int) - first, 0, len(lut) - 1)]
    np.testing.assert_array_equal(image.pixels, expected.astype(np.float32))
    assert image.meta["voi"] == "lut"


def test_multi_frame_dicom_is_refused_in_one_sentence(
    tmp_path: Path, dicom_writer: Callable, patient_identity: tuple[str, str]
) -> None:
    path = dicom_writer(tmp_path / "cine.dcm", np.stack([_stored(), _stored(seed=1)]))
    with pytest.raises(DataError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is a multi-frame DICOM (2 frames)")
    assert "data.modality=volume" in message and "\n" not in message
    assert not any(text in message for text in patient_identity)


def test_random_bytes_named_dcm_are_refused(tmp_path: Path) -> None:
    noise = tmp_path / "noise.dcm"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"noise\.dcm cannot be read as DICOM"):
        read_image(noise)


def test_dicom_meta_holds_no_patient_identity(
    tmp_path: Path, dicom_writer: Callable, patient_identity: tuple[str, str]
) -> None:
    path = dicom_writer(
        tmp_path / "p.dcm", _stored(), photometric="MONOCHROME1", window=(2000, 3000)
    )
    assert patient_identity[0].encode() in path.read_bytes()  # the identity really is there
    text = json.dumps(read_image(path).meta)
    assert not any(part in text for part in (*patient_identity, *patient_identity[0].split("^")))
    assert json.loads(text)["modality"] == "DX"


def test_dicom_without_a_suffix_is_recognised_by_its_marker(
    tmp_path: Path, dicom_writer: Callable
) -> None:
    path = dicom_writer(tmp_path / "a.dcm", _stored())
    bare = path.rename(tmp_path / "IM0001")
    assert read_image(bare).meta["format"] == "dicom"


# ----------------------------------------------------------------------------- npz items


def test_npz_items_count_through_the_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    test = rng.integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    path = tmp_path / "m.npz"
    np.savez(path, train_images=train, test_images=test)
    np.testing.assert_array_equal(read_image(f"{path}#2").pixels, train[2].astype(np.float32))
    colour = read_image(f"{path}#4")
    np.testing.assert_allclose(colour.pixels, to_grey(test[1]))
    assert colour.meta["split"] == "test" and colour.meta["converted"] == "RGB to grey"
    with pytest.raises(DataError, match="5 items"):
        read_image(f"{path}#5")
