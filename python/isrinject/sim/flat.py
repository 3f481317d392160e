"""Simulated flat fields: true throughput structure and a measured (noisy) stacked flat.

The true relative throughput of a pixel is the product

    f_true(p) ∝ v(r(p)) · q_a(p) · g_band(p) · D(p) · (1 + ε(p))

of

- ``v`` radial vignetting (dimensionless): ``v(r) = 1 − (1 − v_min)·(r/r_far)²``
  with ``r`` the distance (pixels) from an optical axis placed off the
  detector, beyond its lower-left corner at ``(−ny/2, −nx/2)``, and
  ``r_far`` the distance to the far corner, so the far corner is at
  ``v_min = vignetting_floor`` relative to the unvignetted throughput;
- ``q_a`` a per-amplifier QE step, uniform in ``±amp_step`` (band dependent,
  ≤ 3 %);
- ``g_band`` a smooth band-dependent QE gradient (strongest in y, where the
  silicon thickness matters; no fringes are simulated);
- ``D`` dust donuts: ``D = Π_k [1 − d_k·exp(−(ρ_k − r_k)²/(2 w_k²))]`` with
  ``ρ_k`` the distance to the donut centre, radius ``r_k`` ≈ 10–40 px scaled
  by ``min(ny, nx)/512``, width ``w_k = 0.3 r_k`` and depth ``d_k`` ≈ 5–15 %
  (deeper in blue bands);
- ``ε`` Gaussian pixel response non-uniformity, rms ≈ 1 % (1.5 % in u).

``f_true`` is normalised to mean 1 over the detector.

The *measured* flat is a stack of ``N`` flat exposures of
``e = flat_electrons_per_exposure`` electrons per unit-throughput pixel:
the stacked count ``C(p) ~ Poisson(N·e·f_true(p))`` and

    f = C / mean(C),        V_f = f² / C          (dimensionless, dimensionless²)

i.e. ``V_f ≈ f / (N·e)``: the relative variance of the stacked flat is the
inverse of the electrons collected in that pixel.
"""

from __future__ import annotations

__all__ = [
    "FLAT_BANDS",
    "FlatBandParameters",
    "make_flat",
    "measure_flat",
    "true_flat",
    "vignetting",
]

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from lsst.images import Box


@dataclasses.dataclass(frozen=True)
class FlatBandParameters:
    """Band-dependent amplitudes of the flat-field structure.

    Attributes
    ----------
    amp_step
        Half-width of the uniform per-amplifier QE step distribution.
    prnu
        RMS of the pixel response non-uniformity.
    dust_depth
        ``(min, max)`` fractional depth of dust donuts.
    gradient
        Peak-to-peak amplitude of the smooth QE gradient across the detector.
    """

    amp_step: float
    prnu: float
    dust_depth: tuple[float, float]
    gradient: float


#: Flat structure per band: u has the strongest structure; y has no fringes
#: but a larger QE gradient (thickness variation matters at 1 µm).
FLAT_BANDS: dict[str, FlatBandParameters] = {
    "u": FlatBandParameters(amp_step=0.03, prnu=0.015, dust_depth=(0.08, 0.15), gradient=0.02),
    "g": FlatBandParameters(amp_step=0.02, prnu=0.010, dust_depth=(0.06, 0.12), gradient=0.01),
    "r": FlatBandParameters(amp_step=0.015, prnu=0.010, dust_depth=(0.05, 0.10), gradient=0.01),
    "i": FlatBandParameters(amp_step=0.015, prnu=0.010, dust_depth=(0.05, 0.09), gradient=0.015),
    "z": FlatBandParameters(amp_step=0.02, prnu=0.010, dust_depth=(0.05, 0.08), gradient=0.02),
    "y": FlatBandParameters(amp_step=0.025, prnu=0.010, dust_depth=(0.05, 0.08), gradient=0.04),
}


def _band_parameters(band: str) -> FlatBandParameters:
    try:
        return FLAT_BANDS[band]
    except KeyError:
        raise ValueError(f"Unknown band {band!r}; expected one of {sorted(FLAT_BANDS)}.") from None


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or min(int(v) for v in shape) < 1:
        raise ValueError(f"shape must be two positive integers (ny, nx); got {shape!r}.")
    return int(shape[0]), int(shape[1])


def vignetting(shape: tuple[int, int], floor: float = 0.3) -> np.ndarray:
    """Radial vignetting ``v(r) = 1 − (1 − floor)·(r/r_far)²`` of a detector at the field edge.

    ``r`` is the distance (pixels) from the optical axis at
    ``(y, x) = (−ny/2, −nx/2)`` (off the detector, beyond pixel (0, 0)) and
    ``r_far`` the distance to the far corner ``(ny − 1, nx − 1)``, where
    ``v = floor``.  Dimensionless, not normalised.

    Raises
    ------
    ValueError
        If ``floor`` is not in (0, 1].
    """
    ny, nx = _check_shape(shape)
    if not (0 < floor <= 1):
        raise ValueError(f"vignetting floor must be in (0, 1]; got {floor!r}.")
    cy, cx = -ny / 2.0, -nx / 2.0
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    r2 = (y - cy) ** 2 + (x - cx) ** 2
    r_far2 = (ny - 1 - cy) ** 2 + (nx - 1 - cx) ** 2
    return 1.0 - (1.0 - floor) * r2 / r_far2


