"""Difference hashes (dHash) of every slice of a volume at once, on the volume's device, and
the "Hash-n" reduction of Wolf et al. (2024) built on them; a per-slice reference beside it."""

from __future__ import annotations

import functools
from typing import ClassVar, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator

from medssl.platform.reduction.base import (
    Reducer,
    SliceImageConfig,
    check_slices,
    greedy_keep,
    greedy_keep_reference,
    grey_affine,
    quantize_grey,
    to_grey,
)
from medssl.platform.registry import REDUCERS

Resample = Literal["lanczos", "box"]

#: PIL stores resampling weights of 8-bit images as fixed-point numbers with this many
#: fraction bits (32 - 8 - 2); rounding ours the same way keeps ties where PIL has them.
_PRECISION_BITS = 22
#: Voxels per chunk of slices hashed together (4 MiB of float32).
_CHUNK_ELEMENTS = 1 << 20


def _lanczos(x: torch.Tensor) -> torch.Tensor:
    return torch.where((x >= -3.0) & (x < 3.0), torch.sinc(x) * torch.sinc(x / 3.0), 0.0)


def _box(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x <= 0.5)).to(x.dtype)


_FILTERS = {"lanczos": (_lanczos, 3.0), "box": (_box, 0.5)}


@functools.lru_cache(maxsize=64)
def resize_weights(in_size: int, out_size: int, resample: Resample = "lanczos") -> torch.Tensor:
    """(out_size, in_size) float64 matrix that resizes one axis as PIL's `Image.resize` does.

    When shrinking, the filter is stretched by the size ratio (it averages over the whole
    footprint of an output pixel); each output's weights are normalised to sum to 1 and then
    rounded to PIL's fixed-point precision.
    """
    kernel, support = _FILTERS[resample]
    ratio = in_size / out_size
    stretch = max(ratio, 1.0)
    reach = support * stretch
    centre = (torch.arange(out_size, dtype=torch.float64) + 0.5) * ratio
    # PIL truncates the window bounds toward zero before clamping them to the image.
    first = torch.trunc(centre - reach + 0.5).clamp_min(0)[:, None]
    stop = torch.trunc(centre + reach + 0.5).clamp_max(in_size)[:, None]
    x = torch.arange(in_size, dtype=torch.float64)[None, :]
    weights = kernel((x - centre[:, None] + 0.5) / stretch) * ((x >= first) & (x < stop))
    weights = weights / weights.sum(dim=1, keepdim=True)
    one = float(1 << _PRECISION_BITS)
    return torch.sign(weights) * torch.floor(weights.abs() * one + 0.5) / one


def _round_to_byte(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5).clamp_(0.0, 255.0)


