"""Generate synthetic injection catalogs (``lsst.source.injection`` compatible).

`generate_injection_catalog` takes the same arguments as
``lsst.source.injection.generate_injection_catalog``: every keyword
parameter is a column whose listed values are combined with every other
parameter's values (``itertools.product``), and each combination is repeated
``number`` times (or as often as needed to reach ``density`` sources per
square degree).  Injection ids encode the combination and the repeat exactly
as source_injection does (``id = combination * 10**ceil(log10(number)) +
repeat``).

Differences (extensions): positions may be restricted to a sky footprint
(e.g. the regions of butler visits, see `visit_regions`), placed on a grid
instead of the Halton sequence, and kept at least ``min_separation`` apart;
declinations are drawn uniformly in ``sin(dec)`` (equal area); continuous
parameter ranges can be drawn quasi-randomly (``parameter_ranges``).
"""

from __future__ import annotations

__all__ = ["generate_injection_catalog", "seed_to_int", "visit_regions"]

import hashlib
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.table import Column, Table
from scipy.spatial import cKDTree
from scipy.stats import qmc

from ._sky import unit_vector_components

if TYPE_CHECKING:
    from lsst.sphgeom import Region

_LOG = logging.getLogger(__name__)

#: Placement methods accepted by `generate_injection_catalog`.
PLACEMENTS: tuple[str, ...] = ("halton", "grid")


def seed_to_int(seed: Any) -> int:
    """Turn any seed (int or string) into a 32-bit integer, repeatably.

    Strings (and other non-integers) are hashed with SHA-256 and the lower 32
    bits kept, as ``lsst.source.injection`` does, so ``--seed abc`` gives the
    same catalog everywhere.
    """
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        return int(seed) & 0xFFFFFFFF
    digest = hashlib.sha256(str(seed).encode("utf-8")).hexdigest()
    return int(digest, 16) & 0xFFFFFFFF


