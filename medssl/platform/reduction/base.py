"""What every reduction strategy shares: the Reducer contract, the 8-bit scaling of slices,
and the greedy pass that keeps a reference slice and drops everything similar to it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medssl.platform.errors import ConfigError
from medssl.platform.registry import REDUCERS

Scaling = Literal["volume", "slice", "window"]


class Reducer(ABC):
    """A strategy that picks the slices of one volume worth keeping for pretraining.

    `select(volume)` takes the slices of ONE volume in physical order (first = most inferior)
    and returns the kept positions in increasing order. Slices are never compared across
    volumes. Each strategy validates its own pydantic `Config`; a bad setting raises a
    ConfigError naming the key (`reduce.threshold` or `reduce.kwargs.<key>`).
    """

    name: ClassVar[str] = "reducer"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: BaseModel | Mapping[str, Any] | None = None) -> None:
        if isinstance(config, self.Config):
            self.config = config
            return
        raw = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
        try:
            self.config = self.Config.model_validate(raw)
        except ValidationError as exc:
            raise _config_error(self.name, exc) from None

    @abstractmethod
    def select(self, volume: torch.Tensor) -> list[int]:
        """Kept slice positions (increasing) of one volume."""

    def params(self) -> dict[str, Any]:
        """The full settings, defaults included, as written to the kept-index."""
        return self.config.model_dump(mode="json")


def _config_error(strategy: str, error: ValidationError) -> ConfigError:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    where = "reduce.threshold" if key == "threshold" else f"reduce.kwargs.{key}".rstrip(".")
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(_settable(strategy))
        return ConfigError(
            f"{where}: strategy '{strategy}' has no such setting; it takes: {allowed}"
        )
    msg = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"{where}: {msg} (got {first.get('input')!r}, strategy '{strategy}')")


def _settable(strategy: str) -> list[str]:
    return sorted(REDUCERS.get(strategy).Config.model_fields)


def build_reducer(
    strategy: str, threshold: float | None = None, params: Mapping[str, Any] | None = None
) -> Reducer:
    """The registered strategy `strategy` with `params` (and `threshold`, when given)."""
    if strategy not in REDUCERS:
        raise ConfigError(
            f"reduce.strategy: unknown strategy '{strategy}'; available: "
            f"{', '.join(REDUCERS.names())}"
        )
    settings = dict(params or {})
    if threshold is not None:
        settings["threshold"] = threshold
    return REDUCERS.get(strategy)(settings)


# ----------------------------------------------------------------------------- 8-bit input


class SliceImageConfig(BaseModel):
    """How slices become 8-bit grey images before they are compared.

    scaling: "volume" maps the volume's min..max to 0..255 (as in the paper), "slice" each
        slice's own min..max, "window" clips to `window` (e.g. a HU window) first.
    """

    model_config = ConfigDict(extra="forbid")

    scaling: Scaling = "volume"
    window: tuple[float, float] | None = Field(None, description="(low, high) for 'window'")

    @model_validator(mode="after")
    def _window(self) -> SliceImageConfig:
        if self.scaling == "window":
            if self.window is None:
                raise ValueError("scaling 'window' needs window: [low, high]")
            if self.window[0] >= self.window[1]:
                raise ValueError(f"window needs low < high; got {self.window}")
        return self


def grey_affine(
    volume: torch.Tensor, scaling: Scaling, window: tuple[float, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, offset), each (m, 1, 1) float64, so that `volume * scale + offset` maps the
    chosen low..high range to 0..255 (see `quantize_grey`): m = n slices for "slice"
    scaling, m = 1 (one map for every slice) for "volume" and "window".

    A constant volume (or slice) gets scale 0: it becomes all black instead of dividing by 0.
    """
    n = volume.shape[0]
    if volume.numel() == 0:
        empty = torch.zeros(n, 1, 1, dtype=torch.float64, device=volume.device)
        return empty, empty
    if scaling == "slice":
        lo = volume.reshape(n, -1).amin(dim=1).double()
        span = volume.reshape(n, -1).amax(dim=1).double() - lo
        scale = torch.where(span > 0, 255.0 / span.clamp_min(1e-300), torch.zeros_like(span))
        return scale.view(n, 1, 1), (-lo * scale).view(n, 1, 1)
    if scaling == "window":
        assert window is not None
        low, high = float(window[0]), float(window[1])
    else:
        least, most = torch.aminmax(volume)
        low, high = float(least.item()), float(most.item())
    # One map: plain float64 arithmetic, not a dozen tensor operations on one number each.
    one = 255.0 / (high - low) if high > low else 0.0
    maps = torch.tensor([[[one]], [[-low * one]]], dtype=torch.float64, device=volume.device)
    return maps[:1], maps[1:]


