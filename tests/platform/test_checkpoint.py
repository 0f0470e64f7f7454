"""Checkpoints: model weights + card round trip, contract messages, and pickle-free Lightning
resume state that rebuilds the exact dict, survives interrupted saves and resumes training."""

from __future__ import annotations

import copy
import json
import math
import pickle
import subprocess
import sys
import textwrap
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

import medssl.platform.checkpoint as ckpt
import medssl.platform.resume_io as resume_io
from medssl.platform.checkpoint import (
    ModelCard,
    check_contract,
    load_model,
    require_contract,
    save_model,
)
from medssl.platform.encoders import architecture_of, build_encoder, encoder_from_architecture
from medssl.platform.errors import CheckpointError
from medssl.platform.resume_io import SafeCheckpointIO, load_resume_state, save_resume_state

REPO = Path(__file__).resolve().parents[2]


def assert_identical(a: Any, b: Any, path: str = "") -> None:
    """Same types all the way down and same values (tensors bitwise, floats incl. nan/-0.0)."""
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), path
        for (ka, va), kb in zip(a.items(), b.keys(), strict=True):
            assert_identical(ka, kb, f"{path} key")
            assert_identical(va, b[kb], f"{path}[{ka!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad, (
            path
        )
        bits_a, bits_b = (t.detach().reshape(-1).contiguous().view(torch.uint8) for t in (a, b))
        assert torch.equal(bits_a, bits_b), path
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), path
    elif isinstance(a, float | np.floating):
        assert (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        ), path
    else:
        assert a == b, path


def card(**extra: Any) -> dict[str, Any]:
    return {
        "architecture": {"encoder": "unet", "kwargs": {"spatial_dims": 3, "in_channels": 1}},
        "method": {"name": "simclr", "temperature": 0.1},
        "preprocessing": {
            "spacing": [1.5, 1.5, 1.5],
            "orientation": "RAS",
            "hu_window": [-160, 240],
        },
        "label_map": {0: "background", 1: "liver"},
        "config_hash": "abc123",
        **extra,
    }


# --- model weights + card ------------------------------------------------------------------


def test_model_round_trip_with_tied_and_strided_tensors(tmp_path: Path) -> None:
    embed = torch.nn.Embedding(5, 3)
    state = {
        "embed.weight": embed.weight.detach(),
        "tied.weight": embed.weight.detach(),  # the same storage twice (tied weights)
        "transposed": embed.weight.detach().t(),  # non-contiguous
        "slice": torch.arange(10, dtype=torch.int64)[3:7],  # a view into a larger storage
        "half": torch.randn(2, 2).to(torch.bfloat16),
    }
    save_model(tmp_path, state, card(frozen_layers=["conv_0"]))
    loaded, model_card = load_model(tmp_path)
    assert sorted(loaded) == sorted(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key
    assert isinstance(model_card, ModelCard)
    assert model_card.preprocessing["spacing"] == [1.5, 1.5, 1.5]
    assert model_card.label_map == {0: "background", 1: "liver"}
    assert model_card.architecture.encoder == "unet"
    assert model_card.model_extra == {"frozen_layers": ["conv_0"]}
    assert {"torch", "monai", "medssl"} <= set(model_card.versions)
    assert model_card.versions["torch"] == torch.__version__
    assert model_card.created and model_card.format_version == ckpt.FORMAT_VERSION
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]
    assert json.loads((tmp_path / "model.json").read_text())["label_map"] == {
        "0": "background",
        "1": "liver",
    }
    # A path to one of the two files works as well as the folder.
    assert sorted(load_model(tmp_path / "model.safetensors")[0]) == sorted(state)


def test_saved_encoder_rebuilds_from_its_card(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = build_encoder("unet", spatial_dims=2, in_channels=1, features=[4, 4, 8, 8, 16, 4])
    save_model(tmp_path, encoder.state_dict(), {"architecture": architecture_of(encoder)})
    state, model_card = load_model(tmp_path)
    rebuilt = encoder_from_architecture(model_card.architecture.model_dump())
    rebuilt.load_state_dict(state, strict=True)
    x = torch.randn(2, 1, 32, 32)
    encoder.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(encoder(x, dense=True).dense, rebuilt(x, dense=True).dense)


def test_card_may_describe_the_network_under_encoder() -> None:
    described = {"name": "unet", "spatial_dims": 3, "in_channels": 1, "kwargs": {"dropout": 0.1}}
    model_card = ModelCard.model_validate({"encoder": described, "preprocessing": {}})
    assert model_card.architecture.encoder == "unet"
    assert model_card.architecture.spatial_dims == 3 and model_card.architecture.kwargs == {
        "dropout": 0.1
    }
    assert model_card.model_extra == {"encoder": described}


def test_invalid_card_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="architecture"):
        save_model(tmp_path / "m", {"w": torch.zeros(1)}, {"method": {}})
    assert not (tmp_path / "m").exists()


