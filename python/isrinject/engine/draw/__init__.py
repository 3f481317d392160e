"""Rendering layer: catalog rows → noiseless model stamps (GalSim + image PSF).

`geometry` (Jacobians, sky ↔ pixel, aperture fractions) ← `fast` (stamp
kernels), `stellar` (a star's stamp) ← `psf_cache` ← `render`; `profiles` maps a row to a GalSim profile.
"""

from .geometry import *  # noqa: F403
from .geometry import __all__ as _geometry_all
from .profiles import *  # noqa: F403
from .profiles import __all__ as _profiles_all
from .render import *  # noqa: F403
from .render import __all__ as _render_all

__all__ = [*_geometry_all, *_profiles_all, *_render_all]
