"""Smoke runs of the benchmark scripts: each runs with --quick in a fresh process and writes
a JSON result with the fields docs/benchmarks.md reads. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, out: Path) -> dict[str, Any]:
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return json.loads(out.read_text())


def _check_environment(result: dict[str, Any]) -> None:
    env = result["environment"]
    for key in ("date", "cpu", "cpu_cores", "torch_threads", "cuda_available"):
        assert key in env, key
    assert {"torch", "monai", "medssl", "python"} <= set(env["versions"])
    assert result["parameters"]["quick"] is True


def _check_timing(timing: dict[str, Any], rate_key: str, count: int) -> None:
    assert timing["median_s"] > 0 and len(timing["times_s"]) >= 1
    assert timing["median_s"] == sorted(timing["times_s"])[len(timing["times_s"]) // 2]
    assert timing[rate_key] == pytest.approx(count / timing["median_s"])


@pytest.mark.slow
def test_volume_loading_quick(tmp_path: Path) -> None:
    result = _run("volume_loading.py", tmp_path / "volume.json")
    _check_environment(result)
    assert result["benchmark"] == "volume_loading"
    case = result["cases"]["phantoms"]
    n = case["n_volumes"]
    assert n == result["parameters"]["n_subjects"]
    for impl in ("medssl", "monai"):
        _check_timing(case[impl], "volumes_per_s", n)
        second = case["second_run"][impl]
        assert second["process_median_s"] >= second["build_median_s"] > 0
    assert case["first_pass_ratio_medssl_over_monai"] == pytest.approx(
        case["medssl"]["volumes_per_s"] / case["monai"]["volumes_per_s"]
    )
    footprint = case["footprint"]
    assert footprint["medssl_disk_bytes"] > 0 and footprint["monai_ram_bytes"] > 0
    # Both caches hold the same volumes resampled alike: at most a voxel apart per axis.
    assert case["agreement"]["max_shape_difference_voxels"] <= 1
    assert case["agreement"]["max_mean_intensity_difference"] < 0.05
    epochs = case["epochs"]["workers_0"]
    for impl in ("medssl", "monai"):
        _check_timing(epochs[impl], "volumes_per_s", n)


@pytest.mark.slow
def test_augmentation_quick(tmp_path: Path) -> None:
    result = _run("augmentation.py", tmp_path / "augment.json")
    _check_environment(result)
    assert result["benchmark"] == "augmentation"
    runs = result["runs"]
    assert {run["noise"] for run in runs} == {True, False}
    for run in runs:
        assert run["device"] == "cpu" or run["device"].startswith("cuda")
        for impl in ("medssl", "monai"):
            _check_timing(run[impl], "samples_per_s", run["batch"])
        assert run["ratio_medssl_over_monai"] == pytest.approx(
            run["medssl"]["samples_per_s"] / run["monai"]["samples_per_s"]
        )


@pytest.mark.slow
def test_reduction_quick(tmp_path: Path) -> None:
    result = _run("reduction.py", tmp_path / "reduction.json")
    _check_environment(result)
    assert result["benchmark"] == "reduction"
    assert result["cases"]
    for case in result["cases"].values():
        n = case["n_slices"]
        for stage in ("hash", "select"):
            for impl in ("imagehash", "medssl_cpu"):
                _check_timing(case[stage][impl], "slices_per_s", n)
            assert case[stage]["ratio_medssl_cpu_over_imagehash"] == pytest.approx(
                case[stage]["medssl_cpu"]["slices_per_s"] / case[stage]["imagehash"]["slices_per_s"]
            )
        # The floor (one min..max pass over the volume) is timed in the hash stage only.
        _check_timing(case["hash"]["minmax_floor_cpu"], "slices_per_s", n)
        assert "minmax_floor_cpu" not in case["select"]
        assert case["hash"]["ratio_minmax_floor_cpu_over_imagehash"] == pytest.approx(
            case["hash"]["minmax_floor_cpu"]["slices_per_s"]
            / case["hash"]["imagehash"]["slices_per_s"]
        )
        # Both hash the same 8-bit slices and medssl's resize is exact: every bit agrees.
        assert case["agreement"]["bit_fraction"] == 1.0
        assert case["agreement"]["same_kept_slices"]


@pytest.mark.slow
def test_ts2vec_loss_quick(tmp_path: Path) -> None:
    result = _run("ts2vec_loss.py", tmp_path / "ts2vec_loss.json")
    _check_environment(result)
    assert result["benchmark"] == "ts2vec_loss"
    assert [run["length"] for run in result["runs"]] == result["parameters"]["lengths"]
    for run in result["runs"]:
        for impl in ("medssl", "unfused"):
            assert (
                run[impl]["median_s"]
                == sorted(run[impl]["times_s"])[len(run[impl]["times_s"]) // 2]
            )
            assert run[impl]["peak_bytes"] > 0
        # The same loss on the same inputs, computed two ways.
        assert run["loss_relative_difference"] < 1e-5
        assert run["speedup_medssl_over_unfused"] == pytest.approx(
            run["unfused"]["median_s"] / run["medssl"]["median_s"]
        )


@pytest.mark.slow
def test_trend_head_quick(tmp_path: Path) -> None:
    result = _run("trend_head.py", tmp_path / "trend_head.json")
    _check_environment(result)
    assert result["benchmark"] == "trend_head"
    assert set(result["cases"]) == {"train", "encode"}
    for case in result["cases"].values():
        for impl in ("separate", "direct", "medssl"):
            assert case[impl]["median_s"] > 0
        # One head computed three ways on the same inputs.
        assert case["max_relative_difference_direct"] < 1e-5
        assert case["max_relative_difference_medssl"] < 1e-5
        assert case["speedup_medssl_over_separate"] == pytest.approx(
            case["separate"]["median_s"] / case["medssl"]["median_s"]
        )


@pytest.mark.slow
def test_lvmmed_quick(tmp_path: Path) -> None:
    result = _run("lvmmed.py", tmp_path / "lvmmed.json")
    _check_environment(result)
    assert result["benchmark"] == "lvmmed"
    assert [run["batch"] for run in result["runs"]] == result["parameters"]["batches"]
    for run in result["runs"]:
        for impl in ("backbone", "lvmmed", "matching_batched", "matching_loop", "solves"):
            timing = run[impl]
            assert timing["median_s"] == sorted(timing["times_s"])[len(timing["times_s"]) // 2]
        back = run["backbone"]["median_s"]
        assert run["matching_fraction_of_backbone"] == pytest.approx(
            (run["lvmmed"]["median_s"] - back) / back
        )
        assert run["speedup_batched_over_loop"] == pytest.approx(
            run["matching_loop"]["median_s"] / run["matching_batched"]["median_s"]
        )
        assert run["solves_fraction_of_matching"] == pytest.approx(
            run["solves"]["median_s"] / run["matching_batched"]["median_s"]
        )
