"""AutoTCL: a learned augmenter (hard-concrete keep mask and positive scale per step and
channel) trained against the encoder in alternating steps, with an SWA encoder for evaluation."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from torch.func import functional_call

from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder
from medssl.platform.encoders.factory import architecture_of, encoder_from_architecture
from medssl.platform.encoders.ts2vec import masked_max_pool, series_steps
from medssl.platform.losses.autotcl import (
    channel_keep_floor,
    cross_view_info_nce,
    gaussian_mmd,
    keep_entropy_floor,
    keep_sparsity,
    local_window_info_nce,
    temporal_smoothness,
)
from medssl.platform.losses.hierarchical import hierarchical_contrastive_loss
from medssl.platform.methods.autotcl_augmenter import (
    ParametricAugmenter,
    free_channels,
    hard_concrete,
)
from medssl.platform.methods.autotcl_monitor import keep_statistics
from medssl.platform.methods.ts2vec import (
    AveragedEncoderMethod,
    averaged_copy,
    crop_rows,
    random_starts,
    require_sequence_encoder,
    validate_method_config,
)
from medssl.platform.registry import METHODS


def fresh_reference(encoder: Encoder) -> Encoder:
    """A frozen encoder of `encoder`'s architecture, initialised from torch's seed
    (`torch.initial_seed()`, which a run sets from its `seed` before each pretraining phase)
    without moving the global random stream: the same seed gives the same weights, and in a
    run's first phase they are the weights the trained encoder started from."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch.initial_seed())
        reference = encoder_from_architecture(architecture_of(encoder))
    return reference.requires_grad_(False).eval()


