"""Per-source ``injection_flag`` bits of the output catalog.

Bits 0-5 keep the positions and names used by ``lsst.source.injection`` so
that code reading its output catalogs reads ours unchanged; the bits after
them are specific to the ISR-consistent pixel model.
"""

from __future__ import annotations

__all__ = ["FATAL_FLAGS", "InjectionFlag", "flag_descriptions", "flag_meanings"]

import ast
import enum
import functools
import inspect
import itertools


class InjectionFlag(enum.IntFlag):
    """Reasons a source was not (or not fully) injected."""

    MAG_BAD = 1 << 0
    """Magnitude missing, non-finite or outside the allowed range."""
    TYPE_UNKNOWN = 1 << 1
    """``source_type`` is not a supported GalSim profile, Star, Stamp or Trail."""
    SERSIC_EXTREME = 1 << 2
    """Sersic index outside GalSim's supported range."""
    NO_OVERLAP = 1 << 3
    """The drawn stamp does not overlap the image."""
    FFT_SIZE_ERROR = 1 << 4
    """GalSim refused the FFT size needed to draw the profile."""
    PSF_COMPUTE_ERROR = 1 << 5
    """The image PSF could not be evaluated at the source position."""
    NO_PHOTONS = 1 << 6
    """Some stamp pixels could not receive photons (flat <= 0 or non-finite, NO_DATA)."""
    SATURATED = 1 << 7
    """Some stamp pixels passed the amplifier saturation level in pre-flat electrons."""
    PARTIAL_OVERLAP = 1 << 8
    """The stamp is only partly on the image: flux was lost off the edge."""
    PARAM_BAD = 1 << 9
    """A shape parameter is missing or invalid for the source type (n, q, half_light_radius, ...)."""
    STAMP_MISSING = 1 << 10
    """A ``Stamp`` source whose FITS file does not exist or holds no image."""
    DUPLICATE_ID = 1 << 11
    """The ``injection_id`` is used by more than one row."""
    DRAW_SIZE_BAD = 1 << 12
    """``draw_size`` is not a positive size below the configured maximum."""
    POSITION_BAD = 1 << 13
    """No usable position (ra/dec or x/y missing or non-finite)."""
    DRAW_ERROR = 1 << 14
    """GalSim raised another error while drawing the source."""
    BLED = 1 << 15
    """Some of its electrons fell on pixels above the saturation level, whose excess spilled along
    the column (a bleed trail; what left the amplifier is in injection_lost_electrons)."""
    INTERPOLATED = 1 << 16
    """Some stamp pixels were interpolated over as ISR interpolates saturated pixels (INTERPOLATED mask)."""


#: Flags that mean the source was not injected at all.
FATAL_FLAGS = (
    InjectionFlag.MAG_BAD
    | InjectionFlag.TYPE_UNKNOWN
    | InjectionFlag.SERSIC_EXTREME
    | InjectionFlag.NO_OVERLAP
    | InjectionFlag.FFT_SIZE_ERROR
    | InjectionFlag.PSF_COMPUTE_ERROR
    | InjectionFlag.PARAM_BAD
    | InjectionFlag.STAMP_MISSING
    | InjectionFlag.DUPLICATE_ID
    | InjectionFlag.DRAW_SIZE_BAD
    | InjectionFlag.POSITION_BAD
    | InjectionFlag.DRAW_ERROR
)


def flag_descriptions() -> dict[str, int]:
    """Return ``{name: bit index}`` as stored in the output catalog metadata
    (the same layout as ``lsst.source.injection``)."""
    return {name: flag.value.bit_length() - 1 for name, flag in InjectionFlag.__members__.items()}


def flag_meanings() -> dict[str, str]:
    """Return ``{name: meaning}``: the docstring of each `InjectionFlag` member.

    The attribute docstrings in the class body are the one definition of what
    each flag means; Python keeps them only in the source, so they are read
    from there (once).
    """
    return dict(_flag_meanings())


@functools.cache
def _flag_meanings() -> dict[str, str]:
    class_def = ast.parse(inspect.getsource(InjectionFlag)).body[0]
    assert isinstance(class_def, ast.ClassDef)
    body = class_def.body
    meanings = {
        target.id: " ".join(doc.value.value.split())
        for assign, doc in itertools.pairwise(body)
        if isinstance(assign, ast.Assign)
        for target in assign.targets
        if isinstance(target, ast.Name)
        and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)
    }
    return {name: meanings[name] for name in InjectionFlag.__members__}
