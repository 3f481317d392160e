"""The source vocabulary: source types, GalSim constructor parameters, `SourceSpec`.

The vocabulary is ``lsst.source.injection``'s: ``source_type`` names a GalSim
class (``Sersic``, ``Exponential``, ``DeVaucouleurs``, ``Gaussian``, ...),
``Star`` is an alias for ``DeltaFunction``, ``Stamp`` reads a FITS image and
``Trail`` is a thin box of length ``trail_length`` pixels.  Shape columns are
passed to the GalSim constructor by name (``half_light_radius`` in arcsec,
``n``, ...) and ``q``/``beta`` (degrees) become an area-preserving shear.

`profile_parameters` is the one place that asks GalSim which parameters a
class takes; `isrinject.engine.catalog.check_catalog` uses it to check every row once
and resolve it into a `SourceSpec`, which `isrinject.engine.draw.render` draws
without looking anything up again.
"""

from __future__ import annotations

__all__ = [
    "GALSIM_SOURCE_TYPES",
    "LEGACY_SOURCE_TYPES",
    "SERSIC_N_RANGE",
    "SHEAR_PARAMETERS",
    "SOURCE_TYPES",
    "ProfileParameters",
    "SourceSpec",
    "canonical_source_type",
    "profile_parameters",
]

import dataclasses
import functools
from collections.abc import Mapping

import galsim

#: GalSim classes accepted as ``source_type`` (the list source_injection accepts).
GALSIM_SOURCE_TYPES: tuple[str, ...] = (
    "Gaussian",
    "Box",
    "TopHat",
    "DeltaFunction",
    "Airy",
    "Moffat",
    "Kolmogorov",
    "VonKarman",
    "Exponential",
    "DeVaucouleurs",
    "Sersic",
    "InclinedExponential",
    "InclinedSersic",
    "Spergel",
    "RandomKnots",
)

#: Aliases replaced by their GalSim name before drawing.
LEGACY_SOURCE_TYPES: dict[str, str] = {"Star": "DeltaFunction"}

#: Every accepted ``source_type`` value.
SOURCE_TYPES: tuple[str, ...] = (*GALSIM_SOURCE_TYPES, *LEGACY_SOURCE_TYPES, "Stamp", "Trail")

#: Columns that define an area-preserving shear (``beta`` in degrees).
SHEAR_PARAMETERS: tuple[str, ...] = ("g1", "g2", "g", "e1", "e2", "e", "eta1", "eta2", "eta", "q", "beta")

#: Sersic indices GalSim can draw (exclusive bounds, as source_injection flags them).
SERSIC_N_RANGE: tuple[float, float] = (galsim.Sersic._minimum_n, galsim.Sersic._maximum_n)


def canonical_source_type(source_type: str) -> str:
    """Return the GalSim (or Stamp/Trail) name for a catalog ``source_type``.

    Raises
    ------
    ValueError
        If ``source_type`` is not one of `SOURCE_TYPES`.
    """
    name = str(source_type).strip()
    name = LEGACY_SOURCE_TYPES.get(name, name)
    if name not in SOURCE_TYPES:
        raise ValueError(f"Unknown source_type {source_type!r}; expected one of {', '.join(SOURCE_TYPES)}.")
    return name


@dataclasses.dataclass(frozen=True)
class ProfileParameters:
    """The constructor parameters of one source type (GalSim's
    ``_req_params``, ``_opt_params`` and ``_single_params``)."""

    required: tuple[str, ...]
    """Columns every row of the type needs."""
    optional: tuple[str, ...]
    """Columns passed when given (``flux`` excluded: the catalog's ``mag`` sets it)."""
    exclusive: tuple[tuple[str, ...], ...]
    """Groups of which each row gives exactly one (e.g. ``half_light_radius``/``scale_radius``)."""
    shear: bool
    """Whether `SHEAR_PARAMETERS` apply (every extended GalSim profile)."""
    angles: tuple[str, ...] = ()
    """Parameters GalSim takes as a `galsim.Angle` (``inclination``): the
    catalog gives them in degrees, like ``beta``."""

    @property
    def names(self) -> frozenset[str]:
        """Every column the type uses."""
        names = {*self.required, *self.optional, *(name for group in self.exclusive for name in group)}
        return frozenset(names | set(SHEAR_PARAMETERS) if self.shear else names)


@functools.cache
def profile_parameters(source_type: str) -> ProfileParameters:
    """The parameters of a canonical source type (`canonical_source_type`).

    ``Trail`` takes ``trail_length`` [pixels] and ``beta`` [deg]; ``Stamp``
    takes ``stamp`` (a FITS file name).
    """
    if source_type == "Trail":
        return ProfileParameters(("trail_length",), ("beta",), (), shear=False)
    if source_type == "Stamp":
        return ProfileParameters(("stamp",), (), (), shear=False)
    gs_class = getattr(galsim, source_type)
    required = getattr(gs_class, "_req_params", {})
    optional = getattr(gs_class, "_opt_params", {})
    exclusive = getattr(gs_class, "_single_params", ())
    types = {**required, **optional, **{name: kind for group in exclusive for name, kind in group.items()}}
    return ProfileParameters(
        required=tuple(required),
        optional=tuple(key for key in optional if key != "flux"),
        exclusive=tuple(tuple(group) for group in exclusive),
        shear=source_type != "DeltaFunction",
        angles=tuple(name for name, kind in types.items() if kind is galsim.Angle),
    )


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One checked catalog row, resolved for drawing (`isrinject.engine.draw.draw_source`).

    Build it with `isrinject.engine.catalog.check_catalog` (every row of a
    catalog) or `isrinject.engine.catalog.source_spec` (one row), which check the
    values; the renderer trusts them.
    """

    source_type: str
    """Canonical source type (``Star`` is ``DeltaFunction``)."""
    arguments: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """GalSim constructor keyword arguments (without flux); for ``Trail``
    ``trail_length`` [pixels] and ``beta`` [deg] if given."""
    shear: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """`galsim.Shear` keyword arguments (``beta`` in degrees), for extended GalSim profiles."""
    stamp_path: str | None = None
    """FITS file of a ``Stamp`` source (prefix applied)."""
    draw_size: float | None = None
    """Requested stamp side [pixels]; `None` (or 0) to choose it."""

    @property
    def is_point(self) -> bool:
        """A point source (drawn by shifting the PSF kernel)."""
        return self.source_type == "DeltaFunction"
