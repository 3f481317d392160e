"""What ``lsst.source.injection`` does to a visit image's variance and noise, re-implemented as a comparison arm.

This is a diagnostic emulation of the peer package, not a dependency: it
reproduces the *algorithm* of ``lsst.source.injection`` HEAD (commit
8da8778, DM-54948: ``python/lsst/source/injection/inject_engine.py``,
functions ``infer_gain_from_image``, ``get_gain_map`` and
``add_noise_to_galsim_image``; read through the stored copy at commit
04adcaa5ad15, which has the same three functions) on plain arrays so that
``isrinject diagnose`` and the demo can show, on the same model and the
same image, what a user of the peer package would get.  No code of the
peer package is used or copied.

The algorithm (for a visit image, ``is_coadd`` false)
------------------------------------------------------
1. **One slope per amplifier.**  For every amplifier box, a straight line
   ``V = s·I + b`` is fitted by ordinary least squares (``numpy.polyfit``
   of degree 1: every pixel has equal weight, sky pixels dominate) to the
   *original* image ``I`` [image units] and variance ``V`` [image units²]
   of the pixels that are finite and not masked in any of
   `UPSTREAM_BAD_MASK_NAMES`.  The peer package calls ``1/s`` the gain.
2. **Fallbacks.**  A slope that is not finite or not positive (or an
   amplifier with fewer than 2 usable pixels) is replaced by the median,
   *in gain* ``1/s``, of the amplifiers that fitted; when none fitted, by a
   single fit over the whole image; when that fails too, by ``s = 1``.
3. **Variance and noise.**  With ``M`` the noiseless model [image units]
   and ``s`` its amplifier's slope, ``λ = s·M`` is taken as a Poisson mean
   (negative or non-finite ``λ`` → 0 for the draw), ``n ~ Poisson(λ)``, and

       ΔI = n / s              [image units]
       ΔV = n                  [image units²]   (ΔV = λ where λ < 0 or not finite)

   so the recorded variance is ``E[ΔV] = s·M`` while the realized variance
   of ``ΔI`` is ``Var(n)/s² = M/s``: realized / recorded = ``1/s²``.  For an
   electron-unit image ``s ≈ 1/f ≈ 1`` and the two nearly agree; for a
   nJy image ``s ≈ c/f`` (``c`` nJy per e⁻), and the noise is wrong by
   ``1/s²`` (≈ 0.1 in u, ≈ 3 in g for the demo's ComCam-like zero points).
   Without noise: ``ΔI = M``, ``ΔV = s·M``.

Even the recorded variance is only right on average: ISR puts each pixel on
its own relation ``ΔV = ΔI·c/f`` (DESIGN.md), one slope per amplifier
misses the flat's structure within the amplifier by ``s·f/c``.
"""

from __future__ import annotations

__all__ = [
    "UPSTREAM_BAD_MASK_NAMES",
    "UPSTREAM_REFERENCE",
    "UpstreamSlopes",
    "fit_upstream_slopes",
    "upstream_injection",
    "variance_slope",
]

import dataclasses
import math

import numpy as np
import numpy.typing as npt

type FloatArray = npt.NDArray[np.float64]

#: Where the emulated algorithm comes from (cited in reports and figures).
UPSTREAM_REFERENCE = "lsst.source.injection 8da8778 (DM-54948), python/lsst/source/injection/inject_engine.py"

#: Mask planes whose pixels the peer package leaves out of its variance-vs-image fit.
UPSTREAM_BAD_MASK_NAMES = ("BAD", "CR", "CROSSTALK", "INTRP", "NO_DATA", "SAT", "SUSPECT", "UNMASKEDNAN")


def variance_slope(image: npt.ArrayLike, variance: npt.ArrayLike, good: npt.ArrayLike | None = None) -> float:
    """Slope ``s`` of the unweighted least-squares line ``V = s·I + b`` [image units].

    The straight-line fit the peer package makes (``numpy.polyfit`` of degree
    1 over the usable pixels).  NaN with fewer than 2 usable pixels.
    """
    image = np.asarray(image, np.float64).ravel()
    variance = np.asarray(variance, np.float64).ravel()
    use = np.isfinite(image) & np.isfinite(variance)
    if good is not None:
        use &= np.asarray(good, bool).ravel()
    if use.sum() < 2 or np.ptp(image[use]) == 0:
        return math.nan
    slope, _ = np.polyfit(image[use], variance[use], 1)
    return float(slope)


