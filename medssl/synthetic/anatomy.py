"""The anatomy of a synthetic abdominal CT phantom: organs, bone and tissue HU drawn from a
seed (`generate_phantom`), and the same anatomy with a T1-weighted MR contrast (`mr_from_ct`).

Each phantom is deterministic in its seed. Label map (one label for both kidneys):

=====  ==========  =============================  ==========================
label  structure   HU of the label region         shape
=====  ==========  =============================  ==========================
0      background  air -1000, fat ~-100, soft      body ellipse-cylinder with a
                   tissue 0..55, bowel gas/fluid   subcutaneous fat layer
1      liver       50..70 (per-subject mean)       two jittered ellipsoids, right
2      kidneys     30..40                          two ellipsoids, posterior
3      spleen      40..50                          ellipsoid, posterior left
4      spine       400..1000 (cancellous + shell)  vertebral bodies, arch, process
=====  ==========  =============================  ==========================

The ranges bound the median HU of each label region (`HU_RANGES`). Voxel arrays are (X, Y, Z)
with an affine to RAS millimetres whose voxel axes run to patient Left, Posterior, Superior,
as in a NIfTI converted from an axial DICOM series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Label value -> structure name, as written to `labels.json`.
LABEL_MAP: dict[int, str] = {0: "background", 1: "liver", 2: "kidneys", 3: "spleen", 4: "spine"}
#: Label value -> (low, high) bound of the median HU of that label's region.
HU_RANGES: dict[int, tuple[float, float]] = {1: (50, 70), 2: (30, 40), 3: (40, 50), 4: (400, 1000)}
#: The HU a phantom image holds: what 12 stored bits with RescaleIntercept -1024 can carry.
HU_LIMITS: tuple[int, int] = (-1024, 3071)


@dataclass(frozen=True)
class _Subject:
    """Everything random about one phantom, drawn once from its seed in a fixed order."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    half_width: float  # body semi-axis along patient left-right, mm
    half_depth: float  # body semi-axis along anterior-posterior, mm
    fat: float  # subcutaneous fat thickness, mm
    angle: float  # rotation about the cranio-caudal axis, radians
    centre: tuple[float, float]  # body centre offset from the volume centre, mm
    z_origin: float  # table position of the volume centre, mm
    hu: dict[str, float]
    noise: float
    organs: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (centre, semi-axes) in body units
    waves: np.ndarray  # (3, 2, 5): per axis, two sinusoids (kx, ky, kz, phase, amplitude)
    bowel: np.ndarray  # (k, 5): u, v, t, radius, HU
    vertebra_period: float
    vertebra_phase: float


_ORGAN_LAYOUT = {  # centre (u right, v anterior, t superior) and semi-axes, in body units
    "liver_right": ((0.40, 0.02, 0.38), (0.40, 0.52, 0.72)),
    "liver_left": ((-0.05, 0.32, 0.45), (0.33, 0.22, 0.42)),
    "spleen": ((-0.55, -0.22, 0.38), (0.19, 0.28, 0.40)),
    "kidney_right": ((0.42, -0.42, -0.38), (0.15, 0.21, 0.45)),
    "kidney_left": ((-0.42, -0.42, -0.32), (0.15, 0.21, 0.45)),
}


