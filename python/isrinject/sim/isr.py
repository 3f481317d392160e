"""Physical detector + ISR simulator: the truth the injection is tested against.

The scene
---------
Let ``T(p)`` be the noiseless sky-flux image of all sources in nJy per pixel
(GalSim profiles convolved with the PSF, sampled at pixel centres), ``s`` the
sky level in electrons per pixel of unit throughput (`BAND_PARAMETERS`),
``f_t`` the true flat-field throughput and ``R`` the illumination correction
(``R ≡ 1`` unless ``do_illumination_correction``).  The photons see the
response ``f_t·R``, so the expected ISR-corrected pre-flat electrons are

    λ = f_t · R · (s + T / c0)                                   [e⁻]

with ``c0`` the photometric scaling in nJy/e⁻ (`photometric_scaling_njy_per_electron`).
The measured pre-flat signal of amplifier ``a`` is

    S = Poisson(λ) + Normal(0, σ_a²)                             [e⁻]

with the charge above the full well ``L_a = gain_a · saturation_a`` (ADU → e⁻)
bled along the column, half up and half down, within the amplifier (charge
conserved, what leaves the amplifier lost; `isrinject.engine.saturation.bleed_image`;
``do_bleed=False`` clips at ``L_a`` instead).  Photons of sources passed with ``sources=``
are drawn from their own random stream as ``Poisson(λ_src)`` and *added*
to the S of the same scene without them: simulating with and without
``sources`` and the same ``seed`` gives identical pixels except for the
added photons (and the saturation they cause).

ISR (doc/isrinject/design.md)
-----------------------------
With ``f``, ``V_f`` the *measured* flat and its variance, ``B = s·R`` the
smooth background in post-flat electrons and ``c`` the image units per
electron (``c0`` for nJy, 1 for electron):

    I = c · (S/f − B) / R
    V = (c/R)² · [ (S + σ_a²)/f²  +  (S/f)² · V_f/f² ]

then, as ``isrTaskLSST`` does, ``SATURATED`` where ``S ≥ L_a``, ``SUSPECT``
where ``S`` reaches the amplifier's suspect level (none unless the detector
has one), and with ``do_saturation_interpolation`` SATURATED grown by
``grow_saturation_footprint_size`` pixels and image and variance interpolated
along rows over it (``INTERPOLATED``;
`isrinject.engine.saturation.interpolate_over`, the same code the injection
uses).

A uniform source of true surface brightness ``T0`` therefore gives
``I = T0 · c/c0`` wherever the flat is right: this is how the illumination
correction is meant to work (the flat alone misses the factor ``R``).

Units: ``S``, ``λ``, ``B`` in electrons; ``I`` in nJy or electrons;
``V`` in ``I``'s unit squared.
"""

from __future__ import annotations

__all__ = [
    "BAND_PARAMETERS",
    "SIM_SOURCE_TYPES",
    "BandParameters",
    "SimulatedExposure",
    "illumination_correction",
    "mag_to_njy",
    "photometric_scaling_njy_per_electron",
    "simulate_exposure",
]

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import astropy.units as u
import galsim
import numpy as np
from astro_metadata_translator import ObservationInfo
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS
from lsst.images import (
    Box,
    Image,
    Mask,
    MaskedImage,
    MaskSchema,
    SkyProjection,
    VisitImage,
    get_legacy_optional_mask_planes,
    get_legacy_visit_image_mask_planes,
)
from lsst.images.cameras import Detector
from lsst.images.fields import ChebyshevField
from lsst.images.psfs import GaussianPointSpreadFunction

from ..engine.calibration import amplifier_index, amplifier_terms
from ..engine.saturation import bleed_image, grow_manhattan, interpolate_over
from .camera import COMCAM_FULL_WELL_ELECTRONS, make_comcam_detector
from .flat import measure_flat, true_flat

#: AB magnitude of 1 nJy: m = −2.5 log10(F_ν / (erg s⁻¹ cm⁻² Hz⁻¹)) − 48.6 gives
#: exactly 31.4 for 1 nJy = 10⁻³² erg s⁻¹ cm⁻² Hz⁻¹ (as astropy's ABmag and afw).
AB_MAG_OF_ONE_NJY: float = 31.4


@dataclasses.dataclass(frozen=True)
class BandParameters:
    """Per-band observing conditions of the simulator.

    Attributes
    ----------
    sky_electrons
        Sky level in pre-flat electrons per unit-throughput pixel for a 30 s
        exposure (u is read-noise dominated; y is bright).
    psf_fwhm_arcsec
        Seeing FWHM (arcsec) of the Gaussian PSF.
    zero_point_1s
        AB magnitude giving 1 e⁻/s (Rubin-like system throughput).
    """

    sky_electrons: float
    psf_fwhm_arcsec: float
    zero_point_1s: float


