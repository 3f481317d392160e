"""Statistics that check an injection against the ISR flux–variance relation.

Everything here takes plain arrays (one detector at a time) so the demo and
``isrinject diagnose`` share it.  Notation (doc/isrinject/design.md): image ``I`` and
variance ``V`` [image units, image units²], flat ``f`` with variance ``V_f``,
illumination correction ``R``, photometric scaling ``c`` [image units per
e⁻], per-pixel effective gain ``g = f·R/c`` [e⁻ per image unit].

Flat-normalised axes
--------------------
Every pixel is put on ``x = I·g`` and ``y = V·g²`` (both in pre-flat e⁻ /
e⁻²).  ISR makes every real pixel obey, exactly (S pre-flat e⁻, B subtracted
background [post-ISR e⁻], σ_a read noise [e⁻])::

    x = S − f·B
    y = S + σ_a² + S²·V_f/f²
    y = x + b(p) + q(p),   b(p) = f·B + σ_a²,   q(p) = S²·V_f/f²

so the slope of ``y`` against ``x`` is 1 in every pixel.  A correct
injection of ``n`` pre-flat electrons keeps the pixel on the same relation
(S → S + n); an injection with one variance slope ``s`` per amplifier
(``lsst.source.injection``, `isrinject.diagnostics.upstream`) moves it to
slope ``s·g``.

The baseline ``b(p)`` is not observable under a source; `fit_baseline`
models it from the real background pixels of the *original* image as
``b = σ_a² + f·P₂(X, Y)`` (one offset per amplifier, a quadratic sky
``B`` over the detector) and gives the sky part ``f·B̂`` from which
``S = x + f·B̂`` and ``q`` follow.

Statistics (`injection_statistics`)
-----------------------------------
- slope: ``Σ(y − b̂ − q̂) / Σx`` over the selected pixels (the weighted
  least-squares slope through the origin for residual variance ∝ x); real
  pixels from the original image, injected pixels from the injected image.
- realized-noise ratio: with ``M`` the noiseless injected model and
  ``E = ΔV_noiseless`` the expected injected variance, per pixel
  ``u = (ΔI − M)²/E`` has mean k (=1 for a correct injection) and, for
  Poisson counts of mean ``λ = M·g``, variance ``k²(2 + 1/λ)``; the
  minimum-variance combination is ``k̂ = Σ w·u / Σ w`` with
  ``w = λ/(1 + 2λ)``, standard error ``k̂/√Σw``.
- KS test: residual ``r = (y − b̂ − q̂)/x − 1`` (each pixel's apparent slope
  minus 1) of real and injected pixels, after restricting both to the
  common ``x`` range and subsampling them to the same ``log x`` histogram
  (like with like); `scipy.stats.ks_2samp`.
- relation residual (`relation_residual`): each injected pixel against the
  ISR relation of its *own* pixel, predicted from the flat, the original
  variance plane and the calibration; needs no real source pixels, so it
  runs on any field (a sparse u-band cutout where the injected star is the
  brightest thing).

Which of these must pass, and with which thresholds, is decided in one
place: `isrinject.diagnostics.verdict`.
"""

from __future__ import annotations

__all__ = [
    "BaselineFit",
    "DetectorPixels",
    "InjectionStatistics",
    "PopulationSample",
    "fit_baseline",
    "flat_normalised",
    "injection_statistics",
    "matched_subsample",
    "realized_noise_ratio",
    "relation_residual",
]

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats

from ..engine.model import effective_gain, reconstruct_pre_flat_electrons

type FloatArray = npt.NDArray[np.float64]
type BoolArray = npt.NDArray[np.bool_]


