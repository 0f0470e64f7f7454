"""The Encoder contract: a network that gives a global vector and, where it has a decoder,
a dense feature map at input resolution; and how an encoder's options are validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError
from torch import nn

from medssl.platform.errors import ConfigError

#: A positive integer; bools and floats are refused (True is not a width).
StrictPositiveInt = Annotated[int, Field(strict=True, ge=1)]
#: A probability that may be 0 but not 1 (dropout, masking).
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
#: What an encoder takes as its options: its validated Config or the `encoder.kwargs` mapping.
ConfigLike = BaseModel | Mapping[str, Any] | None


@dataclass
class EncoderOutput:
    """What every encoder returns.

    global_features: (B, feature_dim), pooled from the deepest encoder level.
    dense: (B, dense_dim, *spatial) decoder map at the input's spatial size, or None for
        encoders without a decoder (ResNet). Series encoders (spatial_dims 1) put their
        per-step representation here: (B, dense_dim, T).
    """

    global_features: torch.Tensor
    dense: torch.Tensor | None = None


def jsonable(value: Any) -> Any:
    """Tuples become lists (recursively) so `init_kwargs` survives a JSON round trip."""
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def option_problem(option: str, message: str, value: Any) -> PydanticCustomError:
    """The error a Config's model validator raises about `option` (one that depends on other
    options): pydantic gives such errors no location, so the option travels in the context."""
    return PydanticCustomError("encoder_option", message, {"option": option, "value": value})


class Encoder(nn.Module):
    """Base class of encoders. Subclasses set `feature_dim`, `dense_dim` and implement
    `encode` (input -> deepest features and skips) and, when they have one, `decode`.

    A registered encoder lists its options once, in its nested pydantic `Config` (defaults and
    constraints): `build_encoder` validates a config's ``encoder.kwargs`` through it, the
    constructor takes the validated Config (or the options as keywords) as `self.config`, and
    `init_kwargs` (what a model card saves) is its dump.

    `encoder_prefixes` names the state-dict prefixes that belong to the encoder half, so a
    segmenter can be initialised from a pretrained encoder while its decoder starts fresh.
    """

    name: ClassVar[str] = "encoder"
    has_decoder: ClassVar[bool] = False
    encoder_prefixes: ClassVar[tuple[str, ...]] = ()
    #: The spatial_dims the network supports: 1 is a series (B, C, T); 2 and 3 are images
    #: and volumes.
    spatial_dims_allowed: ClassVar[tuple[int, ...]] = (1, 2, 3)

    class Config(BaseModel):
        """The encoder's options (``encoder.kwargs``); this base encoder has none."""

        model_config = ConfigDict(extra="forbid")

    config: BaseModel

    def __init__(
        self, spatial_dims: int, in_channels: int, config: ConfigLike = None, **options: Any
    ) -> None:
        super().__init__()
        if spatial_dims not in self.spatial_dims_allowed:
            raise ValueError(spatial_dims_problem(type(self), spatial_dims))
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if config is not None and options:
            raise TypeError(
                f"{self.name}: pass the options as a Config or as keywords, not both "
                f"(got config and {sorted(options)})"
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.config = self.validate_config(options if config is None else config)
        self.feature_dim: int = 0
        self.dense_dim: int | None = None

    @classmethod
    def validate_config(cls, config: ConfigLike) -> Any:
        """`cls.Config` from a Config, another pydantic model or the ``encoder.kwargs``
        mapping; a bad key or value raises ConfigError naming ``encoder.kwargs.<key>``."""
        schema = cls.Config
        if isinstance(config, schema):
            return config
        raw = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
        try:
            return schema.model_validate(raw)
        except ValidationError as error:
            raise _option_error(cls, error) from None

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The options as JSON values (tuples become lists): a model card's
        ``architecture.kwargs``, from which `encoder_from_architecture` rebuilds the network."""
        return jsonable(self.config.model_dump())

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        """Encode `x` (B, C, *spatial). The decoder runs only when `dense` is True."""
        raise NotImplementedError

    def global_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x, dense=False).global_features

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name} expects input (B, {self.in_channels}, "
                f"{', '.join('*' * self.spatial_dims)}) got {tuple(x.shape)}"
            )


def spatial_dims_problem(cls: type[Encoder], spatial_dims: int) -> str:
    """Why `cls` cannot be built with `spatial_dims` (it is not in `spatial_dims_allowed`)."""
    allowed = cls.spatial_dims_allowed
    if allowed == (1,):
        return f"{cls.name} encodes series: spatial_dims must be 1, got {spatial_dims}"
    return f"{cls.name} takes spatial_dims {' or '.join(map(str, allowed))}, got {spatial_dims}"


def _option_error(cls: type[Encoder], error: ValidationError) -> ConfigError:
    """The first problem of `error` as one sentence: key path, problem, value, encoder, fix."""
    first = error.errors()[0]
    context = first.get("ctx") or {}
    loc = tuple(first["loc"]) or (context.get("option", ""),)
    option = str(loc[0])
    key = (
        "encoder.kwargs."
        + option
        + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    )
    fields = cls.Config.model_fields
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(fields) or "none"
        return ConfigError(
            f"{key}: encoder '{cls.name}' has no such option; remove it or use one of: {allowed}"
        )
    if first["type"] == "missing":
        return ConfigError(f"{key}: encoder '{cls.name}' needs {option}; add it to encoder.kwargs")
    value = context["value"] if "value" in context and not first["loc"] else first.get("input")
    msg = first["msg"].removeprefix("Value error, ")
    field = fields.get(option)
    if field is None:  # an extra option a validator refused (tsai's reserved ones)
        fix = "remove it"
    elif field.is_required():
        fix = "fix it"
    else:
        fix = f"fix it or remove it for the default {jsonable(field.get_default())!r}"
    return ConfigError(f"{key}: {msg}, got {value!r} (encoder '{cls.name}'); {fix}")


class SegmentationNet(nn.Module):
    """An encoder-decoder with a 1x1 convolution to `num_classes` logits."""

    def __init__(self, encoder: Encoder, num_classes: int) -> None:
        super().__init__()
        if not encoder.has_decoder or encoder.dense_dim is None:
            raise ValueError(
                f"encoder '{encoder.name}' has no decoder, so it cannot segment; "
                "choose unet, segresnet or swinunetr"
            )
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background included), got {num_classes}")
        self.encoder = encoder
        conv = nn.Conv3d if encoder.spatial_dims == 3 else nn.Conv2d
        self.head = conv(encoder.dense_dim, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.encoder(x, dense=True)
        assert out.dense is not None
        return self.head(out.dense)