#: Sky, seeing and zero points per band (30 s exposure, 0.2"/px).
BAND_PARAMETERS: dict[str, BandParameters] = {
    "u": BandParameters(sky_electrons=80.0, psf_fwhm_arcsec=1.0, zero_point_1s=26.5),
    "g": BandParameters(sky_electrons=400.0, psf_fwhm_arcsec=0.9, zero_point_1s=28.3),
    "r": BandParameters(sky_electrons=900.0, psf_fwhm_arcsec=0.85, zero_point_1s=28.1),
    "i": BandParameters(sky_electrons=1500.0, psf_fwhm_arcsec=0.8, zero_point_1s=27.9),
    "z": BandParameters(sky_electrons=2500.0, psf_fwhm_arcsec=0.8, zero_point_1s=27.5),
    "y": BandParameters(sky_electrons=3500.0, psf_fwhm_arcsec=0.8, zero_point_1s=26.6),
}

#: Source types the simulator draws (lsst.source.injection vocabulary).
SIM_SOURCE_TYPES: tuple[str, ...] = (
    "Star",
    "DeltaFunction",
    "Gaussian",
    "Exponential",
    "DeVaucouleurs",
    "Sersic",
)

_REFERENCE_EXPOSURE_S = 30.0
_GSPARAMS = galsim.GSParams(maximum_fft_size=8192, folding_threshold=1e-3)


def _band(band: str) -> BandParameters:
    try:
        return BAND_PARAMETERS[band]
    except KeyError:
        raise ValueError(f"Unknown band {band!r}; expected one of {sorted(BAND_PARAMETERS)}.") from None