@dataclasses.dataclass
class UpstreamSlopes:
    """The per-amplifier slopes ``s`` the peer package uses for one detector."""

    labels: npt.NDArray[np.int64]
    """Amplifier labels (as in the ``amp_index`` map)."""
    fitted: FloatArray
    """The per-amplifier fits (NaN where there were too few pixels)."""
    slopes: FloatArray
    """The slopes used, after the fallbacks [image units]."""
    fallback: str
    """``""`` when every amplifier fitted, else which fallback replaced the failed ones."""

    def on(self, amp_index: npt.NDArray[np.integer]) -> FloatArray:
        """The slope of every pixel (a map of ``s``)."""
        out = np.full(np.shape(amp_index), math.nan)
        for label, slope in zip(self.labels, self.slopes):
            out[np.asarray(amp_index) == label] = slope
        return out


def fit_upstream_slopes(
    image: npt.ArrayLike,
    variance: npt.ArrayLike,
    *,
    bad: npt.ArrayLike | None = None,
    amp_index: npt.NDArray[np.integer] | None = None,
) -> UpstreamSlopes:
    """Steps 1 and 2 of the module docstring on the original image of one detector.

    Parameters
    ----------
    image, variance
        The detector's visit image before injection [image units, units²].
    bad
        Pixels masked in any of `UPSTREAM_BAD_MASK_NAMES`; `None` for none.
    amp_index
        Amplifier label of every pixel; `None` for one region.

    Returns
    -------
    slopes
        `UpstreamSlopes`.
    """
    image = np.asarray(image, np.float64)
    variance = np.asarray(variance, np.float64)
    good = np.ones(image.shape, bool) if bad is None else ~np.asarray(bad, bool)
    amps = np.zeros(image.shape, np.int64) if amp_index is None else np.asarray(amp_index, np.int64)
    labels = np.unique(amps)
    fitted = np.array([variance_slope(image[amps == a], variance[amps == a], good[amps == a]) for a in labels])
    usable = np.isfinite(fitted) & (fitted > 0)
    slopes = fitted.copy()
    fallback = ""
    if not usable.all():
        if usable.any():
            # The median is taken of the gains 1/s, as the peer package does.
            fallback_slope = 1.0 / float(np.median(1.0 / fitted[usable]))
            fallback = "median of the other amplifiers"
        else:
            fallback_slope, fallback = 1.0, "s = 1"
            if len(labels) > 1:
                whole = variance_slope(image, variance, good)
                if math.isfinite(whole) and whole > 0:
                    fallback_slope, fallback = whole, "whole-image fit"
        slopes[~usable] = fallback_slope
    return UpstreamSlopes(labels=labels, fitted=fitted, slopes=slopes, fallback=fallback)


def upstream_injection(
    original_image: npt.ArrayLike,
    original_variance: npt.ArrayLike,
    model: npt.ArrayLike,
    *,
    slope: npt.ArrayLike,
    rng: np.random.Generator,
    add_noise: bool = True,
) -> tuple[FloatArray, FloatArray]:
    """Step 3 of the module docstring: the peer package's injection of ``model``.

    Parameters
    ----------
    original_image, original_variance
        I₀, V₀ [image units, units²].
    model
        Noiseless model M [image units] (0 outside the stamps).
    slope
        s per pixel (`UpstreamSlopes.on`) or a scalar [image units].
    rng
        Generator of the Poisson draws.
    add_noise
        Draw ``n ~ Poisson(s·M)``; otherwise ``ΔI = M``, ``ΔV = s·M``.

    Returns
    -------
    image, variance
        ``I₀ + ΔI`` and ``V₀ + ΔV``.
    """
    model = np.asarray(model, np.float64)
    slope = np.broadcast_to(np.asarray(slope, np.float64), model.shape)
    lam = slope * model
    if add_noise:
        unusable = ~np.isfinite(lam) | (lam < 0)
        counts = rng.poisson(np.where(unusable, 0.0, lam)).astype(np.float64)
        delta_image = counts / slope
        delta_variance = np.where(unusable, lam, counts)
    else:
        delta_image, delta_variance = model, lam
    delta_image = np.nan_to_num(delta_image)
    delta_variance = np.nan_to_num(delta_variance)
    return (np.asarray(original_image, np.float64) + delta_image,
            np.asarray(original_variance, np.float64) + delta_variance)
