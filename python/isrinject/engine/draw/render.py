"""Noiseless model stamps: checked source → GalSim profile ⊗ image PSF → pixels.

Each source is drawn in *image units* at its sub-pixel position with the
visit image's own PSF evaluated there (``psf.compute_kernel_image``) and the
local affine approximation of the image's sky projection, exactly as
``lsst.source.injection`` does (``method="no_pixel"``: the PSF image already
contains the pixel response).  The ``calib_flux_radius`` convention is
source_injection's: the catalog flux is the flux inside a circular aperture of
that radius around a point source, so the total drawn flux is
``F / A(r)`` where ``A(r)`` is the fraction of the PSF inside radius ``r``.
"""

from __future__ import annotations

__all__ = [
    "FITS_ALIGNMENTS",
    "DrawnStamp",
    "FitsAlignment",
    "RenderSettings",
    "draw_source",
    "source_profile",
]

import dataclasses
from typing import Literal

import galsim
import numpy as np
from lsst.images import Box, NoOverlapError, SkyProjection
from lsst.images.psfs import PointSpreadFunction

from ..flags import InjectionFlag
from .extent import DEFAULT_STAMP_FLUX_ERROR_FRACTION, centred_crop, stamp_half_width
from .fast import fft_grid_size, fft_stamp
from .geometry import aperture_fraction, odd_size
from .profiles import SourceSpec, profile_parameters
from .psf_cache import DEFAULT_SPACING, PsfCache
from .stellar import stellar_stamp

#: How Stamp sources (FITS images) are placed on the image.
type FitsAlignment = Literal["pixel", "wcs"]

#: Every `FitsAlignment` and what it means (the config's choices).
FITS_ALIGNMENTS: dict[FitsAlignment, str] = {
    "pixel": "Stamp pixels map onto image pixels.",
    "wcs": "Honour the stamp's FITS WCS.",
}


@dataclasses.dataclass(frozen=True)
class RenderSettings:
    """How stamps are drawn (the task's config, as plain values)."""

    calib_flux_radius: float | None = 12.0
    """Aperture radius [pixels] of the photometric calibration, or `None`
    for total flux."""
    max_draw_size: int = 1001
    """Largest stamp side [pixels]; bigger automatic sizes are clipped."""
    stamp_size_factor: float = 1.5
    """Largest automatic stamp side = this × GalSim's ``getGoodImageSize``
    (so that ≥ 99.9 % of an extended profile's flux lands in the stamp); the
    automatic side itself when ``stamp_noise_fraction <= 0``."""
    stamp_noise_fraction: float = 0.0
    """t of the noise-aware extent (`isrinject.engine.draw.extent`): the
    stamp stops where the model falls below t × the local sky σ; ``<= 0``
    (or no finite σ) draws every automatic stamp on the upper bound."""
    stamp_flux_error_fraction: float = DEFAULT_STAMP_FLUX_ERROR_FRACTION
    """ε of the noise-aware extent: the stamp also holds all but ε × σ_F of
    the model's flux (σ_F the source's sky-limited flux error)."""
    fits_alignment: FitsAlignment = "pixel"
    """``pixel``: a Stamp's pixels map onto image pixels; ``wcs``: its FITS
    WCS is honoured."""
    psf_cache_spacing: float = DEFAULT_SPACING
    """Grid [pixels] on which the PSF and the local Jacobian are evaluated
    and reused (`isrinject.engine.draw.psf_cache`); ``<= 0`` evaluates both at each
    source position."""


@dataclasses.dataclass
class DrawnStamp:
    """A noiseless model stamp in image units, clipped to the image."""

    bbox: Box | None
    """Absolute pixel box of ``model`` (the drawn stamp ∩ image), or `None`."""
    model: np.ndarray | None
    """Noiseless model M [image units] on ``bbox``."""
    draw_size: int
    """Side of the full (unclipped) stamp [pixels]."""
    total_flux: float
    """Flux the profile carries [image units] (after ``calib_flux_radius``;
    for a ``Trail``, per pixel of length)."""
    flags: InjectionFlag = InjectionFlag(0)
    profile_flux: float = float("nan")
    """The whole profile's flux [image units] (``total_flux`` × length for
    a ``Trail``), which ``model`` would sum to on an unbounded stamp."""

    @property
    def truncated_fraction(self) -> float:
        """Fraction of ``profile_flux`` not in ``model`` (outside the stamp or off the image)."""
        if self.model is None or not np.isfinite(self.profile_flux) or self.profile_flux == 0:
            return float("nan")
        return float(1.0 - self.model.sum() / self.profile_flux)


