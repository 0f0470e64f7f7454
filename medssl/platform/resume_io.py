"""Lightning resume state without pickle: the checkpoint dict's tensors as safetensors and the
rest as a JSON skeleton that keeps key types, written atomically."""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import CheckpointIO
from safetensors.torch import save_file

from medssl.platform.checkpoint import PathLike, read_safetensors, safetensors_ready
from medssl.platform.errors import CheckpointError
from medssl.platform.io import atomic_write

RESUME_FORMAT = "medssl-resume/1"
_FORMAT_KEY, _SKELETON_KEY = "medssl.format", "medssl.skeleton"
_DTYPE_NAMES = (
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
    "bool", "uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2", "complex64",
)  # fmt: skip
_SAFE_DTYPES = frozenset(getattr(torch, n) for n in _DTYPE_NAMES if hasattr(torch, n))
_ALLOWED = "dict, list, tuple, None, bool, int, float, str, bytes, tensors and numpy arrays/scalars"


class _TreeWriter:
    """Splits a nested state into tensors and a JSON skeleton that keeps every type.

    Python dicts become {"$dict": [[key, value], ...]} (so int and tuple keys survive),
    tuples {"$tuple": [...]}, tensors {"$tensor": name}; lists and JSON scalars stay as they
    are, so every JSON object in the skeleton is one of these tags.
    """

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._names: dict[int, str] = {}  # one tensor referenced twice is stored once
        self._open: set[int] = set()

    def encode(self, obj: Any, path: str) -> Any:
        kind = type(obj)
        if obj is None or kind in (bool, int, str):
            return obj
        if kind is float:
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if kind in (list, tuple, dict, OrderedDict):
            return self._container(obj, path)
        if kind in (torch.Tensor, torch.nn.Parameter):
            return self._tensor(obj, path)
        if kind is np.ndarray:
            return self._ndarray(obj, path)
        if isinstance(obj, np.generic) and not obj.dtype.hasobject and obj.dtype.kind != "V":
            return {"$npscalar": obj.dtype.str, "hex": obj.tobytes().hex()}
        if kind is bytes:
            return {"$bytes": obj.hex()}
        raise CheckpointError(
            f"cannot save a {kind.__module__}.{kind.__qualname__} at checkpoint{path or '[root]'}: "
            f"resume state may hold only {_ALLOWED}; convert it in on_save_checkpoint or keep "
            "it out of save_hyperparameters"
        )

    def _container(self, obj: Any, path: str) -> Any:
        if id(obj) in self._open:
            raise CheckpointError(f"checkpoint{path} contains itself; resume state must be a tree")
        self._open.add(id(obj))
        try:
            if type(obj) is list:
                return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]
            if type(obj) is tuple:
                return {"$tuple": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]}
            tag = "$dict" if type(obj) is dict else "$odict"
            return {
                tag: [
                    [self._key(k, path), self.encode(v, f"{path}[{k!r}]")] for k, v in obj.items()
                ]
            }
        finally:
            self._open.discard(id(obj))

    def _key(self, key: Any, path: str) -> Any:
        if isinstance(key, torch.Tensor | np.ndarray):
            raise CheckpointError(
                f"checkpoint{path} has a tensor as a dict key; use str or int keys"
            )
        return self.encode(key, f"{path}[key {key!r}]")

    def _tensor(self, t: torch.Tensor, path: str) -> dict[str, Any]:
        if t.layout != torch.strided or t.dtype not in _SAFE_DTYPES or t.device.type == "meta":
            raise CheckpointError(
                f"cannot save the {t.dtype} {t.layout} tensor on {t.device} at checkpoint{path}: "
                "resume state holds dense tensors of plain dtypes; convert it in on_save_checkpoint"
            )
        name = self._names.get(id(t))
        if name is None:
            name = self._names[id(t)] = f"t{len(self.tensors)}"
            self.tensors[name] = t.detach()
        spec: dict[str, Any] = {"$tensor": name}
        if t.device.type != "cpu":
            spec["device"] = str(t.device)
        if type(t) is torch.nn.Parameter:
            spec["parameter"] = True
        if t.requires_grad:
            spec["requires_grad"] = True
        return spec

    def _ndarray(self, a: np.ndarray, path: str) -> dict[str, Any]:
        if a.dtype.hasobject or a.dtype.kind == "V":
            raise CheckpointError(
                f"cannot save the numpy array of dtype {a.dtype} at checkpoint{path}: only plain "
                "numeric, bool, string and datetime dtypes are supported"
            )
        raw = np.frombuffer(np.ascontiguousarray(a).tobytes(), dtype=np.uint8).copy()
        name = f"t{len(self.tensors)}"
        self.tensors[name] = torch.from_numpy(raw)
        return {"$ndarray": name, "dtype": a.dtype.str, "shape": list(a.shape)}


