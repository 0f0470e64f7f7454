"""Checkpoints without pickle: model weights as safetensors + a JSON model card that later stages
check their input against. Resume state lives in `resume_io`."""

from __future__ import annotations

import importlib.metadata
import json
import math
import numbers
import os
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from medssl.platform.errors import CheckpointError
from medssl.platform.io import atomic_write, atomic_write_text

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"
_SAVE_ID_KEY = "medssl.save_id"
PathLike = str | os.PathLike[str]


class ArchitectureCard(BaseModel):
    """How to rebuild the network: an `ENCODERS` name, its input geometry and its options
    (`encoders.architecture_of(encoder)` writes it, `encoder_from_architecture` reads it)."""

    model_config = ConfigDict(extra="allow")
    encoder: str
    spatial_dims: int | None = None
    in_channels: int | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ModelCard(BaseModel):
    """What travels with the weights (`model.json`), so that using a model needs nothing else.

    `preprocessing` is the input contract later stages check with `require_contract`: keys as
    in `data.preprocessing` (spacing, orientation, intensity window, normalisation, sampling
    rate, channel order, ...). Methods add their own fields (extra keys are kept).
    """

    model_config = ConfigDict(extra="allow")
    format_version: int = FORMAT_VERSION
    architecture: ArchitectureCard
    method: dict[str, Any] = Field(default_factory=dict)
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    label_map: dict[int, str] | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    config_hash: str | None = None
    created: str | None = None
    save_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _architecture_from_encoder(cls, data: Any) -> Any:
        # Cards may describe the network as {"encoder": {"name", "spatial_dims",
        # "in_channels", "kwargs"}}; both spellings give the same `architecture`.
        encoder = data.get("encoder") if isinstance(data, dict) else None
        if isinstance(encoder, Mapping) and "name" in encoder and "architecture" not in data:
            keys = ("spatial_dims", "in_channels", "kwargs")
            described = {k: encoder[k] for k in keys if k in encoder}
            return {**data, "architecture": {"encoder": encoder["name"], **described}}
        return data


