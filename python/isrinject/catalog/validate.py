"""One validation of injection catalogs, shared by the CLI and the task.

`check_catalog` never raises on bad rows: it returns a `CatalogReport` with
per-row `~isrinject.flags.InjectionFlag` bits (the task ORs them into
``injection_flag`` and skips flagged rows) and a list of `CatalogProblem`
describing every problem with its column, rows and injection ids.  The CLI
calls `CatalogReport.raise_if_problems` (through `validate_catalog`) to stop
with one message listing all problems.
"""

from __future__ import annotations

__all__ = [
    "CatalogProblem",
    "CatalogReport",
    "CatalogValidationError",
    "check_catalog",
    "validate_catalog",
]

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.table import Table

from ..draw.profiles import (
    GALSIM_SOURCE_TYPES,
    SERSIC_N_RANGE,
    canonical_source_type,
    profile_parameters,
)
from ..flags import InjectionFlag
from .schema import BOOKKEEPING_COLUMNS, normalize_source_types, standardize_columns
from .source_types import SOURCE_TYPE_PARAMETERS

#: How many offending values/rows a problem message quotes before "...".
_MAX_QUOTED = 8


class CatalogValidationError(ValueError):
    """An injection catalog has problems; the message lists all of them.

    Parameters
    ----------
    problems
        Every problem found.
    n_rows
        Number of rows in the checked catalog.
    """

    def __init__(self, problems: list[CatalogProblem], n_rows: int):
        self.problems = list(problems)
        n_bad = len(set().union(*(set(p.rows.tolist()) for p in problems))) if problems else 0
        lines = [
            f"Injection catalog has {len(problems)} problem{'s' if len(problems) != 1 else ''} "
            f"affecting {n_bad} of {n_rows} rows:"
        ]
        lines += [f"  - {problem}" for problem in problems]
        super().__init__("\n".join(lines))


def _quote(values: Any) -> str:
    values = list(values)
    text = ", ".join(str(v) for v in values[:_MAX_QUOTED])
    return f"[{text}{', ...' if len(values) > _MAX_QUOTED else ''}]"


@dataclasses.dataclass
class CatalogProblem:
    """One problem in an injection catalog.

    Attributes
    ----------
    column
        The column at fault (``None`` for problems not tied to a column).
    flag
        The `~isrinject.flags.InjectionFlag` set on the affected rows.
    message
        What is wrong, quoting the bad values.
    rows
        Indices of the affected rows.
    injection_ids
        ``injection_id`` of the affected rows (empty if the catalog has none).
    """

    column: str | None
    flag: InjectionFlag
    message: str
    rows: np.ndarray
    injection_ids: list[Any] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        where = f"column {self.column!r}" if self.column else "catalog"
        text = f"{where} [{self.flag.name}]: {self.message}; {len(self.rows)} row{'s' if len(self.rows) != 1 else ''}"
        text += f" {_quote(self.rows.tolist())}"
        if self.injection_ids:
            text += f" (injection_id {_quote(self.injection_ids)})"
        return text


@dataclasses.dataclass
class CatalogReport:
    """Result of `check_catalog`.

    Attributes
    ----------
    flags
        Per-row `~isrinject.flags.InjectionFlag` bits (int64, 0 = good).
    problems
        Every problem found, in check order.
    source_types
        Canonical GalSim/Stamp/Trail name of every row (``Star`` →
        ``DeltaFunction``; ``""`` for unknown types).
    """

    flags: np.ndarray
    problems: list[CatalogProblem]
    source_types: np.ndarray

    @property
    def n_rows(self) -> int:
        """Number of rows checked."""
        return len(self.flags)

    @property
    def good(self) -> np.ndarray:
        """Boolean mask of rows without any flag."""
        return self.flags == 0

    @property
    def ok(self) -> bool:
        """True if no problem was found."""
        return not self.problems

    def raise_if_problems(self) -> None:
        """Raise `CatalogValidationError` listing all problems, if any."""
        if self.problems:
            raise CatalogValidationError(self.problems, self.n_rows)