def _dense(encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
    dense = encoder(x, dense=True).dense
    assert dense is not None
    return dense


@METHODS.register("autotcl")
class AutoTCL(AveragedEncoderMethod):
    """AutoTCL (Zheng et al., ICLR 2024, "Parametric Augmentation for Time Series Contrastive
    Learning").

    A learned augmenter makes a view v = g(x) * m(x) * x (`ParametricAugmenter`,
    `hard_concrete`). Every iteration the encoder learns from
        L_enc = InfoNCE(maxpool f(x), maxpool f(v); tau) + local_weight * L_local(f(x))
    (`cross_view_info_nce`, `local_window_info_nce`; or, with encoder_loss="hierarchical",
    TS2Vec's loss between f(x) and f(v)) with v held fixed. Every `ratio_step`-th iteration
    the augmenter also learns, with the encoder frozen and in eval mode, from
        L_aug = MMD(maxpool f(x), maxpool f(v)) + sparsity_weight * relu(mean p - keep_threshold)
                + smoothness_weight * mean |p_{t+1} - p_t|.
    The sparsity hinge has to act as the constraint mean p <= keep_threshold: MMD alone is
    minimised by v = x, and with the noise on the logit of p (not on p, as in the official
    code, whose keep rate therefore never leaves ~0.48-0.71) the augmenter can reach that
    identity, where every gradient of p vanishes. The Gaussian MMD is at most 2 * kernel_num,
    so a weight above 2 * kernel_num / (1 - keep_threshold) (16.7 by default) makes keeping
    everything cost more than any view that meets the constraint. The default 10 (the authors'
    1e-3 collapsed to the identity within 10 steps) was chosen over 20 on ETTh2's validation
    months; both keep the view away from the identity there.

    With that constraint p can still saturate at 0 or 1, where the mask is no longer random:
    a fixed crop, or a channel no view shows (`autotcl_monitor.keep_collapse`). Three options
    act against it, all off by default: an entropy floor,
        + entropy_weight * relu(entropy_floor - mean H(p))      (H in bits),
    a minimum keep rate per channel,
        + channel_keep_weight * sum_c relu(min_channel_keep - mean_{b, t} p[b, c, t]),
    and `mmd_reference: fresh`: the MMD compares embeddings of a frozen encoder at a random
    initialisation (`fresh_reference`), not of the encoder being trained, which can learn to
    ignore what the views always drop and so make dropping it cost nothing. An entropy floor
    rather than a Beta prior on p: the hinge is zero while the mask is random enough, so it
    leaves a healthy augmenter's objective alone, and it is bounded (entropy_weight *
    entropy_floor), so it weighs against the MMD (at most 2 * kernel_num) as the sparsity hinge
    does; a Beta(a, b) prior pulls every cell towards its mode at every step, and its -log p
    has no bound.

    Both terms are summed into `loss`, but each reaches only its own parameters, and
    `parameter_groups()` gives the augmenter its own AdamW lr and weight decay, so one engine
    optimiser step is an encoder step plus (on those iterations) an augmenter step. The
    official code updates them one after the other within an iteration; here both use the
    augmenter of the start of the iteration. `inference_encoder()` is the SWA average.

    Args:
        encoder: a series encoder with a per-step output (ts2vec or a tsai backbone).
        config: an `AutoTCL.Config` or the dict of ``pretrain.method``.

    Example:
        >>> from medssl.platform.encoders.ts2vec import TS2VecEncoder
        >>> enc = TS2VecEncoder(spatial_dims=1, in_channels=1, output_dim=8, depth=1)
        >>> method = AutoTCL(enc, {"augmenter_depth": 1})
        >>> out = method(Batch(x=torch.randn(4, 1, 64)))
        >>> [k for k in sorted(out) if k.endswith("loss")]
        ['augmenter_loss', 'encoder_loss', 'loss']
    """

    name: ClassVar[str] = "autotcl"
    requires: ClassVar[frozenset[str]] = frozenset()
    encoder_output: ClassVar[str] = "sequence"

    class Config(BaseModel):
        """The ``pretrain.method`` section of AutoTCL (defaults from the authors' code, except
        `sparsity_weight`, see the class docstring)."""

        model_config = ConfigDict(extra="forbid")

        encoder_loss: Literal["infonce", "hierarchical"] = "infonce"
        # One keep probability and scale per (step, channel), or per step for all channels.
        mask_channels: Literal["each", "shared"] = "each"
        # Input channels the view passes through unchanged (known covariates, such as the
        # calendar features a forecasting table puts first); the mask acts on the rest.
        fixed_channels: tuple[int, ...] = ()
        # Where the hard-concrete noise goes: the logit of p (the paper's form, the default) or p
        # itself, as the authors' code does (the mask then stays random, keep 0.48-0.71).
        mask_noise: Literal["logit", "probability"] = "logit"
        temperature: float = Field(1.0, gt=0.0)
        local_weight: float = Field(0.1, ge=0.0)
        num_windows: int = Field(16, ge=3)
        augmenter_hidden_dim: int = Field(64, ge=1)
        augmenter_embed_dim: int = Field(16, ge=1)
        augmenter_depth: int = Field(3, ge=0)
        augmenter_lr: float = Field(0.01, gt=0.0)
        augmenter_weight_decay: float = Field(0.01, ge=0.0)
        ratio_step: int = Field(1, ge=1)
        # Not the authors' 1e-3, which lets the augmenter collapse: see the class docstring.
        sparsity_weight: float = Field(10.0, ge=0.0)
        keep_threshold: float = Field(0.4, ge=0.0, le=1.0)
        smoothness_weight: float = Field(1e-3, ge=0.0)
        # Against a p that saturates into a fixed mask (0: off): a hinge when the mean binary
        # entropy of p (bits) falls below entropy_floor, and one for each channel whose mean p
        # falls below min_channel_keep. See the class docstring.
        entropy_floor: float = Field(0.0, ge=0.0, le=1.0)
        entropy_weight: float = Field(10.0, ge=0.0)
        min_channel_keep: float = Field(0.0, ge=0.0, le=1.0)
        channel_keep_weight: float = Field(10.0, ge=0.0)
        # Whose embeddings the MMD compares: the encoder being trained, or a frozen one at a
        # random initialisation drawn from the seed (`fresh_reference`).
        mmd_reference: Literal["current", "fresh"] = "current"
        mmd_kernel_num: int = Field(5, ge=1)
        mmd_kernel_mul: float = Field(2.0, gt=0.0)
        mask_temperature: float = Field(1.0, gt=0.0)
        gamma: float = Field(-0.05, lt=0.0)
        zeta: float = Field(1.0, ge=1.0)
        noise_bound: float = Field(1e-3, ge=0.0, lt=0.5)
        hard_mask: bool = True
        max_length: int = Field(3000, ge=2)
        swa: bool = True

        @field_validator("min_channel_keep")
        @classmethod
        def _within_the_sparsity_bound(cls, value: float, info: ValidationInfo) -> float:
            threshold = info.data.get("keep_threshold")
            if threshold is not None and value > threshold:
                raise ValueError(
                    f"{value} is above keep_threshold {threshold}: the mean keep probability "
                    "cannot stay below keep_threshold while every channel keeps more; set it "
                    "at most keep_threshold"
                )
            return value

    def __init__(self, encoder: Encoder, config: AutoTCL.Config | dict[str, Any] | None = None):
        super().__init__(encoder)
        self.config = validate_method_config(type(self), config)
        require_sequence_encoder(self.name, encoder)
        cfg = self.config
        free = free_channels(encoder.in_channels, cfg.fixed_channels)
        #: The input channel of each row of the keep probabilities (a shared row: all of them).
        self.keep_rows = free
        #: The channels the augmenter transforms, or None for all of them.
        self.free_channels: torch.Tensor | None
        if len(free) < encoder.in_channels:
            self.register_buffer("free_channels", torch.tensor(free), persistent=False)
        else:
            self.free_channels = None
        self.augmenter = ParametricAugmenter(
            encoder.in_channels,
            cfg.augmenter_hidden_dim,
            cfg.augmenter_embed_dim,
            cfg.augmenter_depth,
            shared=cfg.mask_channels == "shared",
            out_channels=len(free),
        )
        self.swa_encoder = averaged_copy(encoder) if cfg.swa else None
        #: `mmd_reference: fresh`: the frozen encoder the MMD compares in (saved with the
        #: method's state, so a resumed run compares in the same one).
        self.reference_encoder = fresh_reference(encoder) if cfg.mmd_reference == "fresh" else None
        #: Optimiser steps taken; set by `after_optimizer_step`, picks augmenter iterations.
        self.iteration = 0
        self._record: dict[str, Any] | None = None

    def train(self, mode: bool = True) -> AutoTCL:
        super().train(mode)
        if self.reference_encoder is not None:
            self.reference_encoder.eval()  # frozen: its batch-norm statistics must not move
        return self

    def training_record(self) -> dict[str, Any] | None:
        """The keep statistics of the last augmenter step (`keep_statistics`, with that
        iteration as `step`), once; None when no augmenter step ran since the last call."""
        record, self._record = self._record, None
        return record

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Encoder (engine lr and weight decay) and augmenter (its own) AdamW groups."""
        augmenter = list(self.augmenter.parameters())
        own = {id(p) for p in augmenter}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in own]
        return [
            {"name": "encoder", "params": rest},
            {
                "name": "augmenter",
                "params": augmenter,
                "lr": self.config.augmenter_lr,
                "weight_decay": self.config.augmenter_weight_decay,
            },
        ]

    def augment(
        self, x: torch.Tensor, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The view v = g * m * x (NaN where x is NaN; `fixed_channels` as they are), and the
        keep probabilities p and mask m of the transformed channels, (B, C', T) each (C' = 1
        when the mask is `shared`)."""
        cfg = self.config
        keep_logits, scale = self.augmenter(x)
        free = self.free_channels
        target = x if free is None else x.index_select(1, free)
        gate = keep_logits if cfg.mask_noise == "logit" else torch.sigmoid(keep_logits)
        mask = hard_concrete(
            gate,
            sample=sample,
            temperature=cfg.mask_temperature,
            gamma=cfg.gamma,
            zeta=cfg.zeta,
            noise_bound=cfg.noise_bound,
            hard=cfg.hard_mask,
        )
        missing = torch.isnan(target)
        # torch.where keeps NaN out of the gradient of g and m at missing values.
        view = scale * mask * torch.where(missing, torch.zeros_like(target), target)
        view = torch.where(missing, target, view)
        if free is not None:
            view = x.index_copy(1, free, view)
        return view, torch.sigmoid(keep_logits), mask

    @torch.no_grad()
    def keep_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmenter's keep probability p and scale g at every (channel, step) of `x`
        (B, C, T), (B, C, T) each: fixed channels read 1 and 1, a `shared` gate is repeated
        over the free channels. (With `mask_noise: probability` a step is kept with a
        probability between about 0.48 at p = 0 and 0.71 at p = 1, not p.)"""
        keep_logits, scale = self.augmenter(x)
        keep = torch.ones_like(x)
        g = torch.ones_like(x)
        free = self.free_channels
        rows = torch.arange(x.shape[1], device=x.device) if free is None else free
        shape = (x.shape[0], len(rows), x.shape[2])
        keep[:, rows] = torch.sigmoid(keep_logits).expand(shape).to(x.dtype)
        g[:, rows] = scale.expand(shape).to(x.dtype)
        return keep, g

    def channel_keep(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`keep_map` of `x` averaged per channel over its observed (non-NaN) steps: (C,)
        each."""
        keep, scale = self.keep_map(x)
        observed = ~torch.isnan(x)
        weight = observed.sum(dim=(0, 2)).clamp_min(1)
        mean_keep = (keep * observed).sum(dim=(0, 2)) / weight
        return mean_keep, (scale * observed).sum(dim=(0, 2)) / weight

    def _window(self, x: torch.Tensor) -> torch.Tensor:
        limit = self.config.max_length
        if x.shape[-1] <= limit:
            return x
        lengths = series_steps(x).sum(dim=1)
        return crop_rows(x, random_starts(lengths, limit), limit)

    def _pooled_pair(
        self, x: torch.Tensor, steps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """maxpool f(x) (no gradient), maxpool f(v) of a sampled view v (gradient to the
        augmenter only) and the view's keep probabilities; f is the fresh reference encoder,
        or the current one, frozen and in eval mode for this pass."""
        reference = self.reference_encoder
        if reference is not None:
            with torch.no_grad():
                z_x = masked_max_pool(_dense(reference, x), steps)
            view, keep, _ = self.augment(x, sample=True)
            return z_x, masked_max_pool(_dense(reference, view), steps), keep
        frozen = {name: p.detach() for name, p in self.encoder.named_parameters()}
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                z_x = masked_max_pool(_dense(self.encoder, x), steps)
            view, keep, _ = self.augment(x, sample=True)
            out = functional_call(self.encoder, frozen, (view,), {"dense": True})
            assert out.dense is not None
            z_v = masked_max_pool(out.dense, steps)
        finally:
            self.encoder.train(was_training)
        return z_x, z_v, keep

    def augmenter_loss(self, x: torch.Tensor, steps: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_aug and its terms, and the keep statistics of this step (logged, and kept for
        `training_record`); gradients reach the augmenter only."""
        cfg = self.config
        z_x, z_v, keep = self._pooled_pair(x, steps)
        mmd = gaussian_mmd(z_x, z_v, kernel_mul=cfg.mmd_kernel_mul, kernel_num=cfg.mmd_kernel_num)
        sparsity = keep_sparsity(keep, cfg.keep_threshold, steps)
        smoothness = temporal_smoothness(keep, steps)
        total = mmd + cfg.sparsity_weight * sparsity + cfg.smoothness_weight * smoothness
        out = {"mmd": mmd, "keep_probability": keep.detach().mean()}
        if cfg.entropy_floor > 0:
            out["entropy_penalty"] = keep_entropy_floor(keep, cfg.entropy_floor, steps)
            total = total + cfg.entropy_weight * out["entropy_penalty"]
        if cfg.min_channel_keep > 0:
            out["channel_keep_penalty"] = channel_keep_floor(keep, cfg.min_channel_keep, steps)
            total = total + cfg.channel_keep_weight * out["channel_keep_penalty"]
        stats = keep_statistics(keep, steps, self.keep_rows, x.shape[1])
        self._record = {"step": self.iteration, **stats}
        logged = {
            "keep_entropy": stats["entropy"],
            "undecided_fraction": stats["undecided"],
            "channel_keep_min": min(stats["channel_keep"]),
        }
        out.update({k: torch.tensor(v, device=keep.device) for k, v in logged.items()})
        return {"augmenter_loss": total, **{k: v.detach() for k, v in out.items()}}

    def encoder_loss(self, x: torch.Tensor, steps: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_enc on a fresh view, held fixed (no gradient to the augmenter)."""
        cfg = self.config
        with torch.no_grad():
            view, _, mask = self.augment(x, sample=self.training)
        s_x, s_v = _dense(self.encoder, x), _dense(self.encoder, view)
        z_x, z_v = masked_max_pool(s_x, steps), masked_max_pool(s_v, steps)
        # Step-wise terms need a range every series covers.
        common = int(steps.sum(dim=1).min())
        if cfg.encoder_loss == "hierarchical":
            a, b = s_x[..., :common].transpose(1, 2), s_v[..., :common].transpose(1, 2)
            loss = hierarchical_contrastive_loss(a, b)
        else:
            loss = cross_view_info_nce(z_x, z_v, cfg.temperature)
            if cfg.local_weight > 0:
                width = common // cfg.num_windows
                start = int(torch.randint(0, common - cfg.num_windows * width + 1, ()))
                local = local_window_info_nce(
                    s_x[..., :common], cfg.num_windows, cfg.temperature, start=start
                )
                loss = loss + cfg.local_weight * local
        with torch.no_grad():
            pooled = F.normalize(torch.cat([z_x, z_v]).float(), dim=1)
            spread = pooled.std(dim=0, correction=0).mean() * math.sqrt(pooled.shape[1])
        return {"encoder_loss": loss, "embedding_std": spread, "kept_fraction": mask.mean()}

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """`loss` = encoder_loss (+ augmenter_loss on augmenter iterations in training), with
        the terms, the kept fraction of the mask and a collapse monitor for logging."""
        x = self._window(batch["x"])
        steps = series_steps(x)
        out = self.encoder_loss(x, steps)
        loss = out["encoder_loss"]
        if self.training and self.iteration % self.config.ratio_step == 0:
            out.update(self.augmenter_loss(x, steps))
            loss = loss + out["augmenter_loss"]
        return {"loss": loss, **out}

    def before_first_step(self, step: int) -> None:
        """A resumed fit goes on counting from its checkpoint's step."""
        self.iteration = step

    @torch.no_grad()
    def after_optimizer_step(self, step: int, max_steps: int) -> None:
        """Count the step and fold the live encoder into the SWA average."""
        self.iteration = step
        self.update_average()

    def card(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json")}
