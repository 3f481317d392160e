"""Catalog-level checks of an injection with photutils: forced PSF photometry and completeness.

What a survey scientist measures after injecting sources:

Forced PSF photometry (`measure_stars`)
    every injected star is fitted at its known position with the visit's
    PSF, flux the only free parameter (photutils `~photutils.psf.PSFPhotometry`
    with an `~photutils.psf.ImagePSF` whose ``x_0``/``y_0`` are fixed),
    weighted by the variance plane (``error = √V``).  The PSF image is the
    visit PSF's ``compute_stellar_image(x, y)``: it is evaluated *at* the
    star's sub-pixel position, so the model is sampled exactly on its own
    grid (no interpolation of a pixel-centred kernel).  With ``F`` the
    catalog flux in image units and ``F̂ ± σ_F̂`` the fit, the pull
    ``(F̂ − F)/σ_F̂`` has unit width when the injected noise matches the
    recorded variance (the injected flux scatters by its Poisson noise,
    which the variance plane includes).  Its mean is not 0: ISR computes the
    variance plane from the *measured* signal, so a pixel's weight 1/V is
    anti-correlated with its own photon noise, which biases the weighted
    flux low by ≈ ``S/(S + σ_a²)^{3/2} · ΣP/√ΣP²`` standard errors for a
    sky-limited star (S sky e⁻ per pixel, P the PSF): ≈ −0.4 in u, −0.3 in g
    for the demo.  Real pixels, the truth and isrinject share this bias; only
    the comparison with the truth tells whether an injection is right.

Detection completeness (`detect`)
    photutils `~photutils.segmentation.detect_sources` on the S/N image
    ``I/√V`` filtered with a Gaussian of the PSF's FWHM (the matched
    filter), thresholded at `DETECTION_THRESHOLD` times the filtered noise
    ``√Σk²`` with at least `DETECTION_NPIXELS` connected pixels.  An
    injected star is detected when a segment covers its pixel.

Only *isolated* stars are used: no other injected source within
`ISOLATION_FWHM` PSF FWHMs, no pixel of a source detected in the original
image (before injection) inside the fit box and, when the noiseless model of
the injected extended sources is known, no more of their light in the fit
box than shifts the flux by `MAX_NEIGHBOUR_PULL` standard errors
(`neighbour_pull`: the wings of a bright galaxy reach beyond 4 FWHM), so a
star's pull is its own.
The same stars are measured in every image compared (isrinject, a flux/gain
injection, the physical truth of a simulation), all of which share the
original image.
"""

from __future__ import annotations

__all__ = [
    "DETECTION_NPIXELS",
    "DETECTION_THRESHOLD",
    "FIT_FWHM",
    "ISOLATION_FWHM",
    "MAX_NEIGHBOUR_PULL",
    "POINT_SOURCE_TYPES",
    "detect",
    "isolated",
    "magnitude_edges",
    "measure_stars",
    "neighbour_pull",
    "psf_fwhm",
    "summarise",
]

import math
import warnings

import numpy as np
import numpy.typing as npt
from astropy.convolution import convolve
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from lsst.images import Box
from photutils.psf import ImagePSF, PSFPhotometry
from photutils.segmentation import detect_sources, make_2dgaussian_kernel

from .results import CatalogChecks, Completeness, PullSummary

#: Detection threshold: matched-filtered S/N in units of its own noise.
DETECTION_THRESHOLD = 5.0
#: Connected pixels a detection needs.
DETECTION_NPIXELS = 5
#: Side of the square fit box in PSF FWHMs (rounded up to an odd number of pixels).
FIT_FWHM = 3.0
#: A star is isolated when no other injected source lies within this many FWHMs.
ISOLATION_FWHM = 4.0
#: Largest flux shift [standard errors] the light of injected extended neighbours may cause in a star's fit.
MAX_NEIGHBOUR_PULL = 0.25
#: Source types measured as point sources.
POINT_SOURCE_TYPES = ("Star", "DeltaFunction")

type FloatArray = npt.NDArray[np.float64]


def psf_fwhm(psf: object, x: float, y: float) -> float:
    """FWHM [pixels] of the PSF at (x, y) from the second moments of its kernel image.

    ``FWHM = 2√(2 ln 2) · σ`` with ``σ² = Σ k·r² / (2 Σ k)`` (exact for a Gaussian).
    """
    kernel = psf.compute_kernel_image(x=x, y=y)  # type: ignore[attr-defined]
    grid = kernel.bbox.meshgrid()
    k = np.asarray(kernel.array, np.float64)
    sigma2 = float(np.sum(k * (grid.x**2 + grid.y**2)) / (2 * np.sum(k)))
    return 2 * math.sqrt(2 * math.log(2)) * math.sqrt(sigma2)


def _fit_size(fwhm: float) -> int:
    """Odd side [pixels] of the fit box: at least `FIT_FWHM` FWHMs."""
    return 2 * math.ceil(FIT_FWHM * fwhm / 2) + 1