def _box_slices(box: Box | tuple[slice, slice]) -> tuple[slice, slice]:
    if isinstance(box, Box):
        return slice(box.y.start, box.y.stop), slice(box.x.start, box.x.stop)
    return box[0], box[1]


def true_flat(
    shape: tuple[int, int],
    *,
    band: str,
    amp_boxes: Sequence[Box | tuple[slice, slice]],
    rng: np.random.Generator,
    vignetting_floor: float = 0.3,
    n_dust: int | None = None,
) -> np.ndarray:
    """Draw the true (noiseless) relative throughput ``f_true``, mean 1.

    See the module docstring for the model.  ``amp_boxes`` are
    `lsst.images.Box` objects (origin (0, 0)) or ``(y_slice, x_slice)``
    pairs; ``n_dust`` defaults to 2–5 donuts.
    """
    ny, nx = _check_shape(shape)
    params = _band_parameters(band)
    flat = vignetting((ny, nx), vignetting_floor)
    # Per-amplifier QE steps.
    for box in amp_boxes:
        flat[_box_slices(box)] *= 1.0 + rng.uniform(-params.amp_step, params.amp_step)
    # Smooth QE gradient (random direction), peak-to-peak `gradient`.
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    angle = rng.uniform(0, 2 * math.pi)
    t = math.cos(angle) * (x / max(nx - 1, 1) - 0.5) + math.sin(angle) * (y / max(ny - 1, 1) - 0.5)
    flat *= 1.0 + params.gradient * t / max(np.ptp(t), 1e-12)
    # Dust donuts.
    scale = float(np.clip(min(ny, nx) / 512.0, 0.25, 8.0))
    n = int(rng.integers(2, 6)) if n_dust is None else int(n_dust)
    for _ in range(n):
        r0 = rng.uniform(10.0, 40.0) * scale
        width = 0.3 * r0
        depth = rng.uniform(*params.dust_depth)
        yc, xc = rng.uniform(0, ny), rng.uniform(0, nx)
        rho = np.hypot(y - yc, x - xc)
        flat *= 1.0 - depth * np.exp(-0.5 * ((rho - r0) / width) ** 2)
    # Pixel response non-uniformity.
    flat *= 1.0 + params.prnu * rng.standard_normal((ny, nx))
    return flat / flat.mean()


def measure_flat(
    flat_true: np.ndarray,
    *,
    rng: np.random.Generator,
    n_flat_exposures: int = 20,
    flat_electrons_per_exposure: float = 50000.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a stacked flat of ``N`` exposures and return ``(f, V_f)``.

    ``C ~ Poisson(N·e·f_true)`` electrons, ``f = C/mean(C)``,
    ``V_f = f²/C`` (≈ ``f/(N·e)``), both dimensionless.

    Raises
    ------
    ValueError
        If ``n_flat_exposures`` < 1, ``flat_electrons_per_exposure`` ≤ 0 or
        ``flat_true`` has non-positive or non-finite values.
    """
    if int(n_flat_exposures) < 1:
        raise ValueError(f"n_flat_exposures must be >= 1; got {n_flat_exposures!r}.")
    if not (math.isfinite(flat_electrons_per_exposure) and flat_electrons_per_exposure > 0):
        raise ValueError(
            f"flat_electrons_per_exposure must be finite and > 0; got {flat_electrons_per_exposure!r}."
        )
    flat_true = np.asarray(flat_true, dtype=float)
    if not np.all(np.isfinite(flat_true)) or np.any(flat_true <= 0):
        bad = flat_true[~(np.isfinite(flat_true) & (flat_true > 0))][0]
        raise ValueError(f"flat_true must be finite and positive everywhere; found {bad!r}.")
    counts = rng.poisson(int(n_flat_exposures) * flat_electrons_per_exposure * flat_true).astype(float)
    counts = np.maximum(counts, 1.0)
    flat = counts / counts.mean()
    return flat, flat**2 / counts


def make_flat(
    shape: tuple[int, int],
    *,
    band: str,
    amp_boxes: Sequence[Box | tuple[slice, slice]],
    rng: np.random.Generator,
    vignetting_floor: float = 0.3,
    n_flat_exposures: int = 20,
    flat_electrons_per_exposure: float = 50000.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a measured flat and its variance, ``(f, V_f)``.

    Draws `true_flat` and then `measure_flat` from ``rng``.  ``f`` has mean 1;
    ``V_f = f²/C`` with ``C`` the stacked flat electrons in the pixel.  Use
    `true_flat` + `measure_flat` directly when the true throughput is needed.
    """
    truth = true_flat(shape, band=band, amp_boxes=amp_boxes, rng=rng, vignetting_floor=vignetting_floor)
    return measure_flat(
        truth,
        rng=rng,
        n_flat_exposures=n_flat_exposures,
        flat_electrons_per_exposure=flat_electrons_per_exposure,
    )
