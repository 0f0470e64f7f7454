"""Build an encoder by its registry name with checked keyword arguments, and rebuild one from
the architecture a model card records."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from medssl.platform.encoders.base import Encoder
from medssl.platform.registry import ENCODERS

#: Constructor arguments every encoder takes positionally; not "options".
_COMMON = ("self", "spatial_dims", "in_channels")


def encoder_options(name: str) -> list[str]:
    """The keyword options encoder `name` accepts besides spatial_dims and in_channels."""
    cls = _encoder_class(name)
    params = inspect.signature(cls.__init__).parameters.values()
    return [
        p.name
        for p in params
        if p.name not in _COMMON and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def build_encoder(name: str, spatial_dims: int, in_channels: int, **kwargs: Any) -> Encoder:
    """Instantiate the encoder registered as `name`.

    Unknown options raise ValueError naming the allowed ones, before anything is built.

    Example:
        >>> enc = build_encoder("unet", spatial_dims=2, in_channels=1, features=[8, 8, 16, 16, 32, 8])
        >>> enc.feature_dim
        32
    """
    cls = _encoder_class(name)
    takes_any = any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values()
    )
    allowed = encoder_options(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown and not takes_any:
        raise ValueError(
            f"encoder '{name}' does not take {', '.join(unknown)}; "
            f"allowed options: {', '.join(allowed) or 'none'}"
        )
    encoder = cls(spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder '{name}' ({cls.__qualname__}) is not an Encoder subclass")
    return encoder


def architecture_of(encoder: Encoder) -> dict[str, Any]:
    """What a model card stores to rebuild `encoder` (its `architecture` field).

    `kwargs` are the encoder's options (`init_kwargs`), as in the config's encoder.kwargs.
    """
    return {
        "encoder": encoder.name,
        "spatial_dims": encoder.spatial_dims,
        "in_channels": encoder.in_channels,
        "kwargs": dict(encoder.init_kwargs),
    }


def encoder_from_architecture(architecture: Mapping[str, Any]) -> Encoder:
    """Rebuild an encoder from `architecture_of`'s output (a model card's architecture)."""
    missing = [k for k in ("encoder", "spatial_dims", "in_channels") if architecture.get(k) is None]
    if missing:
        raise ValueError(
            f"architecture misses {', '.join(missing)}; got {dict(architecture)} "
            "(write it with architecture_of(encoder))"
        )
    return build_encoder(
        str(architecture["encoder"]),
        spatial_dims=int(architecture["spatial_dims"]),
        in_channels=int(architecture["in_channels"]),
        **dict(architecture.get("kwargs") or {}),
    )


def _encoder_class(name: str) -> type[Encoder]:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; available: {', '.join(ENCODERS.names())}")
    return ENCODERS.get(name)
