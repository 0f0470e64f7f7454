"""The `Volume` record every volume reader returns (voxels + RAS affine + format facts), and
the one-line error summary readers put into their user-facing messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A scan in memory.

    array: float32, (X, Y, Z) or (C, X, Y, Z); voxel (i, j, k) sits at `affine @ (i, j, k, 1)`.
    affine: 4x4 voxel -> RAS+ world coordinates in mm.
    meta: format, source and geometry facts only; never a patient identifier.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape[-3:])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm: the length of each affine column."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return tuple(float(s) for s in norms)  # type: ignore[return-value]

    @property
    def channels_first(self) -> np.ndarray:
        """The array as (C, X, Y, Z)."""
        return self.array if self.array.ndim == 4 else self.array[None]


