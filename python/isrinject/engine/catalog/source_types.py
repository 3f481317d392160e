"""The source types an injection catalog accepts and the columns each one takes.

One table, `SOURCE_TYPE_PARAMETERS`, built from
`isrinject.engine.draw.profiles.profile_parameters` (GalSim's own declaration of each
profile's constructor arguments, plus isrinject's ``Star``, ``Stamp`` and
``Trail``): the same lookup validation (`isrinject.engine.catalog.validate`) uses to
decide which rows a column applies to.  ``isrinject show-source-types`` prints it.

Units are what the catalog value means when isrinject draws it: GalSim sizes
are drawn in sky coordinates, so they are in arcsec (``scale_unit`` changes
that for ``Airy`` and ``Kolmogorov``'s ``lam``-derived sizes); the standard
columns have the units of `isrinject.engine.catalog.schema.STANDARD_UNITS`.
"""

from __future__ import annotations

__all__ = [
    "COMMON_COLUMNS",
    "PARAMETER_UNITS",
    "SOURCE_TYPE_PARAMETERS",
    "SourceTypeParameters",
    "describe_common_columns",
    "source_type_parameters",
]

import dataclasses
import textwrap

from ..draw.profiles import (
    GALSIM_SOURCE_TYPES,
    SHEAR_PARAMETERS,
    SOURCE_TYPES,
    canonical_source_type,
    profile_parameters,
)
from .schema import STANDARD_UNITS

#: Units of the parameter columns (absent: dimensionless, a count, a flag or a name).
PARAMETER_UNITS: dict[str, str] = {
    **{name: unit.to_string() for name, unit in STANDARD_UNITS.items()},
    **dict.fromkeys(
        ("sigma", "fwhm", "scale_radius", "width", "height", "radius", "trunc", "lam_over_diam", "lam_over_r0",
         "scale_height"),
        "arcsec",
    ),
    "lam": "nm",
    "inclination": "deg",
    **dict.fromkeys(("diam", "r0", "r0_500", "L0"), "m"),
}

#: Columns every source type takes: (columns, meaning); positions are ra/dec or x/y.
COMMON_COLUMNS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("mag",), "AB magnitude (required)"),
    (("ra", "dec"), "sky position (or x, y)"),
    (("x", "y"), "pixel position relative to the image origin (or ra, dec)"),
    (("injection_id",), "unique integer id (optional; 0..N-1 if absent)"),
    (("draw_size",), "stamp side (optional; 0 or absent: automatic)"),
    (("visit",), "visit the row is restricted to (optional)"),
)


#: GalSim constructor arguments a catalog column cannot hold (or that the
#: catalog's mag replaces).
_NOT_COLUMNS = frozenset({"flux", "gsparams", "profile"})


@dataclasses.dataclass(frozen=True)
class SourceTypeParameters:
    """The columns one ``source_type`` takes.

    Attributes
    ----------
    source_type
        The value written in the catalog (``Star``, ``Sersic``, ...).
    drawn_as
        What isrinject draws: the GalSim class (``DeltaFunction`` for
        ``Star``), ``Stamp`` or ``Trail``.
    required
        Columns every row of this type needs.
    one_of
        Groups of columns of which a row needs exactly one (e.g. Sersic's
        ``half_light_radius`` or ``scale_radius``).
    optional
        Columns used when present, the shear columns included.
    """

    source_type: str
    drawn_as: str
    required: tuple[str, ...]
    one_of: tuple[tuple[str, ...], ...]
    optional: tuple[str, ...]

    @property
    def columns(self) -> frozenset[str]:
        """Every column this type uses."""
        return frozenset({*self.required, *(name for group in self.one_of for name in group), *self.optional})

    def describe(self, width: int = 100) -> str:
        """Text block for ``isrinject show-source-types``: the required,
        one-of, optional and shear columns with their units."""
        # A GalSim argument named like a shear column (Moffat's beta) is not an angle.
        constructor = {*self.required, *(name for group in self.one_of for name in group)}
        shear = [name for name in self.optional if name in SHEAR_PARAMETERS and self.drawn_as in GALSIM_SOURCE_TYPES]
        entries = [
            ("required", ", ".join(_label(n, n not in SHEAR_PARAMETERS) for n in self.required)),
            *(("one of", " | ".join(_label(n, n not in SHEAR_PARAMETERS) for n in group)) for group in self.one_of),
            ("optional", ", ".join(_label(n) for n in self.optional if n not in shear)),
            ("shear", ", ".join(_label(n) for n in shear)),
        ]
        header = self.source_type + (f" (drawn as {self.drawn_as})" if self.drawn_as != self.source_type else "")
        lines = [header + ":"]
        lines += [_fill(title, text, width) for title, text in entries if text]
        if len(lines) == 1:
            lines.append("  no shape columns")
        for name in sorted(constructor & set(shear)):
            lines.append(_fill("note", f"column {name!r} is passed to galsim.{self.drawn_as} and is also "
                                       f"read as the shear's {name} [{PARAMETER_UNITS[name]}]", width))
        return "\n".join(lines)


def _label(name: str, with_unit: bool = True) -> str:
    # A no-break space keeps "name [unit]" on one line when wrapped.
    return f"{name}\N{NO-BREAK SPACE}[{PARAMETER_UNITS[name]}]" if with_unit and name in PARAMETER_UNITS else name


def _fill(title: str, text: str, width: int, title_width: int = 10) -> str:
    filled = textwrap.fill(
        text, width=width, initial_indent=f"  {title + ':':<{title_width}}", subsequent_indent=" " * (title_width + 2)
    )
    return filled.replace("\N{NO-BREAK SPACE}", " ")


def describe_common_columns(width: int = 100) -> str:
    """Text block of `COMMON_COLUMNS` with units."""
    lines = ["Every source type:"]
    for names, meaning in COMMON_COLUMNS:
        unit = f" [{PARAMETER_UNITS[names[0]]}]" if names[0] in PARAMETER_UNITS else ""
        lines.append(_fill(", ".join(names), meaning + unit, width, title_width=15))
    return "\n".join(lines)


def _parameters(source_type: str) -> SourceTypeParameters:
    """The columns of ``source_type`` from `profile_parameters`, the one place
    that asks GalSim what a class takes (validation reads it too)."""
    drawn_as = canonical_source_type(source_type)
    parameters = profile_parameters(drawn_as)

    def columns(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(name for name in names if name not in _NOT_COLUMNS)

    optional = list(columns(parameters.optional))
    if parameters.shear:
        optional += [name for name in SHEAR_PARAMETERS if name not in optional]
    one_of = tuple(group for group in map(columns, parameters.exclusive) if group)
    return SourceTypeParameters(source_type, drawn_as, columns(parameters.required), one_of, tuple(optional))


#: Every accepted ``source_type`` value → its columns (GalSim profiles, Star, Stamp, Trail).
SOURCE_TYPE_PARAMETERS: dict[str, SourceTypeParameters] = {name: _parameters(name) for name in SOURCE_TYPES}


def source_type_parameters(source_type: str) -> SourceTypeParameters:
    """The columns of a catalog ``source_type`` (aliases such as ``Star`` resolved).

    Raises
    ------
    ValueError
        If ``source_type`` is not accepted (the message lists what is).
    """
    name = str(source_type).strip()
    if name in SOURCE_TYPE_PARAMETERS:
        return SOURCE_TYPE_PARAMETERS[name]
    return SOURCE_TYPE_PARAMETERS[canonical_source_type(name)]
