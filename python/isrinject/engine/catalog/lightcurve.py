"""Light curves: catalog rows whose brightness depends on the visit or the time.

An injection catalog row is injected into every visit it overlaps with its
``mag``, unless it carries one of these (all optional, per row):

``visit`` (int)
    The row applies to that visit only (a masked or negative value: every
    visit).  One row per (source, visit) gives any per-visit brightness.
``peak_mjd`` [MJD, TAI], ``peak_mag`` [AB mag], ``rise_rate``, ``decline_rate`` [mag/day]
    A transient linear in magnitude (exponential in flux) on either side of
    its peak, evaluated at the exposure midpoint t::

        mag(t) = peak_mag + rise_rate    · (peak_mjd − t)    t <  peak_mjd
        mag(t) = peak_mag + decline_rate · (t − peak_mjd)    t >= peak_mjd

    A missing rate is 0 (constant on that side).
``lc_mjd``, ``lc_mag`` (array columns, one (mjd, mag) table per row, NaN padded)
    Interpolated linearly in magnitude at t; a row whose table does not
    cover t (before the first or after the last finite epoch) is not
    injected into that visit.

A tabulated row ignores the parametric columns; the evaluated magnitude
replaces ``mag`` and t is recorded in ``injection_mjd``.  Catalogs are per
band (``injection_catalog`` has the band dimension), so a light curve is a
band's.  The midpoint comes from the image's ``obs_info``
(`exposure_midpoint_mjd`).  A non-finite model magnitude leaves the row to the
engine, which flags it MAG_BAD.
"""

from __future__ import annotations

__all__ = [
    "LIGHT_CURVE_COLUMNS",
    "catalog_at_exposure",
    "evaluate_light_curves",
    "exposure_midpoint_mjd",
    "parametric_magnitude",
]

import logging
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time
from lsst.utils.logging import LsstLoggers

_LOG = logging.getLogger(__name__)

#: Columns with which a row's brightness depends on the visit or the time.
LIGHT_CURVE_COLUMNS: tuple[str, ...] = (
    "visit", "peak_mjd", "peak_mag", "rise_rate", "decline_rate", "lc_mjd", "lc_mag",
)
_TIME_COLUMNS = ("peak_mjd", "lc_mjd")


def exposure_midpoint_mjd(obs_info: Any) -> float:
    """MJD (TAI) of the middle of the exposure: the mean of ``datetime_begin``
    and ``datetime_end``, else ``datetime_begin + exposure_time / 2``.

    Raises
    ------
    ValueError
        If the obs_info has no ``datetime_begin`` (or neither end nor exposure time).
    """
    begin = getattr(obs_info, "datetime_begin", None)
    end = getattr(obs_info, "datetime_end", None)
    exposure_time: Any = getattr(obs_info, "exposure_time", None)
    if begin is None or (end is None and exposure_time is None):
        raise ValueError(
            "The catalog has time-dependent rows (peak_mjd or lc_mjd) but the image's obs_info gives no "
            f"exposure midpoint (datetime_begin={begin!r}, datetime_end={end!r}, "
            f"exposure_time={exposure_time!r})."
        )
    begin = Time(begin).tai
    if end is not None:
        return float((begin + (Time(end).tai - begin) / 2).mjd)
    return float((begin + exposure_time / 2).mjd)


def parametric_magnitude(
    mjd: float, peak_mjd: np.ndarray, peak_mag: np.ndarray, rise_rate: np.ndarray, decline_rate: np.ndarray
) -> np.ndarray:
    """The rise/decline model at ``mjd`` (see the module docstring) [AB mag]."""
    dt = mjd - np.asarray(peak_mjd, dtype=float)
    return np.where(
        dt < 0,
        peak_mag + np.nan_to_num(rise_rate) * (-dt),
        peak_mag + np.nan_to_num(decline_rate) * dt,
    )


def _column(catalog: Table, name: str) -> np.ndarray:
    """A float column with masked entries as NaN (all NaN when absent)."""
    if name not in catalog.colnames:
        return np.full(len(catalog), np.nan)
    return np.ma.filled(np.ma.asarray(catalog[name], dtype=float), np.nan)


