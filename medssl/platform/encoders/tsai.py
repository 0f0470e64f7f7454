"""tsai time-series backbones (InceptionTimePlus, ResNetPlus, XceptionTimePlus, TSTPlus)
behind the Encoder interface: the backbone without its classification head."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator

from medssl.platform.encoders.base import (
    ConfigLike,
    Encoder,
    EncoderOutput,
    StrictPositiveInt,
    option_problem,
)
from medssl.platform.encoders.ts2vec import masked_max_pool, masked_mean_pool, series_steps
from medssl.platform.errors import ConfigError
from medssl.platform.registry import ENCODERS


def _tsai_class(module: str) -> Any:
    """`tsai.models.<module>.<module>`, imported only now: tsai (and fastai) load slowly."""
    try:
        return getattr(importlib.import_module(f"tsai.models.{module}"), module)
    except ImportError as error:
        raise ConfigError(
            f"encoder {module} needs the tsai package ({error}); "
            "install it with pip install 'medssl[timeseries]'"
        ) from None


class TsaiEncoder(Encoder):
    """A tsai backbone (Oguiza, "tsai - A state-of-the-art deep learning library for time
    series", 2023) without its head.

    tsai models are `backbone` + `head`; the head (pooling, linear classifier) is dropped and
    the backbone's output is the per-step sequence, `dense` = (B, D, T) at the input length
    (the convolutional backbones use 'same' padding; TSTPlus is built with max_seq_len=None so
    it keeps every step). `global_features` pools that sequence over the series' own steps:
    "mean" (default, what the tsai heads' GAP1d does) or "max" (TS2Vec's instance pooling).

    NaN handling: NaN values are replaced by 0 before the backbone; trailing all-NaN padding
    steps are left out of the pooling (TSTPlus also masks them in attention, via its
    key-padding mask). Unlike `ts2vec`, convolutions still see the zeroed padding, so padded
    and unpadded series agree only approximately near the series end.

    Args:
        spatial_dims: must be 1 (series x of shape (B, C, T)).
        in_channels: C, the number of variables (tsai's c_in).
        config: a `TsaiEncoder.Config` (of the subclass) or the ``encoder.kwargs`` mapping; or,
            instead, the options below as keywords:
        seq_len: input length; required by TSTPlus (positional encoding; shorter inputs are
            NaN-padded up to it), ignored by the convolutional backbones.
        pooling: "mean" or "max" for `global_features`.
        **options: keyword arguments of the tsai class (e.g. nf, depth, d_model, n_layers);
            they are stored in the model card, so they must be JSON values.
    """

    name: ClassVar[str] = "tsai"
    #: Module and class name under tsai.models.
    tsai_module: ClassVar[str] = ""
    encoder_prefixes = ("backbone.",)
    spatial_dims_allowed = (1,)

    class Config(BaseModel):
        """The ``encoder.kwargs`` of a tsai backbone: seq_len, pooling, and the tsai class's
        own keyword arguments (kept as given; tsai checks them when the backbone is built)."""

        # Extra keys are the tsai class's options: its signature ends in **kwargs handed on
        # to the backbone, so they cannot be listed here.
        model_config = ConfigDict(extra="allow")
        #: Options this encoder sets itself, refused in the kwargs.
        reserved: ClassVar[tuple[str, ...]] = ("c_in", "c_out")

        seq_len: StrictPositiveInt | None = None
        pooling: Literal["mean", "max"] = "mean"

        @model_validator(mode="after")
        def _no_reserved_options(self) -> TsaiEncoder.Config:
            for option in self.reserved:
                if option in (self.model_extra or {}):
                    raise option_problem(
                        option,
                        "is set by the encoder itself (from the data and the pipeline)",
                        self.model_extra[option],  # type: ignore[index]
                    )
            return self

    config: Config

    def __init__(
        self, spatial_dims: int, in_channels: int, config: ConfigLike = None, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, config, **options)
        cfg = self.config
        extra = dict(cfg.model_extra or {})
        cls = _tsai_class(self.tsai_module)
        try:
            model = cls(c_in=in_channels, c_out=1, **self._tsai_arguments(cfg.seq_len, extra))
        except TypeError as error:
            allowed = sorted(set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"})
            raise ConfigError(
                f"encoder.kwargs: encoder '{self.name}' could not build tsai "
                f"{self.tsai_module} with options {extra} ({error}); its arguments include "
                f"{', '.join(allowed)}"
            ) from None
        # The head is dropped: its classifier is task-specific and its pooling happens here.
        self.backbone = model.backbone
        self.feature_dim = int(model.head_nf)
        self.dense_dim = self.feature_dim
        self.seq_len = cfg.seq_len
        self.pooling = cfg.pooling

    def _tsai_arguments(self, seq_len: int | None, options: dict[str, Any]) -> dict[str, Any]:
        return dict(options)

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's per-step output (B, D, T) for `x` (B, C, T)."""
        return self.backbone(torch.nan_to_num(x, nan=0.0))

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        self.check_input(x)
        sequence = self.sequence(x)
        steps = series_steps(x)
        pool = masked_max_pool if self.pooling == "max" else masked_mean_pool
        return EncoderOutput(pool(sequence, steps), sequence if dense else None)


@ENCODERS.register("inception_time_plus")
class InceptionTimePlusEncoder(TsaiEncoder):
    """InceptionTime (Ismail Fawaz et al., 2020) in tsai's InceptionTimePlus form: D = 4 * nf
    (nf 32 -> 128).

    Example:
        >>> enc = InceptionTimePlusEncoder(spatial_dims=1, in_channels=2, nf=8, depth=3)
        >>> enc(torch.randn(4, 2, 40)).global_features.shape
        torch.Size([4, 32])
    """

    name: ClassVar[str] = "inception_time_plus"
    tsai_module: ClassVar[str] = "InceptionTimePlus"


@ENCODERS.register("resnet_plus")
class ResNetPlusEncoder(TsaiEncoder):
    """The 1D ResNet of Wang et al. (2017) in tsai's ResNetPlus form: D = 2 * nf (nf 64 ->
    128).

    Example:
        >>> enc = ResNetPlusEncoder(spatial_dims=1, in_channels=1, nf=8)
        >>> enc(torch.randn(4, 1, 40)).global_features.shape
        torch.Size([4, 16])
    """

    name: ClassVar[str] = "resnet_plus"
    tsai_module: ClassVar[str] = "ResNetPlus"


@ENCODERS.register("xception_time_plus")
class XceptionTimePlusEncoder(TsaiEncoder):
    """XceptionTime (Rahimian et al., 2019) in tsai's XceptionTimePlus form: D = 32 * nf
    (nf 16 -> 512).

    Example:
        >>> enc = XceptionTimePlusEncoder(spatial_dims=1, in_channels=1, nf=4)
        >>> enc(torch.randn(4, 1, 40)).global_features.shape
        torch.Size([4, 128])
    """

    name: ClassVar[str] = "xception_time_plus"
    tsai_module: ClassVar[str] = "XceptionTimePlus"


@ENCODERS.register("tst_plus")
class TSTPlusEncoder(TsaiEncoder):
    """The Time Series Transformer (Zerveas et al., KDD 2021) in tsai's TSTPlus form:
    D = d_model (128). Needs `seq_len`; inputs up to that length are NaN-padded to it and the
    padding is masked in attention; the output is cut back to the input length.

    Example:
        >>> enc = TSTPlusEncoder(spatial_dims=1, in_channels=1, seq_len=40, d_model=16, n_heads=2)
        >>> enc(torch.randn(4, 1, 30), dense=True).dense.shape
        torch.Size([4, 16, 30])
    """

    name: ClassVar[str] = "tst_plus"
    tsai_module: ClassVar[str] = "TSTPlus"

    class Config(TsaiEncoder.Config):
        """The ``encoder.kwargs`` of tst_plus: seq_len is required."""

        reserved: ClassVar[tuple[str, ...]] = ("c_in", "c_out", "max_seq_len", "key_padding_mask")

        seq_len: StrictPositiveInt

    config: Config

    def _tsai_arguments(self, seq_len: int | None, options: dict[str, Any]) -> dict[str, Any]:
        # max_seq_len=None keeps one output per input step; the padding mask is passed
        # explicitly so tsai never writes zeros into the caller's tensor.
        return {**options, "seq_len": seq_len, "max_seq_len": None, "key_padding_mask": True}

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        assert self.seq_len is not None
        if length > self.seq_len:
            # The data outgrew the configured length: the config has to change.
            raise ConfigError(
                f"encoder.kwargs.seq_len: tst_plus was built for series of up to "
                f"seq_len={self.seq_len} steps, got {length}; raise encoder.kwargs.seq_len or "
                "crop the series"
            )
        x = F.pad(x, (0, self.seq_len - length), value=float("nan"))
        padding = ~series_steps(x)
        # A series with no observed step would mask every key; attend to all instead.
        padding = padding & ~padding.all(dim=1, keepdim=True)
        out = self.backbone((torch.nan_to_num(x, nan=0.0), padding))
        return out[..., :length]