class _Footprint:
    """Sky area to place sources in: a RA/Dec box, optionally ∩ regions."""

    def __init__(
        self, ra_lim: Sequence[float] | None, dec_lim: Sequence[float] | None, regions: Sequence[Region] | None
    ):
        self.regions = list(regions) if regions else []
        if ra_lim is None or dec_lim is None:
            if not self.regions:
                raise ValueError(
                    "Give ra_lim and dec_lim, or regions (e.g. visit footprints) to place sources in."
                )
            ra_lim, dec_lim = self._bounding_limits()
        ra0, ra1 = (float(v) for v in ra_lim)
        dec0, dec1 = (float(v) for v in dec_lim)
        if not (ra1 > ra0 and ra1 - ra0 <= 360.0):
            raise ValueError(f"ra_lim must be increasing and span at most 360 deg; got {list(ra_lim)!r}.")
        if not (-90.0 <= dec0 < dec1 <= 90.0):
            raise ValueError(f"dec_lim must be increasing within [-90, 90] deg; got {list(dec_lim)!r}.")
        self.ra_lim = (ra0, ra1)
        self.dec_lim = (dec0, dec1)
        self.box_area = (
            math.degrees(1.0) * (ra1 - ra0) * (math.sin(math.radians(dec1)) - math.sin(math.radians(dec0)))
        )
        self.area = self.box_area
        if self.regions:
            sampler = qmc.Halton(d=2, seed=12345)
            ra, dec = self.scale(sampler.random(2**15))
            fraction = float(self.contains(ra, dec).mean())
            if fraction == 0.0:
                raise ValueError("The regions do not overlap the RA/Dec limits: nowhere to place sources.")
            self.area = self.box_area * fraction

    def _bounding_limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        box = self.regions[0].getBoundingBox()
        for region in self.regions[1:]:
            box = box.expandedTo(region.getBoundingBox())
        lon, lat = box.getLon(), box.getLat()
        if lon.isFull():
            ra_lim = (0.0, 360.0)
        else:
            ra0 = lon.getA().asDegrees()
            width = (lon.getB().asDegrees() - ra0) % 360.0
            ra_lim = (ra0, ra0 + width)
        return ra_lim, (lat.getA().asDegrees(), lat.getB().asDegrees())

    def scale(self, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map unit-square samples to equal-area RA/Dec in the box (degrees)."""
        ra = self.ra_lim[0] + sample[:, 0] * (self.ra_lim[1] - self.ra_lim[0])
        s0, s1 = (math.sin(math.radians(d)) for d in self.dec_lim)
        dec = np.degrees(np.arcsin(np.clip(s0 + sample[:, 1] * (s1 - s0), -1.0, 1.0)))
        return ra, dec

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """True for positions inside the footprint."""
        inside = (
            (ra >= self.ra_lim[0])
            & (ra <= self.ra_lim[1])
            & (dec >= self.dec_lim[0])
            & (dec <= self.dec_lim[1])
        )
        if self.regions:
            lon, lat = np.radians(np.mod(ra, 360.0)), np.radians(dec)
            in_region = np.zeros(len(ra), dtype=bool)
            for region in self.regions:
                in_region |= np.asarray(region.contains(lon, lat), dtype=bool)
            inside &= in_region
        return inside


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.stack(unit_vector_components(np.radians(ra), np.radians(dec)), axis=1)


def _chord(separation_arcsec: float) -> float:
    return 2.0 * math.sin(math.radians(separation_arcsec / 3600.0) / 2.0)


def _place_halton(
    footprint: _Footprint, number: int, seed: int, min_separation: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Quasi-random positions, rejecting those outside or too close."""
    sampler = qmc.Halton(d=2, seed=seed)
    if not footprint.regions and not min_separation:
        return footprint.scale(sampler.random(number))
    chord = _chord(min_separation) if min_separation else 0.0
    if min_separation:
        # Densest possible packing (hexagonal, 0.9069) of disks of diameter min_separation.
        limit = footprint.area * 3600.0**2 / (math.pi * (min_separation / 2) ** 2) * 0.9069
        if number > limit:
            raise ValueError(
                f"Cannot place {number} sources at least {min_separation!r} arcsec apart in "
                f"{footprint.area:.4g} deg²: at most ≈{int(limit)} fit; lower the number/density or min_separation."
            )
    kept_ra: list[np.ndarray] = []
    kept_dec: list[np.ndarray] = []
    kept_xyz = np.zeros((0, 3))
    n_kept = 0
    n_drawn = 0
    max_draws = 20 * number + 100_000
    batch = min(max(int(number * footprint.box_area / footprint.area * 1.2) + 16, 64), 50_000)
    while n_kept < number:
        if n_drawn >= max_draws:
            raise ValueError(
                f"Cannot place {number} sources at least {min_separation!r} arcsec apart in "
                f"{footprint.area:.4g} deg² (placed {n_kept} after {n_drawn} candidates); "
                "lower the number/density or min_separation."
            )
        ra, dec = footprint.scale(sampler.random(batch))
        n_drawn += batch
        good = footprint.contains(ra, dec)
        ra, dec = ra[good], dec[good]
        if chord > 0 and len(ra):
            xyz = _unit_vectors(ra, dec)
            keep = np.ones(len(ra), dtype=bool)
            if len(kept_xyz):
                distance, _ = cKDTree(kept_xyz).query(xyz, k=1, distance_upper_bound=chord)
                keep &= ~(distance < chord)
            pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
            if len(pairs):
                # Drop the later point of every close pair (vectorised; may drop a
                # few more than a sequential greedy pass, more are then drawn).
                keep[pairs.max(axis=1)] = False
            ra, dec = ra[keep], dec[keep]
            kept_xyz = np.concatenate([kept_xyz, xyz[keep]])
        kept_ra.append(ra)
        kept_dec.append(dec)
        n_kept += len(ra)
        batch = (
            max(2 * batch, 64)
            if len(ra) == 0
            else max(int((number - n_kept) * batch / len(ra) * 1.2) + 16, 64)
        )
        batch = min(batch, 50_000)
    return np.concatenate(kept_ra)[:number], np.concatenate(kept_dec)[:number]


def _grid(footprint: _Footprint, spacing_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows of constant Dec ``spacing`` apart; points along a row are at
    least ``spacing`` apart on the sphere."""
    s = math.radians(spacing_deg)
    dec0, dec1 = footprint.dec_lim
    n_rows = max(int(math.floor((dec1 - dec0) / spacing_deg)), 1)
    decs = dec0 + ((dec1 - dec0) - (n_rows - 1) * spacing_deg) / 2 + spacing_deg * np.arange(n_rows)
    width = footprint.ra_lim[1] - footprint.ra_lim[0]
    all_ra, all_dec = [], []
    for dec in decs:
        cos_dec = math.cos(math.radians(dec))
        arg = math.sin(s / 2) / cos_dec if cos_dec > 0 else 2.0
        step = 360.0 if arg >= 1 else math.degrees(2 * math.asin(arg))
        n = max(int(math.floor(width / step)), 1)
        ra = footprint.ra_lim[0] + width / n * (np.arange(n) + 0.5)
        all_ra.append(ra)
        all_dec.append(np.full(n, dec))
    ra, dec = np.concatenate(all_ra), np.concatenate(all_dec)
    good = footprint.contains(ra, dec)
    return ra[good], dec[good]


def _place_grid(
    footprint: _Footprint, number: int, min_separation: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Grid positions; the spacing shrinks until ``number`` points fit."""
    spacing = math.sqrt(footprint.area / number)
    for _ in range(60):
        ra, dec = _grid(footprint, spacing)
        if len(ra) >= number:
            break
        spacing *= 0.97 * math.sqrt(max(len(ra), 1) / number)
    else:
        raise ValueError(f"Cannot fit {number} grid points in {footprint.area:.4g} deg².")
    if min_separation and spacing * 3600.0 < min_separation:
        raise ValueError(
            f"A grid of {number} sources in {footprint.area:.4g} deg² needs a spacing of "
            f"{spacing * 3600:.3g} arcsec, below min_separation={min_separation!r} arcsec."
        )
    # Thin evenly to exactly ``number`` points.
    chosen = np.unique(np.round(np.linspace(0, len(ra) - 1, number)).astype(int))
    return ra[chosen], dec[chosen]


def generate_injection_catalog(
    ra_lim: Sequence[float] | None,
    dec_lim: Sequence[float] | None,
    mag_lim: Sequence[float] | None = None,
    number: int = 1,
    density: float | None = None,
    seed: Any = None,
    log_level: int = logging.INFO,
    *,
    placement: str = "halton",
    min_separation: float | None = None,
    regions: Sequence[Region] | None = None,
    parameter_ranges: Mapping[str, Sequence[float]] | None = None,
    **kwargs: Any,
) -> Table:
    """Generate a synthetic source injection catalog.

    Parameters
    ----------
    ra_lim, dec_lim
        Right ascension and declination limits in degrees.  May be `None` if
        ``regions`` is given (the regions' bounding box is used).
    mag_lim
        (min, max) magnitudes drawn quasi-randomly (Halton), as
        source_injection's ``mag_lim``.
    number
        Times each unique parameter combination is generated; ignored if
        ``density`` is given.
    density
        Sources per square degree of the footprint; sets ``number`` to
        ``round(density / (combinations / area))`` (at least 1).
    seed
        Seed (int or string; strings are hashed).  `None` derives it from the
        limits like source_injection, so the same inputs give the same
        catalog.
    log_level
        Level of this function's progress messages (source_injection's
        argument; the logger's own level is left to the application).
    placement
        ``"halton"`` (quasi-random, source_injection's choice) or ``"grid"``.
    min_separation
        Minimum separation between sources in arcsec: Halton candidates that
        are too close to an earlier source are dropped (and more are drawn);
        a grid whose spacing would be smaller raises `ValueError`.
    regions
        `lsst.sphgeom.Region` objects (e.g. from `visit_regions`); sources are
        placed only inside their union.
    parameter_ranges
        ``{column: (min, max)}`` drawn quasi-randomly and uniformly for every
        row (an extension; e.g. ``{"half_light_radius": (0.5, 2.0)}``).
    **kwargs
        ``column=values``: every combination of the listed values becomes a
        row (``itertools.product``), as in source_injection; e.g.
        ``source_type=["Sersic", "Star"], n=[1, 4]``.

    Returns
    -------
    catalog
        Columns ``injection_id``, ``ra``, ``dec``, then ``mag`` (if
        ``mag_lim``), the ``parameter_ranges`` columns and the ``kwargs``
        columns.

    Raises
    ------
    ValueError
        For inconsistent limits, an unknown placement, a column given twice or
        a footprint that cannot hold the sources.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"Unknown placement {placement!r}; expected one of {PLACEMENTS}.")
    if number < 1:
        raise ValueError(f"number must be at least 1; got {number!r}.")
    parameter_ranges = dict(parameter_ranges or {})
    if mag_lim is not None:
        if "mag" in parameter_ranges or "mag" in kwargs:
            raise ValueError("'mag' given both as mag_lim and as a parameter.")
        parameter_ranges = {"mag": mag_lim, **parameter_ranges}
    for name in ("injection_id", "ra", "dec"):
        if name in kwargs or name in parameter_ranges:
            raise ValueError(f"Column {name!r} is generated and cannot be given as a parameter.")
    clash = set(parameter_ranges) & set(kwargs)
    if clash:
        raise ValueError(f"Columns {sorted(clash)} given both as values and as ranges.")
    for name, limits in parameter_ranges.items():
        if len(limits) != 2 or not float(limits[0]) <= float(limits[1]):
            raise ValueError(f"Range of {name!r} must be (min, max); got {list(limits)!r}.")

    footprint = _Footprint(ra_lim, dec_lim, regions)
    values = [np.atleast_1d(v) for v in kwargs.values()]
    combinations = list(itertools.product(*values)) if values else [()]
    n_combinations = len(combinations)
    if density:
        native_density = n_combinations / footprint.area
        number = int(round(density / native_density))
        if number < 1:
            _LOG.warning("Requested density %s per deg² needs number < 1; setting number = 1.", density)
            number = 1
        _LOG.log(
            log_level,
            "Setting number to %d: %.1f sources per square degree over %.4g deg².",
            number,
            number * native_density,
            footprint.area,
        )
    n_rows = n_combinations * number

    if seed is None:
        seed = str(
            (footprint.ra_lim[1] - footprint.ra_lim[0]) * (footprint.dec_lim[1] - footprint.dec_lim[0])
        )
    int_seed = seed_to_int(seed)
    if placement == "halton":
        ra, dec = _place_halton(footprint, n_rows, int_seed, min_separation)
    else:
        ra, dec = _place_grid(footprint, n_rows, min_separation)
    rng = np.random.default_rng(int_seed)
    order = rng.permutation(n_rows)
    ra, dec = np.mod(ra[order], 360.0), dec[order]

    table = Table()
    combination_index = np.repeat(np.arange(n_combinations), number)
    version = np.tile(np.arange(number), n_combinations)
    multiplier = int(10 ** math.ceil(math.log10(number))) if number > 1 else 1
    table["injection_id"] = Column(combination_index * multiplier + version, dtype=np.int64)
    table["ra"] = ra
    table["dec"] = dec
    for k, (name, (low, high)) in enumerate(parameter_ranges.items()):
        sample = qmc.Halton(d=1, seed=seed_to_int(f"{seed}:{name}:{k}")).random(n_rows)[:, 0]
        table[name] = float(low) + sample * (float(high) - float(low))
    for k, name in enumerate(kwargs):
        column_values = np.array([combo[k] for combo in combinations])
        table[name] = column_values[combination_index]
    if number == 1:
        _LOG.log(log_level, "Generated an injection catalog of %d unique sources.", n_rows)
    else:
        _LOG.log(
            log_level,
            "Generated an injection catalog of %d sources: %d combinations repeated %d times.",
            n_rows,
            n_combinations,
            number,
        )
    return table


def visit_regions(
    butler: Any,
    *,
    visits: Sequence[int] | None = None,
    where: str = "",
    instrument: str | None = None,
    collections: Sequence[str] | str | None = None,
    dataset_type: str | None = None,
    detectors: bool = False,
) -> list[Any]:
    """Sky regions of visits in a butler repository.

    Parameters
    ----------
    butler
        An `lsst.daf.butler.Butler`.
    visits
        Visit ids to use (combined with ``where``).
    where
        A butler query expression (e.g. ``"band = 'g' AND day_obs = 20241101"``).
    instrument
        Instrument name, to disambiguate visit ids.
    collections, dataset_type
        If both are given, only (visit, detector) pairs with a
        ``dataset_type`` dataset in ``collections`` are used, with their
        ``visit_detector_region`` regions.
    detectors
        Use each ``visit_detector_region`` instead of the whole ``visit``
        region.

    Returns
    -------
    regions
        `lsst.sphgeom.Region` objects.

    Raises
    ------
    LookupError
        If nothing matches the query.
    """
    clauses = [f"({where})"] if where else []
    bind: dict[str, Any] = {}
    if visits:
        clauses.append("visit IN (visit_ids)")
        bind["visit_ids"] = tuple(int(v) for v in visits)
    query_where = " AND ".join(clauses)
    data_id = {"instrument": instrument} if instrument else {}
    if collections and dataset_type:
        refs = butler.query_datasets(
            dataset_type,
            collections=collections,
            where=query_where,
            bind=bind,
            with_dimension_records=True,
            explain=False,
            **data_id,
        )
        regions = [ref.dataId.region for ref in refs if ref.dataId.region is not None]
    else:
        element = "visit_detector_region" if detectors else "visit"
        records = butler.query_dimension_records(
            element, where=query_where, bind=bind, explain=False, **data_id
        )
        regions = [record.region for record in records if record.region is not None]
    if not regions:
        raise LookupError(
            f"No visit regions found for visits={list(visits or [])!r}, where={where!r}, "
            f"instrument={instrument!r}, collections={collections!r}, dataset_type={dataset_type!r}."
        )
    return regions