@dataclasses.dataclass
class DetectorPixels:
    """The arrays of one detector needed by `injection_statistics` (same shape).

    Attributes
    ----------
    original_image, original_variance
        I₀, V₀ of the visit image before injection [image units, units²].
    image, variance
        I, V after injection.
    flat, flat_variance
        f and V_f (`None` for V_f = 0).
    scaling
        c, image units per e⁻ (scalar or array).
    injected
        The INJECTED mask plane.
    model, expected_variance
        M = ΔI and ΔV of a noiseless injection of the same catalog (e.g.
        ``inject_sources(..., add_noise=False)``); `None` skips the
        realized-noise ratio.
    illumination
        R (`None` for 1).
    bad
        Pixels to ignore (BAD, SATURATED, NO_DATA, …); `None` for none.
    amp_index
        Integer amplifier label per pixel (for per-amplifier read noise in
        the baseline); `None` for one region.
    read_noise
        σ_a [e⁻] (scalar or map), to recover the pre-flat signal under an
        injected pixel from the original variance plane (`relation_residual`).
    """

    original_image: FloatArray
    original_variance: FloatArray
    image: FloatArray
    variance: FloatArray
    flat: FloatArray
    scaling: FloatArray | float
    injected: BoolArray
    flat_variance: FloatArray | None = None
    model: FloatArray | None = None
    expected_variance: FloatArray | None = None
    illumination: FloatArray | None = None
    bad: BoolArray | None = None
    amp_index: npt.NDArray[np.integer] | None = None
    read_noise: FloatArray | float = 0.0

    @property
    def gain(self) -> FloatArray:
        """g = f·R/c [e⁻ per image unit]; NaN where unusable."""
        return effective_gain(self.flat, self.scaling, self.illumination)


@dataclasses.dataclass
class BaselineFit:
    """Per-pixel baseline of ``y − x`` fitted by `fit_baseline` [e⁻²]."""

    offset: FloatArray
    """σ̂_a², the signal-independent part (per amplifier)."""
    sky: FloatArray
    """f·B̂, the subtracted background in pre-flat e⁻."""
    rms: float
    """RMS of ``y − x − b̂`` over the background pixels used [e⁻²]."""
    n_pixels: int
    """Number of background pixels in the final fit."""

    @property
    def baseline(self) -> FloatArray:
        """b̂ = σ̂_a² + f·B̂ [e⁻²]."""
        return self.offset + self.sky


@dataclasses.dataclass
class PopulationSample:
    """Flat-normalised pixels of one population (for statistics and plots)."""

    image: FloatArray
    """I [image units]."""
    variance: FloatArray
    """V [image units²]."""
    x: FloatArray
    """x = I·g [e⁻]."""
    y: FloatArray
    """y = V·g² [e⁻²]."""
    excess: FloatArray
    """y − b̂ − q̂ [e⁻²]: what should equal x (slope 1)."""

    @property
    def residual(self) -> FloatArray:
        """r = (y − b̂ − q̂)/x − 1, the apparent per-pixel slope minus 1."""
        return self.excess / self.x - 1.0

    def select(self, keep: BoolArray) -> PopulationSample:
        """The subset ``keep``."""
        return PopulationSample(*(getattr(self, f.name)[keep] for f in dataclasses.fields(self)))

    @classmethod
    def concatenate(cls, samples: Sequence[PopulationSample]) -> PopulationSample:
        """Stack samples (e.g. of several detectors)."""
        return cls(
            *(
                np.concatenate([getattr(s, f.name) for s in samples]) if samples else np.zeros(0)
                for f in dataclasses.fields(cls)
            )
        )


@dataclasses.dataclass
class InjectionStatistics:
    """Result of `injection_statistics` (one band or one detector)."""

    slope_real: float
    """Slope of y against x of real source pixels (1 for ISR)."""
    slope_injected: float
    """The same for injected pixels."""
    noise_ratio: float
    """Realized-noise ratio k̂ = var(ΔI − M)/E[ΔV] (1 for a consistent injection)."""
    noise_ratio_error: float
    """Standard error of ``noise_ratio``."""
    ks_statistic: float
    """Two-sample KS statistic of the residuals r, real vs injected."""
    ks_pvalue: float
    """Its p-value (high: indistinguishable)."""
    n_real: int
    """Real pixels in the slope fit."""
    n_injected: int
    """Injected pixels in the slope fit."""
    n_ks: int
    """Pixels per population in the KS test (after histogram matching)."""
    n_noise: int
    """Injected pixels in the realized-noise ratio."""
    relation_rms: float
    """RMS of the per-pixel `relation_residual` of the injected pixels (0 for ISR)."""
    relation_max: float
    """Its largest absolute value."""
    n_relation: int
    """Injected pixels in the relation residual."""
    relation: FloatArray
    """The per-pixel relation residuals (all detectors)."""
    real: PopulationSample
    """The real pixels used (all detectors)."""
    injected: PopulationSample
    """The injected pixels used."""

    @property
    def slope_ratio(self) -> float:
        """slope_injected / slope_real."""
        return self.slope_injected / self.slope_real