def _draw_subject(
    rng: np.random.Generator, shape: Sequence[int] | None, spacing: Sequence[float] | None
) -> _Subject:
    """Draw every random choice in a fixed order; a given shape or spacing replaces the drawn
    one and the body is sized to the resulting field of view."""
    drawn_x = int(rng.integers(76, 97))
    drawn = (drawn_x, int(rng.integers(64, drawn_x - 3)), int(rng.integers(24, 41)))
    pixel, slice_mm = round(float(rng.uniform(0.8, 1.5)), 4), round(float(rng.uniform(2, 3)), 1)
    nx, ny, nz = drawn if shape is None else tuple(int(n) for n in shape)
    sx, sy, sz = (pixel, pixel, slice_mm) if spacing is None else tuple(map(float, spacing))
    half_width = float(rng.uniform(0.36, 0.42)) * nx * sx
    half_depth = min(float(rng.uniform(0.68, 0.8)) * half_width, 0.43 * ny * sy)
    names = (
        "fat",
        "muscle",
        "abdomen",
        "liver",
        "kidneys",
        "spleen",
        "cancellous",
        "cortical",
        "aorta",
    )
    bounds = (
        (-110, -90),
        (40, 55),
        (0, 15),
        (56, 64),
        (34, 37),
        (43, 47),
        (450, 600),
        (850, 1000),
        (35, 45),
    )
    hu = {name: float(rng.uniform(*bound)) for name, bound in zip(names, bounds, strict=True)}
    organs = {}
    for name, (centre, axes) in _ORGAN_LAYOUT.items():
        c = np.asarray(centre) + rng.uniform(-0.04, 0.04, 3)
        organs[name] = (c, np.asarray(axes) * rng.uniform(0.88, 1.12, 3))
    waves = np.concatenate(
        [
            rng.uniform(-3.0, 3.0, (3, 2, 3)),
            rng.uniform(0, 2 * np.pi, (3, 2, 1)),
            rng.uniform(0.02, 0.05, (3, 2, 1)),
        ],
        axis=-1,
    )
    k = int(rng.integers(3, 7))
    bowel = np.column_stack(
        [
            rng.uniform(-0.45, 0.25, k),
            rng.uniform(0.35, 0.65, k),
            rng.uniform(-0.9, 0.9, k),
            rng.uniform(0.07, 0.13, k),
            np.where(rng.random(k) < 0.4, -950.0, 10.0),
        ]
    )
    return _Subject(
        shape=(nx, ny, nz),
        spacing=(sx, sy, sz),
        half_width=half_width,
        half_depth=half_depth,
        fat=float(rng.uniform(0.06, 0.11)) * half_width,
        angle=float(np.deg2rad(rng.uniform(-8, 8))),
        centre=(
            float(rng.uniform(-0.04, 0.04)) * nx * sx,
            float(rng.uniform(-0.04, 0.04)) * ny * sy,
        ),
        z_origin=float(rng.uniform(-350, -100)),
        hu=hu,
        noise=float(rng.uniform(10, 20)),
        organs=organs,
        waves=waves,
        bowel=bowel,
        vertebra_period=float(rng.uniform(0.45, 0.6)),
        vertebra_phase=float(rng.uniform(0, 1)),
    )


def _affine(shape: Sequence[int], spacing: Sequence[float], z_origin: float) -> np.ndarray:
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + [0.0, 0.0, z_origin]
    # float32 is what NIfTI stores; rounding here makes the file round trip exact.
    return affine.astype(np.float32).astype(np.float64)


