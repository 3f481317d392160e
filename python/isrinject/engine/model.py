"""The ISR-consistent pixel model (pure numpy; no butler, no GalSim).

Rubin ISR builds the variance of a pixel from its *measured* pre-flat
electrons plus read noise and only then divides image and variance by the
flat; calibration then divides by the illumination correction, subtracts the
background and scales to image units.  Symbols (per pixel ``p`` of amplifier
``a``):

- ``S``: noisy ISR-corrected pre-flat signal already in the pixel [e⁻];
- ``f``, ``V_f``: flat-field value and its variance (the ``flat`` calibration);
- ``R``: illumination correction (1 if none);
- ``B``: subtracted background [post-ISR e⁻];
- ``c``: photometric scaling [image units per e⁻] (1 for an image in e⁻);
- ``σ_a``, ``K_a``: read noise [e⁻] and other signal-independent variance
  [e⁻²] of the amplifier;
- ``g = f·R/c``: effective gain [e⁻ per image unit] (`effective_gain`);
- ``M``: noiseless model of an injected source [image units];
- ``λ``, ``n``: expected and drawn injected pre-flat electrons [e⁻].

What ISR and calibration produce::

    I = c · (S/f − B) / R
    V = (c/R)² · [ (S + σ_a² + K_a)/f²  +  (S/f)² · V_f/f² ]

A source is injected as if its photons had arrived before ISR::

    λ  = M · g                                 expected extra pre-flat electrons
    n  ~ Poisson(λ)                            (n = λ when noise is off)
    ΔI = n / g
    ΔV = n / g²  +  (c/R)² · (V_f/f⁴) · (2·S·n + n²)

so the realized variance of ``ΔI − M`` equals the mean of ``ΔV`` and each
injected pixel lands on the same per-pixel (I, V) relation as real pixels.
`inject_pixels` is the one entry point: it takes the model values of many
(possibly overlapping) stamps at once and sums the electrons that fall on the
same pixel before ΔV and saturation, which are not linear in n.
"""

from __future__ import annotations

__all__ = [
    "PixelInjection",
    "PixelTerms",
    "draw_electrons",
    "effective_gain",
    "expected_electrons",
    "inject_pixels",
    "pixel_response",
    "reconstruct_pre_flat_electrons",
    "usable_flat",
]

import dataclasses
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

type ArrayLike = npt.ArrayLike
type FloatArray = npt.NDArray[np.float64]
type IntArray = npt.NDArray[np.intp]
type BoolArray = npt.NDArray[np.bool_]


def usable_flat(
    flat: ArrayLike, illumination: ArrayLike | None = None, excluded: ArrayLike | None = None
) -> npt.NDArray[np.bool_]:
    """Return where a pixel can receive photons.

    A pixel is usable when ``f > 0`` and ``f``, ``R`` are finite and
    ``R > 0``, and it is not ``excluded`` (e.g. NO_DATA).

    Parameters
    ----------
    flat
        Flat-field values f.
    illumination
        Illumination correction R, or `None` for R = 1.
    excluded
        Boolean array of pixels that must not receive photons, or `None`.
    """
    # Compared in their own precision: no float64 copies of the planes.
    flat = np.asarray(flat)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(flat) & (flat > 0)
        if illumination is not None:
            illumination = np.asarray(illumination)
            usable &= np.isfinite(illumination) & (illumination > 0)
    if excluded is not None:
        usable &= ~np.asarray(excluded, dtype=bool)
    return usable


def effective_gain(flat: ArrayLike, scaling: ArrayLike, illumination: ArrayLike | None = None) -> FloatArray:
    """Return the per-pixel effective gain ``g = f·R/c`` [e⁻ per image unit].

    Real pixels obey ``V ≈ I/g + const(p)``.  Unusable pixels (see
    `usable_flat`) get NaN.
    """
    # float64 results computed in place, without float64 copies of the planes.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if illumination is None:
            gain = np.array(flat, dtype=np.float64)
        else:
            gain = np.multiply(flat, illumination, dtype=np.float64)
        out_shape = np.broadcast_shapes(gain.shape, np.shape(scaling))
        gain = np.divide(gain, scaling, out=gain if gain.shape == out_shape else None, dtype=np.float64)
    np.copyto(gain, np.nan, where=~usable_flat(flat, illumination))
    return gain


