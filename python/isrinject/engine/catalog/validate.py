"""One validation of injection catalogs, shared by the CLI and the task.

`check_catalog` never raises on bad rows: it returns a `CatalogReport` with
per-row `~isrinject.engine.flags.InjectionFlag` bits (the engine ORs them into
``injection_flag`` and skips flagged rows), a list of `CatalogProblem`
describing every problem with its column, rows and injection ids, and for
every good row its `~isrinject.engine.draw.SourceSpec` (canonical source type and
resolved GalSim arguments), which is what the renderer draws: rows are
checked once, here.  Each concern (source type, magnitude, position, ids,
draw size, shape values, constructor arguments, trails, stamps) is one
``_check_*`` function.  The CLI
calls `CatalogReport.raise_if_problems` (through `validate_catalog`) to stop
with one message listing all problems.
"""

from __future__ import annotations

__all__ = [
    "CatalogProblem",
    "CatalogReport",
    "CatalogValidationError",
    "check_catalog",
    "source_spec",
    "validate_catalog",
]

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.table import Table

from ..draw.profiles import (
    GALSIM_SOURCE_TYPES,
    SERSIC_N_RANGE,
    SHEAR_PARAMETERS,
    SourceSpec,
    canonical_source_type,
    profile_parameters,
)
from ..flags import InjectionFlag
from .plausibility import HintStyle, match_source_type, missing_column_hint, source_type_hint
from .schema import BOOKKEEPING_COLUMNS, normalize_source_types, standardize_columns

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
        The `~isrinject.engine.flags.InjectionFlag` set on the affected rows.
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
        Per-row `~isrinject.engine.flags.InjectionFlag` bits (int64, 0 = good).
    problems
        Every problem found, in check order.
    source_types
        Canonical GalSim/Stamp/Trail name of every row (``Star`` →
        ``DeltaFunction``; ``""`` for unknown types).
    sources
        The `~isrinject.engine.draw.SourceSpec` of every row without flags (`None`
        for flagged rows).
    """

    flags: np.ndarray
    problems: list[CatalogProblem]
    source_types: np.ndarray
    sources: list[SourceSpec | None]

    @property
    def n_rows(self) -> int:
        """Number of rows checked."""
        return len(self.flags)

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
    """Rows where a column has a usable value (not masked, not NaN, not "");
    for an array column (e.g. a light curve's ``lc_mjd``), any usable element."""
    present = _present_values(catalog, name)
    return present.reshape(len(catalog), -1).any(axis=1) if present.ndim > 1 else present


def _present_values(catalog: Table, name: str) -> np.ndarray:
    """Elements of a column that hold a usable value."""
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

    def __init__(self, catalog: Table, hint_style: HintStyle = "task"):
        self.catalog = catalog
        self.hint_style: HintStyle = hint_style
        """How missing-column messages say to rename a column (`missing_column_hint`)."""
        self.n_rows = len(catalog)
        self.colnames = set(catalog.colnames)
        self.all_rows = np.ones(self.n_rows, dtype=bool)
        self.flags = np.zeros(self.n_rows, dtype=np.int64)
        self.problems: list[CatalogProblem] = []
        self.ids = np.ma.getdata(catalog["injection_id"]) if "injection_id" in catalog.colnames else None
        self.types = np.full(self.n_rows, "", dtype=object)
        """Canonical source type of every row (set by `_check_source_types`; "" if unknown)."""

    def uses(self, name: str) -> np.ndarray:
        """Rows whose source type takes the column ``name`` (`profile_parameters`;
        unknown types take none: they are TYPE_UNKNOWN)."""
        uses = np.zeros(self.n_rows, dtype=bool)
        for source_type in set(self.types.tolist()) - {""}:
            uses[self.types == source_type] = name in profile_parameters(source_type).names
        return uses

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

    def missing(self, column: str, flag: InjectionFlag, message: str, *standards: str) -> None:
        """Flag every row for a missing required column, suggesting the
        catalog column that probably holds it (`missing_column_hint`)."""
        hints = "".join(missing_column_hint(s, self.catalog.colnames, self.hint_style) for s in standards or (column,))
        self.add(column, flag, self.all_rows, message + hints)


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return repr(value.item() if hasattr(value, "item") else value)


def _check_source_types(check: _Checker) -> None:
    """TYPE_UNKNOWN; sets the canonical type of every row (each distinct value canonicalised once)."""
    if "source_type" not in check.colnames:
        check.missing("source_type", InjectionFlag.TYPE_UNKNOWN, "required column 'source_type' is missing")
        return
    user_types = normalize_source_types(check.catalog["source_type"]).astype(object)
    unknown = np.zeros(check.n_rows, dtype=bool)
    hints = []
    for value in np.unique(user_types.astype(str)) if check.n_rows else []:
        rows = user_types == value
        try:
            # Any case is accepted: 'star' is 'Star', 'sersic' is 'Sersic'.
            check.types[rows] = canonical_source_type(match_source_type(value) or value)
        except ValueError:
            unknown |= rows
            if hint := source_type_hint(value):
                hints.append(f"{str(value)!r}{hint}")
    check.add_values(
        "source_type", InjectionFlag.TYPE_UNKNOWN, unknown, user_types,
        "unknown source_type (expected a GalSim profile name, Star, Stamp or Trail; isrinject show-source-types "
        "lists them)" + (": " + ", ".join(hints) if hints else ""),
    )


def _check_magnitudes(check: _Checker, mag_range: tuple[float, float]) -> None:
    """MAG_BAD: no ``mag`` column, masked/NaN/non-numeric or outside ``mag_range``."""
    if "mag" not in check.colnames:
        check.missing("mag", InjectionFlag.MAG_BAD, "required column 'mag' is missing")
        return
    mag, present, numeric = _float_values(check.catalog, "mag")
    check.add_values(
        "mag", InjectionFlag.MAG_BAD, ~numeric, np.ma.getdata(check.catalog["mag"]).astype(object), "not a number"
    )
    check.add("mag", InjectionFlag.MAG_BAD, numeric & ~present, "magnitude is missing (masked or NaN)")
    with np.errstate(invalid="ignore"):
        absurd = present & ~((mag > mag_range[0]) & (mag < mag_range[1]))
    check.add_values(
        "mag", InjectionFlag.MAG_BAD, absurd, mag, f"magnitude outside {mag_range[0]:g} < mag < {mag_range[1]:g}"
    )


def _check_positions(check: _Checker) -> None:
    """POSITION_BAD: neither finite ra/dec nor finite x/y; |dec| > 90."""
    has_sky = {"ra", "dec"} <= check.colnames
    has_pixel = {"x", "y"} <= check.colnames
    if not has_sky and not has_pixel:
        check.missing(
            "ra/dec or x/y", InjectionFlag.POSITION_BAD, "no position columns: need 'ra' and 'dec' or 'x' and 'y'",
            "ra", "dec",
        )
        return
    sky_ok = np.zeros(check.n_rows, dtype=bool)
    pixel_ok = np.zeros(check.n_rows, dtype=bool)
    bad_dec = np.zeros(check.n_rows, dtype=bool)
    if has_sky:
        ra, _, _ = _float_values(check.catalog, "ra")
        dec, _, _ = _float_values(check.catalog, "dec")
        finite = np.isfinite(ra) & np.isfinite(dec)
        with np.errstate(invalid="ignore"):
            bad_dec = finite & (np.abs(dec) > 90.0)
        check.add_values("dec", InjectionFlag.POSITION_BAD, bad_dec, dec, "declination outside [-90, 90] deg")
        sky_ok = finite & ~bad_dec
    if has_pixel:
        x, _, _ = _float_values(check.catalog, "x")
        y, _, _ = _float_values(check.catalog, "y")
        pixel_ok = np.isfinite(x) & np.isfinite(y)
    names = " and ".join(n for n, ok in (("ra/dec", has_sky), ("x/y", has_pixel)) if ok)
    check.add(
        "ra" if has_sky else "x", InjectionFlag.POSITION_BAD, ~sky_ok & ~pixel_ok & ~bad_dec,
        f"no finite position in {names}",
    )


def _check_ids(check: _Checker) -> None:
    """DUPLICATE_ID."""
    if check.ids is None or not check.n_rows:
        return
    _, inverse, counts = np.unique(check.ids, return_inverse=True, return_counts=True)
    check.add_values(
        "injection_id", InjectionFlag.DUPLICATE_ID, counts[inverse.ravel()] > 1, check.ids.astype(object),
        "injection_id used by more than one row",
    )


def _check_draw_sizes(check: _Checker, max_draw_size: int) -> None:
    """DRAW_SIZE_BAD: negative, non-finite or above ``max_draw_size`` (0 or absent: automatic)."""
    if "draw_size" not in check.colnames:
        return
    size, present, numeric = _float_values(check.catalog, "draw_size")
    with np.errstate(invalid="ignore"):
        bad = (present & ((size < 0) | ~np.isfinite(size) | (size > max_draw_size))) | ~numeric
    check.add_values(
        "draw_size", InjectionFlag.DRAW_SIZE_BAD, bad, size,
        f"draw_size must be finite and within 0..{max_draw_size} pixels (0: automatic)",
    )


def _check_shape_values(check: _Checker) -> None:
    """PARAM_BAD for shape values, only on rows whose type uses them (a Star
    row may carry half_light_radius = 0 from a mixed catalog): q in (0, 1]
    and with a beta, half_light_radius positive and finite, beta and n finite."""
    if "q" in check.colnames:
        q, present, numeric = _float_values(check.catalog, "q")
        uses = check.uses("q")
        with np.errstate(invalid="ignore"):
            bad = (present & uses & ~((q > 0) & (q <= 1))) | (~numeric & uses)
        check.add_values("q", InjectionFlag.PARAM_BAD, bad, q, "axis ratio q must be in (0, 1]")
        # GalSim's Shear takes q only together with beta.
        beta_present = _float_values(check.catalog, "beta")[1] if "beta" in check.colnames else ~check.all_rows
        check.add(
            "beta", InjectionFlag.PARAM_BAD, present & uses & ~bad & ~beta_present,
            "rows with an axis ratio q need a position angle beta [deg] (missing, masked or NaN)",
        )
    if "half_light_radius" in check.colnames:
        hlr, present, numeric = _float_values(check.catalog, "half_light_radius")
        uses = check.uses("half_light_radius")
        with np.errstate(invalid="ignore"):
            bad = (present & uses & ~((hlr > 0) & np.isfinite(hlr))) | (~numeric & uses)
        check.add_values(
            "half_light_radius", InjectionFlag.PARAM_BAD, bad, hlr, "half_light_radius must be positive and finite"
        )
    for name in ("beta", "n"):
        if name in check.colnames:
            values, present, numeric = _float_values(check.catalog, name)
            uses = check.uses(name)
            bad = (present & uses & ~np.isfinite(values)) | (~numeric & uses)
            check.add_values(name, InjectionFlag.PARAM_BAD, bad, values, f"{name} must be finite")


def _check_sersic_index(check: _Checker) -> None:
    """SERSIC_EXTREME: ``n`` of a Sersic/InclinedSersic outside `SERSIC_N_RANGE`."""
    if "n" not in check.colnames:
        return
    n, present, _ = _float_values(check.catalog, "n")
    sersic = np.isin(check.types.astype(str), ("Sersic", "InclinedSersic"))
    with np.errstate(invalid="ignore"):
        extreme = sersic & present & np.isfinite(n) & ((n <= SERSIC_N_RANGE[0]) | (n >= SERSIC_N_RANGE[1]))
    check.add_values(
        "n", InjectionFlag.SERSIC_EXTREME, extreme, n,
        f"Sersic index outside {SERSIC_N_RANGE[0]:g} < n < {SERSIC_N_RANGE[1]:g}",
    )


def _missing_argument(source_type: str, given: set[str]) -> tuple[str, str] | None:
    """(column, message) of the first GalSim constructor argument a row of
    ``source_type`` with the columns ``given`` lacks or doubles, or `None`."""
    parameters = profile_parameters(source_type)
    for name in parameters.required:
        if name not in given:
            return name, f"source_type {source_type!r} needs column {name!r}, which is missing"
    for group in parameters.exclusive:
        present = [name for name in group if name in given]
        if len(present) > 1:
            message = f"source_type {source_type!r} takes only one of {sorted(group)}; got {present}"
            return "/".join(sorted(group)), message
        if not present:
            return "/".join(sorted(group)), f"source_type {source_type!r} needs one of the columns {sorted(group)}"
    return None


def _check_constructor_arguments(check: _Checker, presence: Mapping[str, np.ndarray]) -> None:
    """PARAM_BAD: GalSim constructor arguments missing or contradictory
    (rows grouped by type and the columns they give)."""
    galsim_rows = np.isin(check.types.astype(str), GALSIM_SOURCE_TYPES)
    if not galsim_rows.any():
        return
    names = list(presence)
    keys = np.array([f"{t}|" for t in check.types.astype(str)], dtype=object)
    if names:
        bits = np.stack([presence[name] for name in names], axis=1)
        keys = keys + np.array(["".join("1" if bit else "0" for bit in row) for row in bits], dtype=object)
    failures: dict[tuple[str, str], np.ndarray] = {}
    for key in np.unique(keys[galsim_rows].astype(str)):
        rows = keys == key
        source_type, given = key.split("|")
        missing = _missing_argument(source_type, {name for name, bit in zip(names, given) if bit == "1"})
        if missing is not None:
            failures[missing] = failures.get(missing, np.zeros(check.n_rows, dtype=bool)) | rows
    for (column, message), rows in failures.items():
        check.add(column, InjectionFlag.PARAM_BAD, rows, message + " (missing, masked or NaN)")


def _rows_needing(check: _Checker, source_type: str, column: str, flag: InjectionFlag) -> np.ndarray | None:
    """The rows of ``source_type``; `None` if there are none or if the column
    they need is missing (then flagged)."""
    rows = check.types == source_type
    if not rows.any():
        return None
    if column not in check.colnames:
        check.add(column, flag, rows, f"{source_type} rows need a {column!r} column, which is missing")
        return None
    return rows


def _check_trails(check: _Checker) -> None:
    """PARAM_BAD: a Trail without a positive finite ``trail_length``."""
    trail = _rows_needing(check, "Trail", "trail_length", InjectionFlag.PARAM_BAD)
    if trail is None:
        return
    length, present, _ = _float_values(check.catalog, "trail_length")
    with np.errstate(invalid="ignore"):
        bad = trail & ~(present & np.isfinite(length) & (length > 0))
    check.add_values(
        "trail_length", InjectionFlag.PARAM_BAD, bad, length, "Trail needs a finite positive trail_length (pixels)"
    )


def _check_stamps(check: _Checker, stamp_prefix: str, check_files: bool) -> None:
    """STAMP_MISSING: a Stamp row without a ``stamp`` column or (``check_files``) file."""
    stamp_rows = _rows_needing(check, "Stamp", "stamp", InjectionFlag.STAMP_MISSING)
    if stamp_rows is None or not check_files:
        return
    names = normalize_source_types(check.catalog["stamp"]).astype(object)
    missing = np.zeros(check.n_rows, dtype=bool)
    exists: dict[str, bool] = {}
    for i in np.flatnonzero(stamp_rows):
        path = stamp_prefix + names[i]
        if path not in exists:
            exists[path] = bool(names[i]) and os.path.isfile(path)
        missing[i] = not exists[path]
    paths = np.array([stamp_prefix + name for name in names], dtype=object)
    check.add_values("stamp", InjectionFlag.STAMP_MISSING, missing, paths, "stamp FITS file not found")


def _row_values(catalog: Table, rows: np.ndarray) -> list[dict[str, Any]]:
    """The given rows as dicts of plain Python values, masked values left out.

    Column-wise conversion: reading an astropy Table row by row costs more
    than drawing a star.
    """
    columns: list[tuple[str, list[Any], np.ndarray | None]] = []
    for name in catalog.colnames:
        column = catalog[name]
        data = np.ma.getdata(column)[rows]
        values = data.tolist() if data.ndim == 1 else list(data)
        if data.dtype.kind == "S":
            values = [value.decode() for value in values]
        mask = np.ma.getmaskarray(column)[rows] if getattr(column, "mask", None) is not None else None
        columns.append((name, values, mask if mask is not None and mask.any() else None))
    return [
        {name: values[i] for name, values, mask in columns if mask is None or not mask[i]} for i in range(len(rows))
    ]


def _given(value: Any) -> bool:
    """A value counts as given unless NaN (masked values are already left out)."""
    return not (isinstance(value, float) and np.isnan(value))


def _resolve(source_type: str, row: Mapping[str, Any], stamp_prefix: str) -> SourceSpec:
    """The `SourceSpec` of a row that passed every check."""
    given = {name: value for name, value in row.items() if _given(value)}
    size = given.get("draw_size")
    draw_size = float(size) if size is not None and float(size) > 0 else None
    if source_type == "Stamp":
        return SourceSpec(source_type, stamp_path=stamp_prefix + str(given["stamp"]).strip(), draw_size=draw_size)
    parameters = profile_parameters(source_type)
    arguments = {name: given[name] for name in parameters.required}
    arguments |= {name: given[name] for name in parameters.optional if name in given}
    arguments |= {name: given[name] for group in parameters.exclusive for name in group if name in given}
    shear = {name: given[name] for name in SHEAR_PARAMETERS if name in given} if parameters.shear else {}
    return SourceSpec(source_type, arguments, shear, draw_size=draw_size)


def _check_sources(
    check: _Checker, *, max_draw_size: int, stamp_prefix: str, check_stamps: bool
) -> list[SourceSpec | None]:
    """The checks of what a row draws (draw size, shape, constructor
    arguments, trail, stamp; after `_check_source_types`) and the
    `SourceSpec` of every row without flags."""
    _check_draw_sizes(check, max_draw_size)
    _check_shape_values(check)
    _check_sersic_index(check)
    skip = set(BOOKKEEPING_COLUMNS) | {"ra", "dec", "x", "y", "source_type", "mag", "stamp", "visit"}
    presence = {name: _present_mask(check.catalog, name) for name in check.catalog.colnames if name not in skip}
    _check_constructor_arguments(check, presence)
    _check_trails(check)
    _check_stamps(check, stamp_prefix, check_stamps)
    sources: list[SourceSpec | None] = [None] * check.n_rows
    good = np.flatnonzero(check.flags == 0)
    for i, row in zip(good, _row_values(check.catalog, good)):
        sources[i] = _resolve(str(check.types[i]), row, stamp_prefix)
    return sources


def check_catalog(
    catalog: Table,
    *,
    max_draw_size: int = 10000,
    stamp_prefix: str = "",
    mag_range: tuple[float, float] = (-10.0, 40.0),
    check_stamps: bool = True,
    hint_style: HintStyle = "task",
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
    hint_style
        How a missing required column's message says to rename the column
        that probably holds it: ``"cli"`` (``--column``) or ``"task"``
        (``config.col_*``); see
        `isrinject.engine.catalog.plausibility.missing_column_hint`.

    Returns
    -------
    report
        Per-row flags, the list of problems and the `SourceSpec` of every
        good row.

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
    nor finite x/y; ``|dec| > 90``) and ``STAMP_MISSING``.  Masked and NaN
    values of optional columns count as absent (``vstack`` masks the shape
    columns of Star rows).
    """
    check = _Checker(catalog, hint_style)
    _check_source_types(check)
    _check_magnitudes(check, mag_range)
    _check_positions(check)
    _check_ids(check)
    sources = _check_sources(check, max_draw_size=max_draw_size, stamp_prefix=stamp_prefix, check_stamps=check_stamps)
    return CatalogReport(
        flags=check.flags, problems=check.problems, source_types=check.types.astype(str), sources=sources
    )


def source_spec(row: Mapping[str, Any], *, stamp_prefix: str = "", max_draw_size: int = 10000) -> SourceSpec:
    """Check one row's source columns (type, shape, draw size, trail, stamp)
    and resolve it for `isrinject.engine.draw.draw_source`.

    Raises
    ------
    CatalogValidationError
        Listing the row's problems.
    """
    check = _Checker(Table(rows=[dict(row)]))
    _check_source_types(check)
    (source,) = _check_sources(check, max_draw_size=max_draw_size, stamp_prefix=stamp_prefix, check_stamps=True)
    if source is None:
        raise CatalogValidationError(check.problems, 1)
    return source


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
        ``mag_range``, ``check_stamps``, ``hint_style``).

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