def test_missing_and_corrupt_model_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'model.safetensors'} is missing"):
        load_model(tmp_path)
    save_model(tmp_path, {"w": torch.randn(64, 64)}, card())
    weights = tmp_path / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=rf"weights file {weights} is corrupt or truncated"):
        load_model(tmp_path)
    weights.write_bytes(good)
    (tmp_path / "model.json").write_text('{"architecture": ')
    with pytest.raises(CheckpointError, match="model.json is not readable JSON"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({**card(), "format_version": 99}))
    with pytest.raises(CheckpointError, match="upgrade medssl"):
        load_model(tmp_path)


def test_weights_and_card_from_different_saves_are_refused(tmp_path: Path) -> None:
    save_model(tmp_path / "a", {"w": torch.zeros(2)}, card())
    save_model(tmp_path / "b", {"w": torch.ones(2)}, card())
    (tmp_path / "a" / "model.json").write_text((tmp_path / "b" / "model.json").read_text())
    with pytest.raises(CheckpointError, match="different saves"):
        load_model(tmp_path / "a")


# --- the preprocessing contract ------------------------------------------------------------


def test_contract_messages_name_the_setting_and_the_fix() -> None:
    contract = {"spacing": [1.5, 1.5, 1.5], "orientation": "RAS", "hu_window": [-160, 240]}
    current = {"spacing": [2.0, 2.0, 2.0], "orientation": "RAS", "hu_window": [-160.0000001, 240]}
    problems = check_contract(contract, current, source="runs/a/model")
    assert problems == [
        "checkpoint runs/a/model was pretrained with spacing [1.5, 1.5, 1.5] but the data is "
        "prepared with [2.0, 2.0, 2.0]; set data.preprocessing.spacing=[1.5,1.5,1.5] or use a "
        "checkpoint pretrained with spacing [2.0, 2.0, 2.0]"
    ]
    assert check_contract(contract, {**current, "spacing": (1.5, 1.5000001, 1.5)}, source="x") == []
    missing = check_contract({"orientation": "RAS"}, {}, source="m")
    assert missing == [
        'checkpoint m was pretrained with orientation "RAS" but the data does not set orientation; '
        "set data.preprocessing.orientation=RAS so the input matches what the encoder learned from"
    ]
    # Keys only the data sets are not the checkpoint's business.
    assert check_contract({}, {"spacing": [1, 1, 1]}, source="m") == []
    assert len(check_contract({"normalise": True}, {"normalise": 1}, source="m")) == 1
    assert (
        len(check_contract({"spacing": [1.0, 1.0]}, {"spacing": [1.0, 1.0, 1.0]}, source="m")) == 1
    )


def test_require_contract_lists_every_difference() -> None:
    require_contract({"fs": 500.0}, {"fs": 500}, source="m")
    with pytest.raises(CheckpointError, match=r"^checkpoint m was pretrained with fs 500.0"):
        require_contract({"fs": 500.0}, {"fs": 250}, source="m")
    with pytest.raises(CheckpointError) as info:
        require_contract(
            {"fs": 500.0, "leads": ["I", "II"]}, {"fs": 250, "leads": ["II"]}, source="m"
        )
    message = str(info.value)
    assert message.startswith("2 preprocessing settings differ from checkpoint m:")
    assert "fs 500.0" in message and 'leads ["I", "II"]' in message


# --- resume state ---------------------------------------------------------------------------


