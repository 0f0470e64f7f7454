"""End-to-end engine behaviour through the real command: a two-process CPU DDP run equals a
one-process run on the same global batch, and a run killed with SIGKILL resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 volumes of 16^3 in the MedMNIST layout: a bright blob whose size is the label."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"))
    images, labels = [], []
    for i in range(24):
        centre = rng.uniform(5, 11, size=3)[:, None, None, None]
        radius = 3.0 if i % 2 else 5.0
        blob = (((grid - centre) ** 2).sum(0) < radius**2).astype(np.float32)
        images.append(np.clip(blob * 200 + rng.normal(30, 10, (16, 16, 16)), 0, 255))
        labels.append([i % 2])
    path = tmp_path_factory.mktemp("npz") / "tiny3d.npz"
    np.savez(path, train_images=np.asarray(images, np.uint8), train_labels=np.asarray(labels, np.uint8))
    return path


def _config(folder: Path, data: Path, **pretrain: object) -> Path:
    config = {
        "name": "tiny",
        "seed": 3,
        "stages": ["pretrain", "report"],
        "data": {"path": str(data), "cache_dir": str(folder / "cache"), "holdout_fraction": 0.25},
        "encoder": {
            "name": "unet",
            "kwargs": {"features": [4, 8, 8, 8, 8, 4], "norm": ["group", {"num_groups": 2}]},
        },
        "pretrain": {
            "method": {"name": "simclr", "augment": {"noise_std": 0.01}},
            "batch_size": 8,
            "lr": 0.001,
            **pretrain,
        },
        "trainer": {"progress_bar": False},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _weights(run: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in load_file(run / "pretrain" / "model.safetensors").items()}


def test_two_process_ddp_equals_one_process(tmp_path: Path, tiny_npz: Path) -> None:
    cfg = _config(tmp_path, tiny_npz, max_steps=2, checkpoint_every_n_steps=100)
    single = subprocess.run(
        [sys.executable, "-m", "medssl.cli", "pretrain", str(cfg), "--out", str(tmp_path / "one")],
        env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "medssl.cli", "pretrain", str(cfg), "--out", str(tmp_path / "two"),
        ],
        env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=0, atol=2e-5, err_msg=key)
    card = json.loads((tmp_path / "two" / "pretrain" / "model.json").read_text())
    assert card["steps"] == 2


def _resume_step(path: Path) -> int:
    from medssl.platform.resume_io import load_resume_state

    return int(load_resume_state(path)["global_step"])


def test_sigkill_then_rerun_resumes_from_last_checkpoint(tmp_path: Path, tiny_npz: Path) -> None:
    cfg = _config(tmp_path, tiny_npz, max_steps=60, checkpoint_every_n_steps=3)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "medssl.cli", "run", str(cfg), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = out / "pretrain" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.is_file() and _resume_step(last) >= 6:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed; raise max_steps"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = _resume_step(last)  # the file a SIGKILL left behind still loads
    assert 6 <= killed_at < 60
    assert not (out / "pretrain" / "model.safetensors").exists()
    rerun = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from pretrain/checkpoints/last.ckpt" in rerun.stdout
    card = json.loads((out / "pretrain" / "model.json").read_text())
    assert card["steps"] == 60
    assert (out / "report.json").is_file()
