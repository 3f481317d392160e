"""Reference per-source draw, as lsst.source.injection does it (benchmark only).

For every source, as ``inject_engine.py`` of lsst.source.injection: evaluate
the PSF kernel at the source position, normalise it and compute its
aperture fraction inside ``calib_flux_radius`` (upstream calls
``computeApertureFlux`` per source), build a new `galsim.InterpolatedImage`
of it (GalSim defaults: stepk and maxk computed), compute the local
Jacobian, convolve the source profile with the PSF (GalSim FFT
convolution), size the stamp by the convolved object's
``getGoodImageSize`` × ``size_factor`` and draw it with
``method="no_pixel"`` on a box of half-width ``size // 2`` around the
source's pixel, clipped at ``draw_size_max`` = 1000.

``size_factor = 1`` is what source_injection draws (its stamp is the good
size itself); ``1.5`` is the reference the benchmark used before issue 22
(isrinject's ``stamp_size_factor``).  Written from that description for the
benchmark; it is not used by the package.
"""

from __future__ import annotations

from typing import Any

import galsim
import numpy as np

from isrinject.engine.draw import SourceSpec, aperture_fraction, local_jacobian, source_profile

#: source_injection's ``draw_size_max`` default.
DRAW_SIZE_MAX = 1000


def reference_draw(row: SourceSpec, *, x: float, y: float, flux: float, psf: Any, sky_projection: Any,
                   settings: Any, size_factor: float = 1.0) -> np.ndarray:
    """Return the full (unclipped) model stamp of one source [image units]."""
    jacobian = local_jacobian(sky_projection, x, y)
    kernel = np.array(psf.compute_kernel_image(x=x, y=y).array, dtype=np.float64)
    kernel /= kernel.sum()
    fraction = aperture_fraction(kernel, settings.calib_flux_radius)
    psf_ii = galsim.InterpolatedImage(galsim.Image(kernel, wcs=jacobian))
    profile = source_profile(row, flux / fraction, jacobian, settings)
    convolved = galsim.Convolve(profile, psf_ii)
    size = int(size_factor * convolved.getGoodImageSize(jacobian.minLinearScale()))
    size = min(size, DRAW_SIZE_MAX)
    ix, iy = int(x // 1), int(y // 1)
    half = size // 2
    image = galsim.ImageD(galsim.BoundsI(ix - half, ix + half, iy - half, iy + half), wcs=jacobian)
    convolved.drawImage(image, offset=galsim.PositionD(x, y) - image.true_center, method="no_pixel")
    return image.array
