"""Pixel geometry of a visit image: local Jacobians, sky ↔ pixel, aperture fractions.

Shared by the stamp renderer (`isrinject.engine.draw.render`), the PSF cache
(`isrinject.engine.draw.psf_cache`) and the engine; depends on neither.
"""

from __future__ import annotations

__all__ = ["aperture_fraction", "local_jacobian", "local_jacobians", "odd_size", "sky_to_pixel"]

import functools

import galsim
import numpy as np
from astropy.coordinates import SkyCoord
from lsst.images import XY, SkyProjection


def local_jacobians(sky_projection: SkyProjection, x: np.ndarray, y: np.ndarray) -> list[galsim.JacobianWCS]:
    """Return the local affine pixel → sky maps at many (x, y) in one call.

    Each map is GalSim's ``(du/dx, du/dy, dv/dx, dv/dy)`` [arcsec/pixel]
    with (u, v) the tangent-plane coordinates about the sky position of
    (x, y) (u toward decreasing RA, v toward the north pole, as GalSim's
    `galsim.CelestialCoord.project`), from one-pixel steps along x and y.
    Shapes (``q``, ``beta``) and sizes (``half_light_radius`` in arcsec)
    therefore mean what they mean on the sky.  One vectorised
    ``pixel_to_sky`` call serves all positions; the offsets of a one-pixel
    step differ between tangent-plane projections by O(θ³) ≈ 1e-18 rad.
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    n = len(x)
    sky = sky_projection.pixel_to_sky(XY(x=np.concatenate([x, x + 1.0, x]), y=np.concatenate([y, y, y + 1.0])))
    centre = sky[:n]
    lon_dx, lat_dx = centre.spherical_offsets_to(sky[n : 2 * n])
    lon_dy, lat_dy = centre.spherical_offsets_to(sky[2 * n :])
    lon_dx, lat_dx, lon_dy, lat_dy = (np.atleast_1d(a.to_value("arcsec")) for a in (lon_dx, lat_dx, lon_dy, lat_dy))
    return [
        galsim.JacobianWCS(-lon_dx[i], -lon_dy[i], lat_dx[i], lat_dy[i]) for i in range(n)
    ]


def local_jacobian(sky_projection: SkyProjection, x: float, y: float) -> galsim.JacobianWCS:
    """Return the local affine pixel → sky map at (x, y) (see `local_jacobians`)."""
    return local_jacobians(sky_projection, np.array([x]), np.array([y]))[0]


def aperture_fraction(kernel: np.ndarray, radius: float | None, subsample: int = 8) -> float:
    """Fraction of a centred, unit-sum PSF kernel inside a circle.

    Each pixel's overlap with the circle of ``radius`` [pixels] is
    integrated on a ``subsample × subsample`` grid.  Returns 1 when
    ``radius`` is `None` or the whole kernel lies inside it.
    """
    if radius is None or radius <= 0:
        return 1.0
    weights = _aperture_weights(kernel.shape, float(radius), subsample)
    total = kernel.sum()
    return float((kernel * weights).sum() / total) if total != 0 else 1.0


@functools.lru_cache(maxsize=16)
def _aperture_weights(shape: tuple[int, int], radius: float, subsample: int) -> np.ndarray:
    """Overlap of each pixel of a centred ``shape`` grid with a circle (cached:
    every kernel of a PSF model has the same shape)."""
    ny, nx = shape
    sub = (np.arange(subsample) + 0.5) / subsample - 0.5
    y_sub = ((np.arange(ny) - (ny - 1) / 2)[:, None] + sub[None, :]).ravel()
    x_sub = ((np.arange(nx) - (nx - 1) / 2)[:, None] + sub[None, :]).ravel()
    inside = (y_sub[:, None] ** 2 + x_sub[None, :] ** 2) <= radius**2
    weights = inside.reshape(ny, subsample, nx, subsample).mean(axis=(1, 3))
    weights.setflags(write=False)
    return weights


def odd_size(size: float) -> int:
    """The smallest odd integer ≥ ``size`` (stamps have a centre pixel)."""
    size = int(np.ceil(size))
    return size if size % 2 == 1 else size + 1


def sky_to_pixel(
    sky_projection: SkyProjection, ra_deg: np.ndarray, dec_deg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised (ra, dec) [deg] → absolute pixel (x, y)."""
    xy = sky_projection.sky_to_pixel(SkyCoord(ra=np.asarray(ra_deg) * 1.0, dec=np.asarray(dec_deg), unit="deg"))
    return np.asarray(xy.x, dtype=np.float64), np.asarray(xy.y, dtype=np.float64)
