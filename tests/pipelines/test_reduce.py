"""Tests of dataset reduction as a pipeline step: `reduce_dataset` on a
phantom cohort (kept.json, plot, independence from file names and order, sharding by rank),
the `reduce` stage of a run, and the `medssl reduce` command."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medssl.pipelines.reduce import reduce_dataset
from medssl.pipelines.runner import run_config
from medssl.platform.config import PipelineConfig
from medssl.platform.errors import ConfigError
from medssl.platform.reduction import load_kept_index, read_kept_index
from medssl.synthetic import write_cohort

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three phantoms (one as a DICOM series) and their manifest."""
    return write_cohort(
        tmp_path_factory.mktemp("reduce") / "cohort", n_subjects=3, dicom_subjects=1
    )


def _config(data: Path, tmp: Path, **reduce: object) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "data": {"path": str(data), "cache_dir": str(tmp / "cache")},
            "reduce": reduce,
            "stages": ["reduce"],
        }
    )


# ----------------------------------------------------------------------------- reduce_dataset


def test_reduce_dataset_writes_kept_index_and_plot(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "reduced"
    summary = reduce_dataset(_config(cohort, tmp_path), "dhash", out_dir=out, progress=False)
    document = read_kept_index(out / "kept.json")
    assert document["strategy"] == "dhash" and document["params"]["threshold"] == 6
    assert document["summary"] == summary
    assert summary["volumes"] == 3 and 0 < summary["slices_kept"] < summary["slices_in"]
    with open(cohort) as f:
        images = [str(cohort.parent / row["image"]) for row in csv.DictReader(f)]
    assert sorted(document["volumes"]) == sorted(images)
    for entry in document["volumes"].values():
        assert entry["axis"] == 2 and entry["kept"][0] == 0  # the first slice is a reference
    assert (out / "reduction.png").stat().st_size > 10_000
    assert sorted(p.name for p in out.iterdir()) == ["kept.json", "reduction.png"]


def test_every_nth_through_the_pipeline_is_exact(cohort: Path, tmp_path: Path) -> None:
    reduce_dataset(_config(cohort, tmp_path), "every_nth", {"n": 4}, tmp_path / "o", progress=False)
    for entry in read_kept_index(tmp_path / "o" / "kept.json")["volumes"].values():
        assert entry["kept"] == list(range(0, entry["slices"], 4))


def test_result_does_not_depend_on_file_names_or_their_order(cohort: Path, tmp_path: Path) -> None:
    """Copy every scan under a new name, list them in reverse order: same kept slices."""
    with open(cohort) as f:
        rows = list(csv.DictReader(f))
    renamed = tmp_path / "renamed"
    new_rows, old_of = [], {}
    for k, row in enumerate(reversed(rows)):
        source = cohort.parent / row["image"]
        target = renamed / f"z{k}_{'series' if source.is_dir() else 'scan.nii.gz'}"
        renamed.mkdir(exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
        new_rows.append({"subject_id": f"s{k}", "image": target.name})
        old_of[str(target)] = str(source)
    manifest = renamed / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["subject_id", "image"])
        writer.writeheader()
        writer.writerows(new_rows)
    reduce_dataset(_config(cohort, tmp_path), "dhash", out_dir=tmp_path / "a", progress=False)
    reduce_dataset(_config(manifest, tmp_path), "dhash", out_dir=tmp_path / "b", progress=False)
    first = load_kept_index(tmp_path / "a" / "kept.json")
    second = load_kept_index(tmp_path / "b" / "kept.json")
    assert {old_of[k]: v for k, v in second.items()} == first


def test_shards_by_rank_merge_into_the_single_process_result(cohort: Path, tmp_path: Path) -> None:
    config = _config(cohort, tmp_path, threshold=4)
    reduce_dataset(config, out_dir=tmp_path / "one", progress=False, rank=0, world=1)
    part = reduce_dataset(
        config, out_dir=tmp_path / "two", progress=False, rank=1, world=2, wait=False
    )
    assert part["volumes"] == 1  # rank 1 of 2 takes every second volume
    assert not (tmp_path / "two" / "kept.json").exists()
    reduce_dataset(config, out_dir=tmp_path / "two", progress=False, rank=0, world=2)
    one = read_kept_index(tmp_path / "one" / "kept.json")
    two = read_kept_index(tmp_path / "two" / "kept.json")
    assert two["volumes"] == one["volumes"] and two["params"] == one["params"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["kept.json", "reduction.png"]


def test_pipeline_refuses_embedding_and_bad_settings_before_reading(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    with pytest.raises(
        ConfigError, match=r"reduce.strategy: 'embedding' compares slice embeddings"
    ):
        reduce_dataset(missing, "embedding", out_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"reduce.strategy: unknown strategy 'hash6'"):
        reduce_dataset(missing, "hash6", out_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"reduce.kwargs.bins: strategy 'dhash' has no such"):
        reduce_dataset(missing, "dhash", {"bins": 8}, out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- the stage


def test_reduce_stage_writes_kept_index_and_resumes(cohort: Path, tmp_path: Path) -> None:
    config = _config(cohort, tmp_path, strategy="dhash", threshold=6)
    run = tmp_path / "run"
    run_config(config, run)
    kept = run / "reduce" / "kept.json"
    assert read_kept_index(kept)["summary"]["volumes"] == 3
    assert (run / "reduce" / "reduction.png").is_file()
    assert "reduce" in json.loads((run / "state.json").read_text())["done"]
    stamp = kept.stat().st_mtime_ns
    run_config(config, run)  # done already: nothing is reduced again
    assert kept.stat().st_mtime_ns == stamp


# ----------------------------------------------------------------------------- the command


def _medssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env.pop("MEDSSL_LOG", None)
    return subprocess.run(
        [sys.executable, "-m", "medssl.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_reduce_writes_kept_index_and_plot(cohort: Path, tmp_path: Path) -> None:
    done = _medssl(
        "reduce",
        str(cohort),
        "--strategy",
        "dhash",
        "--threshold",
        "6",
        "--out",
        "red",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "slices" in done.stdout and "kept.json" in done.stdout
    assert read_kept_index(tmp_path / "red" / "kept.json")["summary"]["volumes"] == 3
    assert (tmp_path / "red" / "reduction.png").is_file()
    done = _medssl(
        "reduce",
        str(cohort),
        "--strategy",
        "every_nth",
        "--param",
        "n=3",
        "--out",
        "nth",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert read_kept_index(tmp_path / "nth" / "kept.json")["params"] == {"n": 3}


@pytest.mark.slow
def test_cli_bad_strategy_is_one_clear_line(cohort: Path, tmp_path: Path) -> None:
    done = _medssl("reduce", str(cohort), "--strategy", "phash", "--out", "red", cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "unknown strategy 'phash'" in lines[0] and "dhash" in lines[0]
    assert "Traceback" not in done.stderr and not (tmp_path / "red").exists()