def nested_state() -> dict[str, Any]:
    shared = torch.randn(3, 4)
    return {
        "ints": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4)}, 7: None, -1: True},
        "tuple_keys": {(1, "a"): (1, 2.5, "x"), ("b",): [(), [None]]},
        "ordered": OrderedDict([("z", 1), ("a", 2)]),
        "floats": [0.0, -0.0, 1e-300, float("inf"), float("-inf"), float("nan"), 2**70],
        "strings": ["", "ünïcode", "$tensor", '{"$dict": 1}'],
        "same_object_twice": [shared, shared],
        "views": [shared[0], shared.t(), shared[:, 1]],
        "dtypes": [
            torch.arange(5, dtype=d)
            for d in (torch.int8, torch.int64, torch.float16, torch.bfloat16)
        ],
        "bool_tensor": torch.tensor([True, False]),
        "empty": [torch.empty(0), torch.empty(2, 0, 3)],
        "param": torch.nn.Parameter(torch.ones(2)),
        "rng": torch.get_rng_state(),
        "numpy": [
            np.arange(6, dtype=np.float32).reshape(2, 3),
            np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
            np.array(["ab", "c"]),
            np.zeros((0, 2)),
            np.float32(0.1),
            np.int64(-5),
            np.bool_(True),
            np.str_("id"),
        ],
        "numpy_rng": np.random.RandomState(0).get_state(),
        "bytes": b"\x00\xff",
    }


def test_nested_state_round_trips_exactly(tmp_path: Path) -> None:
    state = nested_state()
    save_resume_state(state, tmp_path / "s.ckpt")
    loaded = load_resume_state(tmp_path / "s.ckpt")
    assert_identical(state, loaded)
    assert loaded["same_object_twice"][0] is loaded["same_object_twice"][1]
    assert type(loaded["param"]) is torch.nn.Parameter and loaded["param"].requires_grad
    assert [p.name for p in tmp_path.iterdir()] == ["s.ckpt"]  # no temporary left behind


def test_map_location_moves_tensors(tmp_path: Path) -> None:
    save_resume_state({"w": torch.ones(2)}, tmp_path / "s.ckpt")
    assert load_resume_state(tmp_path / "s.ckpt", map_location="cpu")["w"].device.type == "cpu"
    moved = load_resume_state(tmp_path / "s.ckpt", map_location=lambda t, loc: t.double())
    assert moved["w"].dtype == torch.float64


def test_unsupported_objects_name_the_key_path(tmp_path: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"builtins.set at checkpoint\['hyper_parameters'\]\['classes'\]"
    ):
        save_resume_state({"hyper_parameters": {"classes": {1, 2}}}, tmp_path / "s.ckpt")
    with pytest.raises(CheckpointError, match=r"complex128 .* at checkpoint\['opt'\]\[0\]"):
        save_resume_state({"opt": [torch.zeros(2, dtype=torch.complex128)]}, tmp_path / "s.ckpt")
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CheckpointError, match="contains itself"):
        save_resume_state({"loop": loop}, tmp_path / "s.ckpt")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.999])
