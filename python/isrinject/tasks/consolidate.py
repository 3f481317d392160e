"""Gather the per-detector injected catalogs of a visit into one table.

`ConsolidateVisitCatalogsTask` (``pipelines/consolidate.yaml``) reads every
``injected_visit_image_catalog`` of a visit and writes one
``injected_visit_catalog`` (dimensions ``instrument, visit``), as
``lsst.source.injection``'s ``ConsolidateInjectedCatalogsTask`` does for
coadd patches.  `collect_injected_catalogs` (``isrinject
consolidate-catalogs``) does the same for every visit of a collection and
returns one table for analysis (one Parquet file).

A source whose stamp reaches several detectors (or whose centre lies within
``trim_padding`` of another detector) has one row per detector.  The column
``injected_isPrimary`` (``lsst.source.injection``'s name) marks the one row per
source and visit whose image holds the source centre:

- the centre pixel ``(floor(x + 0.5), floor(y + 0.5))`` lies inside that
  detector's image bounding box, and the row has no fatal flag
  (`isrinject.engine.flags.FATAL_FLAGS`);
- if several detectors qualify (overlapping images), the one whose box edge
  is farthest from the centre pixel, then the lowest detector ID;
- a source centred in a gap between detectors has no primary row.
"""

from __future__ import annotations

__all__ = [
    "ConsolidateVisitCatalogsConfig",
    "ConsolidateVisitCatalogsConnections",
    "ConsolidateVisitCatalogsTask",
    "collect_injected_catalogs",
    "consolidate_visit_catalogs",
    "read_injected_catalog",
]

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Column, Table, vstack
from lsst.daf.butler import Butler, DatasetProvenance
from lsst.images import Box
from lsst.pex.config import Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from ..engine.flags import FATAL_FLAGS, flag_descriptions, flag_meanings
from .marking import CONFIG_HASH_KEY, VERSION_KEY

_VISIT_DETECTOR = ("instrument", "visit", "detector")

#: Read parameters keeping the astropy metadata (flag bits, units) that the
#: ArrowAstropy formatter strips by default.
_KEEP_META = {"strip_astropy_meta_yaml": False}


def read_injected_catalog(handle: Any) -> Table:
    """Read an ``injected_visit_image_catalog`` with its units and metadata.

    Parameters
    ----------
    handle
        A `~lsst.daf.butler.DeferredDatasetHandle`.
    """
    return handle.get(parameters=_KEEP_META)


def _primary_rows(
    injection_id: np.ndarray, detector: np.ndarray, edge_distance: np.ndarray, candidate: np.ndarray
) -> np.ndarray:
    """One True per ``injection_id`` among the candidates: the largest edge distance, then the lowest detector."""
    primary = np.zeros(len(injection_id), dtype=bool)
    if not np.any(candidate):
        return primary
    rows = np.flatnonzero(candidate)
    order = rows[np.lexsort((detector[rows], -edge_distance[rows], injection_id[rows]))]
    first = np.ones(len(order), dtype=bool)
    first[1:] = injection_id[order[1:]] != injection_id[order[:-1]]
    primary[order[first]] = True
    return primary


