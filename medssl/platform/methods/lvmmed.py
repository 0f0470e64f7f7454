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
    compared by cosine, which a final ReLU would confine to non-negative vectors). With
    `residual` the input is added to the output (through a linear map when the widths
    differ), so message passing refines each node instead of replacing it by an average of
    its neighbourhood.

    Example:
        >>> gcn = GraphConvolution(8, 16, layers=2)
        >>> gcn(torch.rand(3, 5, 8), torch.eye(5).repeat(3, 1, 1)).shape
        torch.Size([3, 5, 16])
    """

    def __init__(self, in_dim: int, width: int, layers: int = 2, residual: bool = False) -> None:
        super().__init__()
        dims = [in_dim] + [width] * layers
        self.weights = nn.ModuleList(
            nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.skip: nn.Module | None = None
        if residual:
            self.skip = nn.Identity() if in_dim == width else nn.Linear(in_dim, width, bias=False)

    def forward(self, h: torch.Tensor, propagation: torch.Tensor) -> torch.Tensor:
        """h (G, N, D) node features, propagation (G, N, N) -> (G, N, width)."""
        x = h
        for depth, weight in enumerate(self.weights):
            h = propagation @ weight(h)
            if depth < len(self.weights) - 1:
                h = torch.relu(h)
        return h if self.skip is None else self.skip(x) + h


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
        margin: the cost margin of Rolinek et al. (ECCV 2020, "Deep Graph Matching via Blackbox
            Differentiation of Combinatorial Solvers"): during training the identity's vertex
            affinities are lowered by this much before the solve, so the loss stays above
            zero until the two views of an image beat every other pairing by the margin.
            0 is the plain Hamming loss, which is also zero when all embeddings are equal.
        gcn_residual: add each node's input to the GCN's output (zhat = z + GCN(z)), as
            Rolinek et al. compose refined and original node features. Without it two layers
            of averaging over a kNN graph of 16 make the nodes of a graph nearly alike.
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
        margin: float = Field(1.0, ge=0.0)
        gcn_residual: bool = True
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
            GraphConvolution(cfg.projection_dim, cfg.gcn_dim, residual=cfg.gcn_residual)
            if cfg.message_passing
            else None
        )
        self.views = ViewGenerator(cfg.augment)

    def _views(self, batch: Batch) -> tuple[Views, Views]:
        if "index" not in batch:
            raise ValueError(
                f"method '{self.name}' needs the Batch field 'index' to key its augmentation; "
                "the data adapter must provide it"
            )
        x, index = batch["x"], batch["index"]
        s, t = (
            self.views.generate(x, sample_keys(index, self.seed, self.epoch, v)) for v in (0, 1)
        )
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
        view_s, view_t = self._views(batch)
        maps = self.encoder.encode(torch.cat([view_s.images, view_t.images]))[0]  # type: ignore[operator]
        z = self.projector(global_pool(maps))
        centres = None
        if self.config.local_term and self.config.alpha < 1.0:
            grid = tuple(maps.shape[2:])
            centres = torch.cat([view_s.cell_centres(grid), view_t.cell_centres(grid)])
        cells = maps.flatten(2).transpose(1, 2)  # (2B, P, C)
        return {**self.graph_affinities(z, cells, centres), "z": z}

    def graph_affinities(
        self, z: torch.Tensor, cells: torch.Tensor, centres: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The graph part of the step, from the encoder's outputs of [view s; view t]: z
        (2B, projection_dim) projections, cells (2B, P, C) feature-map cells and centres
        (2B, P, n) their positions in the original images (None without the local term).
        Returns `unary` (G, N, N) and `quadratic` (G, N^2, N^2) as `affinities` does."""
        cfg = self.config
        n = cfg.group_size
        z_s, z_t = (group_rows(half, n) for half in z.chunk(2))
        adjacency_s, adjacency_t = knn_graph(z_s, cfg.k), knn_graph(z_t, cfg.k)
        if self.gcn is not None:
            z_s = self.gcn(z_s, normalised_adjacency(adjacency_s))
            z_t = self.gcn(z_t, normalised_adjacency(adjacency_t))
        local = None
        if cfg.local_term and cfg.alpha < 1.0:
            if centres is None:
                raise ValueError("the local term needs the cell centres of both views")
            cells_s, cells_t = (group_rows(half, n) for half in cells.chunk(2))
            centres_s, centres_t = (group_rows(half, n) for half in centres.chunk(2))
            local = local_affinity(cells_s, cells_t, centres_s, centres_t, keep=cfg.local_keep)
        unary = vertex_affinity(z_s, z_t, local, cfg.alpha if local is not None else 1.0)
        if cfg.second_order:
            quadratic = edge_affinity(z_s, z_t, adjacency_s, adjacency_t)
        else:
            quadratic = unary.new_zeros(unary.shape[0], n * n, n * n)
        return {"unary": unary, "quadratic": quadratic}

    def match(
        self, unary: torch.Tensor, quadratic: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        """The training assignment of each graph, differentiable by IMLE: the vertex
        affinities perturbed by keyed Gumbel noise and lowered by the margin on the identity,
        then both batched solves. (G, N, N) permutation matrices."""
        cfg = self.config
        unary, quadratic = unary.float(), quadratic.float()
        if cfg.gumbel_noise:
            unary = unary + cfg.noise_scale * self._gumbel(index, unary.shape[0], unary.dtype)
        if cfg.margin > 0:
            # Loss-augmented solve: the identity must win by the margin, or it still costs.
            eye = torch.eye(unary.shape[1], dtype=unary.dtype, device=unary.device)
            unary = unary - cfg.margin * eye
        return imle_qap(
            unary, quadratic, lam=cfg.imle_lambda, noise=False, solver_kwargs=cfg.solver
        )

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss (mean Hamming distance of each graph's assignment to the identity, 0..2N),
        `matched` (fraction of images assigned their own other view by the training solve,
        under the noise and the margin) and the collapse monitor `embedding_std` (~1 when
        spread, 0 when collapsed)."""
        parts = self.affinities(batch)
        assignment = self.match(parts["unary"], parts["quadratic"], batch["index"])
        loss = hamming_loss(assignment)
        with torch.no_grad():
            matched = assignment.diagonal(dim1=1, dim2=2).mean()
            z = nn.functional.normalize(parts["z"].float(), dim=1)
            spread = z.std(dim=0, correction=0).mean() * math.sqrt(z.shape[1])
        return {"loss": loss, "matched": matched, "embedding_std": spread}

    def card(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json")}