class _TreeReader:
    """Rebuilds what `_TreeWriter` split, placing tensors according to `map_location`."""

    def __init__(self, tensors: dict[str, torch.Tensor], map_location: Any) -> None:
        self.tensors = tensors
        self.map_location = map_location
        self._built: dict[str, torch.Tensor] = {}

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        tag = next(iter(node))
        body = node[tag]
        if tag == "$tuple":
            return tuple(self.decode(v) for v in body)
        if tag in ("$dict", "$odict"):
            items = ((self.decode(k), self.decode(v)) for k, v in body)
            return dict(items) if tag == "$dict" else OrderedDict(items)
        if tag == "$float":
            return float(body)
        if tag == "$tensor":
            return self._tensor(node)
        if tag == "$ndarray":
            raw = self.tensors[body].numpy().tobytes()
            return np.frombuffer(raw, dtype=np.dtype(node["dtype"])).reshape(node["shape"]).copy()
        if tag == "$npscalar":
            return np.frombuffer(bytes.fromhex(node["hex"]), dtype=np.dtype(body))[0]
        if tag == "$bytes":
            return bytes.fromhex(body)
        raise ValueError(f"unknown tag {tag!r}")

    def _tensor(self, node: dict[str, Any]) -> torch.Tensor:
        name = node["$tensor"]
        if name not in self._built:
            t = _place(self.tensors[name], node.get("device", "cpu"), self.map_location)
            if node.get("parameter"):
                t = torch.nn.Parameter(t, requires_grad=bool(node.get("requires_grad")))
            elif node.get("requires_grad"):
                t.requires_grad_(True)
            self._built[name] = t
        return self._built[name]


def _place(t: torch.Tensor, saved_on: str, map_location: Any) -> torch.Tensor:
    """None keeps tensors on the CPU (Lightning moves state itself); a device or a
    {saved device: device} dict moves them; a callable gets (tensor, saved device)."""
    if map_location is None:
        return t
    if isinstance(map_location, dict):
        target = map_location.get(saved_on)
        return t.to(target) if target is not None else t
    if callable(map_location):
        moved = map_location(t, saved_on)
        return moved if isinstance(moved, torch.Tensor) else t
    return t.to(map_location)


def _local_path(path: PathLike) -> Path:
    text = os.fspath(path)
    if "://" in text:
        raise CheckpointError(
            f"checkpoint path {text} is remote; medssl checkpoints are local files"
        )
    return Path(text)


def save_resume_state(state: Mapping[str, Any], path: PathLike) -> None:
    """Write `state` (e.g. Lightning's checkpoint dict) to one safetensors file at `path`:
    tensors as tensors, the rest as a JSON skeleton in the file's metadata; atomically."""
    if not isinstance(state, dict):
        raise CheckpointError(f"resume state must be a dict, got {type(state).__name__}")
    writer = _TreeWriter()
    skeleton = json.dumps(writer.encode(state, ""), separators=(",", ":"), allow_nan=False)
    tensors = safetensors_ready(writer.tensors)
    meta = {"format": "pt", _FORMAT_KEY: RESUME_FORMAT, _SKELETON_KEY: skeleton}
    atomic_write(_local_path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_resume_state(path: PathLike, map_location: Any = None) -> dict[str, Any]:
    """Rebuild the exact dict `save_resume_state` wrote; never unpickles anything."""
    file = _local_path(path)
    if not file.is_file():
        raise CheckpointError(
            f"resume checkpoint {file} does not exist; pass the path of a .ckpt file that "
            "SafeCheckpointIO wrote, or start without ckpt_path"
        )
    tensors, metadata = read_safetensors(file, "resume checkpoint")
    if metadata.get(_FORMAT_KEY) != RESUME_FORMAT or _SKELETON_KEY not in metadata:
        raise CheckpointError(
            f"{file} is not a medssl resume checkpoint (format {metadata.get(_FORMAT_KEY)!r}, "
            f"expected {RESUME_FORMAT!r}); resume only from files written by SafeCheckpointIO"
        )
    try:
        state = _TreeReader(tensors, map_location).decode(json.loads(metadata[_SKELETON_KEY]))
    except (ValueError, KeyError, TypeError, StopIteration, AttributeError) as err:
        raise CheckpointError(
            f"resume checkpoint {file} has a damaged skeleton ({err!r}); resume from an "
            "earlier checkpoint"
        ) from err
    return state


class SafeCheckpointIO(CheckpointIO):
    """Lightning checkpoint IO without pickle: `Trainer(plugins=[SafeCheckpointIO()])`.

    Every `.ckpt` is a safetensors file whose metadata holds a JSON skeleton of the rest of
    Lightning's checkpoint dict (loops, optimiser and scheduler state with their int keys
    and tuples, callbacks, RNG states), written atomically; loading never calls torch.load.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: PathLike, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__} takes no storage_options, got {storage_options!r}"
            )
        save_resume_state(checkpoint, path)

    def load_checkpoint(
        self, path: PathLike, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # weights_only is moot: nothing here can execute code while loading.
        return load_resume_state(path, map_location)

    def remove_checkpoint(self, path: PathLike) -> None:
        _local_path(path).unlink(missing_ok=True)
