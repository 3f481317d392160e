"""The injection catalog schema shared with ``lsst.source.injection``.

An injection catalog is an `astropy.table.Table` with one row per synthetic
source.  The column vocabulary is the one ``lsst.source.injection`` uses, so
catalogs written for it are read here unchanged:

===================== ========= ===================================================
column                unit      meaning
===================== ========= ===================================================
``injection_id``                unique integer id (assigned 0..N-1 if absent)
``ra``, ``dec``       deg       sky position (or ``x``, ``y`` in pixels)
``x``, ``y``          pix       pixel position in the image's own coordinates
``source_type``                 GalSim class name, ``Star``, ``Stamp`` or ``Trail``
``mag``               mag (AB)  magnitude
``n``                           Sersic index
``half_light_radius`` arcsec    half-light radius
``q``                           axis ratio b/a in (0, 1]
``beta``              deg       position angle of the shear
``stamp``                       FITS file of a ``Stamp`` source (after a prefix)
``draw_size``         pix       side of the drawn stamp (0: automatic)
``trail_length``      pix       length of a ``Trail``
``visit``                       visit the row is restricted to (optional)
===================== ========= ===================================================

Other columns are passed through untouched (GalSim profile parameters such as
``scale_radius`` or ``fwhm`` are taken by name).
"""

from __future__ import annotations

__all__ = [
    "BOOKKEEPING_COLUMNS",
    "CONFIGURABLE_COLUMNS",
    "STANDARD_COLUMNS",
    "STANDARD_UNITS",
    "catalog_format",
    "compose_catalog",
    "normalize_source_types",
    "read_catalog",
    "standardize_columns",
    "write_catalog",
]

from collections.abc import Mapping, Sequence
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Column, MaskedColumn, Table, vstack

#: Standard column names, in the order ``compose_catalog`` creates them.
STANDARD_COLUMNS: tuple[str, ...] = (
    "injection_id",
    "ra",
    "dec",
    "x",
    "y",
    "source_type",
    "mag",
    "n",
    "half_light_radius",
    "q",
    "beta",
    "stamp",
    "draw_size",
    "trail_length",
    "visit",
)

#: Units of the standard columns (columns not listed are unit-less).
STANDARD_UNITS: dict[str, u.UnitBase] = {
    "ra": u.deg,
    "dec": u.deg,
    "x": u.pix,
    "y": u.pix,
    "mag": u.ABmag,
    "half_light_radius": u.arcsec,
    "beta": u.deg,
    "draw_size": u.pix,
    "trail_length": u.pix,
}

#: Standard columns whose name the task configuration may change
#: (``col_ra``, ``col_dec``, ... as in ``lsst.source.injection``).
CONFIGURABLE_COLUMNS: tuple[str, ...] = (
    "ra",
    "dec",
    "source_type",
    "mag",
    "stamp",
    "draw_size",
    "trail_length",
)

#: Per-source output columns added by `compose_catalog` (first in the table).
BOOKKEEPING_COLUMNS: tuple[str, ...] = ("injection_id", "injection_flag", "injection_draw_size")

_STANDARD_DTYPES: dict[str, Any] = {
    "injection_id": np.int64,
    "source_type": str,
    "stamp": str,
    "visit": np.int64,
}


def normalize_source_types(values: Any) -> np.ndarray:
    """Return ``source_type`` values as stripped `str` (masked → ``""``).

    Parameters
    ----------
    values
        A column (possibly masked, possibly of bytes) or any sequence.

    Returns
    -------
    source_types
        Array of Python strings, one per row; legacy names such as ``Star``
        are kept as given (see `isrinject.engine.draw.canonical_source_type`).
    """
    mask = np.ma.getmaskarray(values) if np.ma.isMaskedArray(values) else np.zeros(len(values), bool)
    raw = np.ma.getdata(values) if np.ma.isMaskedArray(values) else np.asarray(values, dtype=object)
    out = np.empty(len(raw), dtype=object)
    for i, (value, masked) in enumerate(zip(raw, mask)):
        if masked or value is None:
            out[i] = ""
        elif isinstance(value, bytes | np.bytes_):
            out[i] = value.decode("utf-8", errors="replace").strip()
        else:
            out[i] = str(value).strip()
    return out.astype(str) if len(out) else np.array([], dtype=str)