def _float_values(catalog: Table, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (values, present, numeric) for a column; NaN where masked.

    ``present`` is True where the value is given (not masked and not NaN);
    ``numeric`` is False for rows whose value is not a number at all.
    """
    column = catalog[name]
    mask = np.ma.getmaskarray(column)
    data = np.ma.getdata(column)
    try:
        values = np.array(data, dtype=float)
        numeric = np.ones(len(values), dtype=bool)
    except (TypeError, ValueError):
        values = np.full(len(data), np.nan)
        numeric = np.zeros(len(data), dtype=bool)
        for i, value in enumerate(data):
            try:
                values[i] = float(value)
                numeric[i] = True
            except (TypeError, ValueError):
                pass
    values[mask] = np.nan
    numeric |= mask
    present = ~mask & ~np.isnan(values)
    return values, present, numeric


def _present_mask(catalog: Table, name: str) -> np.ndarray:
    """Rows where a column has a usable value (not masked, not NaN, not "")."""
    column = catalog[name]
    mask = np.ma.getmaskarray(column)
    data = np.ma.getdata(column)
    if data.dtype.kind in "fc":
        return ~mask & ~np.isnan(data)
    if data.dtype.kind in "US":
        return ~mask & (np.char.strip(data.astype(str)) != "")
    if data.dtype.kind == "O":
        return ~mask & np.array(
            [
                v is not None and not (isinstance(v, float) and np.isnan(v)) and str(v).strip() != ""
                for v in data
            ],
            dtype=bool,
        )
    return ~mask


class _Checker:
    """Accumulates flags and problems while checking one catalog."""

    def __init__(self, catalog: Table):
        self.catalog = catalog
        self.n_rows = len(catalog)
        self.flags = np.zeros(self.n_rows, dtype=np.int64)
        self.problems: list[CatalogProblem] = []
        ids = None
        if "injection_id" in catalog.colnames:
            ids = np.ma.getdata(catalog["injection_id"])
        self.ids = ids

    def add(self, column: str | None, flag: InjectionFlag, rows: np.ndarray, message: str) -> None:
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        self.flags[rows] |= int(flag)
        ids = [v.item() if hasattr(v, "item") else v for v in self.ids[rows]] if self.ids is not None else []
        self.problems.append(CatalogProblem(column, flag, message, rows, ids))

    def add_values(
        self, column: str, flag: InjectionFlag, rows: np.ndarray, values: np.ndarray, what: str
    ) -> None:
        """Add a problem quoting the distinct offending values."""
        if not rows.any():
            return
        bad = values[rows]
        distinct = list(
            dict.fromkeys("masked" if isinstance(v, float) and np.isnan(v) else _fmt(v) for v in bad)
        )
        self.add(column, flag, rows, f"{what} (values: {_quote(distinct)})")


def _uses_parameter(source_types: np.ndarray, name: str) -> np.ndarray:
    """Rows whose (canonical) source type takes the column ``name``
    (`SOURCE_TYPE_PARAMETERS`); unknown types are not checked here (they are
    TYPE_UNKNOWN)."""
    uses = np.zeros(len(source_types), dtype=bool)
    for source_type in set(source_types.tolist()):
        if source_type in SOURCE_TYPE_PARAMETERS:
            uses[source_types == source_type] = name in SOURCE_TYPE_PARAMETERS[source_type].columns
    return uses


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return repr(value.item() if hasattr(value, "item") else value)


def check_catalog(
    catalog: Table,
    *,
    max_draw_size: int = 10000,
    stamp_prefix: str = "",
    mag_range: tuple[float, float] = (-10.0, 40.0),
    check_stamps: bool = True,
) -> CatalogReport:
    """Check every row of a standardized injection catalog.

    Parameters
    ----------
    catalog
        Catalog with standard column names (see `standardize_columns`).  It is
        not modified.
    max_draw_size
        Largest allowed ``draw_size`` in pixels (``lsst.source.injection``
        clips at 10000).
    stamp_prefix
        String prepended to ``stamp`` values to find the FITS files (the
        task's ``stamp_prefix``).
    mag_range
        Allowed (min, max) magnitudes, exclusive.
    check_stamps
        Check that the FITS files of ``Stamp`` rows exist.

    Returns
    -------
    report
        Per-row flags and the list of problems.

    Notes
    -----
    Flags set: ``MAG_BAD`` (no ``mag`` column, masked/NaN/non-numeric or
    outside ``mag_range``), ``TYPE_UNKNOWN``, ``SERSIC_EXTREME`` (``n`` of a
    Sersic/InclinedSersic outside `SERSIC_N_RANGE`), ``PARAM_BAD`` (GalSim
    parameters missing or contradictory, ``q`` not in (0, 1],
    ``half_light_radius`` ≤ 0 or infinite, Trail without a positive finite
    ``trail_length``), ``DUPLICATE_ID``, ``DRAW_SIZE_BAD`` (negative,
    non-finite or above ``max_draw_size``; 0 means "choose automatically" as
    in ``lsst.source.injection``), ``POSITION_BAD`` (neither finite ra/dec
    nor finite x/y; |dec| > 90) and ``STAMP_MISSING``.  Masked and NaN
    values of optional columns count as absent (``vstack`` masks the shape
    columns of Star rows).
    """
    check = _Checker(catalog)
    n_rows = check.n_rows
    all_rows = np.ones(n_rows, dtype=bool)
    colnames = set(catalog.colnames)

    # Source types.
    canonical = np.full(n_rows, "", dtype=object)
    if "source_type" not in colnames:
        check.add(
            "source_type", InjectionFlag.TYPE_UNKNOWN, all_rows, "required column 'source_type' is missing"
        )
        user_types = np.full(n_rows, "", dtype=object)
    else:
        user_types = normalize_source_types(catalog["source_type"]).astype(object)
        unknown = np.zeros(n_rows, dtype=bool)
        for value in np.unique(user_types.astype(str)) if n_rows else []:
            rows = user_types == value
            try:
                canonical[rows] = canonical_source_type(value)
            except ValueError:
                unknown |= rows
        check.add_values(
            "source_type",
            InjectionFlag.TYPE_UNKNOWN,
            unknown,
            user_types,
            "unknown source_type (expected a GalSim profile name, Star, Stamp or Trail)",
        )

    # Magnitudes.
    if "mag" not in colnames:
        check.add("mag", InjectionFlag.MAG_BAD, all_rows, "required column 'mag' is missing")
    else:
        mag, present, numeric = _float_values(catalog, "mag")
        check.add_values(
            "mag",
            InjectionFlag.MAG_BAD,
            ~numeric,
            np.ma.getdata(catalog["mag"]).astype(object),
            "not a number",
        )
        missing = numeric & ~present
        check.add("mag", InjectionFlag.MAG_BAD, missing, "magnitude is missing (masked or NaN)")
        with np.errstate(invalid="ignore"):
            absurd = present & ~((mag > mag_range[0]) & (mag < mag_range[1]))
        check.add_values(
            "mag",
            InjectionFlag.MAG_BAD,
            absurd,
            mag,
            f"magnitude outside {mag_range[0]:g} < mag < {mag_range[1]:g}",
        )

    # Positions.
    has_sky_cols = {"ra", "dec"} <= colnames
    has_pix_cols = {"x", "y"} <= colnames
    if not has_sky_cols and not has_pix_cols:
        check.add(
            "ra/dec or x/y",
            InjectionFlag.POSITION_BAD,
            all_rows,
            "no position columns: need 'ra' and 'dec' or 'x' and 'y'",
        )
    else:
        sky_ok = np.zeros(n_rows, dtype=bool)
        pix_ok = np.zeros(n_rows, dtype=bool)
        if has_sky_cols:
            ra, _, _ = _float_values(catalog, "ra")
            dec, _, _ = _float_values(catalog, "dec")
            finite = np.isfinite(ra) & np.isfinite(dec)
            with np.errstate(invalid="ignore"):
                bad_dec = finite & (np.abs(dec) > 90.0)
            check.add_values(
                "dec", InjectionFlag.POSITION_BAD, bad_dec, dec, "declination outside [-90, 90] deg"
            )
            sky_ok = finite & ~bad_dec
        if has_pix_cols:
            x, _, _ = _float_values(catalog, "x")
            y, _, _ = _float_values(catalog, "y")
            pix_ok = np.isfinite(x) & np.isfinite(y)
        no_position = ~sky_ok & ~pix_ok
        if has_sky_cols:
            no_position &= ~bad_dec
        names = " and ".join(n for n, ok in (("ra/dec", has_sky_cols), ("x/y", has_pix_cols)) if ok)
        check.add(
            "ra" if has_sky_cols else "x",
            InjectionFlag.POSITION_BAD,
            no_position,
            f"no finite position in {names}",
        )

    # Duplicate ids.
    if "injection_id" in colnames and n_rows:
        ids = np.ma.getdata(catalog["injection_id"])
        _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
        duplicated = counts[inverse.ravel()] > 1
        check.add_values(
            "injection_id",
            InjectionFlag.DUPLICATE_ID,
            duplicated,
            ids.astype(object),
            "injection_id used by more than one row",
        )

    # Draw size.
    if "draw_size" in colnames:
        size, present, numeric = _float_values(catalog, "draw_size")
        with np.errstate(invalid="ignore"):
            bad = (present & ((size < 0) | ~np.isfinite(size) | (size > max_draw_size))) | ~numeric
        check.add_values(
            "draw_size",
            InjectionFlag.DRAW_SIZE_BAD,
            bad,
            size,
            f"draw_size must be finite and within 0..{max_draw_size} pixels (0: automatic)",
        )

    # Shape parameter values.
    # Shape parameter values, checked only on rows whose source type uses
    # them (a Star row may carry half_light_radius = 0 from a mixed catalog).
    types = canonical.astype(str)
    if "q" in colnames:
        q, present, numeric = _float_values(catalog, "q")
        present &= _uses_parameter(types, "q")
        with np.errstate(invalid="ignore"):
            bad = (present & ~((q > 0) & (q <= 1))) | (~numeric & _uses_parameter(types, "q"))
        check.add_values("q", InjectionFlag.PARAM_BAD, bad, q, "axis ratio q must be in (0, 1]")
        # GalSim's Shear takes q only together with beta.
        if "beta" in colnames:
            beta_present = _float_values(catalog, "beta")[1]
        else:
            beta_present = np.zeros(len(q), dtype=bool)
        check.add(
            "beta",
            InjectionFlag.PARAM_BAD,
            present & ~bad & ~beta_present,
            "rows with an axis ratio q need a position angle beta [deg] (missing, masked or NaN)",
        )
    if "half_light_radius" in colnames:
        hlr, present, numeric = _float_values(catalog, "half_light_radius")
        uses = _uses_parameter(types, "half_light_radius")
        with np.errstate(invalid="ignore"):
            bad = (present & uses & ~((hlr > 0) & np.isfinite(hlr))) | (~numeric & uses)
        check.add_values(
            "half_light_radius",
            InjectionFlag.PARAM_BAD,
            bad,
            hlr,
            "half_light_radius must be positive and finite",
        )
    for name in ("beta", "n"):
        if name in colnames:
            values, present, numeric = _float_values(catalog, name)
            uses = _uses_parameter(types, name)
            bad = (present & uses & ~np.isfinite(values)) | (~numeric & uses)
            check.add_values(name, InjectionFlag.PARAM_BAD, bad, values, f"{name} must be finite")

    # Sersic index range.
    if "n" in colnames:
        n, present, _ = _float_values(catalog, "n")
        sersic = np.isin(canonical.astype(str), ("Sersic", "InclinedSersic"))
        with np.errstate(invalid="ignore"):
            extreme = (
                sersic & present & np.isfinite(n) & ((n <= SERSIC_N_RANGE[0]) | (n >= SERSIC_N_RANGE[1]))
            )
        check.add_values(
            "n",
            InjectionFlag.SERSIC_EXTREME,
            extreme,
            n,
            f"Sersic index outside {SERSIC_N_RANGE[0]:g} < n < {SERSIC_N_RANGE[1]:g}",
        )

    # GalSim constructor parameters: group rows by (type, which columns are given).
    skip = set(BOOKKEEPING_COLUMNS) | {"ra", "dec", "x", "y", "source_type", "mag", "stamp", "visit"}
    param_names = [name for name in catalog.colnames if name not in skip]
    galsim_rows = np.isin(canonical.astype(str), GALSIM_SOURCE_TYPES)
    if galsim_rows.any():
        presence = (
            np.stack([_present_mask(catalog, name) for name in param_names], axis=1)
            if param_names
            else np.zeros((n_rows, 0), dtype=bool)
        )
        keys = np.array([f"{t}|" for t in canonical.astype(str)], dtype=object)
        if param_names:
            keys = keys + np.array(
                ["".join("1" if p else "0" for p in row) for row in presence], dtype=object
            )
        failures: dict[str, np.ndarray] = {}
        for key in np.unique(keys[galsim_rows].astype(str)):
            rows = keys == key
            source_type, bits = key.split("|")
            given = {name: 1.0 for name, bit in zip(param_names, bits) if bit == "1"}
            try:
                profile_parameters(source_type, given)
            except ValueError as err:
                message = str(err).rstrip(".")
                failures[message] = failures.get(message, np.zeros(n_rows, dtype=bool)) | rows
        for message, rows in failures.items():
            named = re.findall(r"'([^']+)'", message.split("needs", 1)[-1].split("takes", 1)[-1])
            column = "/".join(dict.fromkeys(named)) or "source_type"
            check.add(column, InjectionFlag.PARAM_BAD, rows, message + " (missing, masked or NaN)")

    # Trails.
    trail = canonical.astype(str) == "Trail"
    if trail.any():
        if "trail_length" not in colnames:
            check.add(
                "trail_length",
                InjectionFlag.PARAM_BAD,
                trail,
                "Trail rows need a 'trail_length' column, which is missing",
            )
        else:
            length, present, _ = _float_values(catalog, "trail_length")
            with np.errstate(invalid="ignore"):
                bad = trail & ~(present & np.isfinite(length) & (length > 0))
            check.add_values(
                "trail_length",
                InjectionFlag.PARAM_BAD,
                bad,
                length,
                "Trail needs a finite positive trail_length (pixels)",
            )

    # Stamps.
    stamp_rows = canonical.astype(str) == "Stamp"
    if stamp_rows.any():
        if "stamp" not in colnames:
            check.add(
                "stamp",
                InjectionFlag.STAMP_MISSING,
                stamp_rows,
                "Stamp rows need a 'stamp' column, which is missing",
            )
        elif check_stamps:
            names = normalize_source_types(catalog["stamp"]).astype(object)
            missing = np.zeros(n_rows, dtype=bool)
            exists: dict[str, bool] = {}
            for i in np.flatnonzero(stamp_rows):
                path = stamp_prefix + names[i]
                if path not in exists:
                    exists[path] = bool(names[i]) and os.path.isfile(path)
                missing[i] = not exists[path]
            paths = np.array([stamp_prefix + s for s in names], dtype=object)
            check.add_values(
                "stamp", InjectionFlag.STAMP_MISSING, missing, paths, "stamp FITS file not found"
            )

    return CatalogReport(flags=check.flags, problems=check.problems, source_types=canonical.astype(str))


def validate_catalog(
    catalog: Table,
    *,
    column_names: Mapping[str, str] | None = None,
    pixel_scale_arcsec: float | None = None,
    **kwargs: Any,
) -> Table:
    """Standardize and check a catalog, raising on any problem.

    Parameters
    ----------
    catalog
        The user's injection catalog (not modified).
    column_names, pixel_scale_arcsec
        Passed to `standardize_columns`.
    **kwargs
        Passed to `check_catalog` (``max_draw_size``, ``stamp_prefix``,
        ``mag_range``, ``check_stamps``).

    Returns
    -------
    standardized
        The standardized catalog (``source_type`` values stripped but not
        renamed: ``Star`` stays ``Star``).

    Raises
    ------
    CatalogValidationError
        Listing every problem found.
    ValueError
        If the columns cannot be standardized (units).
    """
    table = standardize_columns(catalog, column_names, pixel_scale_arcsec)
    check_catalog(table, **kwargs).raise_if_problems()
    return table