def source_profile(
    source: SourceSpec, flux: float, jacobian: galsim.JacobianWCS, settings: RenderSettings
) -> galsim.GSObject:
    """Build the (pre-PSF) surface-brightness profile of one source.

    Parameters
    ----------
    source
        The checked source (`isrinject.engine.catalog.check_catalog`).
    flux
        Total flux [image units] (for ``Trail``: flux per pixel of length).
    jacobian
        Local pixel → sky map at the source position.
    settings
        FITS alignment of Stamp sources.

    Raises
    ------
    OSError
        A ``Stamp`` file cannot be read as a FITS image.
    galsim.GalSimError, ValueError, TypeError
        GalSim rejects the parameters.
    """
    if source.source_type == "Stamp":
        stamp = galsim.fits.read(source.stamp_path, read_header=True)
        if settings.fits_alignment == "pixel":
            stamp.wcs = jacobian
        return galsim.InterpolatedImage(stamp, calculate_stepk=False).withFlux(flux)
    if source.source_type == "Trail":
        length = float(source.arguments["trail_length"])
        # A line thinner than a pixel, defined in pixel coordinates, then
        # mapped to the sky; its flux is per pixel of length (as upstream).
        trail = galsim.Box(length, 1e-6)
        if "beta" in source.arguments:
            trail = trail.rotate(float(source.arguments["beta"]) * galsim.degrees)
        return jacobian.toWorld(trail).withFlux(flux * length)
    angles = profile_parameters(source.source_type).angles
    arguments = {
        name: float(value) * galsim.degrees if name in angles else value for name, value in source.arguments.items()
    }
    profile = getattr(galsim, source.source_type)(**arguments)
    if source.shear:
        shear = dict(source.shear)
        if "beta" in shear:
            shear["beta"] = float(shear["beta"]) * galsim.degrees
        profile = profile.shear(**shear)
    return profile.withFlux(flux)