def reconstruct_pre_flat_electrons(
    variance: ArrayLike,
    flat: ArrayLike,
    scaling: ArrayLike,
    read_noise: ArrayLike,
    *,
    flat_variance: ArrayLike | None = None,
    illumination: ArrayLike | None = None,
    other_variance: ArrayLike = 0.0,
) -> FloatArray:
    """Recover the measured pre-flat signal S [e⁻] from the variance plane.

    Inverts ``V·(f·R/c)² = S + σ² + K + S²·V_f/f²`` (the ISR variance) for
    S ≥ 0.  With ``a = V_f/f²`` and ``q = V·(f·R/c)² − σ² − K``::

        S = 2q / (1 + sqrt(1 + 4·a·q))      (= q when V_f = 0)

    clipped at 0.  Non-finite inputs give 0 (no signal to correlate with).

    Parameters
    ----------
    variance
        Variance plane V [image units²].
    flat, flat_variance
        Flat f and its variance V_f (`None` for V_f = 0).
    scaling
        Photometric scaling c [image units per e⁻].
    read_noise
        Read noise σ_a [e⁻].
    illumination
        Illumination correction R (`None` for 1).
    other_variance
        K_a, other signal-independent variance [e⁻²].
    """
    flat = np.asarray(flat, dtype=np.float64)
    gain = effective_gain(flat, scaling, illumination)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        q = (
            np.asarray(variance, dtype=np.float64) * gain**2
            - np.asarray(read_noise, dtype=np.float64) ** 2
            - np.asarray(other_variance, dtype=np.float64)
        )
        q = np.clip(q, 0.0, None)
        if flat_variance is None:
            signal = q
        else:
            a = np.clip(np.asarray(flat_variance, dtype=np.float64) / flat**2, 0.0, None)
            signal = 2.0 * q / (1.0 + np.sqrt(1.0 + 4.0 * a * q))
    signal = np.asarray(signal, dtype=np.float64)
    return np.where(np.isfinite(signal), signal, 0.0)


def draw_electrons(
    expected: ArrayLike, rng: np.random.Generator | None, add_noise: bool = True
) -> tuple[npt.NDArray[np.intp], FloatArray]:
    """Draw n ~ Poisson(λ) independently per pixel, returned sparsely.

    Parameters
    ----------
    expected
        λ ≥ 0 [e⁻] per pixel (any shape; indices refer to its flattened form).
    rng
        Random generator (unused when not ``add_noise``).
    add_noise
        Draw Poisson counts (True) or return n = λ.

    Returns
    -------
    index, electrons
        Flat indices of the pixels with n > 0 (sorted) and their n.

    Notes
    -----
    Most pixels of a stamp lie in the faint wings, where λ ≪ 1 and n is
    almost always 0.  Pixels with λ < ``0.1`` are drawn jointly and exactly:
    independent Poisson(λ_i) are equivalent to a total N ~ Poisson(Σλ_i)
    distributed over the pixels as Multinomial(N, λ_i/Σλ_i), i.e. N
    inverse-CDF draws on the cumulative sum of λ.  Brighter pixels get
    ``rng.poisson`` each.
    """
    expected = np.asarray(expected, dtype=np.float64).ravel()
    if not add_noise:
        index = np.flatnonzero(expected > 0)
        return index, expected[index]
    if rng is None:
        raise ValueError("add_noise=True needs a numpy random Generator (rng=None given).")
    # Bright pixels one by one; faint ones jointly through the cumulative sum
    # of λ over the faint pixels (bright pixels and λ = 0 get zero width, so
    # an inverse-CDF pick lands on a faint pixel with probability λ_i/Σλ).
    faint = expected < 0.1
    bright_index = np.flatnonzero(~faint)
    bright = rng.poisson(expected[bright_index]).astype(np.float64)
    cumulative = np.cumsum(np.where(faint, expected, 0.0))
    total = float(cumulative[-1]) if len(cumulative) else 0.0
    hits = rng.poisson(total) if total > 0 else 0
    if hits:
        picks = np.searchsorted(cumulative, rng.random(hits) * total, side="right")
        # u·Σλ can round up to Σλ: such a pick belongs to the last faint pixel.
        last_faint = np.searchsorted(cumulative, total, side="left")
        picked, counts = np.unique(np.minimum(picks, last_faint), return_counts=True)
    else:
        picked, counts = np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    keep = bright > 0
    index = np.concatenate([bright_index[keep], picked])
    electrons = np.concatenate([bright[keep], counts.astype(np.float64)])
    order = np.argsort(index, kind="stable")
    return index[order], electrons[order]


