"""Tests of `medssl validate` and of `medssl run` refusing a broken dataset: the real command
in a subprocess, on a manifest that mixes good phantoms with every kind of bad file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml

from medssl.synthetic import (
    generate_phantom,
    write_cohort,
    write_dicom_series,
    write_nifti,
)

SHAPE = (24, 24, 12)

pytestmark = pytest.mark.slow


def snapshot(folder: Path) -> dict[str, tuple[bool, int, int]]:
    """Every entry under `folder` (hidden ones too): (is a folder, size, mtime in ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.stat()
            out[str(path.relative_to(folder))] = (path.is_dir(), st.st_size, st.st_mtime_ns)
    return out


def _phantom(seed: int, shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return generate_phantom(seed, shape=shape, spacing=(4.0, 4.0, 6.0))


def _drop_middle_slice(series: Path) -> Path:
    """Delete the middle slice by position (files are named by UID, not by order)."""
    def height(f: Path) -> float:
        return float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])

    files = sorted(series.glob("*.dcm"), key=height)
    middle = files[len(files) // 2]
    middle.unlink()
    return middle


def build_bad_dataset(root: Path) -> tuple[Path, list[Path], list[Path]]:
    """(manifest, the bad files it lists, the good files it lists)."""
    root.mkdir(parents=True)
    good = []
    rows = ["subject_id,image,label"]
    for k in range(2):
        image, labels, affine = _phantom(k)
        good += [write_nifti(root / f"good_{k}.nii.gz", image, affine),
                 write_nifti(root / f"good_{k}_seg.nii.gz", labels, affine)]
        rows.append(f"good{k},good_{k}.nii.gz,good_{k}_seg.nii.gz")

    image, labels, affine = _phantom(10)
    truncated = write_nifti(root / "truncated.nii.gz", image, affine)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    rows.append("trunc,truncated.nii.gz,")

    series = write_dicom_series(root / "dicom" / "gappy", image, affine, seed=11)
    _drop_middle_slice(series)
    rows.append("gappy,dicom/gappy,")

    image, _, affine = _phantom(12)
    other_shape = _phantom(12, shape=(24, 24, 10))[1]
    mismatched_image = write_nifti(root / "mismatch.nii.gz", image, affine)
    mismatched_label = write_nifti(root / "mismatch_seg.nii.gz", other_shape, affine)
    rows.append("mismatch,mismatch.nii.gz,mismatch_seg.nii.gz")

    noise = root / "noise.nii"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    rows.append("noise,noise.nii,")

    text = root / "notes.txt"
    text.write_text("scanned on the old CT; ask the radiographer\n")
    rows.append("notes,notes.txt,")

    ghost = root / "missing" / "ghost.nii.gz"
    rows.append("ghost,missing/ghost.nii.gz,")

    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    bad = [truncated, series, mismatched_label, noise, text, ghost]
    # The mismatched label's image is fine in itself and must not get a line of its own.
    return manifest, bad, good + [mismatched_image]


def problem_lines(output: str) -> dict[str, str]:
    """`<path>: <problem>` lines of the output, keyed by the path."""
    found = {}
    for line in output.splitlines():
        path, sep, problem = line.strip().partition(": ")
        if sep and os.path.isabs(path):
            found[path] = problem
    return found


def test_validate_lists_every_bad_file_and_writes_nothing(tmp_path: Path, medssl_cli) -> None:
    manifest, bad, good = build_bad_dataset(tmp_path / "data")
    before = snapshot(tmp_path)
    result = medssl_cli("validate", str(manifest), cwd=tmp_path)
    assert snapshot(tmp_path) == before, "validate changed or added files"
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = problem_lines(result.stdout)
    for path in bad:
        assert str(path) in lines, f"{path} not reported in:\n{result.stdout}"
        assert lines[str(path)].strip(), f"{path} reported without a problem"
    assert "does not exist" in lines[str(bad[-1])]
    assert "missing slice" in lines[str(bad[1])]
    assert "not a NIfTI" in lines[str(bad[4])]
    assert str(good[-1]) in lines[str(bad[2])]  # the label line names its image
    for path in good:
        assert str(path) not in lines, f"good scan {path} reported: {lines.get(str(path))}"
    for path in good[:-1]:
        assert str(path) not in result.stdout + result.stderr
    assert f"{len(result.stdout.strip().splitlines())} problem(s)" in result.stderr


def test_validate_on_a_clean_cohort_exits_zero(tmp_path: Path, medssl_cli) -> None:
    manifest = write_cohort(tmp_path / "clean", n_subjects=2, dicom_subjects=1)
    before = snapshot(tmp_path)
    result = medssl_cli("validate", str(manifest), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{manifest}: no problems found" in result.stdout
    assert snapshot(tmp_path) == before


def test_run_refuses_a_broken_dataset_before_writing_anything(tmp_path: Path, medssl_cli) -> None:
    manifest, bad, _ = build_bad_dataset(tmp_path / "data")
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "name": "refused",
        "stages": ["pretrain", "finetune", "evaluate", "report"],
        "data": {"path": str(manifest), "preprocessing": {"patch_size": [16, 16, 16]}},
        "pretrain": {"max_steps": 1, "batch_size": 2},
        "finetune": {"max_steps": 1, "label_budgets": [1]},
    }))
    from medssl.pipelines.api import validate

    expected = problem_lines("\n".join(str(p) for p in validate(manifest)))
    data_before = snapshot(tmp_path / "data")
    result = medssl_cli("run", str(config), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    refused = problem_lines(result.stderr)
    assert refused == expected
    assert set(map(str, bad)) <= set(refused)
    assert snapshot(tmp_path / "data") == data_before
    assert not (tmp_path / ".cache").exists(), "a preprocessing cache was started"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    for path in written:
        assert path.suffix not in {".safetensors", ".ckpt", ".npy", ".json"}, path
        assert "cache" not in path.parts
    run_files = {p.name for p in (tmp_path / "run").rglob("*")} if (tmp_path / "run").exists() else set()
    assert run_files <= {"config.yaml"}, run_files
