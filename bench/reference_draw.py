"""Reference per-source draw, as lsst.source.injection does it (benchmark only).

For every source: evaluate the PSF kernel at the source position, normalise
it and compute its aperture fraction inside ``calib_flux_radius`` (upstream
calls ``computeApertureFlux`` per source), build a new
`galsim.InterpolatedImage` of it (GalSim defaults: stepk and maxk computed),
compute the local Jacobian, convolve the source profile with the PSF
(GalSim FFT convolution) and draw the stamp with ``method="no_pixel"``.  The
stamp side is the same as isrinject's (``stamp_size_factor`` × GalSim's good
size), so both sides draw the same pixels.  Written from that description for
the benchmark; it is not used by the package.
"""

from __future__ import annotations

from typing import Any

import galsim
import numpy as np

from isrinject.engine.draw import SourceSpec, aperture_fraction, local_jacobian, odd_size, source_profile


def reference_draw(row: SourceSpec, *, x: float, y: float, flux: float, psf: Any, sky_projection: Any,
                   settings: Any) -> np.ndarray:
    """Return the full (unclipped) model stamp of one source [image units]."""
    jacobian = local_jacobian(sky_projection, x, y)
    kernel = np.array(psf.compute_kernel_image(x=x, y=y).array, dtype=np.float64)
    kernel /= kernel.sum()
    fraction = aperture_fraction(kernel, settings.calib_flux_radius)
    psf_ii = galsim.InterpolatedImage(galsim.Image(kernel, wcs=jacobian))
    profile = source_profile(row, flux / fraction, jacobian, settings)
    convolved = galsim.Convolve(profile, psf_ii)
    good = convolved.getGoodImageSize(jacobian.minLinearScale())
    size = odd_size(max(max(kernel.shape), settings.stamp_size_factor * good))
    size = min(size, settings.max_draw_size if settings.max_draw_size % 2 else settings.max_draw_size - 1)
    ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    half = size // 2
    image = galsim.ImageD(galsim.BoundsI(ix - half, ix + half, iy - half, iy + half), wcs=jacobian)
    convolved.drawImage(image, offset=(x - ix, y - iy), method="no_pixel")
    return image.array