def test_truncated_resume_file_is_a_checkpoint_error(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "s.ckpt"
    save_resume_state(nested_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=rf"resume checkpoint {path} is corrupt or truncated"):
        SafeCheckpointIO().load_checkpoint(path)


def test_other_files_are_refused(tmp_path: Path) -> None:
    save_model(tmp_path, {"w": torch.zeros(1)}, card())
    with pytest.raises(CheckpointError, match="not a medssl resume checkpoint"):
        load_resume_state(tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_resume_state(tmp_path / "nope.ckpt")
    torch.save({"w": torch.zeros(1)}, tmp_path / "pickled.ckpt")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_resume_state(tmp_path / "pickled.ckpt")


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = nested_state()
    save_resume_state(state, tmp_path / "s.ckpt")
    save_model(tmp_path / "m", {"w": torch.ones(3)}, card())

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle was used while loading")

    for module, name in [
        (pickle, "load"),
        (pickle, "loads"),
        (pickle, "Unpickler"),
        (torch, "load"),
    ]:
        monkeypatch.setattr(module, name, refuse)
    assert_identical(state, SafeCheckpointIO().load_checkpoint(tmp_path / "s.ckpt"))
    assert torch.equal(load_model(tmp_path / "m")[0]["w"], torch.ones(3))


def test_interrupted_save_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    save_resume_state({"step": 1, "w": torch.zeros(100)}, path)
    real_save = resume_io.save_file

    def crash_halfway(tensors: dict, filename: str, metadata: dict) -> None:
        real_save(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(Path(filename).read_bytes()[:50])
        assert load_resume_state(path)["step"] == 1  # the target is untouched mid-save
        raise KeyboardInterrupt

    monkeypatch.setattr(resume_io, "save_file", crash_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_resume_state({"step": 2, "w": torch.ones(100)}, path)
    assert load_resume_state(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.slow
def test_sigkill_during_saves_leaves_a_loadable_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    writer = textwrap.dedent(
        f"""
        import torch
        from medssl.platform.resume_io import save_resume_state
        step = 0
        while True:
            step += 1
            save_resume_state({{"step": step, "w": torch.full((2_000_000,), float(step))}}, {str(path)!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], cwd=REPO)
    try:
        deadline = time.monotonic() + 240  # importing torch on a loaded machine is slow
        while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.7)  # let it be somewhere inside a later save
    finally:
        proc.kill()
        proc.wait()
    state = load_resume_state(path)
    assert state["step"] >= 1 and torch.all(state["w"] == float(state["step"]))


# --- a real Lightning run -------------------------------------------------------------------


class TinyModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.start_step: int | None = None
        self.start_optimizer: dict[str, Any] | None = None
        self.start_scheduler: dict[str, Any] | None = None

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_train_start(self) -> None:
        self.start_step = self.trainer.global_step
        self.start_optimizer = copy.deepcopy(self.trainer.optimizers[0].state_dict())
        self.start_scheduler = copy.deepcopy(
            self.trainer.lr_scheduler_configs[0].scheduler.state_dict()
        )


class RecordingIO(SafeCheckpointIO):
    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        self.saved[Path(path).name] = copy.deepcopy(checkpoint)
        super().save_checkpoint(checkpoint, path, storage_options)


def fit(
    tmp_path: Path, io: SafeCheckpointIO, max_steps: int, ckpt_path: Path | None = None
) -> TinyModule:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(4, 4), torch.randn(4, 2))  # two steps an epoch
    module = TinyModule()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        plugins=[io],
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1)
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(data, batch_size=2), ckpt_path=ckpt_path)
    return module


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lightning_checkpoint_round_trips_and_resumes(tmp_path: Path) -> None:
    io = RecordingIO()
    fit(tmp_path, io, max_steps=2)
    name = "epoch=0-step=2.ckpt"
    assert name in io.saved and (tmp_path / "ckpt" / name).is_file()
    original = io.saved[name]
    loaded = SafeCheckpointIO().load_checkpoint(tmp_path / "ckpt" / name)
    assert_identical(original, loaded)
    assert 0 in loaded["optimizer_states"][0]["state"]  # int keys of the optimiser state
    assert isinstance(loaded["optimizer_states"][0]["param_groups"][0]["betas"], tuple)

    resumed = fit(
        tmp_path / "resumed", SafeCheckpointIO(), max_steps=4, ckpt_path=tmp_path / "ckpt" / name
    )
    assert resumed.start_step == 2
    assert_identical(original["optimizer_states"][0], resumed.start_optimizer)
    assert resumed.start_scheduler is not None and resumed.start_scheduler["last_epoch"] == 2
    assert resumed.trainer.global_step == 4

    # Two steps, save, resume two steps == four steps straight through.
    straight = fit(tmp_path / "straight", SafeCheckpointIO(), max_steps=4)
    for a, b in zip(resumed.parameters(), straight.parameters(), strict=True):
        assert torch.equal(a, b)


def test_remove_checkpoint(tmp_path: Path) -> None:
    save_resume_state({"a": 1}, tmp_path / "s.ckpt")
    SafeCheckpointIO().remove_checkpoint(tmp_path / "s.ckpt")
    SafeCheckpointIO().remove_checkpoint(tmp_path / "s.ckpt")  # already gone: no error
    assert not (tmp_path / "s.ckpt").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_load_on_cpu_unless_mapped(tmp_path: Path) -> None:
    state = {"w": torch.arange(4.0, device="cuda"), "cpu": torch.ones(1)}
    save_resume_state(state, tmp_path / "s.ckpt")
    on_cpu = load_resume_state(tmp_path / "s.ckpt")
    assert on_cpu["w"].device.type == "cpu" and torch.equal(on_cpu["w"], state["w"].cpu())
    mapped = load_resume_state(tmp_path / "s.ckpt", map_location={"cuda:0": "cuda:0"})
    assert mapped["w"].device.type == "cuda" and mapped["cpu"].device.type == "cpu"
    assert load_resume_state(tmp_path / "s.ckpt", map_location="cuda")["cpu"].is_cuda