def grey_map(
    scale: torch.Tensor, offset: torch.Tensor, dtype: torch.dtype = torch.float32
) -> tuple[float | torch.Tensor, torch.Tensor]:
    """The map of `grey_affine` in the arithmetic's precision, ready for `grey_levels`:
    (factor, shift = offset + 0.5); factor is a number when one map serves every slice
    (add's scalar multiplier is 2-3x faster than addcmul on a CPU)."""
    factor = scale.to(dtype)
    shift = offset.to(dtype) + 0.5
    return (factor.item() if factor.numel() == 1 else factor), shift


def grey_levels(
    x: torch.Tensor,
    factor: float | torch.Tensor,
    shift: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """8-bit grey levels floor(x * factor + shift) clipped to 0..255, the affine map rounded
    once (a fused multiply-add), into `out` when given.

    Clipping after the affine map is the same as clipping x to a window first (the map is
    increasing and sends the window's ends to 0 and 255), so no full-size clipped copy is
    made; the map is one fused pass, as each pass over a big volume costs memory bandwidth.
    """
    if isinstance(factor, float):
        grey = torch.add(shift, x, alpha=factor, out=out)
    else:
        grey = torch.addcmul(shift, x, factor, out=out)
    return grey.floor_().clamp_(0.0, 255.0)


def quantize_grey(
    x: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """8-bit grey levels floor(x * scale + offset + 0.5) clipped to 0..255, as float (into
    `out` when given, whose dtype is the arithmetic's; else float32). `scale` and `offset`
    are (n, 1, 1), one map per slice, or (1, 1, 1), one for all (see `grey_levels`)."""
    dtype = out.dtype if out is not None else torch.float32
    factor, shift = grey_map(scale, offset, dtype)
    return grey_levels(x if out is not None else x.to(dtype), factor, shift, out)


def to_grey(
    volume: torch.Tensor, scaling: Scaling = "volume", window: tuple[float, float] | None = None
) -> torch.Tensor:
    """The slices as 8-bit grey levels (float32 holding integers 0..255)."""
    scale, offset = grey_affine(volume, scaling, window)
    return quantize_grey(volume, scale, offset)


def check_slices(volume: torch.Tensor, strategy: str) -> torch.Tensor:
    if volume.ndim != 3:
        raise ValueError(
            f"{strategy}: expected the slices of one volume as (n_slices, H, W); "
            f"got shape {tuple(volume.shape)}"
        )
    return volume


# ----------------------------------------------------------------------------- greedy pass


def greedy_keep(near: torch.Tensor | np.ndarray) -> list[int]:
    """Keep the first remaining slice, drop every remaining slice `near` it, repeat.

    `near[i, j]` says slices i and j are near-duplicates (Hamming distance <= threshold,
    similarity >= threshold). One boolean matrix in, a short loop over the slices out.
    """
    matrix = near.cpu().numpy() if isinstance(near, torch.Tensor) else np.asarray(near)
    n = matrix.shape[0]
    alive = np.ones(n, dtype=bool)
    kept = []
    for i in range(n):
        if alive[i]:
            kept.append(i)
            alive &= ~matrix[i]
    return kept


def greedy_keep_rows(n: int, near_row: Callable[[int, torch.Tensor], torch.Tensor]) -> list[int]:
    """`greedy_keep` when the full matrix is too dear: `near_row(i, rest)` says which of the
    remaining slices `rest` (indices > i) are near the kept reference i."""
    alive = torch.ones(n, dtype=torch.bool)
    kept = []
    for i in range(n):
        if not alive[i]:
            continue
        kept.append(i)
        rest = torch.nonzero(alive[i + 1 :]).flatten() + (i + 1)
        if len(rest):
            alive[rest[near_row(i, rest).cpu()]] = False
    return kept


def greedy_keep_reference(n: int, is_near: Callable[[int, int], bool]) -> list[int]:
    """The paper's loop, literally: a list of remaining slices; its first becomes a kept
    reference and takes every remaining near-duplicate with it. Slow; for tests."""
    remaining = list(range(n))
    kept = []
    while remaining:
        reference = remaining.pop(0)
        kept.append(reference)
        remaining = [j for j in remaining if not is_near(reference, j)]
    return kept