def detect(
    image: FloatArray, variance: FloatArray, bad: npt.NDArray[np.bool_] | None, fwhm: float
) -> npt.NDArray[np.int64]:
    """Segmentation map (0: no source) of `DETECTION_THRESHOLD`-σ matched-filter detections.

    Parameters
    ----------
    image, variance
        I and V [image units, units²].
    bad
        Pixels to ignore (set to S/N 0); `None` for none.
    fwhm
        PSF FWHM [pixels] of the Gaussian filter.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.asarray(image, np.float64) / np.sqrt(np.asarray(variance, np.float64))
    unusable = ~np.isfinite(snr) | (np.zeros(snr.shape, bool) if bad is None else np.asarray(bad, bool))
    snr = np.where(unusable, 0.0, snr)
    kernel = make_2dgaussian_kernel(fwhm, size=2 * math.ceil(fwhm) + 1)
    filtered = convolve(snr, kernel, normalize_kernel=True, boundary="fill", fill_value=0.0)
    noise = math.sqrt(float(np.sum((kernel.array / kernel.array.sum()) ** 2)))
    segments = detect_sources(filtered, DETECTION_THRESHOLD * noise, DETECTION_NPIXELS)
    return np.zeros(snr.shape, np.int64) if segments is None else np.asarray(segments.data, np.int64)


def isolated(
    x: FloatArray, y: FloatArray, others_x: FloatArray, others_y: FloatArray, fwhm: FloatArray,
    original_segments: npt.NDArray[np.int64], bbox: Box,
) -> npt.NDArray[np.bool_]:
    """Stars whose fit box is free of other injected sources and of sources of the original image.

    ``others_*`` are every injected source (the stars themselves included;
    a star at distance 0 is itself).  A star whose fit box leaves the image is
    not isolated either.
    """
    out = np.zeros(len(x), bool)
    ny, nx = original_segments.shape
    for i in range(len(x)):
        d = np.hypot(others_x - x[i], others_y - y[i])
        if np.any((d > 1e-6) & (d < ISOLATION_FWHM * fwhm[i])):
            continue
        half = _fit_size(fwhm[i]) // 2
        ix, iy = round(x[i]) - bbox.x.start, round(y[i]) - bbox.y.start
        if ix - half < 0 or iy - half < 0 or ix + half >= nx or iy + half >= ny:
            continue
        out[i] = not original_segments[iy - half : iy + half + 1, ix - half : ix + half + 1].any()
    return out


def measure_stars(
    image: FloatArray,
    variance: FloatArray,
    bad: npt.NDArray[np.bool_] | None,
    psf: object,
    bbox: Box,
    stars: Table,
) -> Table:
    """Forced PSF photometry and detection of ``stars`` in one image.

    Parameters
    ----------
    image, variance, bad
        The image to measure (its local array) [image units, units²].
    psf
        The visit's PSF (lsst.images: ``compute_stellar_image``, ``compute_kernel_image``).
    bbox
        The image's bounding box (absolute pixel coordinates of ``stars``).
    stars
        Columns ``x``, ``y`` [absolute pixels], ``mag``, ``flux`` (catalog flux
        in image units) and ``fwhm`` [pixels].

    Returns
    -------
    measured
        ``stars`` with ``psf_flux``, ``psf_flux_err``, ``pull`` and ``detected``.
    """
    image = np.asarray(image, np.float64)
    error = np.sqrt(np.asarray(variance, np.float64))
    mask = ~np.isfinite(image) | ~np.isfinite(error) | (error <= 0)
    if bad is not None:
        mask |= np.asarray(bad, bool)
    n = len(stars)
    flux, flux_err = np.full(n, np.nan), np.full(n, np.nan)
    for i, row in enumerate(stars):
        x, y = float(row["x"]), float(row["y"])
        stellar = psf.compute_stellar_image(x=x, y=y)  # type: ignore[attr-defined]
        model = ImagePSF(np.asarray(stellar.array, np.float64),
                         origin=(x - stellar.bbox.x.start, y - stellar.bbox.y.start))
        model.x_0.fixed = True
        model.y_0.fixed = True
        size = _fit_size(float(row["fwhm"]))
        photometry = PSFPhotometry(model, (size, size), aperture_radius=float(row["fwhm"]))
        # Only the star's neighbourhood is handed over (photutils checks every pixel of what it gets).
        x_local, y_local = x - bbox.x.start, y - bbox.y.start
        margin = size // 2 + 2
        x0, y0 = max(round(x_local) - margin, 0), max(round(y_local) - margin, 0)
        near = (slice(y0, round(y_local) + margin + 1), slice(x0, round(x_local) + margin + 1))
        # The initial flux comes from aperture photometry, not from the catalog (no pull towards the truth).
        init = Table({"x_0": [x_local - x0], "y_0": [y_local - y0]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            result = photometry(image[near], mask=mask[near], error=error[near], init_params=init)
        flux[i], flux_err[i] = float(result["flux_fit"][0]), float(result["flux_err"][0])
    segments = detect(image, variance, bad, float(np.median(stars["fwhm"])) if n else 1.0)
    ix = np.clip(np.round(np.asarray(stars["x"], np.float64)).astype(int) - bbox.x.start, 0, image.shape[1] - 1)
    iy = np.clip(np.round(np.asarray(stars["y"], np.float64)).astype(int) - bbox.y.start, 0, image.shape[0] - 1)
    measured = Table(stars, copy=True)
    measured["psf_flux"] = flux
    measured["psf_flux_err"] = flux_err
    with np.errstate(invalid="ignore", divide="ignore"):
        measured["pull"] = (flux - np.asarray(stars["flux"], np.float64)) / flux_err
    measured["detected"] = segments[iy, ix] > 0 if n else np.zeros(0, bool)
    return measured


def magnitude_edges(mags: FloatArray) -> FloatArray:
    """Equal-width magnitude bin edges covering ``mags``: ≈ √n bins (3 to 12), ≈ √n stars each."""
    mags = np.asarray(mags, np.float64)
    mags = mags[np.isfinite(mags)]
    if not len(mags):
        return np.array([0.0, 1.0])
    n_bins = int(np.clip(round(math.sqrt(len(mags))), 3, 12))
    lo, hi = float(mags.min()), float(mags.max())
    pad = max(1e-6, 1e-3 * (hi - lo))
    return np.linspace(lo - pad, hi + pad, n_bins + 1)


def summarise(label: str, measured: Table, edges: FloatArray) -> CatalogChecks:
    """Pull statistics and the completeness curve of measured stars."""
    pulls = np.asarray(measured["pull"], np.float64)
    pulls = pulls[np.isfinite(pulls)]
    n = len(pulls)
    std = float(np.std(pulls, ddof=1)) if n > 1 else math.nan
    summary = PullSummary(
        n=n, mean=float(np.mean(pulls)) if n else math.nan, mean_error=std / math.sqrt(n) if n else math.nan,
        std=std, std_error=std / math.sqrt(2 * (n - 1)) if n > 1 else math.nan, pulls=pulls,
    )
    mags = np.asarray(measured["mag"], np.float64)
    detected = np.asarray(measured["detected"], bool)
    n_injected, _ = np.histogram(mags, edges)
    n_detected, _ = np.histogram(mags[detected], edges)
    completeness = Completeness(edges=np.asarray(edges, np.float64), n_injected=n_injected, n_detected=n_detected,
                                threshold=DETECTION_THRESHOLD)
    return CatalogChecks(label=label, pulls=summary, completeness=completeness, stars=measured)


def neighbour_pull(
    other_model: FloatArray, variance: FloatArray, psf: object, x: FloatArray, y: FloatArray, fwhm: FloatArray,
    bbox: Box,
) -> FloatArray:
    """Flux shift [standard errors] that other sources' noiseless light ``other_model`` causes in each star's fit.

    For a PSF fit of flux only with weights ``1/V``, light ``O`` under the
    star shifts the flux by ``Σ(O·P/V)/Σ(P²/V)`` and the standard error is
    ``(ΣP²/V)^{-1/2}``, so the shift is ``Σ(O·P/V)/√(ΣP²/V)`` standard
    errors (over the fit box; P the PSF at the star).  NaN where the box
    leaves the image.
    """
    other_model = np.nan_to_num(np.asarray(other_model, np.float64))
    variance = np.asarray(variance, np.float64)
    ny, nx = other_model.shape
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        half = _fit_size(float(fwhm[i])) // 2
        ix, iy = round(float(x[i])) - bbox.x.start, round(float(y[i])) - bbox.y.start
        if ix - half < 0 or iy - half < 0 or ix + half >= nx or iy + half >= ny:
            continue
        box = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
        stellar = psf.compute_stellar_image(x=float(x[i]), y=float(y[i]))  # type: ignore[attr-defined]
        model = np.zeros((2 * half + 1, 2 * half + 1))
        sb = stellar.bbox
        bx0, by0 = ix + bbox.x.start - half, iy + bbox.y.start - half
        xs0, xs1 = max(sb.x.start, bx0), min(sb.x.stop, bx0 + 2 * half + 1)
        ys0, ys1 = max(sb.y.start, by0), min(sb.y.stop, by0 + 2 * half + 1)
        if xs1 <= xs0 or ys1 <= ys0:
            continue
        model[ys0 - by0 : ys1 - by0, xs0 - bx0 : xs1 - bx0] = np.asarray(stellar.array, np.float64)[
            ys0 - sb.y.start : ys1 - sb.y.start, xs0 - sb.x.start : xs1 - sb.x.start
        ]
        v = variance[box]
        ok = np.isfinite(v) & (v > 0)
        weight = np.where(ok, 1.0 / np.where(ok, v, 1.0), 0.0)
        out[i] = float(np.sum(other_model[box] * model * weight) / math.sqrt(max(float(np.sum(model**2 * weight)),
                                                                                   1e-300)))
    return out
