"""Build a local SQLite butler repository that a visit+detector pipeline can run on.

Without obs_base there is no ``butler register-instrument`` / ``define-visits``:
this module inserts the dimension records by hand (instrument, physical_filter
and band, detector, day_obs, visit *with a timespan*, visit_detector_region),
registers the dataset types, and certifies calibrations with validity ranges
in a CALIBRATION collection, as ``butler certify-calibrations`` would.
"""

from __future__ import annotations

__all__ = [
    "CALIBRATION_DATASET_TYPES",
    "RepoLayout",
    "certify_calibration",
    "create_repo",
    "detector_region",
    "put_visit_image",
    "register_dataset_types",
    "register_instrument",
    "register_visit",
    "set_input_chain",
]

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from astropy.time import Time
from lsst.daf.butler import Butler, CollectionType, DatasetRef, DatasetType, Timespan
from lsst.images import XY, Box, SkyProjection, VisitImage
from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

#: Calibration dataset types: name → (storage class, dimensions).
CALIBRATION_DATASET_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "flat": ("MaskedImageV2", ("instrument", "detector", "physical_filter")),
    "illuminationCorrection": ("ImageV2", ("instrument", "detector", "physical_filter")),
}


@dataclasses.dataclass(frozen=True)
class RepoLayout:
    """Collection names of a demo-style repository."""

    instrument: str = "ISRSim"
    raw_run: str = "ISRSim/raw/visit_images"
    calib_run: str = "ISRSim/calib/run"
    calib_collection: str = "ISRSim/calib"
    catalog_run: str = "injection/catalogs"
    inputs: str = "ISRSim/defaults"


def create_repo(root: str) -> Butler:
    """Create an empty SQLite repository at ``root`` and return a writeable butler."""
    Butler.makeRepo(root)
    return Butler.from_config(root, writeable=True)


def register_instrument(
    butler: Butler,
    instrument: str,
    *,
    bands: Sequence[str],
    detectors: Sequence[int],
    physical_filter_template: str = "{band}_sim",
) -> dict[str, str]:
    """Insert instrument, physical_filter (with band) and detector records.

    Returns
    -------
    physical_filters
        ``band → physical_filter`` name.
    """
    registry = butler.registry
    registry.insertDimensionData(
        "instrument",
        {
            "name": instrument,
            "visit_max": 2**30,
            "visit_system": 0,
            "exposure_max": 2**30,
            "detector_max": 1000,
            "class_name": "isrinject.sim.SimulatedInstrument",
        },
        skip_existing=True,
    )
    filters = {band: physical_filter_template.format(band=band) for band in bands}
    registry.insertDimensionData(
        "physical_filter",
        *[{"instrument": instrument, "name": name, "band": band} for band, name in filters.items()],
        skip_existing=True,
    )
    registry.insertDimensionData(
        "detector",
        *[
            {
                "instrument": instrument,
                "id": detector,
                "full_name": f"S{detector:02d}",
                "name_in_raft": f"S{detector:02d}",
                "raft": "R22",
                "purpose": "SCIENCE",
            }
            for detector in detectors
        ],
        skip_existing=True,
    )
    return filters


def detector_region(sky_projection: SkyProjection, bbox: Box) -> ConvexPolygon:
    """The sky polygon of a detector's pixel box (for ``visit_detector_region``)."""
    xs = np.array([bbox.x.min - 0.5, bbox.x.max + 0.5, bbox.x.max + 0.5, bbox.x.min - 0.5])
    ys = np.array([bbox.y.min - 0.5, bbox.y.min - 0.5, bbox.y.max + 0.5, bbox.y.max + 0.5])
    sky = sky_projection.pixel_to_sky(XY(x=xs, y=ys))
    vertices = [
        UnitVector3d(LonLat.fromDegrees(float(ra), float(dec))) for ra, dec in zip(sky.ra.deg, sky.dec.deg)
    ]
    return ConvexPolygon(vertices)


def register_visit(
    butler: Butler,
    instrument: str,
    *,
    visit: int,
    physical_filter: str,
    begin: Time,
    end: Time,
    detector_regions: dict[int, ConvexPolygon],
    exposure_time: float = 30.0,
) -> None:
    """Insert day_obs, visit (with timespan and region) and visit_detector_region records.

    The visit's timespan is what calibration lookups use, so ``begin`` /
    ``end`` decide which certified flat the graph builder picks.
    """
    registry = butler.registry
    day_obs = int(begin.to_datetime().strftime("%Y%m%d"))
    registry.insertDimensionData(
        "day_obs",
        {"instrument": instrument, "id": day_obs, "timespan": Timespan(begin, end)},
        skip_existing=True,
    )
    vertices = [v for region in detector_regions.values() for v in region.getVertices()]
    registry.insertDimensionData(
        "visit",
        {
            "instrument": instrument,
            "id": visit,
            "name": f"visit_{visit}",
            "physical_filter": physical_filter,
            "day_obs": day_obs,
            "seq_num": visit % 100000,
            "exposure_time": exposure_time,
            "target_name": "isrinject-demo",
            "observation_reason": "science",
            "science_program": "isrinject",
            "timespan": Timespan(begin, end),
            "region": ConvexPolygon.convexHull(vertices),
        },
        skip_existing=True,
    )
    registry.insertDimensionData(
        "visit_detector_region",
        *[
            {"instrument": instrument, "visit": visit, "detector": detector, "region": region}
            for detector, region in detector_regions.items()
        ],
        skip_existing=True,
    )


def register_dataset_types(butler: Butler, *, visit_image_storage_class: str = "VisitImage") -> None:
    """Register ``visit_image``, the calibrations and ``injection_catalog``."""
    universe = butler.dimensions
    dataset_types = [
        DatasetType(
            "visit_image", ("instrument", "visit", "detector"), visit_image_storage_class, universe=universe
        ),
        DatasetType("injection_catalog", ("htm7", "band"), "ArrowAstropy", universe=universe),
    ]
    dataset_types += [
        DatasetType(name, dims, storage_class, universe=universe, isCalibration=True)
        for name, (storage_class, dims) in CALIBRATION_DATASET_TYPES.items()
    ]
    for dataset_type in dataset_types:
        butler.registry.registerDatasetType(dataset_type)


def put_visit_image(
    butler: Butler, visit_image: VisitImage, *, instrument: str, visit: int, detector: int, run: str
) -> DatasetRef:
    """Put a visit image into ``run`` (created if needed)."""
    butler.registry.registerCollection(run, CollectionType.RUN)
    return butler.put(visit_image, "visit_image", instrument=instrument, visit=visit, detector=detector, run=run)


def certify_calibration(
    butler: Butler,
    dataset_type: str,
    obj: Any,
    *,
    data_id: dict[str, Any],
    run: str,
    calib_collection: str,
    begin: Time | None,
    end: Time | None,
) -> DatasetRef:
    """Put a calibration into ``run`` and certify it for [begin, end) in ``calib_collection``."""
    butler.registry.registerCollection(run, CollectionType.RUN)
    butler.registry.registerCollection(calib_collection, CollectionType.CALIBRATION)
    ref = butler.put(obj, dataset_type, data_id, run=run)
    butler.registry.certify(calib_collection, [ref], Timespan(begin, end))
    return ref


def set_input_chain(butler: Butler, chain: str, children: Iterable[str]) -> None:
    """Define (or redefine) a CHAINED collection of the given children."""
    butler.registry.registerCollection(chain, CollectionType.CHAINED)
    butler.collections.redefine_chain(chain, list(children))
