"""Global and local contrastive pretraining of a UNet (Chaitanya et al., NeurIPS 2020): the
partition-aware global stage on the encoder, then the dense local stage on the decoder."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from medssl.platform.augment import AugmentConfig, ViewGenerator, sample_keys
from medssl.platform.augment.intensity import intensity_augment
from medssl.platform.batch import ITEMS, PARTITIONS, Batch, BatchSpec
from medssl.platform.encoders.base import Encoder
from medssl.platform.engine.distributed import gather_no_grad, gather_with_grad, rank
from medssl.platform.losses.global_local import (
    cross_volume_local_info_nce,
    global_info_nce,
    local_info_nce,
)
from medssl.platform.methods.base import Method, projection_head
from medssl.platform.registry import METHODS


def _global_augment() -> AugmentConfig:
    """The paper's global-stage views: a random crop of about half the side resized back,
    brightness +-0.3, contrast [0.7, 1.3]; no flips or rotations."""
    return AugmentConfig(
        crop_scale=(0.2, 0.3),
        flip_prob=0.0,
        rotate_degrees=0.0,
        scale_range=(1.0, 1.0),
        brightness=0.3,
        contrast=(0.7, 1.3),
        gamma=(1.0, 1.0),
        noise_std=0.0,
    )


def _require(method: str, batch: Batch, fields: tuple[str, ...]) -> None:
    missing = [f for f in fields if f not in batch]
    if missing:
        raise ValueError(
            f"method '{method}' needs the Batch field(s) {missing}; serve slices with "
            "medssl.modalities.volume.slices (SliceDataset + VolumePartitionSampler)"
        )


class _Validated(Method):
    """A method whose card is its name and its whole validated `self.config`."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def card(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json")}


@METHODS.register("global_contrast")
class GlobalContrast(_Validated):
    """Global stage of Chaitanya et al. (NeurIPS 2020), "Contrastive learning of global and
    local features for medical image segmentation with limited annotations".

    z = normalise(g1(f(view))), g1 = dense(feature_dim -> hidden) -> ReLU -> dense(-> 128);
    the loss is :func:`global_info_nce` with the strategy's masks. "GR": two augmentations of
    each slice (SimCLR). "GD-" / "GD": the batch is [original, aug1, aug2] of the same slices,
    positives among those three ("GD": also the same partition of another volume), negatives
    exclude the anchor's partition. Batches come from the volume-partition sampler (m volumes
    x S partitions); `subject` serves as the volume id. Under DDP keys and labels are gathered
    from every rank (every rank needs the same batch size).

    Args:
        encoder: any `Encoder` with `feature_dim` > 0.
        config: a `GlobalContrast.Config` or the dict of ``pretrain.method``: strategy
            ("GD"), temperature (0.1), hidden_dim (1024), projection_dim (128), augment.

    Example:
        >>> from medssl.platform.encoders.unet import UNetEncoder
        >>> enc = UNetEncoder(2, 1, features=(4, 4, 8, 8, 8, 4))
        >>> method = GlobalContrast(enc, {"hidden_dim": 32, "projection_dim": 16})
        >>> batch = Batch(x=torch.rand(4, 1, 32, 32), index=torch.arange(4),
        ...               subject=torch.tensor([0, 0, 1, 1]), partition=torch.tensor([0, 1, 0, 1]))
        >>> sorted(method(batch))
        ['embedding_std', 'loss', 'positive_similarity']
    """

    name: ClassVar[str] = "global_contrast"
    requires: ClassVar[frozenset[str]] = frozenset({"index", "subject", "partition"})
    grouping: ClassVar[str] = PARTITIONS
    encoder_output: ClassVar[str] = "global"

    class Config(BaseModel):
        """The ``pretrain.method`` section of the global stage."""

        model_config = ConfigDict(extra="forbid")

        strategy: Literal["GR", "GD-", "GD"] = "GD"
        temperature: float = Field(0.1, gt=0.0)
        hidden_dim: int = Field(1024, ge=1)
        projection_dim: int = Field(128, ge=1)
        augment: AugmentConfig = Field(default_factory=_global_augment)

        @field_validator("augment", mode="before")
        @classmethod
        def _over_the_paper_views(cls, value: Any) -> Any:
            """A partial `augment` (e.g. only `brightness: 0`) changes those keys of the
            paper's views, not of the generic AugmentConfig defaults."""
            if isinstance(value, dict):
                return {**_global_augment().model_dump(), **value}
            return value

    def __init__(
        self, encoder: Encoder, config: GlobalContrast.Config | dict[str, Any] | None = None
    ) -> None:
        super().__init__(encoder)
        self.config = self.validate_config(config)
        cfg = self.config
        self.projector = projection_head(encoder, cfg.hidden_dim, cfg.projection_dim)
        self.views = ViewGenerator(cfg.augment)

    def make_views(self, batch: Batch) -> torch.Tensor:
        """(V * B, C, H, W): [aug1; aug2] for "GR", [original; aug1; aug2] otherwise."""
        x, index = batch["x"], batch["index"]
        views = [] if self.config.strategy == "GR" else [x]
        for v in (0, 1):
            views.append(self.views(x, sample_keys(index, self.seed, self.epoch, v))[0])
        return torch.cat(views)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss, collapse monitor `embedding_std` (~1 spread, 0 collapsed) and the mean cosine
        similarity between the two augmentations of a slice."""
        _require(self.name, batch, ("index", "subject", "partition"))
        b = batch.batch_size
        images = self.make_views(batch)
        n_views = images.shape[0] // b
        z = self.projector(self.encoder.global_features(images))
        device = z.device
        labels = torch.stack(
            [
                batch["subject"].to(device).repeat(n_views),
                batch["partition"].to(device).repeat(n_views),
                torch.arange(n_views, device=device).repeat_interleave(b),
                torch.arange(b, device=device).repeat(n_views) + rank() * b,
            ],
            dim=1,
        )
        keys, all_labels = gather_with_grad(z), gather_no_grad(labels)
        volume, partition, view, sample = all_labels.unbind(dim=1)
        loss = global_info_nce(
            z,
            volume,
            partition,
            view,
            strategy=self.config.strategy,
            temperature=self.config.temperature,
            sample=sample,
            keys=keys,
            offset=rank() * z.shape[0],
        )
        with torch.no_grad():
            unit = F.normalize(z.float(), dim=1)
            spread = unit.std(dim=0, correction=0).mean() * math.sqrt(unit.shape[1])
            aug1, aug2 = unit[-2 * b : -b], unit[-b:]
            positive_similarity = (aug1 * aug2).sum(dim=1).mean()
        return {"loss": loss, "embedding_std": spread, "positive_similarity": positive_similarity}


class IntensityViews(BaseModel):
    """Intensity-only view settings of the local stage (no geometry, so positions match).
    Defaults: the paper's brightness +-0.3 and contrast [0.7, 1.3]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    brightness: float = Field(0.3, ge=0.0)
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (1.0, 1.0)
    noise_std: float = Field(0.0, ge=0.0)

    @field_validator("contrast", "gamma")
    @classmethod
    def _positive_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high:
            raise ValueError(f"must be (low, high) with 0 < low <= high, got ({low}, {high})")
        return value

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig.identity().model_copy(update=self.model_dump())