def _body_frame(s: _Subject, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotated body coordinates in mm (qx to patient right, qy anterior) and t in [-1, 1]."""
    i, j = (np.arange(n, dtype=np.float32) for n in s.shape[:2])
    # World RAS offsets from the volume centre; the body sits near it, shifted by `centre`.
    x = affine[0, 0] * (i - (s.shape[0] - 1) / 2)
    y = affine[1, 1] * (j - (s.shape[1] - 1) / 2)
    px, py = x[:, None] - s.centre[0], y[None, :] - s.centre[1]
    cos, sin = np.cos(s.angle), np.sin(s.angle)
    qx = (cos * px + sin * py).astype(np.float32)[..., None]
    qy = (-sin * px + cos * py).astype(np.float32)[..., None]
    t = np.linspace(-1.0, 1.0, s.shape[2], dtype=np.float32)[None, None, :]
    return qx, qy, t


def _jitter(s: _Subject, u: np.ndarray, v: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """Smooth random displacement of body coordinates, so organs bend a little between
    subjects (a cheap stand-in for elastic deformation)."""
    out = []
    for axis, base in enumerate((u, v, t)):
        shifted = base
        for kx, ky, kz, phase, amp in s.waves[axis]:
            shifted = shifted + np.float32(amp) * np.sin(kx * u + ky * v + kz * t + phase)
        out.append(shifted.astype(np.float32))
    return out


def _ellipsoid(coords: Sequence[np.ndarray], centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return sum(((c - m) / a) ** 2 for c, m, a in zip(coords, centre, axes, strict=True)) <= 1.0


def _paint_spine(
    s: _Subject,
    qx: np.ndarray,
    qy: np.ndarray,
    t: np.ndarray,
    hu: np.ndarray,
    labels: np.ndarray,
    muscle: np.ndarray,
) -> None:
    """Vertebrae (cancellous core, cortical shell, arch, spinous process; label 4) between
    discs, the spinal canal, and paraspinal muscles where no organ lies."""
    a = s.half_width
    body_y = -0.38 * s.half_depth
    canal_y = body_y - 0.2 * a
    r2 = qx**2 + (qy - body_y) ** 2
    c2 = qx**2 + (qy - canal_y) ** 2
    disc = ((t / s.vertebra_period + s.vertebra_phase) % 1.0) < 0.22
    paraspinal = ((np.abs(qx) - 0.16 * a) / (0.1 * a)) ** 2 + ((qy - canal_y) / (0.13 * a)) ** 2
    hu[np.broadcast_to(paraspinal <= 1.0, s.shape) & muscle & (labels == 0)] = s.hu["muscle"]
    vertebra = (r2 <= (0.13 * a) ** 2) & ~disc & muscle
    shell = vertebra & (r2 >= (0.13 * a - 1.2 * s.spacing[0]) ** 2)
    arch = (c2 <= (0.095 * a) ** 2) & (c2 > (0.055 * a) ** 2) & (qy < canal_y + 0.02 * a)
    process = (np.abs(qx) <= 0.03 * a) & (qy < canal_y) & (qy > canal_y - 0.16 * a)
    posterior = (arch | process) & ~disc & muscle
    hu[(r2 <= (0.13 * a) ** 2) & disc & muscle] = 80.0  # intervertebral discs
    hu[np.broadcast_to(c2 <= (0.055 * a) ** 2, s.shape) & muscle] = 10.0  # spinal canal
    hu[vertebra] = s.hu["cancellous"]
    hu[shell | posterior] = s.hu["cortical"]
    labels[vertebra | posterior] = 4


def _paint(s: _Subject, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    qx, qy, t = _body_frame(s, affine)
    a = s.half_width * (1.0 + 0.04 * t)  # slight taper towards the pelvis
    b = s.half_depth * (1.0 + 0.03 * t)
    body = (qx / a) ** 2 + (qy / b) ** 2 <= 1.0
    muscle = (qx / (a - s.fat)) ** 2 + (qy / (b - s.fat)) ** 2 <= 1.0
    wall = 0.05 * s.half_width
    cavity = (qx / (a - s.fat - wall)) ** 2 + (qy / (b - s.fat - wall)) ** 2 <= 1.0
    inside = (qx / (a - s.fat - 1.5 * wall)) ** 2 + (qy / (b - s.fat - 1.5 * wall)) ** 2 <= 1.0
    hu = np.full(s.shape, -1000.0, dtype=np.float32)
    labels = np.zeros(s.shape, dtype=np.uint8)
    hu[np.broadcast_to(body, s.shape)] = s.hu["fat"]
    hu[np.broadcast_to(muscle, s.shape)] = s.hu["muscle"]
    hu[np.broadcast_to(cavity, s.shape)] = s.hu["abdomen"]
    u, v = qx / s.half_width, qy / s.half_depth
    coords = _jitter(s, u, v, t)
    for bu, bv, bt, radius, value in s.bowel:
        gut = _ellipsoid(coords, np.array([bu, bv, bt]), np.full(3, radius))
        hu[gut & cavity] = value
    aorta = (qx + 0.1 * s.half_width) ** 2 + (qy + 0.38 * s.half_depth - 0.2 * s.half_width) ** 2
    hu[np.broadcast_to(aorta <= (0.065 * s.half_width) ** 2, s.shape)] = s.hu["aorta"]
    # Painted in this order so that small organs stay whole where large ones reach them.
    for name, label, value in (
        ("liver_right", 1, "liver"),
        ("liver_left", 1, "liver"),
        ("spleen", 3, "spleen"),
        ("kidney_right", 2, "kidneys"),
        ("kidney_left", 2, "kidneys"),
    ):
        organ = _ellipsoid(coords, *s.organs[name]) & inside
        hu[organ] = s.hu[value]
        labels[organ] = label
    _paint_spine(s, qx, qy, t, hu, labels, np.broadcast_to(muscle, s.shape))
    return hu, labels


def generate_phantom(
    seed: int,
    *,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic abdominal CT: (image in HU int16 (X, Y, Z), labels uint8, 4x4 RAS affine).

    Body size, organ sizes and positions (with smooth jitter), rotation about the
    cranio-caudal axis (±8°), pixel spacing (0.8-1.5 mm), slice spacing (2-3 mm), array shape
    (76-96 x 64-92 x 24-40), tissue HU and noise (σ 10-20 HU, slightly correlated) all vary
    with `seed`; `shape` and `spacing` override the drawn ones without changing the rest.

    Example:
        >>> image, labels, affine = generate_phantom(3)
        >>> image.dtype, labels.max(), affine.shape
        (dtype('int16'), np.uint8(4), (4, 4))
    """
    if shape is not None and (len(shape) != 3 or any(int(n) != n or n < 8 for n in shape)):
        raise ValueError(f"shape must be three integers >= 8, got {shape!r}")
    if spacing is not None and (
        len(spacing) != 3 or not all(np.isfinite(d) and d > 0 for d in spacing)
    ):
        raise ValueError(f"spacing must be three positive millimetre sizes, got {spacing!r}")
    rng = np.random.default_rng(seed)
    subject = _draw_subject(rng, shape, spacing)
    affine = _affine(subject.shape, subject.spacing, subject.z_origin)
    hu, labels = _paint(subject, affine)
    # Partial volume at edges, then noise with a short correlation length as CT noise has.
    hu = ndimage.gaussian_filter(hu, sigma=(0.45, 0.45, 0.3))
    noise = ndimage.gaussian_filter(rng.standard_normal(subject.shape, dtype=np.float32), 0.6)
    hu += noise * np.float32(subject.noise / max(float(noise.std()), 1e-6))
    image = np.clip(np.rint(hu), *HU_LIMITS).astype(np.int16)
    return image, labels, affine


#: HU -> T1-weighted signal knots for `mr_from_ct`: air dark, fat bright, fluid darker than
#: soft tissue, liver brighter than spleen and kidneys, marrow bright, cortical bone dark.
_T1_KNOTS = (
    (-1000.0, -400.0, -150.0, -50.0, 0.0, 30.0, 45.0, 60.0, 150.0, 400.0, 1000.0),
    (0.02, 0.10, 0.95, 0.90, 0.35, 0.45, 0.50, 0.62, 0.50, 0.65, 0.20),
)


def mr_from_ct(hu: np.ndarray, seed: int) -> np.ndarray:
    """A T1-weighted-looking MR image (int16 arbitrary units, about 0..1000) from a phantom's
    HU image: a tissue contrast that is not monotonic in HU (`_T1_KNOTS`), a smooth
    multiplicative bias field (coil inhomogeneity, about ±20 %) and Rician noise."""
    rng = np.random.default_rng([seed, 1])
    signal = np.interp(hu.astype(np.float32), *_T1_KNOTS).astype(np.float32)
    field = ndimage.gaussian_filter(
        rng.standard_normal(hu.shape).astype(np.float32), sigma=[s / 3 for s in hu.shape]
    )
    field /= max(float(np.abs(field).max()), 1e-6)
    signal *= np.exp(0.2 * field)
    sigma = rng.uniform(0.015, 0.035)
    real = signal + rng.normal(0.0, sigma, hu.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, hu.shape).astype(np.float32)
    return np.round(1000.0 * np.sqrt(real**2 + imaginary**2)).astype(np.int16)
