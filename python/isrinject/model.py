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
    "effective_gain",
    "inject_pixels",
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
    flat = np.asarray(flat, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(flat) & (flat > 0)
        if illumination is not None:
            illumination = np.asarray(illumination, dtype=np.float64)
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
    flat = np.broadcast_to(np.asarray(flat, dtype=np.float64), shape)
    scaling = np.broadcast_to(np.asarray(scaling, dtype=np.float64), shape)
    illum = None if illumination is None else np.broadcast_to(np.asarray(illumination, np.float64), shape)
    usable = usable_flat(flat, illum, excluded)
    # Where the flat or R is unusable the pixel gets no photons; substitute 1
    # so the arithmetic stays finite, then zero those pixels explicitly.
    safe_flat = np.where(usable, flat, 1.0)
    safe_illum = 1.0 if illum is None else np.where(usable, illum, 1.0)
    gain = safe_flat * safe_illum / scaling  # e⁻ per image unit
    with np.errstate(invalid="ignore"):
        expected = np.where(usable & np.isfinite(model) & (model > 0), model * gain, 0.0)
    if add_noise:
        if rng is None:
            raise ValueError("add_noise=True needs a numpy random Generator (rng=None given).")
        electrons = rng.poisson(expected).astype(np.float64)
    else:
        electrons = expected.copy()
    delta_image = electrons / gain
    delta_variance = electrons / gain**2
    signal = (
        np.zeros(shape)
        if pre_flat_electrons is None
        else np.broadcast_to(np.asarray(pre_flat_electrons, dtype=np.float64), shape)
    )
    if flat_variance is not None:
        flat_var = np.broadcast_to(np.asarray(flat_variance, dtype=np.float64), shape)
        flat_var = np.where(usable & np.isfinite(flat_var) & (flat_var > 0), flat_var, 0.0)
        post_scale = scaling / safe_illum
        delta_variance = delta_variance + post_scale**2 * (flat_var / safe_flat**4) * (
            2.0 * signal * electrons + electrons**2
        )
    if saturation is None:
        saturated = np.zeros(shape, dtype=bool)
    else:
        level = np.broadcast_to(np.asarray(saturation, dtype=np.float64), shape)
        saturated = usable & (electrons > 0) & (signal + electrons > level)
    return PixelInjection(
        delta_image=delta_image,
        delta_variance=delta_variance,
        electrons=electrons,
        expected_electrons=expected,
        saturated=saturated,
        no_photons=~usable,
    )