def _tabulated(catalog: Table, mjd: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: whether it has an (mjd, mag) table, and its magnitude at ``mjd``
    (NaN where the table does not cover it)."""
    n_rows = len(catalog)
    has_table = np.zeros(n_rows, dtype=bool)
    mags = np.full(n_rows, np.nan)
    if not {"lc_mjd", "lc_mag"} <= set(catalog.colnames):
        return has_table, mags
    for i, (times, values) in enumerate(zip(catalog["lc_mjd"], catalog["lc_mag"])):
        times = np.ma.filled(np.ma.asarray(times, dtype=float), np.nan).ravel()
        values = np.ma.filled(np.ma.asarray(values, dtype=float), np.nan).ravel()
        if times.shape != values.shape:
            raise ValueError(
                f"Row {i}: lc_mjd and lc_mag have different lengths ({times.size} and {values.size})."
            )
        good = np.isfinite(times) & np.isfinite(values)
        if not good.any():
            continue
        has_table[i] = True
        order = np.argsort(times[good])
        t, m = times[good][order], values[good][order]
        if t[0] <= mjd <= t[-1]:
            mags[i] = np.interp(mjd, t, m)
    return has_table, mags


def evaluate_light_curves(
    catalog: Table, *, visit: int, mjd: float | None, log: LsstLoggers = _LOG
) -> Table:
    """The rows of ``catalog`` that apply to ``visit`` at ``mjd``, with ``mag``
    evaluated there (see the module docstring).

    Parameters
    ----------
    catalog
        Injection catalog (any extra columns pass through).
    visit
        The visit injected into.
    mjd
        Its exposure midpoint [MJD, TAI]; only needed (else `None`) when rows
        have ``peak_mjd`` or ``lc_mjd``.
    log
        Where the rows left out are counted.

    Raises
    ------
    ValueError
        Time-dependent rows and no ``mjd``; mismatched ``lc_mjd``/``lc_mag``.
    """
    if not set(LIGHT_CURVE_COLUMNS) & set(catalog.colnames):
        return catalog
    catalog = Table(catalog, copy=True)
    keep = np.ones(len(catalog), dtype=bool)
    if "visit" in catalog.colnames:
        visits = np.ma.filled(np.ma.asarray(catalog["visit"], dtype=np.int64), -1)
        keep &= (visits < 0) | (visits == int(visit))
        if not keep.all():
            log.info("%d of %d rows belong to other visits than %d.", int((~keep).sum()), len(catalog), visit)
    timed = any(name in catalog.colnames for name in _TIME_COLUMNS)
    if timed:
        if mjd is None:
            raise ValueError("The catalog has time-dependent rows (peak_mjd or lc_mjd) but no exposure time.")
        mags = _column(catalog, "mag")
        peak_mjd = _column(catalog, "peak_mjd")
        parametric = np.isfinite(peak_mjd)
        model = parametric_magnitude(
            mjd, peak_mjd, _column(catalog, "peak_mag"), _column(catalog, "rise_rate"),
            _column(catalog, "decline_rate"),
        )
        mags = np.where(parametric, model, mags)
        has_table, table_mags = _tabulated(catalog, mjd)
        mags = np.where(has_table, table_mags, mags)
        uncovered = has_table & ~np.isfinite(table_mags) & keep
        if uncovered.any():
            log.info("%d rows' light-curve tables do not cover MJD %.5f: not injected.", int(uncovered.sum()), mjd)
        keep &= ~uncovered
        catalog["mag"] = mags
        catalog["injection_mjd"] = np.where(parametric | has_table, mjd, np.nan)
    return catalog[keep]


def catalog_at_exposure(catalog: Table, image: Any, visit: int, log: LsstLoggers = _LOG) -> Table:
    """`evaluate_light_curves` at the exposure midpoint of ``image`` (its
    ``obs_info``); the catalog itself when it has no light-curve column."""
    if not set(LIGHT_CURVE_COLUMNS) & set(catalog.colnames):
        return catalog
    timed = any(name in catalog.colnames for name in _TIME_COLUMNS)
    try:
        mjd = exposure_midpoint_mjd(image.obs_info) if timed else None
        return evaluate_light_curves(catalog, visit=visit, mjd=mjd, log=log)
    except ValueError as err:
        raise ValueError(f"Light curves for visit {visit}: {err}") from err