def flat_normalised(
    image: npt.ArrayLike, variance: npt.ArrayLike, gain: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Return ``x = I·g`` [e⁻] and ``y = V·g²`` [e⁻²]."""
    gain = np.asarray(gain, dtype=np.float64)
    return np.asarray(image, np.float64) * gain, np.asarray(variance, np.float64) * gain**2


def _design(
    flat: FloatArray, amp_index: npt.NDArray[np.integer], labels: FloatArray, yy: FloatArray, xx: FloatArray
) -> FloatArray:
    columns = [(amp_index == label).astype(np.float64) for label in labels]
    columns += [flat, flat * xx, flat * yy, flat * xx**2, flat * yy**2, flat * xx * yy]
    return np.stack(columns, axis=-1)


def fit_baseline(
    x: FloatArray,
    y: FloatArray,
    flat: FloatArray,
    *,
    good: BoolArray,
    flat_variance: FloatArray | None = None,
    amp_index: npt.NDArray[np.integer] | None = None,
    snr_max: float = 3.0,
    clip: float = 4.0,
    n_iter: int = 5,
) -> BaselineFit:
    """Fit the per-pixel baseline ``b(p) = σ_a² + f·B(p)`` of ``y − x``.

    Uses real background pixels (``good`` and ``|x| < snr_max·√y``), where
    ``y − x − q = f·B + σ_a²`` with ``q = S²V_f/f²`` and ``S = x + f·B``
    (q is a few e⁻² on a bright sky: it is computed from the previous
    iteration's ``f·B̂`` and subtracted), and least
    squares with one offset per amplifier and ``B`` a quadratic polynomial
    in the pixel coordinates scaled to [−1, 1], clipping ``clip``-σ
    outliers (faint sources) ``n_iter`` times.

    Parameters
    ----------
    x, y
        Flat-normalised original image and variance [e⁻, e⁻²].
    flat
        f, same shape.
    good
        Pixels usable at all.
    flat_variance
        V_f (`None` for 0).
    amp_index
        Amplifier label per pixel; `None` for a single offset.

    Returns
    -------
    fit
        `BaselineFit` with ``offset`` (σ̂_a²) and ``sky`` (f·B̂) maps.
    """
    ny, nx = x.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    yy = 2 * yy / max(ny - 1, 1) - 1
    xx = 2 * xx / max(nx - 1, 1) - 1
    amp = np.zeros(x.shape, dtype=np.int64) if amp_index is None else np.asarray(amp_index)
    labels = np.unique(amp)
    with np.errstate(invalid="ignore"):
        use = good & np.isfinite(x) & np.isfinite(y) & (y > 0) & (np.abs(x) < snr_max * np.sqrt(np.abs(y)))
    diff0 = y - x
    diff = diff0
    candidates = use.copy()
    coefficients = np.zeros(len(labels) + 6)
    rms = np.nan
    for _ in range(max(n_iter, 1)):
        if use.sum() < len(coefficients) + 1:
            raise ValueError(f"Only {int(use.sum())} background pixels to fit the flux-variance baseline.")
        design = _design(flat[use], amp[use], labels, yy[use], xx[use])
        coefficients, *_ = np.linalg.lstsq(design, diff[use], rcond=None)
        resid = diff[use] - design @ coefficients
        rms = float(np.sqrt(np.mean(resid**2)))
        scale = max(1.4826 * float(np.median(np.abs(resid - np.median(resid)))), 1e-3)
        # Re-select from all candidates (an early bad fit must not lose pixels for good).
        model = _design(flat[candidates], amp[candidates], labels, yy[candidates], xx[candidates]) @ coefficients
        new_use = candidates.copy()
        new_use[candidates] = np.abs(diff[candidates] - model) < clip * scale
        sky = _sky(coefficients[len(labels) :], flat, xx, yy)
        diff = diff0 - _flat_variance_term(x, sky, flat, flat_variance)
        use = new_use
    offsets = np.zeros(x.shape)
    for i, label in enumerate(labels):
        offsets[amp == label] = coefficients[i]
    sky = _sky(coefficients[len(labels) :], flat, xx, yy)
    return BaselineFit(offset=offsets, sky=sky, rms=rms, n_pixels=int(use.sum()))


def _sky(b: FloatArray, flat: FloatArray, xx: FloatArray, yy: FloatArray) -> FloatArray:
    """f·B̂ with B̂ = b₀ + b₁X + b₂Y + b₃X² + b₄Y² + b₅XY."""
    return flat * (b[0] + b[1] * xx + b[2] * yy + b[3] * xx**2 + b[4] * yy**2 + b[5] * xx * yy)


def _flat_variance_term(
    x: FloatArray, sky: FloatArray, flat: FloatArray, flat_variance: FloatArray | None
) -> FloatArray:
    """q = S²·V_f/f² with S = x + f·B̂ [e⁻²] (0 without V_f)."""
    if flat_variance is None:
        return np.zeros_like(x)
    signal = np.clip(x + sky, 0.0, None)
    return signal**2 * np.asarray(flat_variance, np.float64) / np.asarray(flat, np.float64) ** 2


def realized_noise_ratio(
    delta_image: FloatArray, model: FloatArray, expected_variance: FloatArray, gain: FloatArray
) -> tuple[float, float, int]:
    """Minimum-variance estimate of ``k = var(ΔI − M) / E[ΔV]``.

    Per pixel ``u = (ΔI − M)²/E`` with ``E`` the expected injected variance
    (ΔV of the noiseless injection).  For Poisson counts of mean
    ``λ = M·g`` [e⁻], ``E[u] = k`` and ``Var[u] = k²(2 + 1/λ)`` (the fourth
    central moment of a Poisson variable is ``λ + 3λ²``), so the
    inverse-variance weights are ``w = λ/(1 + 2λ)`` and
    ``k̂ = Σ w·u / Σ w`` with standard error ``k̂/√Σw``.  Faint wing pixels
    (λ ≪ 1, whose ``u`` is very noisy) get little weight.

    Parameters
    ----------
    delta_image
        ΔI = I − I₀ of the pixels [image units].
    model
        M [image units] (> 0).
    expected_variance
        E = ΔV_noiseless [image units²] (> 0).
    gain
        g = f·R/c [e⁻ per image unit].

    Returns
    -------
    ratio, error, n
        k̂, its standard error and the number of pixels.
    """
    delta_image, model, expected_variance, gain = (
        np.asarray(a, dtype=np.float64).ravel() for a in (delta_image, model, expected_variance, gain)
    )
    ok = np.isfinite(delta_image) & np.isfinite(model) & np.isfinite(gain) & (model > 0) & (expected_variance > 0)
    if not ok.any():
        return np.nan, np.nan, 0
    lam = model[ok] * gain[ok]
    u = (delta_image[ok] - model[ok]) ** 2 / expected_variance[ok]
    w = lam / (1.0 + 2.0 * lam)
    ratio = float(np.sum(w * u) / np.sum(w))
    return ratio, ratio / float(np.sqrt(np.sum(w))), int(ok.sum())


def relation_residual(
    original_image: npt.ArrayLike,
    original_variance: npt.ArrayLike,
    image: npt.ArrayLike,
    variance: npt.ArrayLike,
    flat: npt.ArrayLike,
    scaling: npt.ArrayLike,
    *,
    flat_variance: npt.ArrayLike | None = None,
    illumination: npt.ArrayLike | None = None,
    read_noise: npt.ArrayLike = 0.0,
) -> FloatArray:
    """Per-pixel deviation of an injected pixel from the ISR relation of its own pixel.

    This needs no real source pixels: the original image and variance of the
    *same* pixel are known, so the baseline is too.  With ``g = f·R/c`` and
    ``n = (I − I₀)·g`` the pre-flat electrons the image plane says were
    added, ``S`` the pre-flat signal before injection recovered from the
    original variance plane (`isrinject.engine.model.reconstruct_pre_flat_electrons`
    with σ_a = ``read_noise``), ISR predicts the variance increment

        ΔV_ISR = [n + (V_f/f²)·(2·S·n + n²)] / g²          [image units²]

    and the residual is ``r = (V − V₀)/ΔV_ISR − 1`` (dimensionless).  An
    ISR-consistent injection gives ``r = 0`` up to float32 rounding of the
    planes (≈ 10⁻⁵ for pixels well above the noise); one slope per
    amplifier (``ΔV = s·ΔI``, `isrinject.diagnostics.upstream`) gives
    ``r ≈ s·g − 1``.

    Parameters
    ----------
    original_image, original_variance
        I₀, V₀ [image units, units²] before injection.
    image, variance
        I, V after injection.
    flat, scaling, flat_variance, illumination
        f, c [image units per e⁻], V_f (`None` for 0), R (`None` for 1).
    read_noise
        σ_a [e⁻].

    Returns
    -------
    residual
        r per pixel (NaN where ``n ≤ 0`` or g is not usable).
    """
    original_image, original_variance, image, variance = (
        np.asarray(a, np.float64) for a in (original_image, original_variance, image, variance)
    )
    gain = effective_gain(flat, scaling, illumination)
    electrons = (image - original_image) * gain
    signal = reconstruct_pre_flat_electrons(
        original_variance, flat, scaling, read_noise, flat_variance=flat_variance, illumination=illumination
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        relative_flat_variance = (
            0.0 if flat_variance is None else np.asarray(flat_variance, np.float64) / np.asarray(flat, np.float64) ** 2
        )
        predicted = (electrons + relative_flat_variance * (2 * signal * electrons + electrons**2)) / gain**2
        residual = (variance - original_variance) / predicted - 1.0
    return np.where(electrons > 0, residual, np.nan)


def matched_subsample(
    x_a: FloatArray, x_b: FloatArray, *, n_bins: int = 20, rng: np.random.Generator
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Indices of subsamples of ``a`` and ``b`` with the same ``log x`` histogram.

    Both are cut to their common range of ``x > 0``; in each of ``n_bins``
    logarithmic bins the larger population is randomly subsampled to the
    size of the smaller one.
    """
    x_a = np.asarray(x_a, np.float64)
    x_b = np.asarray(x_b, np.float64)
    pos_a, pos_b = x_a > 0, x_b > 0
    if not (pos_a.any() and pos_b.any()):
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    lo = max(x_a[pos_a].min(), x_b[pos_b].min())
    hi = min(x_a[pos_a].max(), x_b[pos_b].max())
    if not hi > lo:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    edges = np.geomspace(lo, hi, n_bins + 1)
    edges[-1] = np.nextafter(hi, np.inf)
    bin_a = np.digitize(x_a, edges) - 1
    bin_b = np.digitize(x_b, edges) - 1
    keep_a: list[npt.NDArray[np.intp]] = []
    keep_b: list[npt.NDArray[np.intp]] = []
    for k in range(n_bins):
        ia = np.flatnonzero(pos_a & (bin_a == k))
        ib = np.flatnonzero(pos_b & (bin_b == k))
        m = min(len(ia), len(ib))
        if m:
            keep_a.append(rng.choice(ia, m, replace=False))
            keep_b.append(rng.choice(ib, m, replace=False))
    if not keep_a:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    return np.sort(np.concatenate(keep_a)), np.sort(np.concatenate(keep_b))


def _samples(
    pixels: DetectorPixels, snr_min: float
) -> tuple[PopulationSample, PopulationSample, tuple[FloatArray, ...] | None, FloatArray]:
    gain = pixels.gain
    bad = np.zeros(pixels.flat.shape, bool) if pixels.bad is None else np.asarray(pixels.bad, bool)
    good = ~bad & np.isfinite(gain)
    for a in (pixels.original_image, pixels.original_variance, pixels.image, pixels.variance):
        good &= np.isfinite(a)
    x0, y0 = flat_normalised(pixels.original_image, pixels.original_variance, gain)
    x1, y1 = flat_normalised(pixels.image, pixels.variance, gain)
    injected = np.asarray(pixels.injected, bool)
    # The original image is all real pixels: fit and select real pixels there.
    fit = fit_baseline(
        x0, y0, pixels.flat, good=good, flat_variance=pixels.flat_variance, amp_index=pixels.amp_index
    )
    baseline = fit.baseline

    def population(
        sel: BoolArray, image: FloatArray, variance: FloatArray, x: FloatArray, y: FloatArray
    ) -> PopulationSample:
        flat_variance = None if pixels.flat_variance is None else pixels.flat_variance[sel]
        q = _flat_variance_term(x[sel], fit.sky[sel], pixels.flat[sel], flat_variance)
        return PopulationSample(
            image=np.asarray(image, np.float64)[sel],
            variance=np.asarray(variance, np.float64)[sel],
            x=x[sel],
            y=y[sel],
            excess=y[sel] - baseline[sel] - q,
        )

    with np.errstate(invalid="ignore", divide="ignore"):
        real_sel = good & (pixels.original_image > snr_min * np.sqrt(pixels.original_variance))
        inj_sel = good & injected
        if pixels.model is not None:
            inj_sel &= pixels.model > snr_min * np.sqrt(pixels.variance)
        else:
            inj_sel &= pixels.image > snr_min * np.sqrt(pixels.variance)
    real = population(real_sel, pixels.original_image, pixels.original_variance, x0, y0)
    inj = population(inj_sel, pixels.image, pixels.variance, x1, y1)

    def at(a: npt.ArrayLike) -> FloatArray:
        return np.broadcast_to(np.asarray(a, np.float64), inj_sel.shape)[inj_sel]

    relation = relation_residual(
        at(pixels.original_image), at(pixels.original_variance), at(pixels.image), at(pixels.variance),
        at(pixels.flat), at(pixels.scaling),
        flat_variance=None if pixels.flat_variance is None else at(pixels.flat_variance),
        illumination=None if pixels.illumination is None else at(pixels.illumination),
        read_noise=at(pixels.read_noise),
    )
    noise = None
    if pixels.model is not None and pixels.expected_variance is not None:
        sel = good & injected & (pixels.model > 0)
        delta = np.asarray(pixels.image, np.float64) - pixels.original_image
        noise = (delta[sel], pixels.model[sel], pixels.expected_variance[sel], gain[sel])
    return real, inj, noise, relation[np.isfinite(relation)]


def injection_statistics(
    detectors: Sequence[DetectorPixels], *, snr_min: float = 5.0, seed: int = 0, n_bins: int = 20
) -> InjectionStatistics:
    """Slopes, realized-noise ratio and KS test of one band (pooling detectors).

    Parameters
    ----------
    detectors
        One `DetectorPixels` per detector (each gets its own baseline fit).
    snr_min
        Real pixels need ``I₀ > snr_min·√V₀``; injected pixels
        ``M > snr_min·√V`` (or ``I > snr_min·√V`` without a model).
    seed
        Seed of the histogram-matching subsample.
    n_bins
        Logarithmic x bins of the matching.

    Returns
    -------
    statistics
        `InjectionStatistics`; see the module docstring for the formulas.
    """
    reals, injs, noises, relations = [], [], [], []
    for pixels in detectors:
        real, inj, noise, relation = _samples(pixels, snr_min)
        reals.append(real)
        injs.append(inj)
        relations.append(relation)
        if noise is not None:
            noises.append(noise)
    relation = np.concatenate(relations) if relations else np.zeros(0)
    real = PopulationSample.concatenate(reals)
    inj = PopulationSample.concatenate(injs)
    # Slopes over the common x range.
    if len(real.x) and len(inj.x):
        lo = max(real.x.min(), inj.x.min())
        hi = min(real.x.max(), inj.x.max())
        real_c = real.select((real.x >= lo) & (real.x <= hi))
        inj_c = inj.select((inj.x >= lo) & (inj.x <= hi))
    else:
        real_c, inj_c = real, inj
    slope_real = float(np.sum(real_c.excess) / np.sum(real_c.x)) if len(real_c.x) else np.nan
    slope_inj = float(np.sum(inj_c.excess) / np.sum(inj_c.x)) if len(inj_c.x) else np.nan
    ia, ib = matched_subsample(real.x, inj.x, n_bins=n_bins, rng=np.random.default_rng(seed))
    if len(ia) >= 2:
        ks = stats.ks_2samp(real.residual[ia], inj.residual[ib])
        ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
    else:
        ks_stat, ks_p = np.nan, np.nan
    if noises:
        ratio, error, n_noise = realized_noise_ratio(*(np.concatenate(parts) for parts in zip(*noises)))
    else:
        ratio, error, n_noise = np.nan, np.nan, 0
    return InjectionStatistics(
        slope_real=slope_real,
        slope_injected=slope_inj,
        noise_ratio=ratio,
        noise_ratio_error=error,
        ks_statistic=ks_stat,
        ks_pvalue=ks_p,
        n_real=len(real_c.x),
        n_injected=len(inj_c.x),
        n_ks=len(ia),
        n_noise=n_noise,
        relation_rms=float(np.sqrt(np.mean(relation**2))) if len(relation) else np.nan,
        relation_max=float(np.max(np.abs(relation))) if len(relation) else np.nan,
        n_relation=len(relation),
        relation=relation,
        real=real,
        injected=inj,
    )