def consolidate_visit_catalogs(
    catalogs: Mapping[int, Table],
    image_bboxes: Mapping[int, Box],
    *,
    visit: int,
    band: str,
    primary_column: str = "injected_isPrimary",
) -> Table:
    """Stack the injected catalogs of one visit's detectors and mark primary rows.

    Parameters
    ----------
    catalogs
        Detector ID → its ``injected_visit_image_catalog`` (with the
        absolute pixel ``x``, ``y`` the task writes).  Not modified.
    image_bboxes
        Detector ID → bounding box of its injected image (every detector of
        ``catalogs``).
    visit, band
        Written into the ``visit`` and ``band`` columns.
    primary_column
        Name of the boolean primary column (see the module docstring).

    Returns
    -------
    visit_catalog
        Every input row once (``len`` = the sum of the inputs' lengths),
        ordered by detector then input order, with ``visit``, ``detector``,
        ``band``, ``scaling_source`` (each detector's ``scaling_source``
        metadata) and ``primary_column`` columns; metadata: the flag bits
        (``{name: bit}``, as the inputs), ``injection_flag_meanings`` and the
        ``primary_column`` definition.  Butler provenance is dropped.

    Raises
    ------
    ValueError
        If a detector has a catalog but no bounding box, or a catalog lacks
        the ``injection_id``, ``injection_flag``, ``x`` or ``y`` column.
    """
    if missing := sorted(set(catalogs) - set(image_bboxes)):
        raise ValueError(f"Visit {visit}: no image bounding box for detector(s) {missing}.")
    tables = []
    # isrinject's version and config hash of each detector's run (tasks.marking).
    provenance: dict[str, set[str]] = {VERSION_KEY: set(), CONFIG_HASH_KEY: set()}
    for detector in sorted(catalogs):
        catalog = catalogs[detector]
        if absent := [c for c in ("injection_id", "injection_flag", "x", "y") if c not in catalog.colnames]:
            raise ValueError(f"Visit {visit}, detector {detector}: the injected catalog has no column(s) {absent}.")
        table = Table(catalog, copy=True)
        meta = dict(table.meta)
        DatasetProvenance.strip_provenance_from_flat_dict(meta)
        for key, values in provenance.items():
            if key in meta:
                values.add(str(meta[key]))
        table.meta.clear()
        n_rows = len(table)
        bbox = image_bboxes[detector]
        x = np.ma.filled(np.ma.asarray(table["x"], dtype=float), np.nan)
        y = np.ma.filled(np.ma.asarray(table["y"], dtype=float), np.nan)
        located = np.isfinite(x) & np.isfinite(y)
        ix = np.floor(np.where(located, x, 0.0) + 0.5)
        iy = np.floor(np.where(located, y, 0.0) + 0.5)
        inside = located & bbox.contains(x=ix, y=iy)
        edge_distance = np.minimum.reduce([ix - bbox.x.min, bbox.x.max - ix, iy - bbox.y.min, bbox.y.max - iy])
        flags = np.ma.filled(np.ma.asarray(table["injection_flag"], dtype=np.int64), int(FATAL_FLAGS))
        table["_candidate"] = inside & ((flags & int(FATAL_FLAGS)) == 0)
        table["_edge_distance"] = np.where(inside, edge_distance, -np.inf)
        table.add_column(Column(np.full(n_rows, visit, dtype=np.int64), name="visit"), index=1)
        table.add_column(Column(np.full(n_rows, detector, dtype=np.int64), name="detector"), index=2)
        table.add_column(Column(np.full(n_rows, band, dtype=f"<U{max(len(band), 1)}"), name="band"), index=3)
        source = str(meta.get("scaling_source", ""))
        table["scaling_source"] = np.full(n_rows, source, dtype=f"<U{max(len(source), 1)}")
        tables.append(table)
    if not tables:
        raise ValueError(f"Visit {visit}: no injected catalogs to consolidate.")
    visit_catalog = vstack(tables, join_type="outer", metadata_conflicts="silent") if len(tables) > 1 else tables[0]
    injection_id = np.ma.filled(np.ma.asarray(visit_catalog["injection_id"], dtype=np.int64), -1)
    primary = _primary_rows(
        injection_id, np.asarray(visit_catalog["detector"]), np.asarray(visit_catalog["_edge_distance"]),
        np.asarray(visit_catalog["_candidate"]) & (injection_id >= 0),
    )
    visit_catalog.remove_columns(["_candidate", "_edge_distance"])
    visit_catalog.add_column(
        Column(primary, name=primary_column), index=visit_catalog.colnames.index("injection_flag") + 1
    )
    visit_catalog.meta.clear()
    visit_catalog.meta.update(flag_descriptions())
    visit_catalog.meta["injection_flag_doc"] = "bit index of each flag; meanings in injection_flag_meanings"
    visit_catalog.meta["injection_flag_meanings"] = flag_meanings()
    visit_catalog.meta[primary_column] = (
        "the row of the detector whose image holds the source centre (no fatal flag; the centre farthest "
        "from the image edge if several do); sources centred off every image have none"
    )
    # The per-detector runs' version and config hash, kept (comma-separated if they differ).
    for key, values in provenance.items():
        if values:
            visit_catalog.meta[key] = ",".join(sorted(values))
    return visit_catalog


class ConsolidateVisitCatalogsConnections(
    PipelineTaskConnections, dimensions=("instrument", "visit"), defaultTemplates={"injected_prefix": "injected_"}
):
    """Connections of `ConsolidateVisitCatalogsTask`."""

    catalogs = cT.Input(
        doc="Per-detector injected catalogs of the visit.",
        name="{injected_prefix}visit_image_catalog",
        storageClass="ArrowAstropy",
        dimensions=_VISIT_DETECTOR,
        multiple=True,
        # Read with their metadata (`read_injected_catalog`).
        deferLoad=True,
    )
    image_bboxes = cT.Input(
        doc="Bounding boxes of the injected images (which detector holds a source centre).",
        name="{injected_prefix}visit_image.bbox",
        storageClass="BoxV2",
        dimensions=_VISIT_DETECTOR,
        multiple=True,
    )
    visit_catalog = cT.Output(
        doc="All injected sources of the visit: one row per detector a source was considered on.",
        name="{injected_prefix}visit_catalog",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit"),
    )


