"""The KoLeo regulariser: spreads embeddings by pushing up nearest-neighbour distances.

Used beside contrastive losses (e.g. 0.1 x KoLeo in wearable-biosignal pretraining).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def koleo_loss(h: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy estimator as a loss (Sablayrolles et al., 2019,
    "Spreading vectors for similarity search"):

        L = -(1/N) sum_i log( min_{j != i} ||h_i - h_j|| + eps ),  h L2-normalised.

    The nearest neighbour is chosen without gradient (largest cosine similarity, the same
    point as the smallest distance on the unit sphere); the distance to it carries the
    gradient. Duplicate rows give distance 0, a finite loss of -log(eps) and zero gradient.
    Computed over the rows given (per rank under DDP), in float32 (float64 stays float64).

    Args:
        h: (N, D) embeddings, N >= 2; normalised here.
        eps: added to each distance inside the logarithm; > 0.

    Returns:
        A scalar loss tensor.

    Example:
        >>> spread = torch.eye(4)
        >>> bunched = torch.eye(4) + 10.0
        >>> bool(koleo_loss(spread) < koleo_loss(bunched))
        True
    """
    if h.ndim != 2 or h.shape[0] < 2:
        raise ValueError(f"koleo needs h of shape (N, D) with N >= 2, got {tuple(h.shape)}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    work = torch.float64 if h.dtype == torch.float64 else torch.float32
    unit = F.normalize(h.to(work), dim=1)
    with torch.no_grad():
        cosine = unit @ unit.T
        cosine.fill_diagonal_(float("-inf"))
        nearest = cosine.argmax(dim=1)
    distance = torch.linalg.vector_norm(unit - unit[nearest], dim=1)
    return -torch.log(distance + eps).mean()
