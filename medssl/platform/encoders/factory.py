"""Build an encoder by its registry name with options validated by its `Config`, and rebuild
one from the architecture a model card records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medssl.platform.encoders.base import Encoder, spatial_dims_problem
from medssl.platform.errors import ConfigError
from medssl.platform.registry import ENCODERS


def encoder_options(name: str) -> list[str]:
    """The keyword options encoder `name` accepts besides spatial_dims and in_channels (its
    Config's fields; the tsai backbones also take their tsai class's arguments)."""
    return list(_encoder_class(name).Config.model_fields)


def build_encoder(name: str, spatial_dims: int, in_channels: int, **kwargs: Any) -> Encoder:
    """Instantiate the encoder registered as `name` with options `kwargs` (a config's
    ``encoder.kwargs``).

    Before anything is built, the options are validated by the encoder's `Config`: an unknown
    name, a spatial_dims the encoder does not support, or a bad option raises ConfigError naming
    the key (``encoder.name``, ``encoder.spatial_dims``, ``encoder.kwargs.<key>``); so does a
    library refusing what an option passes on to it (the arguments of an activation).

    Example:
        >>> enc = build_encoder("unet", spatial_dims=2, in_channels=1, features=[8, 8, 16, 16, 32, 8])
        >>> enc.feature_dim
        32
    """
    cls = _encoder_class(name)
    config = check_encoder(name, spatial_dims, kwargs)
    try:
        encoder = cls(spatial_dims=spatial_dims, in_channels=in_channels, config=config)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError) as error:
        # What a Config cannot see: MONAI or torch refusing the inner arguments of an option,
        # such as act: [LeakyReLU, {slope: 0.1}].
        raise ConfigError(
            f"encoder.kwargs: encoder '{name}' could not be built from {kwargs} ({error}); "
            "check the arguments inside its options"
        ) from None
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder '{name}' ({cls.__qualname__}) is not an Encoder subclass")
    return encoder


def check_encoder(name: str, spatial_dims: int, kwargs: dict[str, Any]) -> Any:
    """The validated Config of encoder `name` for `kwargs`, without building anything (what a
    pipeline checks before it reads data). Raises ConfigError naming ``encoder.name``,
    ``encoder.spatial_dims`` or ``encoder.kwargs.<key>``.

    Example:
        >>> check_encoder("unet", 2, {"bogus": 1})
        Traceback (most recent call last):
        ...
        medssl.platform.errors.ConfigError: encoder.kwargs.bogus: encoder 'unet' has no such option; remove it or use one of: features, act, norm, bias, dropout, upsample
    """
    cls = _encoder_class(name)
    if spatial_dims not in cls.spatial_dims_allowed:
        raise ConfigError(
            f"encoder.spatial_dims: {spatial_dims_problem(cls, spatial_dims)}; set "
            f"encoder.spatial_dims to {' or '.join(map(str, cls.spatial_dims_allowed))} or "
            "choose another encoder.name"
        )
    return cls.validate_config(kwargs)


def architecture_of(encoder: Encoder) -> dict[str, Any]:
    """What a model card stores to rebuild `encoder` (its `architecture` field).

    `kwargs` are the encoder's options with their defaults (`init_kwargs`, the dump of its
    Config), as in the config's encoder.kwargs.
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
        raise ConfigError(
            f"encoder.name: unknown encoder {name!r}; available: {', '.join(ENCODERS.names())}; "
            "set encoder.name to one of them"
        )
    return ENCODERS.get(name)