class ConsolidateVisitCatalogsConfig(PipelineTaskConfig, pipelineConnections=ConsolidateVisitCatalogsConnections):
    """Configuration of `ConsolidateVisitCatalogsTask`."""

    col_is_primary = Field[str](
        doc="Column marking each source's primary row (lsst.source.injection's isPrimaryKey).",
        default="injected_isPrimary",
    )


class ConsolidateVisitCatalogsTask(PipelineTask):
    """Gather the ``injected_visit_image_catalog`` of every detector of a
    visit into one ``injected_visit_catalog`` (`consolidate_visit_catalogs`)."""

    ConfigClass = ConsolidateVisitCatalogsConfig
    _DefaultName = "consolidateVisitCatalogs"
    config: ConsolidateVisitCatalogsConfig

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        inputs = butlerQC.get(inputRefs)
        catalogs = {handle.dataId["detector"]: read_injected_catalog(handle) for handle in inputs["catalogs"]}
        bboxes = {ref.dataId["detector"]: bbox for ref, bbox in zip(inputRefs.image_bboxes, inputs["image_bboxes"])}
        data_id = butlerQC.quantum.dataId
        butlerQC.put(
            self.run(catalogs=catalogs, image_bboxes=bboxes, visit=data_id["visit"], band=data_id["band"]),
            outputRefs,
        )

    def run(self, *, catalogs: Mapping[int, Table], image_bboxes: Mapping[int, Box], visit: int, band: str) -> Struct:
        """Consolidate one visit.

        Returns
        -------
        result
            ``visit_catalog`` (`astropy.table.Table`).
        """
        visit_catalog = consolidate_visit_catalogs(
            catalogs, image_bboxes, visit=visit, band=band, primary_column=self.config.col_is_primary
        )
        self.log.info(
            "Visit %d: %d rows from %d detectors, %d primary sources.",
            visit, len(visit_catalog), len(catalogs), int(np.sum(visit_catalog[self.config.col_is_primary])),
        )
        return Struct(visit_catalog=visit_catalog)


def collect_injected_catalogs(
    butler: Butler,
    collections: str | Sequence[str],
    *,
    where: str = "",
    prefix: str = "injected_",
    primary_column: str = "injected_isPrimary",
) -> Table:
    """Consolidate every injected catalog of ``collections`` into one table.

    Each visit is consolidated as `ConsolidateVisitCatalogsTask` does (the
    per-detector ``<prefix>visit_image_catalog`` and the bounding boxes of
    ``<prefix>visit_image``); the visits are stacked ordered by band, visit,
    detector.

    Parameters
    ----------
    butler
        Butler of the repository.
    collections
        Collections to search (find-first).
    where
        Data ID expression restricting the catalogs (``visit IN (...)``, ...).
    prefix
        Prefix of the injected dataset types.
    primary_column
        Name of the primary column.

    Returns
    -------
    catalog
        One row per input catalog row (see `consolidate_visit_catalogs`).

    Raises
    ------
    LookupError
        If the collections hold no injected catalog, or a catalog's injected
        image is missing (its bounding box decides the primary rows).
    """
    catalog_type, image_type = f"{prefix}visit_image_catalog", f"{prefix}visit_image"
    refs = butler.query_datasets(catalog_type, collections=collections, where=where, explain=False)
    if not refs:
        raise LookupError(f"No {catalog_type} datasets in {collections!r}" + (f" with {where!r}." if where else "."))
    images = {
        ref.dataId.required_values: ref
        for ref in butler.query_datasets(image_type, collections=collections, where=where, explain=False)
    }
    by_visit: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for ref in refs:
        by_visit[(str(ref.dataId["band"]), int(ref.dataId["visit"]))].append(ref)
    tables = []
    for (band, visit), visit_refs in sorted(by_visit.items()):
        catalogs, bboxes = {}, {}
        for ref in visit_refs:
            detector = ref.dataId["detector"]
            image_ref = images.get(ref.dataId.required_values)
            if image_ref is None:
                raise LookupError(f"No {image_type} for {catalog_type} {ref.dataId} in {collections!r}.")
            catalogs[detector] = butler.get(ref, parameters=_KEEP_META)
            bboxes[detector] = butler.get(image_ref.makeComponentRef("bbox"))
        tables.append(
            consolidate_visit_catalogs(catalogs, bboxes, visit=visit, band=band, primary_column=primary_column)
        )
    combined = vstack(tables, join_type="outer", metadata_conflicts="silent") if len(tables) > 1 else tables[0]
    combined.meta = tables[0].meta
    return combined
