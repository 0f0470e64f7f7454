"""TS2Vec: two overlapping random crops of each series, encoded in their own context, and the
hierarchical contrastive loss on their overlap; an SWA copy of the encoder for evaluation."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch.optim.swa_utils import AveragedModel

from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder
from medssl.platform.encoders.ts2vec import series_steps
from medssl.platform.errors import ConfigError, DataError
from medssl.platform.losses.hierarchical import hierarchical_contrastive_loss
from medssl.platform.methods.base import Method
from medssl.platform.registry import METHODS


def validate_method_config(cls: type[Method], config: BaseModel | dict[str, Any] | None) -> Any:
    """`cls.Config` from a config object or the ``pretrain.method`` dict (`name` ignored); a
    bad key raises ConfigError naming ``pretrain.method.<key>``."""
    return cls.validate_config(config)


def require_sequence_encoder(method: str, encoder: Encoder) -> None:
    """Series methods contrast per-step representations: the encoder must give `dense`."""
    if encoder.spatial_dims != 1 or not encoder.dense_dim:
        raise ConfigError(
            f"method '{method}' needs a series encoder with a per-step output (ts2vec, "
            f"inception_time_plus, resnet_plus, xception_time_plus, tst_plus); "
            f"encoder '{encoder.name}' has spatial_dims {encoder.spatial_dims}"
        )


def averaged_copy(encoder: Encoder) -> AveragedModel:
    """A stochastic-weight-averaging copy (Izmailov et al., UAI 2018) of `encoder`, frozen:
    `update_parameters(encoder)` after each step keeps the running mean of its weights, and its
    buffers (batch-norm statistics) follow the live encoder."""
    return AveragedModel(encoder).requires_grad_(False)


class AveragedEncoderMethod(Method):
    """A method that evaluates and saves a stochastic-weight-averaging copy of its encoder
    (`self.swa_encoder`, from `averaged_copy`, or None to use the live encoder; set it in
    `__init__`: a class-level default would hide the registered submodule)."""

    def _average(self) -> AveragedModel | None:
        return getattr(self, "swa_encoder", None)

    @torch.no_grad()
    def update_average(self) -> None:
        """Fold the live encoder's weights into the running average."""
        average = self._average()
        if average is not None:
            average.update_parameters(self.encoder)

    def inference_encoder(self) -> Encoder:
        """The encoder to evaluate and save: the SWA average (the live one without SWA)."""
        average = self._average()
        if average is None:
            return self.encoder
        module = average.module
        assert isinstance(module, Encoder)
        return module