def pixel_response(
    electrons: ArrayLike,
    *,
    flat: ArrayLike,
    scaling: ArrayLike,
    illumination: ArrayLike | None = None,
    flat_variance: ArrayLike | None = None,
    pre_flat_electrons: ArrayLike | None = None,
    saturation: ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray, BoolArray, FloatArray]:
    """ΔI, ΔV and saturation of pixels that received n pre-flat electrons.

    Elementwise (see the module docstring), for pixels that can receive
    photons (`usable_flat`)::

        ΔI = n / g,  g = f·R/c
        ΔV = n / g² + (c/R)² · (V_f/f⁴) · (2·S·n + n²)
        SAT where n > 0 and S + n > saturation

    Parameters are as in `inject_pixels` and `PixelTerms`; every array has
    the shape of ``electrons`` (or broadcasts to it).  Also returns g.
    """
    electrons = np.asarray(electrons, dtype=np.float64)
    flat = np.asarray(flat, dtype=np.float64)
    illum = 1.0 if illumination is None else np.asarray(illumination, dtype=np.float64)
    scaling = np.asarray(scaling, dtype=np.float64)
    gain = effective_gain(flat, scaling, illumination)
    delta_image = electrons / gain
    delta_variance = electrons / gain**2
    signal = 0.0 if pre_flat_electrons is None else np.asarray(pre_flat_electrons, dtype=np.float64)
    if flat_variance is not None:
        flat_var = np.asarray(flat_variance, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            flat_var = np.where(np.isfinite(flat_var) & (flat_var > 0), flat_var, 0.0)
        delta_variance = delta_variance + (scaling / illum) ** 2 * (flat_var / flat**4) * (
            2.0 * signal * electrons + electrons**2
        )
    if saturation is None:
        saturated = np.zeros(electrons.shape, dtype=bool)
    else:
        saturated = (electrons > 0) & (signal + electrons > np.asarray(saturation, dtype=np.float64))
    return delta_image, delta_variance, saturated, gain


def expected_electrons(
    model: ArrayLike,
    *,
    flat: ArrayLike,
    scaling: ArrayLike,
    illumination: ArrayLike | None = None,
    excluded: ArrayLike | None = None,
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """λ = M · g [e⁻] (g = f·R/c) and where pixels can receive photons.

    λ is 0 where the model is not positive and finite or the pixel is not
    usable (`usable_flat`).
    """
    model = np.asarray(model, dtype=np.float64)
    usable = np.broadcast_to(usable_flat(flat, illumination, excluded), model.shape)
    gain = effective_gain(flat, scaling, illumination)  # NaN where unusable
    # In place on float64 arrays: no converted copies of the planes.
    with np.errstate(invalid="ignore", over="ignore"):
        expected = np.multiply(model, gain, out=gain if gain.shape == model.shape else None)
        keep = model > 0
        keep &= usable
        keep &= np.isfinite(expected)
    np.copyto(expected, 0.0, where=~keep)
    return expected, usable


@dataclasses.dataclass(frozen=True)
class PixelTerms:
    """What the response of the pixels that receive electrons needs: one
    value per pixel (or a scalar); `None` skips the term."""

    pre_flat_electrons: ArrayLike | None = None
    """S, the measured pre-flat signal already in the pixel [e⁻] (see
    `reconstruct_pre_flat_electrons`), for the V_f term and the saturation
    test; `None` for 0."""
    flat_variance: ArrayLike | None = None
    """V_f; `None` skips the flat-variance term of ΔV."""
    saturation: ArrayLike | None = None
    """Saturation level [pre-flat e⁻]; `None` skips the test."""


@dataclasses.dataclass(frozen=True)
class PixelInjection:
    """Result of `inject_pixels`.

    Per-pixel arrays have one entry per pixel that received electrons; per-hit
    arrays one entry per model value that did; ``expected_electrons`` and
    ``no_photons`` one per model value (flattened).
    """

    index: IntArray
    """Per pixel: the (flat) index of its first model value."""
    electrons: FloatArray
    """Per pixel: n, summed over its model values [e⁻]."""
    delta_image: FloatArray
    """Per pixel: ΔI, to add to the image plane [image units]."""
    delta_variance: FloatArray
    """Per pixel: ΔV, to add to the variance plane [image units²]."""
    saturated: BoolArray
    """Per pixel: S + n passes the saturation level."""
    effective_gain: FloatArray
    """Per pixel: g = f·R/c [e⁻ per image unit]."""
    hit_index: IntArray
    """Per hit: the (flat) index of the model value."""
    hit_electrons: FloatArray
    """Per hit: the value's n [e⁻] (ΔI is linear in n: its share is ``n/g``)."""
    hit_pixel: IntArray
    """Per hit: the pixel (index into the per-pixel arrays) it falls on."""
    expected_electrons: FloatArray
    """Per value: λ = M·g [e⁻]."""
    no_photons: BoolArray
    """Per value: the pixel cannot receive photons (f ≤ 0, non-finite f or R, excluded)."""
    shape: tuple[int, ...]
    """Shape of the model values."""

    def on_values(self, per_pixel: ArrayLike) -> FloatArray:
        """Scatter a per-pixel array onto the model values' shape (each pixel
        at its first value, 0 elsewhere): the dense ΔI, ΔV, n of one stamp."""
        per_pixel = np.asarray(per_pixel)
        dense = np.zeros(int(np.prod(self.shape)), dtype=per_pixel.dtype)
        dense[self.index] = per_pixel
        return dense.reshape(self.shape)


def _per_value(value: ArrayLike, shape: tuple[int, ...]) -> FloatArray:
    """``value`` broadcast to the model values' shape, flattened, float64."""
    return np.broadcast_to(np.asarray(value, dtype=np.float64), shape).ravel()


def inject_pixels(
    model: ArrayLike,
    *,
    flat: ArrayLike,
    scaling: ArrayLike,
    rng: np.random.Generator | None,
    illumination: ArrayLike | None = None,
    excluded: ArrayLike | None = None,
    add_noise: bool = True,
    pixel: ArrayLike | None = None,
    terms: Callable[[IntArray], PixelTerms] | PixelTerms | None = None,
) -> PixelInjection:
    """Inject noiseless model values through the ISR pixel model.

    Implements (see the module docstring)::

        λ  = M · g,  g = f·R/c
        n  ~ Poisson(λ)            or n = λ if not add_noise
        n summed over the values of each pixel
        ΔI = n / g
        ΔV = n / g² + (c/R)² · (V_f/f⁴) · (2·S·n + n²)
        SAT where S + n > saturation

    Parameters
    ----------
    model
        Noiseless model M [image units] of one or many stamps (any shape;
        the stamps of a batch flattened one after the other); negative or
        non-finite values inject nothing.
    flat, scaling, illumination
        f, c [image units per e⁻] and R (`None` for 1) at every model value
        (or broadcastable to it).
    rng
        Random generator for the Poisson draw (unused if not ``add_noise``).
    excluded
        Values whose pixel must not receive photons (e.g. NO_DATA).
    add_noise
        Draw n from a Poisson distribution (True) or use n = λ.
    pixel
        Pixel identifier of every model value: values with the same
        identifier (overlapping stamps) are one pixel, their electrons
        summed before ΔV and saturation.  `None`: every value is its own
        pixel (skips a sort).
    terms
        `PixelTerms` of every model value, or a callable that returns them
        for the pixels that received electrons given their ``index`` (so
        S, V_f and saturation are only looked up where needed).

    Returns
    -------
    injection
        Per-pixel ΔI, ΔV, n, g and saturation, per-hit n, per-value λ and
        no-photon mask.
    """
    model = np.asarray(model, dtype=np.float64)
    shape = model.shape
    flat_values, scaling_values = _per_value(flat, shape), _per_value(scaling, shape)
    illumination_values = None if illumination is None else _per_value(illumination, shape)
    expected, usable = expected_electrons(
        model.ravel(), flat=flat_values, scaling=scaling_values, illumination=illumination_values,
        excluded=None if excluded is None else np.broadcast_to(excluded, shape).ravel(),
    )
    hit, hit_electrons = draw_electrons(expected, rng, add_noise)
    if pixel is None:
        first = hit_pixel = np.arange(len(hit))
        electrons = hit_electrons
    else:
        ids, first, hit_pixel = np.unique(
            np.asarray(pixel).ravel()[hit], return_index=True, return_inverse=True
        )
        electrons = np.bincount(hit_pixel, weights=hit_electrons, minlength=len(ids))
    index = hit[first]
    if callable(terms):
        at_pixels = terms(index)
    elif terms is None:
        at_pixels = PixelTerms()
    else:
        at_pixels = PixelTerms(**{
            field.name: None if getattr(terms, field.name) is None
            else _per_value(getattr(terms, field.name), shape)[index]
            for field in dataclasses.fields(PixelTerms)
        })
    delta_image, delta_variance, saturated, gain = pixel_response(
        electrons,
        flat=flat_values[index],
        scaling=scaling_values[index],
        illumination=None if illumination_values is None else illumination_values[index],
        flat_variance=at_pixels.flat_variance,
        pre_flat_electrons=at_pixels.pre_flat_electrons,
        saturation=at_pixels.saturation,
    )
    return PixelInjection(
        index=index,
        electrons=electrons,
        delta_image=delta_image,
        delta_variance=delta_variance,
        saturated=saturated,
        effective_gain=gain,
        hit_index=hit,
        hit_electrons=hit_electrons,
        hit_pixel=hit_pixel,
        expected_electrons=expected,
        no_photons=~usable,
        shape=shape,
    )