def mag_to_njy(mag: float | np.ndarray) -> float | np.ndarray:
    """AB magnitude → flux density in nJy: ``F = 10^(−0.4 (m − 31.4))`` nJy."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - AB_MAG_OF_ONE_NJY))


def photometric_scaling_njy_per_electron(band: str, exposure_time_s: float = 30.0) -> float:
    """Photometric scaling ``c0`` in nJy per pre-flat electron (unit throughput).

    ``c0 = 10^(−0.4 (ZP₁ + 2.5 log10 t − 31.4))`` with ``ZP₁`` the 1 e⁻/s AB
    zero point of the band and ``t`` the exposure time [s].  For 30 s:
    u ≈ 3.0, g ≈ 0.58, r ≈ 0.69, i ≈ 0.83, z ≈ 1.2, y ≈ 2.7 nJy/e⁻.
    """
    if not (math.isfinite(exposure_time_s) and exposure_time_s > 0):
        raise ValueError(f"exposure_time_s must be finite and > 0; got {exposure_time_s!r}.")
    zp = _band(band).zero_point_1s + 2.5 * math.log10(exposure_time_s)
    return float(10.0 ** (-0.4 * (zp - AB_MAG_OF_ONE_NJY)))


def illumination_correction(
    shape: tuple[int, int], rng: np.random.Generator, amplitude: float = 0.05
) -> np.ndarray:
    """Smooth illumination correction ``R`` (dimensionless, mean 1).

    ``R = 1 + a·P(x̂, ŷ) / max|P|`` with ``P`` a random quadratic polynomial in
    the coordinates scaled to [−1, 1], then normalised to mean 1; the
    peak deviation is ≈ ``amplitude``.
    """
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    xs = 2 * xx / max(nx - 1, 1) - 1
    ys = 2 * yy / max(ny - 1, 1) - 1
    coef = rng.normal(size=5)
    poly = coef[0] * xs + coef[1] * ys + coef[2] * xs**2 + coef[3] * ys**2 + coef[4] * xs * ys
    poly /= max(np.abs(poly).max(), 1e-12)
    r = 1.0 + amplitude * poly
    return r / r.mean()


@dataclasses.dataclass
class SimulatedExposure:
    """A simulated post-ISR exposure and every intermediate quantity.

    Attributes
    ----------
    visit_image
        The calibrated image ``I`` with variance ``V`` and masks.
    flat
        Measured flat ``f`` (image) and ``V_f`` (variance), dimensionless.
    illumination
        Illumination correction ``R`` or `None` when not applied (R ≡ 1).
    background_electrons
        ``B``: background subtracted, post-flat electrons.
    pre_flat_electrons
        ``S``: noisy ISR-corrected pre-flat electrons (incl. read noise), after the bleed.
    expected_pre_flat_electrons
        ``λ``: noiseless pre-flat electrons.
    scaling
        ``c``: image units per electron (c0 for nJy, 1 for electron).
    photometric_scaling_njy_per_electron
        ``c0`` [nJy/e⁻].
    read_noise_map
        ``σ_a`` per pixel [e⁻].
    saturation_map_electrons
        Full well per pixel, ``gain_a·saturation_a`` [e⁻].
    true_flat
        Physical flat ``f_t`` the photons saw (times R).
    source_model_njy
        ``T``: noiseless image of all sources [nJy per pixel].
    truth_catalog
        Every drawn source: ``x, y, ra, dec, source_type, mag, flux_njy,
        n, half_light_radius, q, beta, origin`` (``background``/``added``).
    added_electrons
        Photons from ``sources=`` (before the bleed or clipping) [e⁻].
    """

    visit_image: VisitImage
    flat: MaskedImage
    illumination: np.ndarray | None
    background_electrons: np.ndarray
    pre_flat_electrons: np.ndarray
    expected_pre_flat_electrons: np.ndarray
    scaling: float
    photometric_scaling_njy_per_electron: float
    read_noise_map: np.ndarray
    saturation_map_electrons: np.ndarray
    true_flat: np.ndarray
    source_model_njy: np.ndarray
    truth_catalog: Table
    added_electrons: np.ndarray

    @property
    def illumination_or_ones(self) -> np.ndarray:
        """``R`` as an array (ones when no illumination correction)."""
        if self.illumination is None:
            return np.ones_like(self.pre_flat_electrons)
        return self.illumination

    @property
    def truth_image(self) -> np.ndarray:
        """Noiseless sky-subtracted image of the sources in image units, ``T·c/c0``."""
        return self.source_model_njy * (self.scaling / self.photometric_scaling_njy_per_electron)


def _mask_schema() -> MaskSchema:
    planes = list(get_legacy_visit_image_mask_planes().values())
    planes += list(get_legacy_optional_mask_planes().values())
    return MaskSchema(planes)


def _make_wcs(shape: tuple[int, int], ra_dec: tuple[float, float], pixel_scale_arcsec: float) -> WCS:
    """TAN WCS, north up, east left, reference pixel at the detector centre."""
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [float(ra_dec[0]), float(ra_dec[1])]
    wcs.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    scale = pixel_scale_arcsec / 3600.0
    wcs.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
    wcs.wcs.cunit = ["deg", "deg"]
    return wcs


def _galsim_wcs(wcs: WCS) -> galsim.GSFitsWCS:
    """The same TAN WCS as a GalSim WCS (FITS 1-based pixel convention)."""
    cd = wcs.wcs.cd
    header = {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": wcs.wcs.crval[0],
        "CRVAL2": wcs.wcs.crval[1],
        "CRPIX1": wcs.wcs.crpix[0],
        "CRPIX2": wcs.wcs.crpix[1],
        "CD1_1": cd[0, 0],
        "CD1_2": cd[0, 1],
        "CD2_1": cd[1, 0],
        "CD2_2": cd[1, 1],
    }
    return galsim.GSFitsWCS(header=header)


def _random_background_catalog(
    rng: np.random.Generator, shape: tuple[int, int], n_stars: int, n_galaxies: int
) -> list[dict[str, Any]]:
    """Stars (16 < m < 24) and galaxies (19 < m < 24), counts ∝ 10^(0.3 m)."""

    def power_law_mags(n: int, lo: float, hi: float) -> np.ndarray:
        a = 0.3 * math.log(10)
        uu = rng.uniform(size=n)
        return np.log(np.exp(a * lo) + uu * (np.exp(a * hi) - np.exp(a * lo))) / a

    ny, nx = shape
    rows: list[dict[str, Any]] = []
    for m in power_law_mags(n_stars, 16.0, 24.0):
        rows.append(
            {
                "x": rng.uniform(-5, nx + 4),
                "y": rng.uniform(-5, ny + 4),
                "source_type": "Star",
                "mag": float(m),
            }
        )
    for m in power_law_mags(n_galaxies, 19.0, 24.0):
        kind = ("Sersic", "Exponential", "DeVaucouleurs")[int(rng.integers(3))]
        rows.append(
            {
                "x": rng.uniform(-5, nx + 4),
                "y": rng.uniform(-5, ny + 4),
                "source_type": kind,
                "mag": float(m),
                "n": float(rng.uniform(0.7, 3.0)) if kind == "Sersic" else math.nan,
                "half_light_radius": float(np.clip(rng.lognormal(math.log(0.6), 0.5), 0.2, 2.0)),
                "q": float(rng.uniform(0.3, 1.0)),
                "beta": float(rng.uniform(0.0, 180.0)),
            }
        )
    return rows


def _table_rows(sources: Table, wcs: WCS) -> list[dict[str, Any]]:
    """Validate an injection-style catalog and return rows with pixel positions."""
    columns = set(sources.colnames)
    if "source_type" not in columns or "mag" not in columns:
        raise ValueError(f"sources needs columns 'source_type' and 'mag'; got {sorted(columns)}.")
    if {"ra", "dec"} <= columns:
        x, y = wcs.world_to_pixel(
            SkyCoord(np.asarray(sources["ra"], float) * u.deg, np.asarray(sources["dec"], float) * u.deg)
        )
        x, y = np.atleast_1d(x), np.atleast_1d(y)
    elif {"x", "y"} <= columns:
        x, y = np.asarray(sources["x"], float), np.asarray(sources["y"], float)
    else:
        raise ValueError(f"sources needs (ra, dec) or (x, y) columns; got {sorted(columns)}.")
    rows = []
    for i, record in enumerate(sources):
        row: dict[str, Any] = {}
        for key in ("n", "half_light_radius", "q", "beta"):
            if key in columns and not np.ma.is_masked(record[key]):
                row[key] = float(record[key])
        row.update(
            x=float(x[i]),
            y=float(y[i]),
            source_type=str(record["source_type"]).strip(),
            mag=float(record["mag"]),
        )
        if not math.isfinite(row["mag"]):
            raise ValueError(f"sources row {i}: mag must be finite; got {row['mag']!r}.")
        if not (math.isfinite(row["x"]) and math.isfinite(row["y"])):
            raise ValueError(f"sources row {i}: position is not finite (x={row['x']!r}, y={row['y']!r}).")
        rows.append(row)
    return rows


def _profile(row: Mapping[str, Any], flux: float) -> galsim.GSObject:
    """Pre-PSF profile of a row in sky coordinates (arcsec); ``q``/``beta`` [deg] shear it."""
    kind = row["source_type"]
    if kind not in SIM_SOURCE_TYPES:
        raise ValueError(f"source_type {kind!r} is not simulated; expected one of {SIM_SOURCE_TYPES}.")
    if kind in ("Star", "DeltaFunction"):
        return galsim.DeltaFunction(flux=flux, gsparams=_GSPARAMS)
    hlr = float(row.get("half_light_radius", math.nan))
    if not (math.isfinite(hlr) and hlr > 0):
        raise ValueError(f"source_type {kind!r} needs half_light_radius > 0 [arcsec]; got {hlr!r}.")
    if kind == "Sersic":
        n = float(row.get("n", math.nan))
        if not (0.3 <= n <= 6.2):
            raise ValueError(f"Sersic index n must be in [0.3, 6.2]; got {n!r}.")
        profile = galsim.Sersic(n=n, half_light_radius=hlr, flux=flux, gsparams=_GSPARAMS)
    else:
        profile = getattr(galsim, kind)(half_light_radius=hlr, flux=flux, gsparams=_GSPARAMS)
    q = float(row.get("q", 1.0))
    if not (0 < q <= 1):
        raise ValueError(f"axis ratio q must be in (0, 1]; got {q!r}.")
    if q < 1:
        profile = profile.shear(q=q, beta=float(row.get("beta", 0.0)) * galsim.degrees)
    return profile


def _draw_rows(
    rows: list[dict[str, Any]], shape: tuple[int, int], gs_wcs: galsim.BaseWCS, psf_sigma: float
) -> np.ndarray:
    """Draw rows (flux in nJy) into an (ny, nx) array, PSF ⊗ profile sampled at pixel centres.

    Profiles are mapped to pixel coordinates with the local WCS Jacobian at
    each source and convolved with a pixel-space Gaussian of σ = ``psf_sigma``;
    drawing uses ``method="no_pixel"`` because the PSF already includes the
    pixel (as the VisitImage's `GaussianPointSpreadFunction` kernel does).
    Flux falling off the detector is lost.
    """
    ny, nx = shape
    out = galsim.ImageD(nx, ny, xmin=0, ymin=0)
    psf = galsim.Gaussian(sigma=psf_sigma, gsparams=_GSPARAMS)
    for row in rows:
        x, y = row["x"], row["y"]
        jac = gs_wcs.jacobian(image_pos=galsim.PositionD(x + 1.0, y + 1.0))
        obj = galsim.Convolve(jac.toImage(_profile(row, row["flux_njy"])), psf)
        half = min(math.ceil(max(obj.getGoodImageSize(1.0) / 2.0, 6.0 * psf_sigma)), 512)
        ix, iy = round(x), round(y)
        bounds = galsim.BoundsI(ix - half, ix + half, iy - half, iy + half) & out.bounds
        if not bounds.isDefined():
            continue
        stamp = out[bounds]
        stamp += obj.drawImage(
            image=stamp.copy(), center=galsim.PositionD(x, y), scale=1.0, method="no_pixel"
        )
    return out.array.copy()


def _obs_info(
    *,
    instrument: str,
    band: str,
    visit: int,
    detector: int,
    exposure_time_s: float,
    obs_time: Time,
    ra_dec: tuple[float, float],
) -> ObservationInfo:
    begin = obs_time.tai
    return ObservationInfo.makeObservationInfo(
        instrument=instrument,
        physical_filter=f"{band}_sim",
        exposure_time=exposure_time_s * u.s,
        exposure_time_requested=exposure_time_s * u.s,
        datetime_begin=begin,
        datetime_end=begin + exposure_time_s * u.s,
        detector_num=int(detector),
        visit_id=int(visit),
        exposure_id=int(visit),
        observation_id=f"{instrument}_{visit}",
        observation_type="science",
        tracking_radec=SkyCoord(ra_dec[0] * u.deg, ra_dec[1] * u.deg),
        has_simulated_content=True,
    )


def _checked_settings(
    band: str,
    units: str,
    shape: tuple[int, int],
    pixel_scale_arcsec: float,
    psf_sigma_pixels: float | None,
    sky_electrons: float | None,
    exposure_time_s: float,
) -> tuple[tuple[int, int], float, float]:
    """Validate `simulate_exposure`'s settings; return ``(ny, nx)``, the PSF σ
    [pixels] and the sky [e⁻] with the band's defaults filled in."""
    params = _band(band)
    if units not in ("electron", "nJy"):
        raise ValueError(f"units must be 'electron' or 'nJy'; got {units!r}.")
    ny, nx = (int(v) for v in shape)
    if ny < 16 or nx < 16:
        raise ValueError(f"shape must be at least 16×16; got {shape!r}.")
    if not (math.isfinite(pixel_scale_arcsec) and pixel_scale_arcsec > 0):
        raise ValueError(f"pixel_scale_arcsec must be finite and > 0; got {pixel_scale_arcsec!r}.")
    if psf_sigma_pixels is None:
        psf_sigma_pixels = (
            params.psf_fwhm_arcsec / (2.0 * math.sqrt(2.0 * math.log(2.0))) / pixel_scale_arcsec
        )
    if not (math.isfinite(psf_sigma_pixels) and psf_sigma_pixels > 0):
        raise ValueError(f"psf_sigma_pixels must be finite and > 0; got {psf_sigma_pixels!r}.")
    if sky_electrons is None:
        sky_electrons = params.sky_electrons * exposure_time_s / _REFERENCE_EXPOSURE_S
    if not (math.isfinite(sky_electrons) and sky_electrons >= 0):
        raise ValueError(f"sky_electrons must be finite and >= 0; got {sky_electrons!r}.")
    return (ny, nx), psf_sigma_pixels, sky_electrons


def _amplifier_maps(detector: Detector, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel read noise σ_a [e⁻] and full well ``amp_gain·saturation`` [e⁻]
    of the detector's amplifiers, as the injection reads them (`amplifier_terms`)."""
    terms = amplifier_terms(detector, Box.from_shape(shape))
    amp_index = amplifier_index([t.bbox for t in terms], Box.from_shape(shape))
    read_noise_map = np.array([t.read_noise for t in terms])[amp_index]
    saturation_map = np.array([t.saturation for t in terms])[amp_index]
    return read_noise_map, saturation_map


def _saturate(
    s: np.ndarray, saturation_map: np.ndarray, detector: Detector, shape: tuple[int, int], do_bleed: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-flat electrons after the full well: bled along the columns of each
    amplifier (or clipped), and where they are at the level (ISR's SAT)."""
    saturated = s > saturation_map
    if not saturated.any():
        return s, saturated
    if not do_bleed:
        return np.where(saturated, saturation_map, s), saturated
    image_bbox = Box.from_shape(shape)
    slices = []
    for amp in detector.amplifiers:
        sl = amp.bbox.intersection(image_bbox).slice_within(image_bbox)
        slices.append((sl.y, sl.x))
    bled = bleed_image(s, saturation_map, slices)
    return bled.electrons, bled.at_level


def _suspect_map(detector: Detector, shape: tuple[int, int]) -> np.ndarray:
    """Suspect level per pixel [pre-flat e⁻] (+inf where the amplifier has none)."""
    terms = amplifier_terms(detector, Box.from_shape(shape))
    return np.array([t.suspect for t in terms])[amplifier_index([t.bbox for t in terms], Box.from_shape(shape))]


def _isr_saturation(
    image: np.ndarray,
    variance: np.ndarray,
    saturated: np.ndarray,
    bad: np.ndarray,
    s: np.ndarray,
    suspect_map: np.ndarray,
    interpolate: bool,
    grow: int,
) -> dict[str, np.ndarray]:
    """ISR's SAT, SUSPECT and interpolation of the saturated pixels (in place on
    ``image`` and ``variance``); the mask planes it sets."""
    masks = {"SUSPECT": s >= suspect_map}
    if not interpolate:
        return masks
    grown = grow_manhattan(saturated, grow)
    masks["SATURATED"] = grown
    masks["INTERPOLATED"] = interpolate_over(image, variance, grown, bad)
    return masks


def _flats(
    shape: tuple[int, int],
    band: str,
    boxes: list[Box],
    flat: tuple[np.ndarray, np.ndarray] | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the true throughput ``f_t`` and the measured flat ``f``, ``V_f``.

    Simulated (`true_flat`, `measure_flat`) when ``flat`` is `None`;
    otherwise ``flat`` is the measurement and ``f_t ~ Normal(f, V_f)``
    (clipped at 10⁻³).
    """
    if flat is None:
        f_true = true_flat(shape, band=band, amp_boxes=boxes, rng=rng)
        f_meas, var_f = measure_flat(f_true, rng=rng)
        return f_true, f_meas, var_f
    f_meas, var_f = (np.array(a, dtype=float) for a in flat)
    if f_meas.shape != shape or var_f.shape != shape:
        raise ValueError(f"flat arrays must have shape {shape}; got {f_meas.shape} and {var_f.shape}.")
    if not np.all(np.isfinite(f_meas) & (f_meas > 0)) or not np.all(np.isfinite(var_f) & (var_f >= 0)):
        raise ValueError("flat must be finite and > 0 and its variance finite and >= 0 everywhere.")
    f_true = np.maximum(f_meas + np.sqrt(var_f) * rng.standard_normal(shape), 1e-3)
    return f_true, f_meas, var_f


@dataclasses.dataclass(frozen=True)
class _Scene:
    """The simulated sources: catalog rows and their noiseless images [nJy per pixel]."""

    background_rows: list[dict[str, Any]]
    added_rows: list[dict[str, Any]]
    background_model: np.ndarray
    added_model: np.ndarray


def _draw_scene(
    shape: tuple[int, int],
    wcs: WCS,
    psf_sigma_pixels: float,
    sources: Table | None,
    n_background_stars: int,
    n_background_galaxies: int,
    rng: np.random.Generator,
    background_sources: Table | None = None,
) -> _Scene:
    """Draw the random background scene (plus ``background_sources``) and the added ``sources`` (PSF-convolved)."""
    gs_wcs = _galsim_wcs(wcs)
    background_rows = _random_background_catalog(rng, shape, n_background_stars, n_background_galaxies)
    if background_sources is not None:
        background_rows += _table_rows(background_sources, wcs)
    added_rows = _table_rows(sources, wcs) if sources is not None else []
    for origin, rows in (("background", background_rows), ("added", added_rows)):
        for row in rows:
            row["flux_njy"] = float(mag_to_njy(row["mag"]))
            row["origin"] = origin
    background_model = _draw_rows(background_rows, shape, gs_wcs, psf_sigma_pixels)
    added_model = _draw_rows(added_rows, shape, gs_wcs, psf_sigma_pixels) if added_rows else np.zeros(shape)
    return _Scene(background_rows, added_rows, background_model, added_model)


def _defect_masks(
    shape: tuple[int, int], defects: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``NO_DATA`` (top 4 rows) and ``BAD`` (two random columns) masks; empty without ``defects``."""
    no_data = np.zeros(shape, dtype=bool)
    bad = np.zeros(shape, dtype=bool)
    if defects:
        no_data[-4:, :] = True
        bad[:, rng.choice(shape[1], size=2, replace=False)] = True
    return no_data, bad


def _truth_table(rows: list[dict[str, Any]], wcs: WCS) -> Table:
    """The truth catalog of every simulated source (NaN for absent shape parameters)."""
    ra, dec = wcs.pixel_to_world_values([r["x"] for r in rows], [r["y"] for r in rows]) if rows else ([], [])
    return Table(
        {
            "x": [r["x"] for r in rows],
            "y": [r["y"] for r in rows],
            "ra": np.asarray(ra, dtype=float),
            "dec": np.asarray(dec, dtype=float),
            "source_type": [r["source_type"] for r in rows],
            "mag": [r["mag"] for r in rows],
            "flux_njy": [r["flux_njy"] for r in rows],
            "n": [r.get("n", math.nan) for r in rows],
            "half_light_radius": [r.get("half_light_radius", math.nan) for r in rows],
            "q": [r.get("q", math.nan) for r in rows],
            "beta": [r.get("beta", math.nan) for r in rows],
            "origin": [r["origin"] for r in rows],
        }
    )


def _isr(
    s: np.ndarray,
    f_meas: np.ndarray,
    var_f: np.ndarray,
    r_map: np.ndarray,
    background: np.ndarray,
    read_noise_map: np.ndarray,
    c: float,
    no_data: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """What ISR and calibration make of the pre-flat electrons ``S`` (doc/isrinject/design.md):

        I = c · (S/f − B) / R
        V = (c/R)² · [ (S + σ_a²)/f²  +  (S/f)² · V_f/f² ]

    NaN where no photons were collected (``NO_DATA``).
    """
    image = c * (s / f_meas - background) / r_map
    variance = (c / r_map) ** 2 * (
        (s + read_noise_map**2) / f_meas**2 + (s / f_meas) ** 2 * var_f / f_meas**2
    )
    image[no_data] = np.nan
    variance[no_data] = np.nan
    return image, variance


def _visit_and_flat_images(
    image: np.ndarray,
    variance: np.ndarray,
    f_meas: np.ndarray,
    var_f: np.ndarray,
    *,
    masks: dict[str, np.ndarray],
    unit: u.UnitBase,
    wcs: WCS,
    detector: Detector,
    psf_sigma_pixels: float,
    njy_per_electron: float,
    band: str,
    obs_info: ObservationInfo,
) -> tuple[VisitImage, MaskedImage]:
    """The float32 `VisitImage` (masks, TAN projection, Gaussian PSF, constant
    photometric scaling c0 [nJy/e⁻]) and the measured flat as a `MaskedImage`."""
    ny, nx = image.shape
    bbox = Box.factory[0:ny, 0:nx]
    schema = _mask_schema()
    mask = Mask(schema=schema, bbox=bbox)
    for name, plane in masks.items():
        mask.set(name, plane)
    stamp_size = 2 * math.ceil(5 * psf_sigma_pixels) + 1
    visit_image = VisitImage(
        Image(image.astype(np.float32), bbox=bbox, unit=unit),
        mask=mask,
        variance=Image(variance.astype(np.float32), bbox=bbox, unit=unit**2),
        sky_projection=SkyProjection.from_fits_wcs(wcs, detector.frame, pixel_bounds=bbox),
        obs_info=obs_info,
        photometric_scaling=ChebyshevField(bbox, np.array([[njy_per_electron]]), unit=u.nJy / u.electron),
        psf=GaussianPointSpreadFunction(psf_sigma_pixels, bounds=bbox, stamp_size=stamp_size),
        detector=detector,
        band=band,
    )
    flat_image = MaskedImage(
        Image(f_meas.astype(np.float32), bbox=bbox),
        variance=Image(var_f.astype(np.float32), bbox=bbox),
        mask_schema=schema,
    )
    return visit_image, flat_image


def simulate_exposure(
    *,
    band: str,
    visit: int,
    detector: int,
    shape: tuple[int, int] = (512, 512),
    seed: int,
    units: Literal["electron", "nJy"] = "nJy",
    do_illumination_correction: bool = False,
    sources: Table | None = None,
    n_background_stars: int = 30,
    n_background_galaxies: int = 20,
    instrument: str = "ISRSim",
    flat: tuple[np.ndarray, np.ndarray] | None = None,
    psf_sigma_pixels: float | None = None,
    sky_electrons: float | None = None,
    ra_dec_center: tuple[float, float] = (150.0, 2.0),
    pixel_scale_arcsec: float = 0.2,
    exposure_time_s: float = 30.0,
    obs_time: Time | None = None,
    add_noise: bool = True,
    defects: bool = False,
    full_well_electrons: float | None = None,
    do_bleed: bool = True,
    do_saturation_interpolation: bool = True,
    grow_saturation_footprint_size: int = 1,
    suspect_electrons: float | None = None,
    background_sources: Table | None = None,
) -> SimulatedExposure:
    """Simulate a post-ISR Rubin visit image of a random scene (see module docstring).

    Parameters
    ----------
    band
        One of ``u g r i z y``.
    visit, detector
        IDs for the detector frame, obs_info and DetectorFrame.
    shape
        ``(ny, nx)``; the detector has 2 × 8 amplifiers with ComCam R22 S11
        gains and read noises.
    seed
        Seeds independent streams for the flat, the scene, the illumination,
        the photon noise, the read noise and the added sources.
    units
        ``"nJy"`` (c = c0) or ``"electron"`` (c = 1).
    do_illumination_correction
        Simulate and correct a smooth illumination ``R`` (±5 %).
    sources
        Extra sources put physically into the pre-flat electrons: columns
        ``source_type`` (`SIM_SOURCE_TYPES`), ``mag`` (AB), ``ra``/``dec``
        [deg] or ``x``/``y`` [pixels], and ``n``, ``half_light_radius``
        [arcsec], ``q``, ``beta`` [deg] as needed.
    n_background_stars, n_background_galaxies
        Size of the random scene.
    flat
        Measured ``(f, V_f)``.  The true throughput is then drawn as
        ``f_t ~ Normal(f, V_f)`` (clipped > 0); when `None` a flat is
        simulated with `true_flat` and `measure_flat` (N=20, 5×10⁴ e⁻).
    psf_sigma_pixels
        Gaussian PSF σ [pixels] (constant over the detector: lsst.images only
        has a constant `GaussianPointSpreadFunction`); default from the band's
        seeing.
    sky_electrons
        Sky per unit-throughput pixel [e⁻]; default from `BAND_PARAMETERS`
        scaled by ``exposure_time_s / 30``.
    add_noise
        If `False`, ``S = λ`` (no photon or read noise), saturation still applies.
    defects
        Mark two random columns ``BAD`` and the top 4 rows ``NO_DATA``
        (image and variance NaN there; no photons collected).
    full_well_electrons
        Saturation level in pre-flat electrons (default 1.2 × 10⁵).
    do_bleed
        Bleed the charge above the full well along the columns (else clip it).
    do_saturation_interpolation, grow_saturation_footprint_size
        ISR's interpolation over the grown SATURATED pixels (see the module
        docstring).
    suspect_electrons
        Suspect level of every amplifier in pre-flat electrons (SUSPECT at or
        above it); `None`: none.
    background_sources
        Sources of the scene itself (the same columns as ``sources``): drawn
        with the random background, so they are part of the observed image
        (real sources at chosen positions and magnitudes).

    Returns
    -------
    exposure
        `SimulatedExposure` with the VisitImage and every ISR intermediate.

    Raises
    ------
    ValueError
        Unknown band/units, bad shapes or source rows (the message quotes the value).
    """
    shape, psf_sigma_pixels, sky_electrons = _checked_settings(
        band, units, shape, pixel_scale_arcsec, psf_sigma_pixels, sky_electrons, exposure_time_s
    )
    c0 = photometric_scaling_njy_per_electron(band, exposure_time_s)
    c = c0 if units == "nJy" else 1.0
    if obs_time is None:
        obs_time = Time("2024-11-20T03:00:00", scale="tai")

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(7)]
    rng_flat, rng_scene, rng_illum, rng_photons, rng_read, rng_added, rng_defects = streams

    detector_obj = make_comcam_detector(
        instrument=instrument,
        detector_id=detector,
        shape=shape,
        visit=visit,
        full_well_electrons=COMCAM_FULL_WELL_ELECTRONS if full_well_electrons is None else full_well_electrons,
        suspect_electrons=suspect_electrons,
    )
    read_noise_map, saturation_map = _amplifier_maps(detector_obj, shape)
    boxes = [a.bbox for a in detector_obj.amplifiers]
    f_true, f_meas, var_f = _flats(shape, band, boxes, flat, rng_flat)
    illum = illumination_correction(shape, rng_illum) if do_illumination_correction else None
    r_map = illum if illum is not None else np.ones(shape)

    wcs = _make_wcs(shape, ra_dec_center, pixel_scale_arcsec)
    scene = _draw_scene(
        shape, wcs, psf_sigma_pixels, sources, int(n_background_stars), int(n_background_galaxies), rng_scene,
        background_sources,
    )
    no_data, bad = _defect_masks(shape, defects, rng_defects)
    response = np.where(no_data, 0.0, f_true * r_map)

    # Pre-flat electrons: λ from the scene, then Poisson photons and read noise.
    lam_base = response * (sky_electrons + scene.background_model / c0)
    lam_added = response * np.maximum(scene.added_model, 0.0) / c0
    if add_noise:
        s_base = rng_photons.poisson(lam_base).astype(float)
        s_base += read_noise_map * rng_read.standard_normal(shape)
        n_added = rng_added.poisson(lam_added).astype(float) if scene.added_rows else np.zeros(shape)
    else:
        s_base = lam_base.copy()
        n_added = lam_added.copy()
    s = s_base + n_added
    s, saturated = _saturate(s, saturation_map, detector_obj, shape, do_bleed)

    background = sky_electrons * r_map
    image, variance = _isr(s, f_meas, var_f, r_map, background, read_noise_map, c, no_data)
    masks = {"SATURATED": saturated, "NO_DATA": no_data, "BAD": bad}
    if saturated.any():
        masks.update(_isr_saturation(
            image, variance, saturated, bad, s, _suspect_map(detector_obj, shape),
            do_saturation_interpolation, grow_saturation_footprint_size,
        ))
    visit_image, flat_image = _visit_and_flat_images(
        image, variance, f_meas, var_f,
        masks=masks,
        unit=u.nJy if units == "nJy" else u.electron,
        wcs=wcs, detector=detector_obj, psf_sigma_pixels=psf_sigma_pixels, njy_per_electron=c0, band=band,
        obs_info=_obs_info(
            instrument=instrument,
            band=band,
            visit=visit,
            detector=detector,
            exposure_time_s=exposure_time_s,
            obs_time=obs_time,
            ra_dec=ra_dec_center,
        ),
    )
    return SimulatedExposure(
        visit_image=visit_image,
        flat=flat_image,
        illumination=illum,
        background_electrons=background,
        pre_flat_electrons=s,
        expected_pre_flat_electrons=lam_base + lam_added,
        scaling=c,
        photometric_scaling_njy_per_electron=c0,
        read_noise_map=read_noise_map,
        saturation_map_electrons=saturation_map,
        true_flat=f_true,
        source_model_njy=scene.background_model + scene.added_model,
        truth_catalog=_truth_table(scene.background_rows + scene.added_rows, wcs),
        added_electrons=n_added,
    )
