"""Transient catalogs for difference-imaging completeness, in DMTN-319's proportions.

DMTN-319 (fakes for alert production) injects, per detector,

- **hostless** point sources uniform in magnitude from 20 to ``m_lim + 1``
  (``m_lim``: the 5σ point-source depth of the visit or difference image),
  quasi-randomly placed (`generate_injection_catalog`);
- **hosted** point sources on real galaxies, up to ``min(100, 5 % of the
  detector's sources)``: a host is chosen at random among the galaxies of a
  reference catalog (or of the visit's detected sources) inside the
  detector, and the transient is put at an offset drawn from the host's
  light: for an exponential disc of half-light radius R_e (scale length
  h = R_e / 1.678), the radius r has density ∝ r·exp(−r/h) (Gamma(2, h)),
  the position angle is uniform; hosts without a size get r uniform in area
  within ``max_offset_arcsec``.

`transient_catalog` returns one table (``source_type`` ``Star``, ``mag``,
``ra``, ``dec``, ``transient_kind`` ``hostless``/``hosted``, ``host_id``,
``host_offset_arcsec``; -1 and NaN for hostless rows) to give light-curve
columns (`isrinject.engine.catalog.lightcurve`) or inject as it is.
"""

from __future__ import annotations

__all__ = ["HOSTED_FRACTION", "MAX_HOSTED_PER_DETECTOR", "host_offsets", "hosted_count", "transient_catalog"]

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from lsst.sphgeom import LonLat, Region, UnitVector3d

from .generate import generate_injection_catalog, seed_to_int

#: DMTN-319: hosted fakes per detector are at most this many ...
MAX_HOSTED_PER_DETECTOR = 100
#: ... and at most this fraction of the detector's sources.
HOSTED_FRACTION = 0.05
#: Exponential disc: half-light radius / scale length.
_HALF_LIGHT_PER_SCALE = 1.678


def hosted_count(n_sources: int) -> int:
    """Hosted fakes for a detector with ``n_sources`` sources: min(100, ⌊5 %⌋)."""
    return int(min(MAX_HOSTED_PER_DETECTOR, math.floor(HOSTED_FRACTION * max(int(n_sources), 0))))


