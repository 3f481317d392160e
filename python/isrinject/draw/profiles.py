"""Catalog row → GalSim surface-brightness profile (before the PSF).

The vocabulary is ``lsst.source.injection``'s: ``source_type`` names a GalSim
class (``Sersic``, ``Exponential``, ``DeVaucouleurs``, ``Gaussian``, ...),
``Star`` is an alias for ``DeltaFunction``, ``Stamp`` reads a FITS image and
``Trail`` is a thin box of length ``trail_length`` pixels.  Shape columns are
passed to the GalSim constructor by name (``half_light_radius`` in arcsec,
``n``, ...) and ``q``/``beta`` (degrees) become an area-preserving shear.
"""

from __future__ import annotations

__all__ = [
    "GALSIM_SOURCE_TYPES",
    "LEGACY_SOURCE_TYPES",
    "SHEAR_PARAMETERS",
    "SOURCE_TYPES",
    "SERSIC_N_RANGE",
    "canonical_source_type",
    "profile_parameters",
]

from collections.abc import Mapping
from typing import Any

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


def profile_parameters(source_type: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the GalSim constructor arguments of ``source_type`` from a row.

    Parameters
    ----------
    source_type
        A GalSim class name from `GALSIM_SOURCE_TYPES`.
    row
        Column values of one catalog row (masked values already removed).

    Returns
    -------
    parameters
        Keyword arguments for the GalSim class (without flux).

    Raises
    ------
    ValueError
        If a required parameter is missing or two mutually exclusive size
        parameters are both given; the message names the columns.
    """
    gs_class = getattr(galsim, source_type)
    parameters: dict[str, Any] = {}
    for key in getattr(gs_class, "_req_params", {}):
        if key not in row:
            raise ValueError(f"source_type {source_type!r} needs column {key!r}, which is missing.")
        parameters[key] = row[key]
    for key in getattr(gs_class, "_opt_params", {}):
        if key in row and key != "flux":
            parameters[key] = row[key]
    for group in getattr(gs_class, "_single_params", ()):
        present = [key for key in group if key in row]
        if len(present) > 1:
            raise ValueError(f"source_type {source_type!r} takes only one of {sorted(group)}; got {present}.")
        if not present:
            raise ValueError(f"source_type {source_type!r} needs one of the columns {sorted(group)}.")
        parameters[present[0]] = row[present[0]]
    return parameters