def _to_standard_unit(
    name: str, column: Column, pixel_scale_arcsec: float | None
) -> tuple[np.ndarray | None, str | None]:
    """Convert one column with a unit to the standard unit.

    Returns ``(values, None)`` on success (``values`` None: nothing to do) or
    ``(None, problem)`` describing why the conversion failed.
    """
    target = STANDARD_UNITS.get(name)
    unit = column.unit
    if target is None or unit is None:
        return None, None
    if name == "mag":
        # Magnitudes (plain "mag" or an AB mag unit) keep their values; fluxes
        # (nJy, Jy, erg/s/cm2/Hz, ...) become AB magnitudes.
        unit_str = unit.to_string()
        if isinstance(unit, u.MagUnit | u.function.mixin.RegularFunctionUnit) or unit_str in (
            "mag",
            "mag(AB)",
        ):
            if isinstance(unit, u.MagUnit) and unit.physical_unit != u.AB:
                return (
                    None,
                    f"column {name!r} has unit {unit_str!r}; expected AB magnitudes or a flux density",
                )
            return np.asarray(np.ma.getdata(column), dtype=float), None
        try:
            flux = u.Quantity(np.ma.getdata(column), unit)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.asarray(flux.to(u.ABmag).value, dtype=float), None
        except u.UnitsError:
            return (
                None,
                f"column {name!r} has unit {unit_str!r}, which is neither a magnitude nor a flux density",
            )
    equivalencies: list[Any] = []
    if pixel_scale_arcsec is not None:
        equivalencies = u.pixel_scale(pixel_scale_arcsec * u.arcsec / u.pix)
    try:
        quantity = u.Quantity(np.ma.getdata(column), unit)
        return np.asarray(quantity.to_value(target, equivalencies=equivalencies), dtype=float), None
    except u.UnitsError:
        hint = (
            "" if pixel_scale_arcsec is not None else " (pixel ↔ angle conversions need pixel_scale_arcsec)"
        )
        return (
            None,
            f"column {name!r} has unit {unit.to_string()!r}, not convertible to {target.to_string()!r}{hint}",
        )


def standardize_columns(
    catalog: Table,
    column_names: Mapping[str, str] | None = None,
    pixel_scale_arcsec: float | None = None,
) -> Table:
    """Rename configured columns to the standard names and convert units.

    Parameters
    ----------
    catalog
        The injection catalog as supplied by the user.  It is not modified.
    column_names
        ``{standard name: configured name}``, e.g. from the task's ``col_ra``,
        ``col_dec``, ``col_source_type``, ``col_mag``, ``col_stamp``,
        ``col_draw_size`` and ``col_trail_length`` fields.  Entries equal to
        the standard name, or naming a column that is absent, are ignored.
    pixel_scale_arcsec
        Pixel scale (arcsec/pixel) used to convert between angular and pixel
        sizes (``half_light_radius`` given in pixels, ``draw_size`` or
        ``trail_length`` given in arcsec).

    Returns
    -------
    standardized
        A new table with standard column names; columns that carried an
        astropy unit are plain float columns in the standard units of
        `STANDARD_UNITS` (magnitudes in AB mag; fluxes are converted to AB
        magnitudes).  Masks are preserved and ``source_type`` becomes a
        stripped `str` column.

    Raises
    ------
    ValueError
        If a configured column would overwrite another existing column, or if
        one or more units cannot be converted; all such problems are listed
        in one message.
    """
    table = Table(catalog, copy=True, masked=False)
    problems: list[str] = []
    for standard, configured in (column_names or {}).items():
        if not configured or configured == standard or configured not in table.colnames:
            continue
        if standard in table.colnames:
            problems.append(
                f"configured column {configured!r} for {standard!r} clashes with an existing {standard!r} column"
            )
            continue
        table.rename_column(configured, standard)

    for name in list(table.colnames):
        column = table[name]
        values, problem = _to_standard_unit(name, column, pixel_scale_arcsec)
        if problem:
            problems.append(problem)
            continue
        if values is None:
            continue
        mask = np.ma.getmaskarray(column)
        if mask.any():
            new: Column = MaskedColumn(values, name=name, mask=mask, description=column.description)
        else:
            new = Column(values, name=name, description=column.description)
        table.replace_column(name, new)
    if problems:
        raise ValueError("Cannot standardize injection catalog: " + "; ".join(problems) + ".")

    if "source_type" in table.colnames:
        column = table["source_type"]
        types = normalize_source_types(column)
        mask = np.ma.getmaskarray(column)
        table.replace_column(
            "source_type",
            MaskedColumn(types, name="source_type", mask=mask)
            if mask.any()
            else Column(types, name="source_type"),
        )
    return table