def slice_dhash(
    volume: torch.Tensor,
    scale: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
    hash_size: int = 8,
    resample: Resample = "lanczos",
) -> torch.Tensor:
    """dHash bits (n, hash_size**2) of every slice of `volume` (n, H, W), in one pass.

    With `scale` and `offset` ((n, 1, 1), from `grey_affine`) each slice is first made 8-bit
    by `quantize_grey`; without them `volume` already holds grey levels 0..255. Each 8-bit
    slice is resized to hash_size + 1 columns x hash_size rows by two matrix products
    (columns first, rounded to 8 bits in between, as PIL does); bit (r, c) is
    pixel (r, c + 1) > pixel (r, c), the direction `imagehash.dhash` uses, read row by row.
    """
    n, height, width = volume.shape
    device = volume.device
    plan = _ResizePlan(height, width, (hash_size + 1, hash_size), resample, device)
    # Chunks small enough to stay in cache between the 8-bit conversion and the product.
    chunk = max(1, _CHUNK_ELEMENTS // max(1, height * width))
    buffer = None
    if scale is not None and offset is not None:
        # One buffer for every chunk's 8-bit copy: fresh allocations cost more than the maths.
        buffer = torch.empty(min(chunk, n), height, width, dtype=plan.work, device=device)
    bits = []
    for start in range(0, n, chunk):
        part = volume[start : start + chunk]
        k = part.shape[0]
        if buffer is not None:
            part = quantize_grey(
                part, scale[start : start + k], offset[start : start + k], buffer[:k]
            )
        small = plan(part.to(plan.work))
        bits.append((small[:, :, 1:] > small[:, :, :-1]).reshape(k, -1))
    if not bits:
        return torch.zeros(0, hash_size * hash_size, dtype=torch.bool, device=device)
    return torch.cat(bits)


def columns_first(height: int, width: int, out_height: int, out_width: int) -> bool:
    """Which pass Pillow 13 runs first (found by comparing its output; earlier releases
    always resized columns first): columns, unless the height shrinks by more than twice as
    many pixels as the width; when both sides grow, columns. The order decides where the
    intermediate rounding to 8 bits happens, hence a few tied hash bits."""
    if out_width > width and out_height > height:
        return True
    return 2 * (width - out_width) >= height - out_height


class _ResizePlan:
    """Both resize matrices of one slice shape, on one device, in Pillow's pass order."""

    def __init__(
        self,
        height: int,
        width: int,
        size: tuple[int, int],
        resample: Resample,
        device: torch.device,
    ) -> None:
        # TF32 would round the weights to 10 bits on a GPU; float64 keeps Pillow's rounding.
        self.work = torch.float64 if device.type == "cuda" else torch.float32
        self.cols = resize_weights(width, size[0], resample).to(device).T  # (W, out_w)
        self.rows = resize_weights(height, size[1], resample).to(device)  # (out_h, H)
        self.columns_first = columns_first(height, width, size[1], size[0])

    def __call__(self, grey: torch.Tensor) -> torch.Tensor:
        """(k, H, W) grey levels -> (k, out_h, out_w) float64 holding 8-bit values."""
        k, height, width = grey.shape
        if self.columns_first:
            across = _round_to_byte(
                (grey.reshape(k * height, width) @ self.cols.to(self.work)).double()
            )
            # (H, k * out_w): one matrix product for the rows of all slices, not k tiny ones.
            stacked = across.view(k, height, -1).transpose(0, 1).reshape(height, -1)
            small = (self.rows @ stacked).view(self.rows.shape[0], k, -1).transpose(0, 1)
            return _round_to_byte(small)
        down = _round_to_byte((self.rows.to(self.work) @ grey).double())
        return _round_to_byte(down @ self.cols)


def resize_grey(
    grey: torch.Tensor, size: tuple[int, int], resample: Resample = "lanczos"
) -> torch.Tensor:
    """8-bit slices (n, H, W) resized to `size` = (width, height) as Pillow's `Image.resize`
    does for 8-bit images: (n, height, width) float64 holding integers 0..255."""
    plan = _ResizePlan(grey.shape[1], grey.shape[2], size, resample, grey.device)
    return plan(grey.to(plan.work))


def hamming_matrix(bits: torch.Tensor) -> torch.Tensor:
    """All pairwise Hamming distances (n, n) int32 as one matrix product on +-1 bits:
    d(a, b) = (B - <a, b>) / 2 for B bits."""
    signs = bits.float() * 2.0 - 1.0
    return torch.round((bits.shape[1] - signs @ signs.T) / 2.0).to(torch.int32)


def dhash_reference(grey: torch.Tensor, hash_size: int = 8, resample: Resample = "lanczos") -> int:
    """The dHash of ONE 8-bit slice (H, W) as an integer (first bit most significant), by
    plain float64 arithmetic; the slow reference of `slice_dhash`."""
    height, width = grey.shape
    cols = resize_weights(width, hash_size + 1, resample).T
    rows = resize_weights(height, hash_size, resample)
    x = grey.double().cpu()
    if columns_first(height, width, hash_size, hash_size + 1):
        small = _round_to_byte(rows @ _round_to_byte(x @ cols))
    else:
        small = _round_to_byte(_round_to_byte(rows @ x) @ cols)
    value = 0
    for r in range(hash_size):
        for c in range(hash_size):
            value = (value << 1) | int(small[r, c + 1] > small[r, c])
    return value


@REDUCERS.register("dhash")
class DHash(Reducer):
    """Hash-n dataset reduction (Wolf et al., 2024, "Less is More: Selective Reduction of CT
    Data for Self-Supervised Pre-Training"): a 64-bit difference hash per slice; greedily,
    the first remaining slice is kept as a reference and every remaining slice with Hamming
    distance d(h_ref, h_j) <= threshold is dropped, until none remain. "Hash-6" is the default.

    The comparison is against the kept reference (as the paper's scripts do), not against
    the previous slice: a slow drift away from the reference eventually starts a new one.

    Args (Config): threshold (6), hash_size (8: 9 x 8 resize, 64 bits), resample ("lanczos",
        PIL's filter that `imagehash` uses; "box" averages), scaling ("volume" min-max to
        8 bits as in the paper, "slice", or "window" with `window: [low, high]`).

    Example:
        >>> volume = torch.rand(1, 32, 32).repeat(5, 1, 1)
        >>> DHash({"threshold": 6}).select(volume)
        [0]
    """

    name: ClassVar[str] = "dhash"

    class Config(SliceImageConfig):
        hash_size: int = Field(8, ge=2, le=64)
        threshold: int = Field(6, ge=0, description="largest Hamming distance that is a duplicate")
        resample: Resample = "lanczos"

        @field_validator("threshold")
        @classmethod
        def _within_hash(cls, value: int, info: ValidationInfo) -> int:
            bits = info.data.get("hash_size", 8) ** 2
            if value > bits:
                raise ValueError(f"threshold exceeds the {bits} bits of the hash")
            return value

    config: Config

    def hashes(self, volume: torch.Tensor) -> torch.Tensor:
        """(n, hash_size**2) bool: the hash bits of every slice of `volume` (n, H, W)."""
        cfg = self.config
        x = check_slices(volume, self.name)
        scale, offset = grey_affine(x, cfg.scaling, cfg.window)
        return slice_dhash(x, scale, offset, cfg.hash_size, cfg.resample)

    def select(self, volume: torch.Tensor) -> list[int]:
        distances = hamming_matrix(self.hashes(volume))
        return greedy_keep(distances <= self.config.threshold)

    def select_reference(self, volume: torch.Tensor) -> list[int]:
        """`select` the slow way: slice by slice, integer hashes, the paper's list loop."""
        cfg = self.config
        grey = to_grey(check_slices(volume, self.name), cfg.scaling, cfg.window)
        hashes = [dhash_reference(s, cfg.hash_size, cfg.resample) for s in grey]
        return greedy_keep_reference(
            len(hashes), lambda i, j: bin(hashes[i] ^ hashes[j]).count("1") <= cfg.threshold
        )
