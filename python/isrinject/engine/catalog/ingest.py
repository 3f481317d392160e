"""Put injection catalogs into a butler repository, sharded by HTM7 trixel.

Same dataset type as ``lsst.source.injection``: ``injection_catalog``,
storage class ``ArrowAstropy``, dimensions ``(htm7, band)``.
"""

from __future__ import annotations

__all__ = ["HTM_LEVEL", "htm_indices", "ingest_injection_catalog", "known_bands"]

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import lsst.sphgeom
import numpy as np
from astropy.table import Table, vstack

from ._sky import unit_vector_components

if TYPE_CHECKING:
    from lsst.daf.butler import Butler, DatasetRef

_LOG = logging.getLogger(__name__)

HTM_LEVEL = 7
"""HTM level of the ``htm7`` dimension used to shard catalogs."""


def htm_indices(ra: Any, dec: Any, level: int = HTM_LEVEL) -> np.ndarray:
    """HTM trixel index of each position.

    Parameters
    ----------
    ra, dec
        Positions in degrees (array-like, finite).
    level
        HTM level.

    Returns
    -------
    indices
        int64 trixel indices as `lsst.sphgeom.HtmPixelization` numbers them.

    Notes
    -----
    `lsst.sphgeom` has no vectorised ``index``; unit vectors are computed
    with numpy and passed as plain floats, which costs ≈1.5 µs per row
    (≈0.15 s for 10⁵ rows, about twice as fast as going through ``LonLat``).
    """
    ra_r = np.radians(np.asarray(ra, dtype=float))
    dec_r = np.radians(np.asarray(dec, dtype=float))
    if not (np.all(np.isfinite(ra_r)) and np.all(np.isfinite(dec_r))):
        raise ValueError("htm_indices needs finite ra and dec for every row.")
    x, y, z = (component.tolist() for component in unit_vector_components(ra_r, dec_r))
    pixelization = lsst.sphgeom.HtmPixelization(level)
    index = pixelization.index
    vector = lsst.sphgeom.UnitVector3d
    return np.fromiter((index(vector(a, b, c)) for a, b, c in zip(x, y, z)), dtype=np.int64, count=len(x))


def known_bands(butler: Butler) -> set[str]:
    """Bands defined in a repository (through its ``physical_filter`` records)."""
    records = butler.query_dimension_records("physical_filter", explain=False)
    return {record.band for record in records}


def ingest_injection_catalog(
    writeable_butler: Butler,
    table: Table | Sequence[Table],
    band: str,
    output_collection: str,
    dataset_type_name: str = "injection_catalog",
    log_level: int = logging.INFO,
) -> list[DatasetRef]:
    """Put an injection catalog into a butler repository.

    The catalog is split by HTM level-7 trixel of its ``ra``/``dec`` and each
    shard is put as one ``dataset_type_name`` dataset (``ArrowAstropy``,
    dimensions ``htm7, band``) into the RUN collection ``output_collection``.
    The table is stored as given (column names, units and extra columns kept).

    Parameters
    ----------
    writeable_butler
        A writeable `lsst.daf.butler.Butler`.
    table
        The catalog, or a list of catalogs that are stacked first.  Needs
        finite ``ra`` and ``dec`` in degrees.
    band
        Band the catalog is for; must be the band of some ``physical_filter``
        record of the repository.
    output_collection
        RUN collection to create (if needed) and put into.
    dataset_type_name
        Dataset type name, registered if needed.
    log_level
        Level of this function's progress message (source_injection's
        argument; the logger's own level is left to the application).

    Returns
    -------
    refs
        `lsst.daf.butler.DatasetRef` of every dataset put, one per trixel.

    Raises
    ------
    ValueError
        If ``band`` is unknown to the repository, the catalog lacks finite
        ``ra``/``dec``, or ``dataset_type_name`` exists with another
        definition.
    """
    from lsst.daf.butler import CollectionType, DatasetType

    if not isinstance(table, Table):
        table = vstack(list(table)) if len(table) else Table()
    missing = [name for name in ("ra", "dec") if name not in table.colnames]
    if missing:
        from .plausibility import column_suggestion

        found = {name: column_suggestion(name, table.colnames) for name in missing}
        hint = " ".join(f"--column {name}={column}" for name, column in found.items() if column)
        raise ValueError(
            f"Cannot shard the injection catalog by HTM7: column(s) {missing} missing "
            f"(columns are {table.colnames}); rename them to 'ra'/'dec' in degrees"
            + (f" (isrinject ingest-catalog: {hint})." if hint else ".")
        )
    ra = np.ma.getdata(table["ra"]).astype(float)
    dec = np.ma.getdata(table["dec"]).astype(float)
    bad = (
        np.ma.getmaskarray(table["ra"])
        | np.ma.getmaskarray(table["dec"])
        | ~np.isfinite(ra)
        | ~np.isfinite(dec)
    )
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"Cannot shard the injection catalog by HTM7: {len(rows)} row(s) without finite ra/dec "
            f"(rows {rows[:10].tolist()}{' ...' if len(rows) > 10 else ''})."
        )

    bands = known_bands(writeable_butler)
    if band not in bands:
        raise ValueError(
            f"Band {band!r} is not defined in this repository (known bands: {sorted(bands)}); "
            "insert a physical_filter record with this band first."
        )

    dataset_type = DatasetType(
        dataset_type_name, ("htm7", "band"), "ArrowAstropy", universe=writeable_butler.dimensions
    )
    try:
        writeable_butler.registry.registerDatasetType(dataset_type)
    except Exception as err:  # ConflictingDefinitionError
        raise ValueError(
            f"Dataset type {dataset_type_name!r} already exists with a different definition: {err}"
        ) from err
    writeable_butler.registry.registerCollection(output_collection, CollectionType.RUN)

    indices = htm_indices(ra, dec)
    order = np.argsort(indices, kind="stable")
    unique, starts = np.unique(indices[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    refs: list[DatasetRef] = []
    for trixel, start, end in zip(unique.tolist(), starts, ends):
        shard = table[np.sort(order[start:end])]
        refs.append(
            writeable_butler.put(shard, dataset_type, {"htm7": trixel, "band": band}, run=output_collection)
        )
    _LOG.log(
        log_level,
        "Ingested %d rows as %d %s-band %s dataset%s into %s.",
        len(table),
        len(refs),
        band,
        dataset_type_name,
        "" if len(refs) == 1 else "s",
        output_collection,
    )
    return refs