def host_offsets(
    half_light_radius: np.ndarray, rng: np.random.Generator, max_offset_arcsec: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (radius [arcsec], position angle [deg east of north]) drawn from the hosts' light.

    Parameters
    ----------
    half_light_radius
        R_e [arcsec] per host; NaN or ≤ 0 for hosts without a size.
    rng
        Random generator.
    max_offset_arcsec
        Radius of the disc (uniform in area) used for hosts without a size.
    """
    size = np.asarray(half_light_radius, dtype=float)
    sized = np.isfinite(size) & (size > 0)
    radius = np.where(
        sized,
        rng.gamma(2.0, 1.0, size.shape) * np.where(sized, size, 1.0) / _HALF_LIGHT_PER_SCALE,
        max_offset_arcsec * np.sqrt(rng.uniform(size=size.shape)),
    )
    angle = rng.uniform(0.0, 360.0, size.shape)
    return radius, angle


def _offset_positions(
    ra: np.ndarray, dec: np.ndarray, radius_arcsec: np.ndarray, angle_deg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions at an angular offset (tangent-plane, exact to < 1e-8 at arcsec offsets)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    moved = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(angle_deg * u.deg, radius_arcsec * u.arcsec)
    return moved.ra.deg, moved.dec.deg


def _inside(region: Region, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.array(
        [region.contains(UnitVector3d(LonLat.fromDegrees(float(a), float(d)))) for a, d in zip(ra, dec)],
        dtype=bool,
    )


def _galaxies(hosts: Table, columns: dict[str, str]) -> np.ndarray:
    """Rows usable as hosts: finite positions and, with an extendedness
    column, extended (≥ 0.5)."""
    ra = np.ma.filled(np.ma.asarray(hosts[columns["ra"]], dtype=float), np.nan)
    dec = np.ma.filled(np.ma.asarray(hosts[columns["dec"]], dtype=float), np.nan)
    usable = np.isfinite(ra) & np.isfinite(dec)
    if columns["extendedness"] in hosts.colnames:
        extendedness = np.ma.filled(np.ma.asarray(hosts[columns["extendedness"]], dtype=float), np.nan)
        usable &= extendedness >= 0.5
    return usable


def transient_catalog(
    regions: Sequence[Region],
    *,
    limiting_mag: float,
    n_hostless: int,
    hosts: Table | None = None,
    bright_mag: float = 20.0,
    max_offset_arcsec: float = 1.0,
    host_columns: dict[str, str] | None = None,
    seed: Any = 0,
) -> Table:
    """Hostless and hosted transients per detector region (module docstring).

    Parameters
    ----------
    regions
        One `lsst.sphgeom.Region` per detector (``visit_regions(...,
        detectors=True)``).
    limiting_mag
        m_lim [AB mag]: transients are uniform in ``[bright_mag, m_lim + 1]``.
    n_hostless
        Hostless transients per detector.
    hosts
        Reference catalog or detected sources (``ra``, ``dec`` [deg], optional
        ``id``, ``half_light_radius`` [arcsec], ``extendedness``; names
        changeable with ``host_columns``); `None` for hostless only.  The
        detector's source count for the 5 % rule is the number of rows in
        the region.
    bright_mag
        Brightest magnitude (DMTN-319: 20).
    max_offset_arcsec
        Offset disc radius for hosts without a size.
    host_columns
        ``{"ra": ..., "dec": ..., "id": ..., "half_light_radius": ...,
        "extendedness": ...}`` overrides.
    seed
        Seed (int or string).

    Raises
    ------
    ValueError
        For an empty magnitude range, a negative count or hosts without
        positions (the message names the column).
    """
    faint = float(limiting_mag) + 1.0
    if not faint > bright_mag:
        raise ValueError(f"limiting_mag + 1 = {faint!r} is not fainter than bright_mag = {bright_mag!r}.")
    if n_hostless < 0:
        raise ValueError(f"n_hostless must be >= 0; got {n_hostless!r}.")
    columns = {"ra": "ra", "dec": "dec", "id": "id", "half_light_radius": "half_light_radius",
               "extendedness": "extendedness", **(host_columns or {})}
    if hosts is not None:
        for key in ("ra", "dec"):
            if columns[key] not in hosts.colnames:
                raise ValueError(
                    f"The host catalog has no {columns[key]!r} column (its columns: {hosts.colnames})."
                )
    rng = np.random.default_rng(seed_to_int(seed))
    parts: list[Table] = []
    for index, region in enumerate(regions):
        if n_hostless:
            hostless = generate_injection_catalog(
                None, None, mag_lim=(bright_mag, faint), number=n_hostless, seed=f"{seed}-{index}",
                regions=[region], source_type=["Star"],
            )
            hostless["transient_kind"] = "hostless"
            hostless["host_id"] = np.full(len(hostless), -1, dtype=np.int64)
            hostless["host_offset_arcsec"] = np.full(len(hostless), np.nan)
            parts.append(hostless)
        if hosts is None:
            continue
        ra = np.ma.filled(np.ma.asarray(hosts[columns["ra"]], dtype=float), np.nan)
        dec = np.ma.filled(np.ma.asarray(hosts[columns["dec"]], dtype=float), np.nan)
        finite = np.isfinite(ra) & np.isfinite(dec)
        in_region = np.zeros(len(hosts), dtype=bool)
        in_region[finite] = _inside(region, ra[finite], dec[finite])
        n_hosted = hosted_count(int(in_region.sum()))
        candidates = np.flatnonzero(in_region & _galaxies(hosts, columns))
        if n_hosted == 0 or candidates.size == 0:
            continue
        chosen = rng.choice(candidates, size=min(n_hosted, candidates.size), replace=False)
        size = (
            np.ma.filled(np.ma.asarray(hosts[columns["half_light_radius"]][chosen], dtype=float), np.nan)
            if columns["half_light_radius"] in hosts.colnames else np.full(chosen.size, np.nan)
        )
        radius, angle = host_offsets(size, rng, max_offset_arcsec)
        t_ra, t_dec = _offset_positions(ra[chosen], dec[chosen], radius, angle)
        host_id = (
            np.asarray(hosts[columns["id"]][chosen], dtype=np.int64) if columns["id"] in hosts.colnames
            else chosen.astype(np.int64)
        )
        parts.append(Table({
            "ra": t_ra, "dec": t_dec, "mag": rng.uniform(bright_mag, faint, chosen.size),
            "source_type": ["Star"] * chosen.size, "transient_kind": ["hosted"] * chosen.size,
            "host_id": host_id, "host_offset_arcsec": radius,
        }))
    if not parts:
        return Table(names=["injection_id", "ra", "dec", "mag", "source_type", "transient_kind", "host_id",
                            "host_offset_arcsec"], dtype=[np.int64, float, float, float, str, str, np.int64, float])
    catalog = vstack(parts, join_type="outer", metadata_conflicts="silent")
    if "injection_id" in catalog.colnames:
        catalog.remove_column("injection_id")
    catalog.add_column(np.arange(len(catalog), dtype=np.int64), name="injection_id", index=0)
    return catalog