def _empty_standard_table() -> Table:
    columns = []
    for name in STANDARD_COLUMNS:
        dtype = _STANDARD_DTYPES.get(name, float)
        columns.append(Column(np.array([], dtype=dtype), name=name))
    return Table(columns)


def compose_catalog(catalogs: Sequence[Table]) -> Table:
    """Stack per-trixel catalogs into one injection catalog.

    Parameters
    ----------
    catalogs
        Catalogs to stack (e.g. every ``injection_catalog`` overlapping an
        image).  Column sets may differ: missing values become masked, as
        `astropy.table.vstack` does.  An empty sequence gives an empty table
        with the standard columns.

    Returns
    -------
    catalog
        A new table whose first columns are ``injection_id`` (kept from the
        inputs if present, else 0..N-1), ``injection_flag`` and
        ``injection_draw_size`` (both int64 zeros), followed by the input
        columns, as ``lsst.source.injection`` composes it.
    """
    tables = [Table(c) for c in catalogs]  # copies: the inputs are never modified or shared
    tables = [t for t in tables if len(t.colnames)]
    if not tables:
        data = _empty_standard_table()
    elif len(tables) == 1:
        data = tables[0]
    else:
        data = vstack(tables, join_type="outer", metadata_conflicts="silent")
    n_rows = len(data)
    if "injection_id" in data.colnames:
        injection_id = data["injection_id"]
        data.remove_column("injection_id")
        if np.ma.isMaskedArray(injection_id) and np.ma.getmaskarray(injection_id).any():
            injection_id = MaskedColumn(injection_id, name="injection_id")
        else:
            injection_id = Column(np.ma.getdata(injection_id), name="injection_id")
    else:
        injection_id = Column(np.arange(n_rows, dtype=np.int64), name="injection_id")
    header = [
        injection_id,
        Column(np.zeros(n_rows, dtype=np.int64), name="injection_flag"),
        Column(np.zeros(n_rows, dtype=np.int64), name="injection_draw_size"),
    ]
    for name in ("injection_flag", "injection_draw_size"):
        if name in data.colnames:
            data.remove_column(name)
    data.add_columns(header, indexes=[0, 0, 0])
    if "source_type" in data.colnames:
        column = data["source_type"]
        types = normalize_source_types(column)
        data.replace_column("source_type", Column(types, name="source_type"))
    return data


_FORMATS = {
    ".ecsv": "ascii.ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".parquet": "parquet",
    ".parq": "parquet",
}


def catalog_format(path: str, format: str | None = None) -> str:
    """Astropy table format for ``path`` (from its extension unless given).

    Raises
    ------
    ValueError
        If the extension is not one of ``.ecsv``, ``.fits``, ``.parquet``.
    """
    if format:
        return format
    lower = str(path).lower()
    for extension, name in sorted(_FORMATS.items(), key=lambda item: -len(item[0])):
        if lower.endswith(extension):
            return name
    raise ValueError(
        f"Cannot tell the catalog format of {str(path)!r}: use .ecsv, .fits or .parquet (or --format)."
    )


def read_catalog(path: str, format: str | None = None) -> Table:
    """Read an injection catalog (ECSV, FITS or Parquet; strings as `str`)."""
    fmt = catalog_format(path, format)
    if fmt == "parquet":
        # astropy's Parquet reader needs pandas; daf_butler's converter does not.
        from lsst.daf.butler.formatters.parquet import arrow_to_astropy, pq

        return arrow_to_astropy(pq.read_table(path, use_threads=False))
    if fmt == "fits":
        return Table.read(path, format=fmt, character_as_bytes=False)
    return Table.read(path, format=fmt)


def write_catalog(catalog: Table, path: str, format: str | None = None, overwrite: bool = False) -> None:
    """Write an injection catalog, choosing the format from the extension."""
    fmt = catalog_format(path, format)
    if fmt == "parquet":
        import os

        from lsst.daf.butler.formatters.parquet import astropy_to_arrow, pq

        if os.path.exists(path) and not overwrite:
            raise OSError(f"File {str(path)!r} already exists (use overwrite).")
        pq.write_table(astropy_to_arrow(catalog), path)
        return
    catalog.write(path, format=fmt, overwrite=overwrite)

