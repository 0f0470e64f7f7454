"""The view generator: whole batches in, augmented views and their crop boxes out.

Spatial and intensity steps run on the batch's device with per-sample keyed randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from medssl.platform.augment.config import AugmentConfig
from medssl.platform.augment.intensity import intensity_augment
from medssl.platform.augment.keyed import sample_keys
from medssl.platform.augment.spatial import ViewGeometry, cell_centres, sample_geometry, warp
from medssl.platform.batch import Batch


@dataclass
class Views:
    """One view of a batch: the images (B, C, *output_size) and where they came from."""

    images: torch.Tensor
    geometry: ViewGeometry

    @property
    def crop_box(self) -> torch.Tensor:
        return self.geometry.box

    def cell_centres(self, grid_size: tuple[int, ...]) -> torch.Tensor:
        """(B, cells, n) original-input coordinates in [0, 1] of the cell centres of a
        `grid_size` feature map over these views (see `spatial.cell_centres`)."""
        return cell_centres(self.geometry.theta, grid_size)


class ViewGenerator:
    """Makes one random view of every sample of a batch (random resized crop composed with
    flips, rotation and zoom in one sampling grid, then gamma, contrast, brightness, noise).

    A sample's view depends only on its key, so keys from
    ``sample_keys(index, seed, epoch, view)`` make views independent of batch composition.

    Args:
        config: an `AugmentConfig` or a dict of its fields.

    Example:
        >>> from medssl.platform.augment.keyed import sample_keys
        >>> make = ViewGenerator({"crop_scale": (0.5, 1.0)})
        >>> x = torch.rand(2, 1, 16, 16, 16)
        >>> views, box = make(x, sample_keys(torch.arange(2), seed=0, epoch=0, view=0))
        >>> views.shape, box.shape
        (torch.Size([2, 1, 16, 16, 16]), torch.Size([2, 6]))
    """

    def __init__(self, config: AugmentConfig | dict[str, Any] | None = None) -> None:
        if config is None:
            config = AugmentConfig()
        elif not isinstance(config, AugmentConfig):
            config = AugmentConfig.model_validate(config)
        self.config = config

    def _output_size(self, input_size: tuple[int, ...]) -> tuple[int, ...]:
        size = self.config.output_size
        if size is None:
            return input_size
        if len(size) != len(input_size):
            raise ValueError(
                f"augment.output_size {tuple(size)} has {len(size)} entries but the input has "
                f"{len(input_size)} spatial dimensions {input_size}"
            )
        return tuple(size)

    def generate(self, x: torch.Tensor, keys: torch.Tensor) -> Views:
        """The view of `x` (B, C, *spatial) drawn from `keys` (B,), with its full geometry."""
        if x.ndim not in (4, 5):
            raise ValueError(
                f"views need x of shape (B, C, H, W) or (B, C, D, H, W), got {tuple(x.shape)}"
            )
        if keys.shape != (x.shape[0],):
            raise ValueError(
                f"keys must have shape ({x.shape[0]},) to match x {tuple(x.shape)}, "
                f"got {tuple(keys.shape)}"
            )
        keys = keys.to(x.device)
        input_size = tuple(x.shape[2:])
        geometry = sample_geometry(keys, input_size, self.config)
        images = warp(x, geometry.theta, self._output_size(input_size), self.config.padding_mode)
        images = intensity_augment(images, keys, self.config)
        return Views(images=images, geometry=geometry)

    def __call__(self, x: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (views (B, C, *output_size) in x's dtype, crop_box (B, 2 * n_spatial) float32)."""
        views = self.generate(x, keys)
        return views.images, views.crop_box

    def view_batch(self, batch: Batch, *, seed: int, epoch: int, view: int) -> Batch:
        """The batch with `x` replaced by one view and its `crop_box` recorded.

        Keys come from the batch's `index` field: ``sample_keys(index, seed, epoch, view)``.
        """
        if "index" not in batch:
            raise ValueError("view_batch needs the Batch field 'index' to key the augmentation")
        keys = sample_keys(batch["index"], seed=seed, epoch=epoch, view=view)
        images, crop_box = self(batch["x"], keys)
        return batch.replace(x=images, crop_box=crop_box)
