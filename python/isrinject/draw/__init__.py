"""Rendering layer: catalog rows → noiseless model stamps (GalSim + image PSF)."""

from .profiles import *  # noqa: F401,F403
from .profiles import __all__ as _profiles_all
from .render import *  # noqa: F401,F403
from .render import __all__ as _render_all

__all__ = [*_profiles_all, *_render_all]
