"""Noise-aware stamp extent: draw a source only as far as the noise can see it.

The rule (per source, automatic stamp sizes only)
-------------------------------------------------
With M the noiseless model stamp [image units] (the profile convolved with
the PSF, pixelized), F the model's total flux, m = M / F, and σ the local
per-pixel sky noise [image units] (`isrinject.engine.noise_level.local_sky_sigma`:
from the input variance plane around the source, i.e. after the flat), the
stamp is the smallest centred square box of odd side ``2h + 1`` that meets
both

1. every pixel outside it has M < t · σ   (t = ``stamp_noise_fraction``);
2. the flux left outside it, F − Σ_box M (also what lies beyond the drawn
   stamp), is ≤ ε · σ_F  (ε = ``stamp_flux_error_fraction``, 0.1), where

       σ_F² = 1 / Σ_p (m_p² / (σ² + M_p / g))

   is the error of an optimal (inverse-variance, model-weighted) flux
   measurement of the source, sky plus its own Poisson noise (g the
   effective gain at the source, `flux_error`); without a usable g it is
   the sky-limited σ / √(Σ m²), the strict case,

clipped to ``[K, U]``: K the PSF kernel's side (lower bound) and U =
``stamp_size_factor`` × GalSim's ``getGoodImageSize`` (upper bound, the size
used when the rule is off).  The model is first drawn on GalSim's good size
(× 1, the size ``lsst.source.injection`` draws); only when the box reaches
that stamp's edge (bright sources) is it drawn again on U.

Why both conditions, and the defaults
-------------------------------------
The requirement is ΔF ≤ 0.1 σ_F: what the cut leaves out must be invisible
next to the source's own flux error.  The tests check it with the strict,
sky-limited σ_F (and that `flux_error` is the measured scatter of the
optimal estimate).  A per-pixel threshold alone cannot
guarantee it: the flux under a fixed t·σ grows with the source's flux (a
bright n = 4 galaxy loses tens of σ_F at any t that still shrinks faint
stamps; ``tests/test_stamp_extent.py`` shows it), so condition 2 *is* the
guarantee, with ε = 0.1 by default.  Condition 1 (default t = 0.05) keeps
every pixel where the model is at least 0.05 σ, so the ``INJECTED`` plane
(model ≥ 0.1 σ by default) is never cut by the stamp.  The test measures
ΔF / σ_F over stars and Sérsic profiles (n 0.3–6.2, half-light radii
0.1–3″, q 0.3–1, total flux 5–10⁵ σ): the largest is just under 0.1 for
every stamp below U.  Flux beyond U itself is not the rule's doing (it is
what every GalSim-sized stamp loses); the output catalog's
``injection_truncated_fraction`` reports the whole fraction of the model
flux not drawn, so users can correct for it.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_INJECTED_NOISE_FRACTION",
    "DEFAULT_STAMP_FLUX_ERROR_FRACTION",
    "DEFAULT_STAMP_NOISE_FRACTION",
    "centred_crop",
    "flux_error",
    "flux_half_width",
    "noise_half_width",
    "stamp_half_width",
]

import numpy as np

#: Default t of the rule (see the module docstring).
DEFAULT_STAMP_NOISE_FRACTION: float = 0.05

#: Default ε of the rule: flux left outside ≤ ε · σ_F.
DEFAULT_STAMP_FLUX_ERROR_FRACTION: float = 0.1

#: Default fraction of the local sky σ above which a source's model sets
#: ``INJECTED`` (`isrinject.engine.inject`).
DEFAULT_INJECTED_NOISE_FRACTION: float = 0.1


def noise_half_width(stamp: np.ndarray, level: float) -> int:
    """Half-width h of the smallest centred box holding every pixel ≥ ``level``.

    Parameters
    ----------
    stamp
        Square model stamp of odd side, centred on the source's pixel.
    level
        Threshold t·σ [image units], > 0.

    Returns
    -------
    h
        0 when no pixel reaches ``level``; ``stamp.shape[0] // 2`` when a
        pixel on the stamp's border does (the box reaches the edge).
    """
    centre = stamp.shape[0] // 2
    # Two reductions instead of a boolean image: a row (column) holds a pixel
    # ≥ level iff its maximum does.
    rows = np.flatnonzero(stamp.max(axis=1) >= level)
    if rows.size == 0:
        return 0
    cols = np.flatnonzero(stamp.max(axis=0) >= level)
    return int(max(centre - rows[0], rows[-1] - centre, centre - cols[0], cols[-1] - centre))


def centred_crop(stamp: np.ndarray, size: int) -> np.ndarray:
    """The centred ``size × size`` part of a square stamp of odd side (``size`` odd, ≤ the side)."""
    start = stamp.shape[0] // 2 - size // 2
    return stamp[start : start + size, start : start + size]


def flux_half_width(
    stamp: np.ndarray, profile_flux: float, sigma: float, epsilon: float, gain: float = float("nan"), start: int = 0
) -> int:
    """Half-width h ≥ ``start`` of the smallest centred box leaving ≤ ε · σ_F of the flux outside.

    The flux outside the box is taken as ``profile_flux`` − Σ_box M: every
    flux the model does not put inside the box, also what lies beyond the
    stamp; σ_F is the error of an optimal flux measurement of the source
    (see `flux_error`).  Σ_box M grows with h (M ≥ 0 but for FFT ringing), so
    h is found by bisection: a few box sums instead of one per ring.

    Parameters
    ----------
    stamp
        Square model stamp M [image units] of odd side, centred on the source's pixel.
    profile_flux
        The model's total flux F [image units].
    sigma
        Local per-pixel sky noise [image units], > 0.
    epsilon
        ε, > 0.
    gain
        Effective gain g [e⁻ per image unit] at the source, for its own
        Poisson noise; not finite: the sky-limited σ_F.
    start
        Smallest h to consider (e.g. `noise_half_width`'s).

    Returns
    -------
    h
        ``stamp.shape[0] // 2`` when no box inside the stamp meets the budget.
    """
    centre = stamp.shape[0] // 2
    error = flux_error(stamp, profile_flux, sigma, gain)
    if not np.isfinite(error):
        return centre
    budget = epsilon * error

    def meets(h: int) -> bool:
        return bool(profile_flux - stamp[centre - h : centre + h + 1, centre - h : centre + h + 1].sum() <= budget)

    low = min(max(start, 0), centre)
    if meets(low):
        return low
    if not meets(centre):
        return centre
    high = centre  # meets(high), not meets(low)
    while high - low > 1:
        middle = (low + high) // 2
        if meets(middle):
            high = middle
        else:
            low = middle
    return high


def flux_error(model: np.ndarray, profile_flux: float, sigma: float, gain: float = float("nan")) -> float:
    """Error σ_F [image units] of an optimal flux measurement of a source.

    The inverse-variance, model-weighted estimator of the flux F of a
    profile m = M / F on pixels of variance V_p = σ² + M_p / g (sky plus the
    source's own Poisson noise, g the effective gain in e⁻ per image unit)
    has

        σ_F² = 1 / Σ_p (m_p² / V_p) = F² / Σ_p (M_p² / (σ² + M_p / g));

    without a usable g, V_p = σ² (the sky-limited error, the smallest).
    NaN when the model has no positive power or F is not finite.
    """
    values = np.ravel(model)
    if np.isfinite(gain) and gain > 0:
        information = float(np.sum(values * values / (sigma * sigma + np.maximum(values, 0.0) / gain)))
    else:
        information = float(np.dot(values, values)) / (sigma * sigma)
    if not (information > 0 and np.isfinite(information) and np.isfinite(profile_flux)):
        return float("nan")
    return float(abs(profile_flux) / np.sqrt(information))


def stamp_half_width(
    stamp: np.ndarray,
    profile_flux: float,
    sigma: float,
    noise_fraction: float,
    epsilon: float,
    gain: float = float("nan"),
) -> int:
    """Half-width of the noise-aware box: the larger of `noise_half_width`
    (every pixel outside below t·σ) and `flux_half_width` (flux outside
    ≤ ε·σ_F); ``stamp.shape[0] // 2`` means the box reaches the stamp's edge."""
    half = 0 if noise_fraction <= 0 else noise_half_width(stamp, noise_fraction * sigma)
    if epsilon > 0 and half < stamp.shape[0] // 2:
        half = flux_half_width(stamp, profile_flux, sigma, epsilon, gain, start=half)
    return half