def crop_rows(x: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
    """x[b, :, start[b] : start[b] + length] for every row b of `x` (B, C, T), batched."""
    steps = start[:, None] + torch.arange(length, device=x.device)[None, :]
    return x.gather(2, steps[:, None, :].expand(-1, x.shape[1], -1))


def random_starts(lengths: torch.Tensor, span: int) -> torch.Tensor:
    """Uniform start of a `span`-step window inside each series of length `lengths` (B,)."""
    room = (lengths - span + 1).clamp_min(1)
    return (torch.rand(lengths.shape, device=lengths.device) * room).long()


def _randint(low: int, high: int) -> int:
    """Uniform integer in [low, high) from the global torch generator (saved on resume)."""
    return int(torch.randint(low, high, ()).item())


@METHODS.register("ts2vec")
class TS2Vec(AveragedEncoderMethod):
    """TS2Vec (Yue et al., AAAI 2022, "TS2Vec: Towards Universal Representation of Time
    Series").

    Views: in a frame of W = min(shortest series in the batch, max_length) steps, draw an
    overlap [a1, b1) of length >= 2^(temporal_unit + 1) and a wider span a2 <= a1 < b1 <= b2;
    view 1 covers [a2, b1), view 2 [a1, b2), and each row's span is shifted to a random
    position inside that series. Each view is encoded in its own context; the hierarchical
    contrastive loss (`hierarchical_contrastive_loss`, alpha = 0.5) runs on the overlap.
    An SWA copy of the encoder (`inference_encoder()`) is what TS2Vec evaluates.

    Args:
        encoder: a series encoder with a per-step output (`dense` (B, D, T)).
        config: a `TS2Vec.Config` or the dict of ``pretrain.method``: alpha (0.5),
            temporal_unit (0), max_length (3000, longest crop frame), swa (True).

    Example:
        >>> from medssl.platform.encoders.ts2vec import TS2VecEncoder
        >>> method = TS2Vec(TS2VecEncoder(spatial_dims=1, in_channels=1, output_dim=8, depth=1))
        >>> sorted(method(Batch(x=torch.randn(4, 1, 40))))
        ['embedding_std', 'loss', 'overlap']
    """

    name: ClassVar[str] = "ts2vec"
    requires: ClassVar[frozenset[str]] = frozenset()
    encoder_output: ClassVar[str] = "sequence"

    class Config(BaseModel):
        """The ``pretrain.method`` section of TS2Vec."""

        model_config = ConfigDict(extra="forbid")

        alpha: float = Field(0.5, ge=0.0, le=1.0)
        temporal_unit: int = Field(0, ge=0)
        max_length: int = Field(3000, ge=2)
        swa: bool = True

    def __init__(self, encoder: Encoder, config: TS2Vec.Config | dict[str, Any] | None = None):
        super().__init__(encoder)
        self.config = validate_method_config(type(self), config)
        require_sequence_encoder(self.name, encoder)
        self.swa_encoder = averaged_copy(encoder) if self.config.swa else None

    def make_views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The two crops of `x` (B, C, T) and the overlap length: the overlap is the last
        `overlap` steps of view 1 and the first `overlap` steps of view 2."""
        lengths = series_steps(x).sum(dim=1)
        frame = min(int(lengths.min()), self.config.max_length)
        shortest = 2 ** (self.config.temporal_unit + 1)
        if frame < shortest:
            raise DataError(
                f"ts2vec needs series of at least {shortest} steps "
                f"(pretrain.method.temporal_unit={self.config.temporal_unit}); this batch has "
                f"one of {frame}; lower temporal_unit or drop the short series"
            )
        overlap = _randint(shortest, frame + 1)
        left = _randint(0, frame - overlap + 1)
        right = left + overlap
        outer_left = _randint(0, left + 1)
        outer_right = _randint(right, frame + 1)
        start = random_starts(lengths, outer_right - outer_left)
        view1 = crop_rows(x, start, right - outer_left)
        view2 = crop_rows(x, start + (left - outer_left), outer_right - left)
        return view1, view2, overlap

    def _sequence(self, x: torch.Tensor) -> torch.Tensor:
        dense = self.encoder(x, dense=True).dense
        assert dense is not None
        return dense

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss, the overlap length, and a collapse monitor (`embedding_std`, ~1 when spread,
        0 when collapsed) of the max-pooled overlap representations."""
        view1, view2, overlap = self.make_views(batch["x"])
        z1 = self._sequence(view1)[..., -overlap:].transpose(1, 2)
        z2 = self._sequence(view2)[..., :overlap].transpose(1, 2)
        loss = hierarchical_contrastive_loss(
            z1, z2, alpha=self.config.alpha, temporal_unit=self.config.temporal_unit
        )
        with torch.no_grad():
            pooled = F.normalize(torch.cat([z1, z2]).amax(dim=1).float(), dim=1)
            spread = pooled.std(dim=0, correction=0).mean() * math.sqrt(pooled.shape[1])
        return {
            "loss": loss,
            "embedding_std": spread,
            "overlap": torch.tensor(float(overlap), device=loss.device),
        }

    @torch.no_grad()
    def after_optimizer_step(self, step: int, max_steps: int) -> None:
        """Fold the live encoder into the SWA average."""
        self.update_average()

    def card(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json")}