def draw_source(
    source: SourceSpec,
    *,
    x: float,
    y: float,
    flux: float,
    psf: PointSpreadFunction,
    sky_projection: SkyProjection,
    image_bbox: Box,
    settings: RenderSettings,
    psf_cache: PsfCache | None = None,
    noise_sigma: float = float("nan"),
    gain: float = float("nan"),
) -> DrawnStamp:
    """Draw one source's noiseless model stamp, clipped to the image.

    Point sources (``Star``/``DeltaFunction``) are the PSF model's own
    image of a star at the exact position (``psf.compute_stellar_image``,
    `isrinject.engine.draw.stellar.stellar_stamp`) scaled to the source
    flux; every other profile is
    convolved with the kernel in one FFT on its stamp's grid, with the
    kernel's spectrum cached per PSF cell (`isrinject.engine.draw.fast.fft_stamp`).

    Parameters
    ----------
    source
        The checked source (`isrinject.engine.catalog.check_catalog`).
    x, y
        Absolute pixel position of the source centre.
    flux
        Catalog flux [image units] inside ``calib_flux_radius``.
    psf, sky_projection
        The visit image's PSF and sky projection.
    image_bbox
        The visit image's bounding box.
    settings
        Drawing settings.
    psf_cache
        PSF/Jacobian cache of the image to reuse across sources; by default
        one is made for this call (``settings.psf_cache_spacing``).
    noise_sigma
        Local per-pixel sky noise σ [image units] at the source, for the
        noise-aware extent (`isrinject.engine.draw.extent`) of an automatic
        stamp; not finite: the stamp is drawn on its upper bound.
    gain
        Effective gain g [e⁻ per image unit] at the source (its own Poisson
        noise in the flux error of the extent rule); not finite: the
        sky-limited flux error.

    Returns
    -------
    stamp
        The model and its box; failures are reported in ``flags``
        (PSF_COMPUTE_ERROR, FFT_SIZE_ERROR, STAMP_MISSING, PARAM_BAD,
        NO_OVERLAP, PARTIAL_OVERLAP, DRAW_ERROR), never raised.
    """
    flags = InjectionFlag(0)
    if psf_cache is None:
        psf_cache = PsfCache(
            psf, sky_projection, spacing=settings.psf_cache_spacing, calib_flux_radius=settings.calib_flux_radius,
            bounds=(image_bbox.x.min, image_bbox.x.max, image_bbox.y.min, image_bbox.y.max),
        )
    try:
        entry = psf_cache.get(x, y)
    except Exception:
        return DrawnStamp(None, None, 0, float("nan"), InjectionFlag.PSF_COMPUTE_ERROR)
    jacobian = entry.jacobian
    psf_model, kernel_size = entry.interpolated, entry.kernel_size
    fraction = entry.fraction if psf_cache.calib_flux_radius == settings.calib_flux_radius else aperture_fraction(
        entry.kernel, settings.calib_flux_radius
    )
    total_flux = flux / fraction
    try:
        profile = None if source.is_point else source_profile(source, total_flux, jacobian, settings)
    except OSError:  # checked to exist, but not a readable FITS image
        return DrawnStamp(None, None, 0, total_flux, InjectionFlag.STAMP_MISSING)
    except (ValueError, TypeError, galsim.GalSimError):  # GalSim rejects a combination of values
        return DrawnStamp(None, None, 0, total_flux, InjectionFlag.PARAM_BAD)
    try:
        # Only the stamp size needs the convolved GalSim object (its stepk).
        good = (
            entry.good_size if profile is None
            else galsim.Convolve(profile, psf_model).getGoodImageSize(jacobian.minLinearScale())
        )
    except galsim.GalSimError:
        return DrawnStamp(None, None, 0, total_flux, InjectionFlag.FFT_SIZE_ERROR)
    largest_odd = settings.max_draw_size if settings.max_draw_size % 2 else settings.max_draw_size - 1
    level = settings.stamp_noise_fraction * noise_sigma
    noise_aware = source.draw_size is None and bool(np.isfinite(level) and level > 0)
    if source.draw_size is not None:
        draw_size = odd_size(source.draw_size)
    else:
        draw_size = odd_size(max(kernel_size, settings.stamp_size_factor * good))
    draw_size = min(draw_size, largest_odd)
    # The noise-aware cut starts from GalSim's good size (x 1) and only goes
    # up to draw_size (its upper bound) when the model there is still visible.
    first_size = min(odd_size(max(kernel_size, good)), draw_size) if noise_aware else draw_size
    half = draw_size // 2
    ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    full_bbox = Box.factory[iy - half : iy + half + 1, ix - half : ix + half + 1]
    try:
        bbox = full_bbox.intersection(image_bbox)
    except NoOverlapError:
        return DrawnStamp(None, None, draw_size, total_flux, InjectionFlag.NO_OVERLAP)
    if bbox != full_bbox:
        flags |= InjectionFlag.PARTIAL_OVERLAP
    dx, dy = x - ix, y - iy

    def draw(size: int) -> np.ndarray | InjectionFlag:
        """The full size × size stamp, or the flag of why it cannot be drawn."""
        try:
            if profile is None:
                try:
                    return stellar_stamp(psf, x, y, size, total_flux)
                except Exception:  # the PSF model cannot image a star here
                    return InjectionFlag.PSF_COMPUTE_ERROR
            # The periodic grid spans at least the profile's own extent (GalSim's
            # good size), also when the stamp is smaller (clipped or requested):
            # otherwise the wings would wrap onto the stamp.
            grid = fft_grid_size(max(size, good))
            if grid > profile.gsparams.maximum_fft_size:
                return InjectionFlag.FFT_SIZE_ERROR
            return fft_stamp(jacobian.profileToImage(profile), psf_cache.spectrum(entry, grid), size, dx, dy)
        except galsim.GalSimError:
            return InjectionFlag.DRAW_ERROR

    profile_flux = total_flux if profile is None else float(profile.flux)

    def half_width_of(stamp: np.ndarray) -> int:
        return stamp_half_width(
            stamp, profile_flux, noise_sigma, settings.stamp_noise_fraction, settings.stamp_flux_error_fraction, gain
        )

    stamp = draw(first_size)
    if noise_aware and not isinstance(stamp, InjectionFlag):
        half_width = half_width_of(stamp)
        if half_width >= first_size // 2 and first_size < draw_size:
            stamp = draw(draw_size)
            if not isinstance(stamp, InjectionFlag):
                half_width = half_width_of(stamp)
        if not isinstance(stamp, InjectionFlag):
            draw_size = min(max(2 * half_width + 1, odd_size(kernel_size)), stamp.shape[0])
            stamp = centred_crop(stamp, draw_size)
            half = draw_size // 2
            full_bbox = Box.factory[iy - half : iy + half + 1, ix - half : ix + half + 1]
            try:
                bbox = full_bbox.intersection(image_bbox)
            except NoOverlapError:
                return DrawnStamp(None, None, draw_size, total_flux, InjectionFlag.NO_OVERLAP)
            flags &= ~InjectionFlag.PARTIAL_OVERLAP
            if bbox != full_bbox:
                flags |= InjectionFlag.PARTIAL_OVERLAP
    if isinstance(stamp, InjectionFlag):
        return DrawnStamp(None, None, draw_size, total_flux, flags | stamp)
    inner = bbox.slice_within(full_bbox)
    model = stamp[inner.y, inner.x]
    return DrawnStamp(bbox, np.ascontiguousarray(model), draw_size, total_flux, flags, profile_flux)