@METHODS.register("local_contrast")
class LocalContrast(_Validated):
    """Local stage of Chaitanya et al. (NeurIPS 2020): the encoder is frozen (run without
    gradients, kept in eval mode); the first l decoder blocks and a head g2 (1x1 conv -> ReLU
    -> 1x1 conv) are trained with the dense loss on two intensity-only views of each slice:
    :func:`local_info_nce` (variant "R", L_R) or :func:`cross_volume_local_info_nce`
    (variant "D", L_D, needs `subject` and `partition`). Decoder blocks after the l-th stay
    frozen and unused. Needs the 2-D `unet` encoder, whose `decode` can stop after l blocks:
    l = 2 gives 1/4 of the input resolution, the paper's l = 3 in its five-pooling UNet.

    Args:
        encoder: a 2-D `UNetEncoder` (pretrained by the global stage).
        config: a `LocalContrast.Config` or the dict of ``pretrain.method``: temperature (0.1),
            decoder_blocks (2), region (3), positions ("paper13" | "all"), negatives ("all" |
            "nearby"), num_nearby (5), stride (1), variant ("R" | "D"), chunk_size (None),
            augment (`IntensityViews`).

    Example:
        >>> from medssl.platform.encoders.unet import UNetEncoder
        >>> method = LocalContrast(UNetEncoder(2, 1, features=(4, 4, 8, 8, 8, 4)))
        >>> out = method(Batch(x=torch.rand(2, 1, 32, 32), index=torch.arange(2)))
        >>> sorted(out)
        ['loss', 'positive_similarity']
    """

    name: ClassVar[str] = "local_contrast"
    requires: ClassVar[frozenset[str]] = frozenset({"index"})
    encoder_output: ClassVar[str] = "dense"

    class Config(BaseModel):
        """The ``pretrain.method`` section of the local stage."""

        model_config = ConfigDict(extra="forbid")

        temperature: float = Field(0.1, gt=0.0)
        decoder_blocks: int = Field(2, ge=1, le=4)
        region: int = Field(3, ge=1)
        positions: Literal["paper13", "all"] = "paper13"
        negatives: Literal["all", "nearby"] = "all"
        num_nearby: int = Field(5, ge=1)
        stride: int = Field(1, ge=1)
        variant: Literal["R", "D"] = "R"
        chunk_size: int | None = Field(None, ge=1)
        augment: IntensityViews = Field(default_factory=IntensityViews)

    def __init__(
        self, encoder: Encoder, config: LocalContrast.Config | dict[str, Any] | None = None
    ) -> None:
        super().__init__(encoder)
        self.config = self.validate_config(config)
        widths = getattr(encoder, "decoder_widths", None)
        blocks = getattr(encoder, "decoder_prefixes", None)
        if widths is None or blocks is None or encoder.spatial_dims != 2:
            raise ValueError(
                f"local_contrast needs the 2-D 'unet' encoder (a decoder that can stop after l "
                f"blocks); got '{encoder.name}' with spatial_dims {encoder.spatial_dims}"
            )
        used = self.config.decoder_blocks
        self._trainable = tuple(blocks[:used])
        for name, parameter in encoder.named_parameters():
            parameter.requires_grad_(name.startswith(self._trainable))
        width = widths[used - 1]
        self.head = nn.Sequential(
            nn.Conv2d(width, width, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, kernel_size=1),
        )
        self.intensity = self.config.augment.augment_config()
        self.train()

    @classmethod
    def batch_spec(cls, config: LocalContrast.Config) -> BatchSpec:
        """L_D contrasts same-partition slices of other volumes: it needs partition batches."""
        if config.variant == "D":
            return BatchSpec(PARTITIONS, cls.requires | {"subject", "partition"})
        return BatchSpec(ITEMS, cls.requires)

    @classmethod
    def input_problem(
        cls, config: LocalContrast.Config, sides: tuple[int, ...], encoder: Encoder
    ) -> str | None:
        """A region that does not fit the decoder map of `sides` inputs (the paper's 13
        positions need 5 region starts per side)."""
        blocks = getattr(encoder, "decoder_prefixes", None)
        if blocks is None or len(sides) != 2:
            return None  # the constructor refuses an encoder without this decoder
        scale = 2 ** (len(blocks) - config.decoder_blocks)
        rows, cols = (side // scale for side in sides)
        paper13 = config.positions == "paper13"
        largest = min(rows, cols) - (4 if paper13 else 0)
        if config.region <= largest:
            return None
        where = (
            f"the {rows} x {cols} decoder map that decoder_blocks {config.decoder_blocks} gives "
            f"for {sides[0]} x {sides[1]} inputs"
        )
        if config.region > min(rows, cols):
            problem = f"{config.region} is larger than {where}"
        else:
            starts = min(rows, cols) - config.region + 1
            problem = (
                f"{config.region} leaves {starts} region starts per side on {where}, and "
                "positions paper13 needs 5"
            )
        fixes = [f"set region to at most {largest}"] if largest >= 1 else []
        deeper = config.decoder_blocks < len(blocks)
        fixes.append("raise decoder_blocks" if deeper else "use larger inputs")
        if paper13:
            fixes.append("set positions: all")
        return f"region: {problem}; {' or '.join(fixes)}"

    def train(self, mode: bool = True) -> LocalContrast:
        super().train(mode)
        # The frozen encoder keeps eval behaviour (dropout off) whatever the engine asks.
        for name, module in self.encoder.named_modules():
            if f"{name}." in self.encoder.encoder_prefixes:
                module.eval()
        return self

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss and the mean cosine similarity of the two views' head maps, cell by cell."""
        cfg = self.config
        _require(
            self.name,
            batch,
            ("index",) if cfg.variant == "R" else ("index", "subject", "partition"),
        )
        x, index = batch["x"], batch["index"]
        views = torch.cat(
            [
                intensity_augment(x, sample_keys(index, self.seed, self.epoch, v), self.intensity)
                for v in (0, 1)
            ]
        )
        encoder: Any = self.encoder
        encoder.check_input(views)
        encoder.check_size(views)
        with torch.no_grad():
            deepest, skips = encoder.encode(views)
        feat_a, feat_b = self.head(encoder.decode(deepest, skips, blocks=cfg.decoder_blocks)).chunk(
            2
        )
        options = {
            "temperature": cfg.temperature,
            "region": cfg.region,
            "positions": cfg.positions,
            "negatives": cfg.negatives,
            "num_nearby": cfg.num_nearby,
            "stride": cfg.stride,
            "chunk_size": cfg.chunk_size,
        }
        if cfg.variant == "R":
            loss = local_info_nce(feat_a, feat_b, **options)
        else:
            loss = cross_volume_local_info_nce(
                feat_a, feat_b, batch["subject"], batch["partition"], **options
            )
        with torch.no_grad():
            similarity = F.cosine_similarity(feat_a.float(), feat_b.float(), dim=1).mean()
        return {"loss": loss, "positive_similarity": similarity}
