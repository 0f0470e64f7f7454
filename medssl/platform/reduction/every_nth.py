"""The naive baseline of dataset reduction: keep every n-th slice of each volume."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from medssl.platform.reduction.base import Reducer
from medssl.platform.registry import REDUCERS


@REDUCERS.register("every_nth")
class EveryNth(Reducer):
    """Keep slices 0, n, 2n, ... of each volume whatever they show: the baseline that
    Wolf et al. (2024) compare the content-aware reductions against.

    Args (Config): n (2): the step between kept slices (1 keeps all of them).

    Example:
        >>> EveryNth({"n": 3}).select(torch.zeros(7, 4, 4))
        [0, 3, 6]
    """

    name: ClassVar[str] = "every_nth"

    class Config(Reducer.Config):
        n: int = Field(2, ge=1, description="step between kept slices")

    config: Config

    def select(self, volume: torch.Tensor) -> list[int]:
        return list(range(0, int(volume.shape[0]), self.config.n))
