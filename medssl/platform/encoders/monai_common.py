"""What the MONAI-backed encoders share: one forward (encode, pool, optionally decode), the
input-size check, and the option types of MONAI layer specs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import torch
from monai.networks.layers.factories import Act, Norm
from pydantic import AfterValidator

from medssl.platform.encoders.base import ConfigLike, Encoder, EncoderOutput


def _layer_spec(value: Any, factory: Any, kind: str) -> str | tuple[str, dict[str, Any]]:
    """The MONAI form of an activation/norm spec ("name" or (name, {args})); JSON and YAML
    turn MONAI's tuples into lists. The name must be one the MONAI factory knows."""
    spec: str | tuple[str, dict[str, Any]]
    if isinstance(value, str):
        spec = value
    elif (
        isinstance(value, Sequence)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], dict)
    ):
        spec = (value[0], dict(value[1]))
    else:
        raise ValueError("must be a name or [name, {args}]")
    name = spec if isinstance(spec, str) else spec[0]
    # "" is MONAI's "no layer" (an identity).
    if name and name.upper() not in factory.names:
        raise ValueError(f"unknown {kind}; MONAI knows {', '.join(sorted(factory.names))}")
    return spec


def _activation(value: Any) -> str | tuple[str, dict[str, Any]]:
    return _layer_spec(value, Act, "activation")


def _normalisation(value: Any) -> str | tuple[str, dict[str, Any]]:
    return _layer_spec(value, Norm, "normalisation")


#: An activation as a config or card writes it: a MONAI name or [name, {args}].
ActSpec = Annotated[Any, AfterValidator(_activation)]
#: A normalisation as a config or card writes it: a MONAI name or [name, {args}].
NormSpec = Annotated[Any, AfterValidator(_normalisation)]


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Adaptive average pooling to one value per channel: (B, C, *spatial) -> (B, C)."""
    return x.flatten(2).mean(dim=2)


class MonaiEncoder(Encoder):
    """Shared forward of the MONAI encoders.

    Subclasses build `self.net` (the MONAI network without its output layer), set
    `input_multiple` (every spatial side must be divisible by it) and implement
    `encode(x) -> (deepest, skips)` and, with a decoder, `decode(deepest, skips)`.
    """

    spatial_dims_allowed = (2, 3)

    def __init__(
        self, spatial_dims: int, in_channels: int, config: ConfigLike = None, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, config, **options)
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
