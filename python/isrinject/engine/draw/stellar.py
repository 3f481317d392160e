"""A point source's stamp: the PSF model's own image of a star at its position.

A star at (x, y) with flux F is drawn as::

    M[j, i] = F · S_{x,y}[j, i]

with S = ``psf.compute_stellar_image(x=x, y=y)``, the unit-sum image of a
point source that the PSF model itself renders at that sub-pixel position:
for a Piff model its own interpolant of its pixel grid (Lanczos), for
``lsst.images.psfs.GaussianPointSpreadFunction`` the Gaussian sampled at the
pixel centres.  This is the image PSF photometry and every other measurement
fits to a real star, so it is the reference an injected star must match.

Shifting the centred kernel (``compute_kernel_image``) to the sub-pixel
offset with some other interpolant does not reproduce it: GalSim's quintic
(what an ``InterpolatedImage`` of the kernel draws, as lsst.source.injection
does) is off by up to 0.45 % of the peak for a Gaussian of σ = 1.7 px
(0.8″ at 0.2″/px) and 2 % for a real DP1 Piff PSF, the error growing with
the star's S/N (``tests/test_draw.py``).

One PSF evaluation per star (0.03 ms for a Gaussian, 0.4 ms for the DP1 Piff
model against 0.04 ms for the old kernel shift, measured on this 2-core machine);
the aperture fraction, Jacobian and stamp size still come from the cached
cell (`isrinject.engine.draw.psf_cache`).
"""

from __future__ import annotations

__all__ = ["stellar_stamp"]

import math

import numpy as np
from lsst.images.psfs import PointSpreadFunction


def stellar_stamp(psf: PointSpreadFunction, x: float, y: float, size: int, flux: float) -> np.ndarray:
    """Return the ``size × size`` stamp centred on pixel
    (⌊x + ½⌋, ⌊y + ½⌋) of a star of ``flux`` at (x, y) (see module docstring).

    Parameters
    ----------
    psf
        The image's PSF (``compute_stellar_image(x=, y=)``).
    x, y
        Absolute pixel position of the star.
    size
        Odd stamp side [pixels]; smaller than the PSF's stellar image crops it.
    flux
        Total flux [image units]: the stamp sums to it when it holds the
        whole stellar image.

    Raises
    ------
    ValueError
        The stellar image has a non-finite or non-positive sum.
    Exception
        Whatever the PSF model raises when it cannot be evaluated at (x, y).
    """
    # At an exact half-integer lsst.images labels Piff's stamp with
    # round-half-up while Piff centres it at ceil(x - 1/2), one pixel off:
    # 1e-9 px lower, both conventions agree (the stamp changes by ~1e-9 of its peak).
    x_eval = x - 1e-9 if x - math.floor(x) == 0.5 else x
    y_eval = y - 1e-9 if y - math.floor(y) == 0.5 else y
    stellar = psf.compute_stellar_image(x=x_eval, y=y_eval)
    array = np.asarray(stellar.array, dtype=np.float64)
    total = array.sum()
    if not (np.isfinite(total) and total > 0):
        raise ValueError(f"PSF stellar image at x={x}, y={y} has non-positive or non-finite sum {total!r}.")
    half = size // 2
    x0, y0 = math.floor(x + 0.5) - half, math.floor(y + 0.5) - half
    stamp = np.zeros((size, size))
    # Overlap of the stellar image's box with the stamp's, in stamp indices.
    sx0, sy0 = stellar.bbox.x.start - x0, stellar.bbox.y.start - y0
    ys, ye = max(sy0, 0), min(sy0 + array.shape[0], size)
    xs, xe = max(sx0, 0), min(sx0 + array.shape[1], size)
    if ys < ye and xs < xe:
        stamp[ys:ye, xs:xe] = array[ys - sy0 : ye - sy0, xs - sx0 : xe - sx0]
    return stamp * (flux / total)
