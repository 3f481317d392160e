"""The ISR-consistent pixel model (pure numpy; no butler, no GalSim).

Rubin ISR builds the variance of a pixel from its *measured* pre-flat
electrons plus read noise and only then divides image and variance by the
flat; calibration then divides by the illumination correction, subtracts the
background and scales to image units.  Per pixel ``p`` of amplifier ``a``::

    I = c · (S/f − B) / R
    V = (c/R)² · [ (S + σ_a² + K_a)/f²  +  (S/f)² · V_f/f² ]

with ``S`` the noisy ISR-corrected pre-flat signal [e⁻], ``f``/``V_f`` the
flat and its variance, ``R`` the illumination correction, ``B`` the
subtracted background [post-ISR e⁻], ``c`` the photometric scaling [image
units per e⁻], ``σ_a`` the read noise [e⁻] and ``K_a`` other
signal-independent terms [e⁻²].

A source whose noiseless model in image units is ``M`` is injected as if its
photons had arrived before ISR::

    λ  = M · f · R / c                        expected extra pre-flat electrons
    n  ~ Poisson(λ)                            (n = λ when noise is off)
    ΔI = c · n / (f · R)
    ΔV = c² · n / (f·R)²  +  (c/R)² · (V_f/f⁴) · (2·S·n + n²)

so the realized variance of ``ΔI − M`` equals the mean of ``ΔV`` and each
injected pixel lands on the same per-pixel (I, V) relation as real pixels.
"""

from __future__ import annotations

__all__ = [
    "PixelInjection",
    "draw_electrons",
    "effective_gain",
    "expected_electrons",
    "inject_pixels",
    "pixel_response",
    "reconstruct_pre_flat_electrons",
    "usable_flat",
]

import dataclasses

import numpy as np
import numpy.typing as npt