def _library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "torch": torch.__version__}
    for dist in ("medssl", "monai", "safetensors", "lightning"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found = getattr(sys.modules.get(dist), "__version__", None)
            versions[dist] = str(found) if found else "unknown"
    return versions


def safetensors_ready(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses views, shared storage (tied weights) and non-contiguous tensors:
    give each such tensor its own contiguous copy."""
    ready: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        t = tensor.detach().cpu()
        ptr = t.untyped_storage().data_ptr()
        whole = t.untyped_storage().nbytes() == t.numel() * t.element_size()
        if not t.is_contiguous() or not whole or (ptr != 0 and ptr in seen):
            t = t.contiguous().clone()
        seen.add(t.untyped_storage().data_ptr())
        ready[name] = t
    return ready


def read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file (never unpickles); a damaged file
    raises CheckpointError naming it as `what`."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"{what} {path} is corrupt or truncated ({err}); re-run the stage that wrote it "
            "or copy the file again"
        ) from err
    return tensors, metadata


def save_model(
    folder: PathLike, state_dict: Mapping[str, torch.Tensor], card: Mapping[str, Any] | ModelCard
) -> None:
    """Write `folder/model.safetensors` and `folder/model.json`, each atomically.

    The card is validated first (nothing is written if it is invalid); `versions`, `created`
    and `save_id` are filled here.
    """
    folder = Path(folder)
    raw = card.model_dump() if isinstance(card, ModelCard) else dict(card)
    try:
        model_card = ModelCard.model_validate(raw)
    except ValidationError as err:
        raise CheckpointError(f"model card for {folder} is invalid: {_first_problem(err)}") from err
    model_card = model_card.model_copy(
        update={
            "versions": {**model_card.versions, **_library_versions()},
            "created": model_card.created or datetime.now(UTC).isoformat(timespec="seconds"),
            "save_id": uuid.uuid4().hex,
        }
    )
    try:
        text = json.dumps(model_card.model_dump(mode="json"), indent=2, allow_nan=False) + "\n"
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"model card for {folder} is not plain JSON ({err})") from err
    bad = [k for k, v in state_dict.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad:
        raise CheckpointError(
            f"state_dict for {folder} maps {bad[:3]} to non-tensors; pass module.state_dict()"
        )
    tensors = safetensors_ready(state_dict)
    meta = {"format": "pt", _SAVE_ID_KEY: str(model_card.save_id)}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    atomic_write_text(folder / CARD_FILE, text)


def load_model(folder: PathLike) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """Read the weights and card `save_model` wrote (safetensors + JSON only, no pickle)."""
    folder = Path(folder)
    if folder.is_file() and folder.name in (WEIGHTS_FILE, CARD_FILE):
        folder = folder.parent
    weights, card_path = folder / WEIGHTS_FILE, folder / CARD_FILE
    for required in (weights, card_path):
        if not required.is_file():
            raise CheckpointError(
                f"checkpoint file {required} is missing; point at a model folder written by "
                f"medssl (it holds {WEIGHTS_FILE} and {CARD_FILE}), e.g. a run's pretrain/model"
            )
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"model card {card_path} is not readable JSON ({err}); restore it or re-save the model"
        ) from err
    if not isinstance(raw, dict):
        raise CheckpointError(f"model card {card_path} must hold a JSON object; re-save the model")
    version = raw.get("format_version", FORMAT_VERSION)
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise CheckpointError(
            f"model card {card_path} has format_version {version}, newer than this medssl "
            f"reads ({FORMAT_VERSION}); upgrade medssl"
        )
    try:
        model_card = ModelCard.model_validate(raw)
    except ValidationError as err:
        raise CheckpointError(
            f"model card {card_path} is invalid: {_first_problem(err)}; fix it or re-save the model"
        ) from err
    tensors, metadata = read_safetensors(weights, "weights file")
    saved_id = metadata.get(_SAVE_ID_KEY)
    if saved_id and model_card.save_id and saved_id != model_card.save_id:
        raise CheckpointError(
            f"{card_path} and {weights} come from different saves (an interrupted save?); "
            "re-save the model or restore both files together"
        )
    return tensors, model_card


def _first_problem(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'card'}: {first['msg']}"


# --- the preprocessing contract -------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _show(value: Any) -> str:
    try:
        return json.dumps(_plain(value))
    except (TypeError, ValueError):
        return repr(value)


def _as_override(value: Any) -> str:
    return value if isinstance(value, str) else _show(value).replace(", ", ",").replace(": ", ":")


def _same(expected: Any, actual: Any, rel_tol: float, abs_tol: float) -> bool:
    if isinstance(expected, bool | np.bool_) or isinstance(actual, bool | np.bool_):
        return type(_plain(expected)) is type(_plain(actual)) and expected == actual
    if isinstance(expected, numbers.Real) and isinstance(actual, numbers.Real):
        a, b = float(expected), float(actual)
        return (math.isnan(a) and math.isnan(b)) or math.isclose(
            a, b, rel_tol=rel_tol, abs_tol=abs_tol
        )
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return set(expected) == set(actual) and all(
            _same(expected[k], actual[k], rel_tol, abs_tol) for k in expected
        )
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple):
        return len(expected) == len(actual) and all(
            _same(e, a, rel_tol, abs_tol) for e, a in zip(expected, actual, strict=True)
        )
    return bool(expected == actual)


def check_contract(
    card_contract: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    source: str,
    config_key: str = "data.preprocessing",
    rel_tol: float = 1e-5,
    abs_tol: float = 1e-8,
) -> list[str]:
    """One sentence per setting of the card's contract the current preprocessing breaks.

    Numbers compare with a tolerance (`rel_tol`, `abs_tol`); keys the card does not record
    are not checked. `config_key` is where the user sets these values, for the fix.
    """
    problems = []
    for key, expected in card_contract.items():
        fix = f"set {config_key}.{key}={_as_override(expected)}"
        if key not in current:
            problems.append(
                f"checkpoint {source} was pretrained with {key} {_show(expected)} but the data "
                f"does not set {key}; {fix} so the input matches what the encoder learned from"
            )
        elif not _same(expected, current[key], rel_tol, abs_tol):
            problems.append(
                f"checkpoint {source} was pretrained with {key} {_show(expected)} but the data "
                f"is prepared with {_show(current[key])}; {fix} or use a checkpoint pretrained "
                f"with {key} {_show(current[key])}"
            )
    return problems


def require_contract(
    card_contract: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    source: str,
    config_key: str = "data.preprocessing",
) -> None:
    """Raise CheckpointError listing every difference `check_contract` finds."""
    problems = check_contract(card_contract, current, source=source, config_key=config_key)
    if len(problems) == 1:
        raise CheckpointError(problems[0])
    if problems:
        listed = "\n".join(f"- {p}" for p in problems)
        raise CheckpointError(
            f"{len(problems)} preprocessing settings differ from checkpoint {source}:\n{listed}"
        )


# --- resume state: a pickle-free Lightning checkpoint --------------------------------------
