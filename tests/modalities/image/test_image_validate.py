"""validate on radiographs: every broken file of a mixed folder or manifest is named at once,
good ones are not, nothing is written; and the `medssl validate --modality image` command."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medssl.modalities.image import ImageModality
from medssl.pipelines.api import validate


def snapshot(folder: Path) -> dict[str, tuple[bool, int, int]]:
    """Every entry under `folder` (hidden ones too): (is a folder, size, mtime in ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.stat()
            out[str(path.relative_to(folder))] = (path.is_dir(), st.st_size, st.st_mtime_ns)
    return out


def mixed_folder(
    root: Path, png_writer: Callable, dicom_writer: Callable
) -> tuple[list[Path], list[Path]]:
    """(good images, bad images) written into `root`."""
    from PIL import Image

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    good = [
        png_writer(root / "good8.png", rng.integers(0, 256, (40, 40)).astype(np.uint8)),
        png_writer(root / "good16.png", rng.integers(0, 65536, (30, 20)).astype(np.uint16)),
        png_writer(root / "rgb.png", rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)),
        dicom_writer(
            root / "good.dcm",
            rng.integers(0, 4096, (24, 24)).astype(np.uint16),
            photometric="MONOCHROME1",
            window=(2048, 4096),
        ),
    ]
    Image.fromarray(rng.integers(0, 256, (20, 20)).astype(np.uint8)).save(root / "good.jpg")
    good.append(root / "good.jpg")
    truncated = png_writer(root / "truncated.png", rng.integers(0, 256, (64, 64)).astype(np.uint8))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    noise = root / "noise.dcm"
    noise.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    text_png, text_jpg = root / "notes.png", root / "sub" / "report.jpg"
    text_png.write_text("chest film, PA view, no acute findings\n")
    text_jpg.parent.mkdir()
    text_jpg.write_text("not a picture\n")
    cine = dicom_writer(root / "cine.dcm", rng.integers(0, 4096, (3, 8, 8)).astype(np.uint16))
    return good, [truncated, noise, text_png, text_jpg, cine]


def test_every_bad_file_is_named_and_nothing_is_written(
    tmp_path: Path, png_writer: Callable, dicom_writer: Callable
) -> None:
    good, bad = mixed_folder(tmp_path / "cxr", png_writer, dicom_writer)
    before = snapshot(tmp_path)
    problems = ImageModality().validate(tmp_path / "cxr")
    assert snapshot(tmp_path) == before
    by_path = {p.path: p.message for p in problems}
    assert sorted(by_path) == sorted(map(str, bad)), problems
    assert "cannot be read as PNG" in by_path[str(bad[0])]
    assert "cannot be read as DICOM" in by_path[str(bad[1])]
    assert "cannot be read as PNG" in by_path[str(bad[2])]
    assert "cannot be read as JPEG" in by_path[str(bad[3])]
    assert "multi-frame" in by_path[str(bad[4])]
    assert all(not m.startswith(p) for p, m in by_path.items())  # the path is printed once


def test_npz_and_manifest_problems(tmp_path: Path, png_writer: Callable) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 this is no zip archive")
    assert "cannot be read as an npz" in ImageModality().validate(broken)[0].message
    np.savez(tmp_path / "nan.npz", train_images=np.full((2, 4, 4), np.nan, np.float32))
    (problem,) = ImageModality().validate(tmp_path / "nan.npz")
    assert "NaN" in problem.message
    np.savez(tmp_path / "ok.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    png_writer(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "m.csv").write_text(
        "subject_id,image\ns1,a.png\ns2,ok.npz#1\ns3,ok.npz#7\ns4,broken.npz#0\ns5,ghost.png\n"
    )
    problems = ImageModality().validate(tmp_path / "m.csv")
    messages = {p.path: p.message for p in problems}
    assert "item(s) [7]" in messages[str(tmp_path / "ok.npz")]
    assert "cannot be read as an npz" in messages[str(broken)]
    assert "does not exist" in messages[str(tmp_path / "ghost.png")]
    assert str(tmp_path / "a.png") not in messages
    assert ImageModality().validate(tmp_path / "ok.npz") == []


def test_api_validate_selects_the_image_adapter(tmp_path: Path, png_writer: Callable) -> None:
    png_writer(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "b.png").write_text("text")
    problems = validate(tmp_path, modality="image", preprocessing={"image_size": 32})
    assert [p.path for p in problems] == [str(tmp_path / "b.png")]


@pytest.mark.slow
def test_cli_validate_exits_1_naming_each_bad_file(
    tmp_path: Path,
    png_writer: Callable,
    dicom_writer: Callable,
    medssl_cli: Callable,
    patient_identity: tuple[str, str],
) -> None:
    good, bad = mixed_folder(tmp_path / "cxr", png_writer, dicom_writer)
    before = snapshot(tmp_path)
    result = medssl_cli("validate", str(tmp_path / "cxr"), "--modality", "image", cwd=tmp_path)
    assert snapshot(tmp_path) == before, "validate changed or added files"
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = dict(line.partition(": ")[::2] for line in result.stdout.strip().splitlines())
    assert sorted(lines) == sorted(map(str, bad))
    assert all(lines[str(p)].strip() for p in bad)
    for path in good:
        assert str(path) not in result.stdout + result.stderr
    assert f"{len(bad)} problem(s) in {tmp_path / 'cxr'}" in result.stderr
    output = result.stdout + result.stderr
    assert not any(part in output for part in (*patient_identity, *patient_identity[0].split("^")))
    for path in bad:
        path.unlink()
    clean = medssl_cli("validate", str(tmp_path / "cxr"), "--modality", "image", cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"{tmp_path / 'cxr'}: no problems found" in clean.stdout
