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
    grey_levels,
    grey_map,
    to_grey,
)
from medssl.platform.registry import REDUCERS

Resample = Literal["lanczos", "box"]

#: PIL stores resampling weights of 8-bit images as fixed-point numbers with this many
#: fraction bits (32 - 8 - 2); rounding ours the same way keeps ties where PIL has them.
_PRECISION_BITS = 22
#: float32 voxels per chunk of slices (4 MiB): a chunk is made 8-bit and goes through the
#: first resize pass before the next one is read. Measured on the benchmark's two cores,
#: chunks that fit one core's L2 cache (2 MiB) were not faster than 4-16 MiB ones: below
#: that, the fixed cost of each operation on each chunk outweighs what the cache saves.
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

    With `scale` and `offset` (from `grey_affine`) each slice is first made 8-bit as
    `quantize_grey` does; without them `volume` already holds grey levels 0..255. Slices go
    through in chunks, each made 8-bit and put through the first resize pass before the
    next is read (no 8-bit copy of the whole volume). Each 8-bit slice is resized to
    hash_size + 1 columns x hash_size rows as Pillow does, value for value (`_ResizePlan`);
    bit (r, c) is pixel (r, c + 1) > pixel (r, c), the direction `imagehash.dhash` uses,
    read row by row.
    """
    n, height, width = volume.shape
    device = volume.device
    if n == 0:
        return torch.zeros(0, hash_size * hash_size, dtype=torch.bool, device=device)
    if scale is None or offset is None:
        scale = torch.ones(1, 1, 1, dtype=torch.float64, device=device)
        offset = torch.zeros_like(scale)
    factor, shift = grey_map(scale, offset)
    plan = _resize_plan(height, width, (hash_size + 1, hash_size), resample, device)
    chunk = min(n, max(1, _CHUNK_ELEMENTS // max(1, height * width)))
    # Buffers reused by every chunk: fresh allocations cost more than the maths.
    grey = torch.empty(chunk, height, width, device=device)
    scratch = plan.scratch(chunk)
    sums = plan.new_sums(n)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # One map for every slice, or each slice's own ("slice" scaling).
        chunk_factor = factor if isinstance(factor, float) else factor[start:stop]
        chunk_shift = shift if shift.shape[0] == 1 else shift[start:stop]
        part = volume[start:stop].to(grey.dtype)  # float32 arithmetic, as in `quantize_grey`
        levels = grey_levels(part, chunk_factor, chunk_shift, grey[: stop - start])
        plan.first_pass(levels, sums[start * plan.lines : stop * plan.lines], scratch)
    small = plan.second_pass(sums, n)
    return (small[:, :, 1:] > small[:, :, :-1]).reshape(n, -1)


def columns_first(height: int, width: int, out_height: int, out_width: int) -> bool:
    """Which pass Pillow 13 runs first (found by comparing its output; earlier releases
    always resized columns first): columns, unless the height shrinks by more than twice as
    many pixels as the width; when both sides grow, columns. The order decides where the
    intermediate rounding to 8 bits happens, hence a few tied hash bits."""
    if out_width > width and out_height > height:
        return True
    return 2 * (width - out_width) >= height - out_height


@functools.lru_cache(maxsize=16)
def _resize_plan(
    height: int, width: int, size: tuple[int, int], resample: Resample, device: torch.device
) -> _ResizePlan:
    return _ResizePlan(height, width, size, resample, device, int8=device.type == "cpu")


class _ResizePlan:
    """Pillow's two resize passes for one slice shape on one device, in Pillow's order, in
    exact arithmetic: the same 8-bit values as Pillow's integer code.

    Pillow sums 8-bit pixels times integer weights k = `resize_weights` * 2**22 and rounds
    each sum S to 8 bits as (S + 2**21) >> 22 after each pass. The sums here are exact, so
    no tie is ever broken differently:
    - first pass (every voxel), on a CPU: int8 x int8 -> int32 matrix products
      (`torch._int_mm`; with the subtraction and the int8 copy, half the cost of an exact
      float32 product on one 512 x 512 slice) of the centred grey levels x - 128
      (-128..127) and the weights split into base-256 digits d (-128..127); the digit sums
      p_d are recombined as p0 + 256 * (p1 + 256 * p2) in int32. Every intermediate is a
      sum over a line of C pixels of (x - 128) times (k less its lower digits) / 256**j,
      so in size at most 128 * sum|k| + C * 2**15 (the lower digits add at most 128.5 per
      pixel): the plan uses int8 products only where that is below 2**31, i.e. every
      partial sum is exact (for 512 px and Lanczos, sum|k| = 1.36 * 2**22: 2**29.4 + 2**24).
      Elsewhere (a GPU, where TF32 would round, or wider lines): one float64 product,
      exact since every partial sum is an integer below 2**53.
    - second pass (9 or 8 values per line): float64 products of the 8-bit values and the
      weights, multiples of 2**-22; every partial sum is a multiple of 2**-22 below
      255 * sum|w| (< 2**9), i.e. at most 31 significant bits: exact.
    """

    def __init__(
        self,
        height: int,
        width: int,
        size: tuple[int, int],
        resample: Resample,
        device: torch.device,
        int8: bool,
    ) -> None:
        """`int8`: use int8 products for the first pass where they are exact."""
        self.columns_first = columns_first(height, width, size[1], size[0])
        cols = resize_weights(width, size[0], resample)  # (out_w, W)
        rows = resize_weights(height, size[1], resample)  # (out_h, H)
        first, second = (cols, rows) if self.columns_first else (rows, cols)
        # The first pass contracts the last axis of each slice (transposed when rows go first).
        self.lines, self.out1 = (height, size[0]) if self.columns_first else (width, size[1])
        integers = first * 2.0**_PRECISION_BITS  # Pillow's integer weights, (out1, C)
        self.first_t = integers.T.contiguous().to(device)
        self.second = second.to(device)  # (out2, lines)
        # Centred levels: x @ k = (x - 128) @ k + 128 * sum(k); 2**21 rounds to nearest.
        self.bias = (128.0 * integers.sum(dim=1) + 2.0 ** (_PRECISION_BITS - 1)).to(device)
        largest = 128 * integers.abs().sum(dim=1).max() + integers.shape[1] * 2**15
        exact_in_int32 = bool(largest < 2**31)
        self.digits = _byte_digits(integers).to(device) if int8 and exact_in_int32 else None

    def new_sums(self, n: int) -> torch.Tensor:
        """Room for the first-pass sums of n slices: int32 digit sums or float64 sums."""
        if self.digits is None:
            return torch.empty(
                n * self.lines, self.out1, dtype=torch.float64, device=self.first_t.device
            )
        return torch.empty(
            n * self.lines, self.digits.shape[1], dtype=torch.int32, device=self.digits.device
        )

    def scratch(self, slices: int) -> torch.Tensor | None:
        """The int8 copy of up to `slices` slices' centred levels (a CPU only)."""
        if self.digits is None:
            return None
        return torch.empty(slices * self.lines, self.digits.shape[0], dtype=torch.int8)

    def first_pass(
        self, grey: torch.Tensor, out: torch.Tensor, signed: torch.Tensor | None
    ) -> None:
        """The pass over every voxel: (k, H, W) float32 grey levels 0..255 (overwritten) ->
        the exact sums of each line (k * lines rows of `new_sums`) in `out`."""
        if not self.columns_first:
            grey = grey.transpose(1, 2)
        lines = grey.reshape(-1, grey.shape[-1]).sub_(128.0)  # centred: the int8 range
        if self.digits is None or signed is None:
            torch.mm(lines.double(), self.first_t, out=out)
        else:
            signed = signed[: lines.shape[0]].copy_(lines)
            torch._int_mm(signed, self.digits, out=out)

    def second_pass(self, sums: torch.Tensor, n: int) -> torch.Tensor:
        """First-pass sums of n slices -> (n, out_h, out_w) float64 holding Pillow's 8-bit
        values: rounded to 8 bits, then the other axis resized and rounded."""
        if self.digits is not None:
            digit = sums.split(self.out1, dim=1)
            total = digit[-1]
            for lower in reversed(digit[:-1]):
                total = torch.add(lower, total, alpha=256)
            sums = total.double()
        across = sums.add_(self.bias).mul_(2.0**-_PRECISION_BITS).floor_().clamp_(0.0, 255.0)
        small = _round_to_byte(self.second @ across.view(n, self.lines, -1))  # (n, out2, out1)
        return small if self.columns_first else small.transpose(1, 2)


def _byte_digits(integers: torch.Tensor) -> torch.Tensor:
    """Integer weights (out, C) as base-256 digits -128..127, least significant first:
    (C, D * out) int8, digit d of output j in column d * out + j."""
    rest = integers.round().long()
    digits: list[torch.Tensor] = []
    while not digits or bool(rest.any()):
        digit = torch.remainder(rest + 128, 256) - 128
        digits.append(digit)
        rest = torch.div(rest - digit, 256, rounding_mode="floor")
    return torch.cat(digits).T.contiguous().to(torch.int8)


def resize_grey(
    grey: torch.Tensor, size: tuple[int, int], resample: Resample = "lanczos"
) -> torch.Tensor:
    """8-bit slices (n, H, W) resized to `size` = (width, height) as Pillow's `Image.resize`
    does for 8-bit images: (n, height, width) float64 holding integers 0..255."""
    n = grey.shape[0]
    plan = _resize_plan(grey.shape[1], grey.shape[2], size, resample, grey.device)
    sums = plan.new_sums(n)
    plan.first_pass(grey.to(torch.float32, copy=True), sums, plan.scratch(n))
    return plan.second_pass(sums, n)


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
