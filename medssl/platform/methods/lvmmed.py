"""LVM-Med: contrastive pretraining as second-order graph matching between two views of a
batch (Nguyen et al., NeurIPS 2023, "LVM-Med: Learning Large-Scale Self-Supervised Vision
Models for Medical Imaging via Second-order Graph Matching")."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medssl.platform.augment import AugmentConfig, ViewGenerator, Views, keyed_uniform, sample_keys
from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder
from medssl.platform.encoders.monai_common import global_pool
from medssl.platform.losses.lvmmed import (
    edge_affinity,
    group_rows,
    knn_graph,
    local_affinity,
    normalised_adjacency,
    vertex_affinity,
)
from medssl.platform.methods.base import Method, projection_head
from medssl.platform.registry import METHODS
from medssl.platform.solvers import hamming_loss, imle_qap

#: Keyed stream of the Gumbel perturbation of the vertex affinities.
_GUMBEL_STREAM = 401


class GraphConvolution(nn.Module):
    """A stack of graph convolutions shared by both views (Kipf & Welling, ICLR 2017):

        H_l = act(P H_{l-1} W_{l-1}),  P = D^-1/2 (A + I) D^-1/2,

    batched over graphs, with ReLU between layers and a linear last layer (its output is
    compared by cosine, which a final ReLU would confine to non-negative vectors).

    Example:
        >>> gcn = GraphConvolution(8, 16, layers=2)
        >>> gcn(torch.rand(3, 5, 8), torch.eye(5).repeat(3, 1, 1)).shape
        torch.Size([3, 5, 16])
    """

    def __init__(self, in_dim: int, width: int, layers: int = 2) -> None:
        super().__init__()
        dims = [in_dim] + [width] * layers
        self.weights = nn.ModuleList(
            nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )

    def forward(self, h: torch.Tensor, propagation: torch.Tensor) -> torch.Tensor:
        """h (G, N, D) node features, propagation (G, N, N) -> (G, N, width)."""
        for depth, weight in enumerate(self.weights):
            h = propagation @ weight(h)
            if depth < len(self.weights) - 1:
                h = torch.relu(h)
        return h


@METHODS.register("lvmmed")
class LVMMed(Method):
    """LVM-Med (Nguyen et al., NeurIPS 2023).

    Two views of each image; y = encoder feature map, z = projector(avgpool(y)). The batch is
    split into graphs of `group_size` images; per view and graph a kNN graph (k neighbours) over
    the z's and a shared 2-layer GCN give zhat. Vertex affinity
    c_v[i, a] = alpha cos(zhat_s_i, zhat_t_a) + (1 - alpha) local(y_s_i, y_t_a) (local: the
    mean of location- and feature-based cell matching, the locations from each view's crop
    geometry); edge affinity c_e[(i, j), (a, b)] = cos(zhat_s_i - zhat_s_j, zhat_t_a - zhat_t_b)
    over edges of both graphs. The quadratic assignment between the graphs is solved for all
    graphs at once; the loss is the Hamming distance of the assignment to the identity (image
    i of view s is image i of view t), differentiated through the solver with implicit
    maximum-likelihood estimation (Gumbel-perturbed affinities, lambda = `imle_lambda`).

    Rows past the last full graph of a batch are not used; make the per-process batch size a
    multiple of `group_size`.

    Args:
        encoder: an encoder with a feature map (`encode`), 2-D or 3-D, `feature_dim` > 0.
        config: an `LVMMed.Config` or the ``pretrain.method`` dict (see `Config`).

    Example:
        >>> from medssl.platform.encoders import build_encoder
        >>> enc = build_encoder("resnet", spatial_dims=2, in_channels=1,
        ...                     depth=10, widen_factor=0.125, no_max_pool=True)
        >>> method = LVMMed(enc, {"group_size": 4, "k": 2, "gcn_dim": 16,
        ...                       "projection_dim": 16, "hidden_dim": 32})
        >>> out = method(Batch(x=torch.rand(8, 1, 32, 32), index=torch.arange(8)))
        >>> sorted(out)
        ['embedding_std', 'loss', 'matched']
    """

    name: ClassVar[str] = "lvmmed"
    requires: ClassVar[frozenset[str]] = frozenset({"index"})
    encoder_output: ClassVar[str] = "global"

    class Config(BaseModel):
        """The ``pretrain.method`` section of lvmmed.

        group_size: images per graph (N; 16 was best in the paper, larger graphs hurt).
        k: neighbours per node of each view's kNN graph.
        alpha: weight of the global cosine in the vertex affinity (1 - alpha: the local term).
        gcn_dim: width of both GCN layers.
        projection_dim, hidden_dim: the projector MLP (z is projection_dim wide).
        imle_lambda: the IMLE step lambda (the paper: 80).
        noise_scale: scale of the Gumbel(0, 1) perturbation of the vertex affinities.
        local_keep: fraction of feature-map cells kept by each local matching.
        second_order, message_passing, gumbel_noise, local_term: the paper's ablations; each
            False removes that part (the edge affinity, the GCN, the noise, the local term).
        augment: how each view is drawn.
        solver: extra keyword options of `medssl.platform.solvers.solve_qap`.
        """

        model_config = ConfigDict(extra="forbid")

        group_size: int = Field(16, ge=2)
        k: int = Field(5, ge=1)
        alpha: float = Field(0.8, ge=0.0, le=1.0)
        gcn_dim: int = Field(128, ge=1)
        projection_dim: int = Field(128, ge=1)
        hidden_dim: int = Field(512, ge=1)
        imle_lambda: float = Field(80.0, gt=0.0)
        noise_scale: float = Field(1.0, gt=0.0)
        local_keep: float = Field(0.5, gt=0.0, le=1.0)
        second_order: bool = True
        message_passing: bool = True
        gumbel_noise: bool = True
        local_term: bool = True
        augment: AugmentConfig = Field(default_factory=AugmentConfig)
        solver: dict[str, Any] = Field(default_factory=dict)

    def __init__(
        self, encoder: Encoder, config: LVMMed.Config | dict[str, Any] | None = None
    ) -> None:
        super().__init__(encoder)
        self.config = self.validate_config(config)
        cfg = self.config
        if not callable(getattr(encoder, "encode", None)) or encoder.spatial_dims not in (2, 3):
            raise ValueError(
                f"lvmmed matches feature-map cells, so it needs a 2-D or 3-D encoder with a "
                f"feature map (resnet, unet, segresnet); '{encoder.name}' has none"
            )
        self.projector = projection_head(encoder, cfg.hidden_dim, cfg.projection_dim)
        self.gcn = (
            GraphConvolution(cfg.projection_dim, cfg.gcn_dim) if cfg.message_passing else None
        )
        self.views = ViewGenerator(cfg.augment)

    def _views(self, batch: Batch) -> tuple[Views, Views]:
        if "index" not in batch:
            raise ValueError(
                f"method '{self.name}' needs the Batch field 'index' to key its augmentation; "
                "the data adapter must provide it"
            )
        x, index = batch["x"], batch["index"]
        s, t = (self.views.generate(x, sample_keys(index, self.seed, self.epoch, v)) for v in (0, 1))
        return s, t

    def _gumbel(self, index: torch.Tensor, groups: int, dtype: torch.dtype) -> torch.Tensor:
        """(G, N, N) Gumbel(0, 1) noise keyed by each row's sample, so it does not depend on
        the batch's split across processes."""
        n = self.config.group_size
        keys = sample_keys(index[: groups * n], self.seed, self.epoch, view=2)
        u = keyed_uniform(keys, n, stream=_GUMBEL_STREAM).to(dtype).clamp(1e-6, 1.0 - 1e-6)
        return -torch.log(-torch.log(u)).reshape(groups, n, n)

    def affinities(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Both views through the encoder and graphs: `unary` (G, N, N) vertex affinities,
        `quadratic` (G, N^2, N^2) edge affinities (zeros without the second-order term), and
        `z` (2G N, projection_dim) the projections of [view s; view t]."""
        cfg = self.config
        n = cfg.group_size
        view_s, view_t = self._views(batch)
        maps = self.encoder.encode(torch.cat([view_s.images, view_t.images]))[0]  # type: ignore[operator]
        z = self.projector(global_pool(maps))
        z_s, z_t = (group_rows(half, n) for half in z.chunk(2))
        adjacency_s, adjacency_t = knn_graph(z_s, cfg.k), knn_graph(z_t, cfg.k)
        if self.gcn is not None:
            z_s = self.gcn(z_s, normalised_adjacency(adjacency_s))
            z_t = self.gcn(z_t, normalised_adjacency(adjacency_t))
        local = None
        if cfg.local_term and cfg.alpha < 1.0:
            grid = tuple(maps.shape[2:])
            cells = maps.flatten(2).transpose(1, 2)  # (2B, P, C)
            cells_s, cells_t = (group_rows(half, n) for half in cells.chunk(2))
            local = local_affinity(
                cells_s,
                cells_t,
                group_rows(view_s.cell_centres(grid), n),
                group_rows(view_t.cell_centres(grid), n),
                keep=cfg.local_keep,
            )
        unary = vertex_affinity(z_s, z_t, local, cfg.alpha if local is not None else 1.0)
        if cfg.second_order:
            quadratic = edge_affinity(z_s, z_t, adjacency_s, adjacency_t)
        else:
            groups = unary.shape[0]
            quadratic = unary.new_zeros(groups, n * n, n * n)
        return {"unary": unary, "quadratic": quadratic, "z": z}

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss (mean Hamming distance of each graph's assignment to the identity, 0..2N),
        `matched` (fraction of images assigned their own other view) and the collapse monitor
        `embedding_std` (~1 when spread, 0 when collapsed)."""
        cfg = self.config
        parts = self.affinities(batch)
        unary, quadratic = parts["unary"].float(), parts["quadratic"].float()
        if cfg.gumbel_noise:
            noise = self._gumbel(batch["index"], unary.shape[0], unary.dtype)
            unary = unary + cfg.noise_scale * noise
        assignment = imle_qap(
            unary, quadratic, lam=cfg.imle_lambda, noise=False, solver_kwargs=cfg.solver
        )
        loss = hamming_loss(assignment)
        with torch.no_grad():
            matched = assignment.diagonal(dim1=1, dim2=2).mean()
            z = nn.functional.normalize(parts["z"].float(), dim=1)
            spread = z.std(dim=0, correction=0).mean() * math.sqrt(z.shape[1])
        return {"loss": loss, "matched": matched, "embedding_std": spread}

    def card(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json")}
