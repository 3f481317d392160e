"""Demo galaxies that fit the demo detector, so that their flags mean something.

The engine draws an extended source on a stamp of ``stamp_size_factor`` (1.5)
× GalSim's ``getGoodImageSize`` of the PSF-convolved profile.  A Sérsic of
n = 3 and half-light radius 1.5″ needs a 351 px stamp at 0.2″/px: on the demo's
256 px detector every such galaxy is PARTIAL_OVERLAP, whatever its position.
The demo therefore draws galaxies of moderate size (`SERSIC_N_RANGE`,
`HALF_LIGHT_RADIUS_RANGE`: stamps ≤ ≈170 px with q = 0.4) and centres each at least half its
stamp from the edges (`edge_margins`, capped at a third of the detector), so
PARTIAL_OVERLAP flags only a galaxy that really reaches past an edge.
"""

from __future__ import annotations

__all__ = ["HALF_LIGHT_RADIUS_RANGE", "SERSIC_N_RANGE", "edge_margins", "stamp_side"]

import galsim
import numpy as np

#: Sérsic indices of the demo galaxies (exponential to a little past n = 2).
SERSIC_N_RANGE: tuple[float, float] = (0.8, 2.0)
#: Half-light radii of the demo galaxies [arcsec].
HALF_LIGHT_RADIUS_RANGE: tuple[float, float] = (0.3, 0.8)


def stamp_side(n: float, half_light_radius: float, q: float = 1.0, *, psf_fwhm: float, pixel_scale: float,
               stamp_size_factor: float = 1.5) -> int:
    """The automatic stamp side [pixels] of a Sérsic galaxy of axis ratio
    ``q`` convolved with a Gaussian PSF of FWHM ``psf_fwhm`` [arcsec] on
    ``pixel_scale`` [arcsec/px] pixels, as the engine chooses it
    (``stamp_size_factor`` × GalSim's ``getGoodImageSize``; the shear
    stretches the major axis by 1/√q)."""
    galaxy = galsim.Sersic(n=n, half_light_radius=half_light_radius).shear(q=q, beta=0.0 * galsim.degrees)
    profile = galsim.Convolve(galaxy, galsim.Gaussian(fwhm=psf_fwhm))
    return int(stamp_size_factor * profile.getGoodImageSize(pixel_scale))


def edge_margins(
    source_types: np.ndarray,
    n: np.ndarray,
    half_light_radius: np.ndarray,
    q: np.ndarray,
    *,
    shape: tuple[int, int],
    psf_fwhm: float,
    pixel_scale: float,
    point_margin: float,
) -> np.ndarray:
    """Smallest distance [pixels] of each source centre from the detector
    edges: ``point_margin`` for point sources, half the stamp for Sérsic
    galaxies (at most a third of the detector's smaller side)."""
    margins = np.full(len(source_types), float(point_margin))
    cap = min(shape) / 3.0
    for i, kind in enumerate(np.asarray(source_types).astype(str)):
        if kind == "Sersic":
            side = stamp_side(float(n[i]), float(half_light_radius[i]), float(q[i]), psf_fwhm=psf_fwhm,
                              pixel_scale=pixel_scale)
            margins[i] = min(max(point_margin, side / 2.0 + 1.0), cap)
    return margins
