"""What the MONAI-backed encoders share: one forward (encode, pool, optionally decode), the
input-size check, and turning JSON layer specs into the tuples MONAI expects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from medssl.platform.encoders.base import Encoder, EncoderOutput

#: A MONAI layer spec as it appears in a config or card: "name" or [name, {args}].
LayerSpec = str | Sequence[Any]


def layer_spec(value: LayerSpec, argument: str) -> str | tuple[str, dict[str, Any]]:
    """The MONAI form of an activation/norm spec; JSON turns MONAI's tuples into lists."""
    if isinstance(value, str):
        return value
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], dict)
    ):
        return (value[0], dict(value[1]))
    raise ValueError(f"{argument} must be a name or [name, {{args}}], got {value!r}")


def jsonable(value: Any) -> Any:
    """Tuples become lists (recursively) so `init_kwargs` survives a JSON round trip."""
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def positive_ints(
    value: Sequence[int], argument: str, length: int | None = None
) -> tuple[int, ...]:
    """Validate a width/depth list: positive integers, optionally of a fixed length."""
    items = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if (
        items is None
        or (length is not None and len(items) != length)
        or not items
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items)
    ):
        size = f"{length} " if length is not None else ""
        raise ValueError(f"{argument} must be {size}positive integers, got {value!r}")
    return items


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Adaptive average pooling to one value per channel: (B, C, *spatial) -> (B, C)."""
    return x.flatten(2).mean(dim=2)


class MonaiEncoder(Encoder):
    """Shared forward of the MONAI encoders.

    Subclasses build `self.net` (the MONAI network without its output layer), set
    `input_multiple` (every spatial side must be divisible by it) and implement
    `encode(x) -> (deepest, skips)` and, with a decoder, `decode(deepest, skips)`.
    """

    def __init__(self, spatial_dims: int, in_channels: int) -> None:
        super().__init__(spatial_dims, in_channels)
        self.input_multiple = 1
        #: why sides must be divisible by `input_multiple`, for the error message.
        self.size_reason = ""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def decode(self, deepest: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no decoder")

    def check_size(self, x: torch.Tensor) -> None:
        m = self.input_multiple
        if m > 1 and any(side % m for side in x.shape[2:]):
            fitted = tuple(max(m, -(-side // m) * m) for side in x.shape[2:])
            raise ValueError(
                f"{self.name} needs every spatial side divisible by {m} ({self.size_reason}), "
                f"got input {tuple(x.shape)}; pad or crop the spatial size to e.g. {fitted}"
            )

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        self.check_input(x)
        self.check_size(x)
        deepest, skips = self.encode(x)
        features = global_pool(deepest)
        if not (dense and self.has_decoder):
            return EncoderOutput(global_features=features)
        return EncoderOutput(global_features=features, dense=self.decode(deepest, skips))