type ArrayLike = npt.ArrayLike
type FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class PixelInjection:
    """Result of `inject_pixels`; every array has the stamp's shape."""

    delta_image: FloatArray
    """ΔI, to add to the image plane [image units]."""
    delta_variance: FloatArray
    """ΔV, to add to the variance plane [image units²]."""
    electrons: FloatArray
    """n, the injected pre-flat electrons (λ when noise is off) [e⁻]."""
    expected_electrons: FloatArray
    """λ = M·f·R/c, the expected injected pre-flat electrons [e⁻]."""
    saturated: npt.NDArray[np.bool_]
    """Pixels where S + n passes the amplifier saturation level."""
    no_photons: npt.NDArray[np.bool_]
    """Pixels that cannot receive photons (f ≤ 0, non-finite f or R, excluded)."""


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
    flat = np.asarray(flat, dtype=np.float64)
    illum = 1.0 if illumination is None else np.asarray(illumination, dtype=np.float64)
    usable = usable_flat(flat, illumination)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = flat * illum / np.asarray(scaling, dtype=np.float64)
    return np.where(usable, gain, np.nan)


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
    illum = 1.0 if illumination is None else np.asarray(illumination, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        gain = flat * illum / np.asarray(scaling, dtype=np.float64)
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
        picked, counts = np.empty(0, dtype=np.intp), np.empty(0)
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
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """ΔI, ΔV and saturation of pixels that received n pre-flat electrons.

    Elementwise (see the module docstring), for pixels that can receive
    photons (`usable_flat`)::

        ΔI = c · n / (f·R)
        ΔV = c² · n / (f·R)² + (c/R)² · (V_f/f⁴) · (2·S·n + n²)
        SAT where n > 0 and S + n > saturation

    Parameters are as in `inject_pixels`; every array has the shape of
    ``electrons`` (or broadcasts to it).
    """
    electrons = np.asarray(electrons, dtype=np.float64)
    flat = np.asarray(flat, dtype=np.float64)
    illum = 1.0 if illumination is None else np.asarray(illumination, dtype=np.float64)
    scaling = np.asarray(scaling, dtype=np.float64)
    gain = flat * illum / scaling  # e⁻ per image unit
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
    return delta_image, delta_variance, saturated


def expected_electrons(
    model: ArrayLike,
    *,
    flat: ArrayLike,
    scaling: ArrayLike,
    illumination: ArrayLike | None = None,
    excluded: ArrayLike | None = None,
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """λ = M · f · R / c [e⁻] and where pixels can receive photons.

    λ is 0 where the model is not positive and finite or the pixel is not
    usable (`usable_flat`).
    """
    model = np.asarray(model, dtype=np.float64)
    usable = np.broadcast_to(usable_flat(flat, illumination, excluded), model.shape)
    # In float64 without converted copies of the inputs; each step in place.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        gain = np.divide(flat, scaling, dtype=np.float64)
        if illumination is not None:
            gain = np.multiply(gain, illumination, out=gain if gain.shape == np.broadcast(gain, illumination).shape else None)
        expected = np.multiply(model, gain, out=gain if gain.shape == model.shape else None)
        keep = model > 0
        keep &= usable
        keep &= np.isfinite(expected)
    np.copyto(expected, 0.0, where=~keep)
    return expected, usable


def inject_pixels(
    model: ArrayLike,
    *,
    flat: ArrayLike,
    scaling: ArrayLike,
    rng: np.random.Generator | None,
    flat_variance: ArrayLike | None = None,
    illumination: ArrayLike | None = None,
    pre_flat_electrons: ArrayLike | None = None,
    saturation: ArrayLike | None = None,
    excluded: ArrayLike | None = None,
    add_noise: bool = True,
) -> PixelInjection:
    """Inject a noiseless model through the ISR pixel model.

    Implements (see the module docstring)::

        λ  = M · f · R / c
        n  ~ Poisson(λ)            or n = λ if not add_noise
        ΔI = c · n / (f·R)
        ΔV = c² · n / (f·R)² + (c/R)² · (V_f/f⁴) · (2·S·n + n²)
        SAT where S + n > saturation

    Parameters
    ----------
    model
        Noiseless model M [image units]; negative or non-finite values
        inject nothing.
    flat
        Flat-field values f (the ``flat`` calibration's image plane).
    scaling
        Photometric scaling c [image units per e⁻] (1 for an image in e⁻).
    rng
        Random generator for the Poisson draw (unused if not ``add_noise``).
    flat_variance
        The flat's variance plane V_f, or `None` to skip that term.
    illumination
        Illumination correction R, or `None` for 1.
    pre_flat_electrons
        The measured pre-flat signal S already in the pixel [e⁻] (see
        `reconstruct_pre_flat_electrons`), used by the V_f term and the
        saturation test; `None` for 0.
    saturation
        Saturation level in pre-flat electrons, or `None` to skip.
    excluded
        Pixels that must not receive photons (e.g. NO_DATA).
    add_noise
        Draw n from a Poisson distribution (True) or use n = λ.

    Returns
    -------
    injection
        ΔI, ΔV, n, λ and the saturation / no-photon masks.
    """
    model = np.asarray(model, dtype=np.float64)
    shape = model.shape

    def full(value: ArrayLike | None) -> FloatArray | None:
        return None if value is None else np.broadcast_to(np.asarray(value, dtype=np.float64), shape)

    flat, scaling, illum = full(flat), full(scaling), full(illumination)
    expected, usable = expected_electrons(model, flat=flat, scaling=scaling, illumination=illum, excluded=excluded)
    index, counts = draw_electrons(expected, rng, add_noise)

    def at(value: FloatArray | None) -> FloatArray | None:
        return None if value is None else value.ravel()[index]

    delta_image_at, delta_variance_at, saturated_at = pixel_response(
        counts,
        flat=at(flat),
        scaling=at(scaling),
        illumination=at(illum),
        flat_variance=at(full(flat_variance)),
        pre_flat_electrons=at(full(pre_flat_electrons)),
        saturation=at(full(saturation)),
    )
    electrons, delta_image, delta_variance = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    saturated = np.zeros(shape, dtype=bool)
    for array, values in (
        (electrons, counts), (delta_image, delta_image_at), (delta_variance, delta_variance_at),
        (saturated, saturated_at),
    ):
        array.ravel()[index] = values
    return PixelInjection(
        delta_image=delta_image,
        delta_variance=delta_variance,
        electrons=electrons,
        expected_electrons=expected,
        saturated=saturated,
        no_photons=~usable,
    )
