"""``isrinject diagnose``: check an injection run against the ISR flux–variance relation.

For every visit (pooling its detectors) this reads from the butler

- ``injected_visit_image`` and ``injected_visit_image_catalog`` (the run's outputs),
- ``visit_image`` (the original), the ``flat`` certified at the visit's
  time (calibration lookup with the visit's timespan) and, when the run
  used one, ``illuminationCorrection``,
- ``<label>_config`` (default ``inject_visit_config``): the task
  configuration of the run,

re-renders the noiseless model ``M`` and its expected variance ``ΔV`` by
running `isrinject.engine.inject.inject_sources` on the original image with the run's
configuration and ``add_noise=False`` on the output catalog's rows, and
computes with `isrinject.diagnostics.stats`, on whole detectors or on
cutouts (``cutout``, `boxes_around`):

- the per-pixel relation residual ``(V − V₀)/ΔV_ISR − 1`` of the injected
  pixels against the ISR relation of their own pixel (no real pixels needed),
- the realized-noise ratio ``var(ΔI − M)/E[ΔV]`` of the injected pixels,
- the slopes of the flat-normalised ``(x, y) = (I·g, V·g²)`` relation of
  real and injected pixels (1 for ISR) and the KS test of their per-pixel
  residuals ``r = (y − b̂ − q̂)/x − 1``, where there are enough real pixels,
- per-source flux recovery (realized vs model flux, and its pull
  ``(F − F_model)/√(F_model/g)``),

and decides PASS/FAIL with `isrinject.diagnostics.verdict.verdict` (checks
that cannot run are reported as not available with the reason).  With
``catalog_checks`` it measures the isolated injected stars with photutils
(`isrinject.diagnostics.photometry`: forced PSF photometry pulls, detection
completeness against magnitude).

With ``compare_upstream`` the same is computed for what
``lsst.source.injection`` HEAD would have produced from the same model on the
same image (`isrinject.diagnostics.upstream`: one variance-vs-image slope per
amplifier fitted to the original image, variance ``s·M``, noise
``Poisson(s·M)/s``); with ``truth`` (for simulations) the catalog-level
checks also run on the same catalog put into the pre-flat electrons by the
simulator.  With ``discriminate`` a classifier two-sample test
(`isrinject.diagnostics.discriminate`) tries to tell real stars of the image
from injected stars of matched flux, in every arm.

Outputs (per visit, in ``output_dir``): ``<stem>_flux_variance.png``,
``<stem>_maps_d<detector>.png``, ``<stem>_completeness.png``,
``<stem>_pulls.png`` and ``<stem>.json``, plus ``diagnose_summary.json``
over all visits.
"""

from __future__ import annotations

__all__ = [
    "MissingDatasetError",
    "boxes_around",
    "diagnose",
    "statistics_dict",
]

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import astropy.units as u
import numpy as np
from astropy.table import Table, vstack
from lsst.daf.butler import Butler, DataCoordinate, DataId, DatasetRef
from lsst.images import Box, MaskedImage
from lsst.images.psfs import PointSpreadFunction

from ..engine.calibration import PixelCalibration
from ..engine.catalog import compose_catalog
from ..engine.flags import FATAL_FLAGS
from ..engine.inject import INJECTION_RESULT_COLUMNS, inject_sources
from ..engine.masks import mask_bits
from ..tasks.visit import VisitInjectConfig
from .advice import NOTHING_INJECTED, missing_collections_message, nothing_injected_line
from .forum import forum_cutout
from .results import CatalogChecks, DiagnosisResult, RegionData, VisitDiagnosis
from .stats import DetectorPixels, InjectionStatistics, injection_statistics
from .upstream import (
    UPSTREAM_BAD_MASK_NAMES,
    UPSTREAM_REFERENCE,
    UpstreamSlopes,
    fit_upstream_slopes,
    upstream_injection,
)
from .verdict import Verdict, criteria, verdict

if TYPE_CHECKING:
    from .discriminate import Discrimination

_LOG = logging.getLogger(__name__)
#: The noiseless re-render's logger: its warnings about the catalog repeat
#: what the run logged, so only errors are shown.
_RERENDER_LOG = logging.getLogger(f"{__name__}.rerender")
_RERENDER_LOG.setLevel(logging.ERROR)

#: Columns the task adds to the injection catalog (dropped before re-rendering).
_OUTPUT_COLUMNS = ("x", "y", *INJECTION_RESULT_COLUMNS)


class MissingDatasetError(LookupError):
    """A dataset needed by the diagnosis is not in the given collections."""

    def __init__(self, dataset_type: str, data_id: DataId, collections: Sequence[str], hint: str = "") -> None:
        self.dataset_type = dataset_type
        self.data_id = dict(data_id.required) if hasattr(data_id, "required") else dict(data_id)
        self.collections = list(collections)
        ids = ", ".join(f"{k}={v!r}" for k, v in self.data_id.items()) or "(no dimensions)"
        message = f"Dataset {dataset_type!r} not found for data ID {{{ids}}} in collections {self.collections}."
        if hint:
            message += " " + hint
        super().__init__(message)


# --------------------------------------------------------------------------- butler access


def _as_list(value: int | Iterable[int] | None) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return [int(value)]
    return [int(v) for v in value]


def _find(
    butler: Butler, dataset_type: str, data_id: DataId, collections: Sequence[str], hint: str = "", **kwargs: Any
) -> DatasetRef:
    """Resolve a dataset or raise `MissingDatasetError` naming it."""
    try:
        ref = butler.find_dataset(dataset_type, data_id, collections=list(collections), **kwargs)
    except Exception as err:  # unknown dataset type, bad data ID, …
        raise MissingDatasetError(
            dataset_type, data_id, collections, f"({type(err).__name__}: {err}) {hint}".strip()
        ) from err
    if ref is None:
        raise MissingDatasetError(dataset_type, data_id, collections, hint)
    return ref


def _get(
    butler: Butler, dataset_type: str, data_id: DataId, collections: Sequence[str], **kwargs: Any
) -> tuple[Any, DatasetRef]:
    ref = _find(butler, dataset_type, data_id, collections, **kwargs)
    return butler.get(ref), ref


def _instrument(butler: Butler, instrument: str | None) -> str:
    if instrument:
        return instrument
    names = sorted(rec.name for rec in butler.registry.queryDimensionRecords("instrument"))
    if len(names) != 1:
        raise ValueError(f"The repository has instruments {names}; choose one with instrument=/--instrument.")
    return names[0]


def _data_ids(
    butler: Butler,
    instrument: str,
    visits: list[int] | None,
    detectors: list[int] | None,
    bands: list[str] | None,
    collections: Sequence[str],
) -> dict[int, list[DataCoordinate]]:
    """visit → expanded data IDs (one per detector) to diagnose."""
    result: dict[int, list[DataCoordinate]] = {}
    if visits is None or detectors is None:
        # Whatever the run wrote, restricted by the given visits/detectors/bands.
        try:
            refs = butler.query_datasets(
                "injected_visit_image", collections=list(collections), instrument=instrument,
                find_first=True, with_dimension_records=True, explain=False,
            )
        except Exception as err:
            raise MissingDatasetError("injected_visit_image", {"instrument": instrument}, collections,
                                      f"({type(err).__name__}: {err})") from err
        for ref in refs:
            did = ref.dataId
            if visits is not None and did["visit"] not in visits:
                continue
            if detectors is not None and did["detector"] not in detectors:
                continue
            if bands and did["band"] not in bands:
                continue
            result.setdefault(int(did["visit"]), []).append(did)
        if not result:
            what: dict[str, object] = {"instrument": instrument}
            if visits:
                what["visit"] = visits
            if detectors:
                what["detector"] = detectors
            if bands:
                what["band"] = bands
            raise MissingDatasetError("injected_visit_image", what, collections)
        return {v: sorted(ids, key=lambda d: d["detector"]) for v, ids in sorted(result.items())}
    for visit in visits:
        for detector in detectors:
            try:
                did = butler.registry.expandDataId(instrument=instrument, visit=visit, detector=detector)
            except Exception as err:
                raise LookupError(
                    f"No visit {visit} / detector {detector} of instrument {instrument!r} in the repository "
                    f"({type(err).__name__}: {err})."
                ) from err
            if bands and did["band"] not in bands:
                raise ValueError(f"Visit {visit} is in band {did['band']!r}, not in {bands}.")
            result.setdefault(visit, []).append(did)
    return result


# --------------------------------------------------------------------------- one detector


def _rerender_catalog(catalog: Table) -> Table:
    """The output catalog's rows as the task composed them (before drawing)."""
    table = Table(catalog, copy=True)
    has_sky = {"ra", "dec"} <= set(table.colnames)
    drop = [c for c in _OUTPUT_COLUMNS if c in table.colnames and (has_sky or c not in ("x", "y"))]
    table.remove_columns(drop)
    return compose_catalog([table])


def boxes_around(
    positions: Sequence[tuple[float, float]], size: int
) -> list[tuple[int, int, int, int]]:
    """``(x0, y0, width, height)`` of ``size``×``size`` cutouts centred on pixel positions ``(x, y)``.

    Raises
    ------
    ValueError
        If ``size`` < 16 (too few background pixels for the baseline fit).
    """
    if size < 16:
        raise ValueError(f"Cutout size must be at least 16 pixels; got {size!r}.")
    return [(round(x) - size // 2, round(y) - size // 2, size, size) for x, y in positions]


def _as_cutouts(
    cutout: tuple[int, int, int, int] | Sequence[tuple[int, int, int, int]] | None,
) -> list[tuple[int, int, int, int]] | None:
    """One ``(x0, y0, width, height)`` or a list of them → a list (`None` for none)."""
    if cutout is None or len(cutout) == 0:
        return None
    boxes = [cutout] if isinstance(cutout[0], (int, np.integer)) else cutout
    return [(int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in boxes]  # type: ignore[arg-type, index]


def _region_boxes(bbox: Box, cutouts: Sequence[tuple[int, int, int, int]] | None, detector: int) -> list[Box]:
    """The detector's bbox, or every cutout clipped to it."""
    if not cutouts:
        return [bbox]
    boxes = []
    for x0, y0, width, height in cutouts:
        if width <= 0 or height <= 0:
            raise ValueError(f"Cutout (x0, y0, width, height) = {(x0, y0, width, height)} has no pixels.")
        ys = (max(y0, bbox.y.start), min(y0 + height, bbox.y.stop))
        xs = (max(x0, bbox.x.start), min(x0 + width, bbox.x.stop))
        if ys[1] <= ys[0] or xs[1] <= xs[0]:
            raise ValueError(
                f"Cutout (x0, y0, width, height) = {(x0, y0, width, height)} does not overlap detector {detector} "
                f"(bbox {bbox})."
            )
        boxes.append(Box.factory[ys[0] : ys[1], xs[0] : xs[1]])
    return boxes


def _detector_regions(
    butler: Butler,
    data_id: DataCoordinate,
    *,
    collections: Sequence[str],
    input_collections: Sequence[str],
    config: VisitInjectConfig,
    compare_upstream: bool,
    cutouts: Sequence[tuple[int, int, int, int]] | None,
    seed: int,
    catalog_checks: bool,
    truth: Callable[[int, int], MaskedImage] | None,
    discriminate: bool = False,
) -> list[RegionData]:
    injected, _ = _get(butler, "injected_visit_image", data_id, collections)
    catalog, _ = _get(butler, "injected_visit_image_catalog", data_id, collections)
    original, _ = _get(butler, "visit_image", data_id, input_collections)
    visit_record = data_id.records["visit"] if data_id.hasRecords() else None
    timespan = visit_record.timespan if visit_record is not None else None
    flat, flat_ref = _get(butler, "flat", data_id, input_collections, timespan=timespan)
    illumination = None
    if config.do_illumination_correction:
        illumination, _ = _get(butler, "illuminationCorrection", data_id, input_collections, timespan=timespan)
    visit_id, detector_id = int(data_id["visit"]), int(data_id["detector"])
    boxes = _region_boxes(original.bbox, cutouts, detector_id)

    # Noiseless re-render with the run's configuration.
    noiseless_config = cast(VisitInjectConfig, config.copy())
    noiseless_config.add_noise = False
    noiseless_config.inject_variance = True
    rows = _rerender_catalog(catalog)
    rng = np.random.default_rng([seed, visit_id, detector_id])
    noiseless = inject_sources(
        original, rows, flat=flat, illumination=illumination, config=noiseless_config, rng=rng,
        log=_RERENDER_LOG, visit_id=visit_id,
    )
    i0 = np.asarray(original.image.array, np.float64)
    v0 = np.asarray(original.variance.array, np.float64)
    model = np.asarray(noiseless.image.image.array, np.float64) - i0
    expected_variance = np.asarray(noiseless.image.variance.array, np.float64) - v0
    extended_model = None
    if catalog_checks or discriminate:
        # The extended sources alone, so the stars' isolation can allow for their wings.
        from .photometry import POINT_SOURCE_TYPES

        extended_rows = rows[~np.isin(np.asarray(rows["source_type"]).astype(str), POINT_SOURCE_TYPES)]
        extended_model = np.zeros(i0.shape)
        if len(extended_rows):
            extended = inject_sources(original, extended_rows, flat=flat, illumination=illumination,
                                      config=noiseless_config, rng=np.random.default_rng(0), log=_LOG,
                                      visit_id=visit_id)
            extended_model = np.asarray(extended.image.image.array, np.float64) - i0

    bbox = original.bbox
    # The planes and c the noiseless injection used (the run's configuration).
    used = noiseless.planes
    scaling = used.calibration.image_per_electron_on(bbox)
    grid = bbox.meshgrid()
    read_noise, _ = used.calibration.amplifier_terms_at(grid.x, grid.y)
    amp_index = used.calibration.layout.index_on(bbox)  # the amplifiers the injection used
    injected_mask = np.asarray(injected.mask.get(config.mask_plane_name), bool)
    bad = mask_bits(injected, config.bad_mask_names) | mask_bits(original, config.bad_mask_names)
    pixels = DetectorPixels(
        original_image=i0, original_variance=v0,
        image=np.asarray(injected.image.array, np.float64), variance=np.asarray(injected.variance.array, np.float64),
        flat=used.flat, flat_variance=used.flat_variance, scaling=scaling, injected=injected_mask,
        model=model, expected_variance=expected_variance, illumination=used.illumination, bad=bad,
        amp_index=amp_index, read_noise=np.nan_to_num(read_noise),
    )
    upstream_pixels = None
    upstream_slopes: UpstreamSlopes | None = None
    slope_map = np.full(i0.shape, np.nan)
    if compare_upstream:
        # The peer package fits its slopes on the original image, per amplifier, before injecting.
        upstream_bad = mask_bits(original, UPSTREAM_BAD_MASK_NAMES) | ~np.isfinite(i0) | ~np.isfinite(v0)
        upstream_slopes = fit_upstream_slopes(i0, v0, bad=upstream_bad, amp_index=amp_index)
        slope_map = upstream_slopes.on(amp_index)
        injected_model = np.where(injected_mask, model, 0.0)
        image_u, variance_u = upstream_injection(i0, v0, injected_model, slope=slope_map, rng=rng)
        upstream_pixels = dataclasses.replace(
            pixels, image=image_u, variance=variance_u,
            expected_variance=slope_map * np.clip(injected_model, 0.0, None),
        )
    sources = _source_table(catalog, noiseless.catalog, visit_id, detector_id)
    regions = []
    for box in boxes:
        sl = box.slice_within(bbox)
        local = (sl.y, sl.x)
        regions.append(RegionData(
            detector=detector_id, bbox=box, pixels=_cut(pixels, local),
            upstream_pixels=None if upstream_pixels is None else _cut(upstream_pixels, local),
            unit=str(original.unit), upstream_slope=slope_map[local], upstream_slopes=upstream_slopes,
            sources=sources, flat_ref=flat_ref, psf=original.psf,
            extended_model=None if extended_model is None else extended_model[local],
        ))
    if catalog_checks or discriminate:
        truth_image = truth(visit_id, detector_id) if truth is not None else None
        for region in regions:
            _measure_region(region, original.psf, used.calibration, truth_image,
                            catalog_checks=catalog_checks, discriminate=discriminate)
    return regions


def _catalog_checks(regions: Sequence[RegionData]) -> dict[str, CatalogChecks]:
    """label → pull statistics and completeness of the regions' stars (pooled, common magnitude bins)."""
    from .photometry import magnitude_edges, summarise

    labels = list(dict.fromkeys(label for r in regions for label in r.measurements))
    tables = {label: vstack([r.measurements[label] for r in regions if label in r.measurements]) for label in labels}
    if not tables:
        return {}
    edges = magnitude_edges(np.asarray(tables[labels[0]]["mag"], np.float64))
    return {label: summarise(label, table, edges) for label, table in tables.items()}


def _measure_region(
    region: RegionData, psf: PointSpreadFunction, calibration: PixelCalibration, truth_image: MaskedImage | None,
    *, catalog_checks: bool = True, discriminate: bool = False,
) -> None:
    """Forced photometry and detection of the region's isolated injected stars in every image compared
    (``region.measurements``) and, with ``discriminate``, the classifier features of real and injected stars
    (``region.features``)."""
    from . import photometry

    src = region.sources
    box = region.bbox
    x, y = np.asarray(src["x"], np.float64), np.asarray(src["y"], np.float64)
    injected = np.asarray(src["injected"], bool)
    inside = (x >= box.x.start - 0.5) & (x < box.x.stop - 0.5) & (y >= box.y.start - 0.5) & (y < box.y.stop - 0.5)
    point = np.isin(np.asarray(src["source_type"]).astype(str), photometry.POINT_SOURCE_TYPES)
    pick = injected & inside & point & np.isfinite(np.asarray(src["catalog_flux_njy"], np.float64))
    stars = Table({
        "visit": src["visit"][pick], "detector": src["detector"][pick], "injection_id": src["injection_id"][pick],
        "x": x[pick], "y": y[pick], "mag": np.asarray(src["mag"], np.float64)[pick],
        "flux": np.asarray(src["catalog_flux_njy"], np.float64)[pick]
        * np.asarray(calibration.image_units_per_njy_at(x[pick], y[pick]), np.float64),
        "fwhm": [photometry.psf_fwhm(psf, xi, yi) for xi, yi in zip(x[pick], y[pick])],
    })
    p = region.pixels
    fwhm = float(np.median(stars["fwhm"])) if len(stars) else photometry.psf_fwhm(
        psf, 0.5 * (box.x.start + box.x.stop), 0.5 * (box.y.start + box.y.stop))
    original_segments = photometry.detect(p.original_image, p.original_variance, p.bad, fwhm)
    keep = photometry.isolated(np.asarray(stars["x"]), np.asarray(stars["y"]), x[injected], y[injected],
                               np.asarray(stars["fwhm"]), original_segments, box)
    if region.extended_model is not None:
        shift = photometry.neighbour_pull(region.extended_model, p.original_variance, psf, np.asarray(stars["x"]),
                                          np.asarray(stars["y"]), np.asarray(stars["fwhm"]), box)
        keep &= np.abs(np.nan_to_num(shift, nan=np.inf)) <= photometry.MAX_NEIGHBOUR_PULL
    stars = stars[keep]
    images = {"isrinject": (p.image, p.variance)}
    if region.upstream_pixels is not None:
        images["upstream"] = (region.upstream_pixels.image, region.upstream_pixels.variance)
    if truth_image is not None:
        sl = box.slice_within(truth_image.bbox)
        images["truth"] = (np.asarray(truth_image.image.array, np.float64)[sl.y, sl.x],
                           np.asarray(truth_image.variance.array, np.float64)[sl.y, sl.x])
    if catalog_checks:
        region.measurements = {label: photometry.measure_stars(image, variance, p.bad, psf, box, stars)
                               for label, (image, variance) in images.items()}
    if discriminate:
        from .discriminate import find_real_stars, star_features

        real = find_real_stars(p.original_image, p.original_variance, p.bad, fwhm, x[injected], y[injected],
                               box.x.start, box.y.start)
        if region.extended_model is not None and len(real):
            shift = photometry.neighbour_pull(region.extended_model, p.original_variance, psf, np.asarray(real["x"]),
                                              np.asarray(real["y"]), np.full(len(real), fwhm), box)
            real = real[np.abs(np.nan_to_num(shift, nan=np.inf)) <= photometry.MAX_NEIGHBOUR_PULL]
        region.features = {
            label: (
                star_features(image, variance, p.bad, psf, np.asarray(real["x"]), np.asarray(real["y"]), fwhm,
                              box.x.start, box.y.start),
                star_features(image, variance, p.bad, psf, np.asarray(stars["x"]), np.asarray(stars["y"]), fwhm,
                              box.x.start, box.y.start),
            )
            for label, (image, variance) in images.items()
        }


def _discrimination(regions: Sequence[RegionData], seed: int) -> dict[str, Discrimination]:
    """label → the classifier two-sample test of the regions' real and injected stars (pooled)."""
    from .discriminate import discriminate, pooled

    labels = list(dict.fromkeys(label for r in regions for label in r.features))
    return {
        label: discriminate(label, pooled([r.features[label][0] for r in regions if label in r.features]),
                            pooled([r.features[label][1] for r in regions if label in r.features]), seed=seed)
        for label in labels
    }


def _cut(pixels: DetectorPixels, local: tuple[slice, slice]) -> DetectorPixels:
    """The same arrays on a region (views); scalars stay scalars."""
    return DetectorPixels(**{
        f.name: value[local] if isinstance(value := getattr(pixels, f.name), np.ndarray) and value.ndim == 2 else value
        for f in dataclasses.fields(pixels)
    })


def _source_table(catalog: Table, noiseless: Table, visit: int, detector: int) -> Table:
    """Per-source flux recovery.

    ``expected_flux`` is the noiseless injected flux (re-rendered with
    ``add_noise=False``: the model inside the image, on pixels that can
    receive photons); the realized ``injection_flux`` scatters around it with
    Poisson noise ``σ ≈ √(expected_flux/g)`` (g = f·R/c at the centre), so
    ``flux_pull = (injection_flux − expected_flux)/σ`` is ~N(0, 1).
    ``rerendered_model_flux`` must equal the run's ``injection_model_flux``
    (same configuration, same rows).
    """
    n = len(catalog)
    flags = np.asarray(catalog["injection_flag"], np.int64)
    flux = np.asarray(catalog["injection_flux"], np.float64)
    model = np.asarray(catalog["injection_model_flux"], np.float64)
    gain = np.asarray(catalog["injection_effective_gain"], np.float64)
    expected = np.full(n, np.nan)
    rerendered = np.full(n, np.nan)
    by_id = {int(i): k for k, i in enumerate(np.asarray(noiseless["injection_id"]))}
    for k, i in enumerate(np.asarray(catalog["injection_id"])):
        j = by_id.get(int(i))
        if j is not None:
            expected[k] = float(noiseless["injection_flux"][j])
            rerendered[k] = float(noiseless["injection_model_flux"][j])
    mag = np.asarray(catalog["mag"], np.float64) if "mag" in catalog.colnames else np.full(n, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.sqrt(expected / gain)
        pull = (flux - expected) / sigma
        catalog_flux = (mag * u.ABmag).to_value(u.nJy)
    return Table(
        {
            "visit": np.full(n, visit), "detector": np.full(n, detector),
            "injection_id": np.asarray(catalog["injection_id"]),
            "source_type": np.asarray(catalog["source_type"]).astype(str),
            "x": np.asarray(catalog["x"], np.float64), "y": np.asarray(catalog["y"], np.float64),
            "mag": mag, "catalog_flux_njy": catalog_flux,
            "injected": (flags & int(FATAL_FLAGS)) == 0, "injection_flag": flags,
            "injection_model_flux": model, "rerendered_model_flux": rerendered,
            "expected_flux": expected, "injection_flux": flux,
            "effective_gain": gain, "flux_ratio": flux / expected, "flux_sigma": sigma, "flux_pull": pull,
        }
    )


# --------------------------------------------------------------------------- statistics → JSON


def _finite(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _json_ready(value: Any) -> Any:
    """Nested dicts/lists with NaN/inf → None and numpy scalars → Python (strict JSON)."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return _finite(value)


def statistics_dict(s: InjectionStatistics, result: Verdict) -> dict[str, Any]:
    """The scalar statistics of `InjectionStatistics` and their `Verdict` (JSON-able)."""
    out = {
        name: _finite(getattr(s, name))
        for name in (
            "slope_real", "slope_injected", "slope_ratio", "noise_ratio", "noise_ratio_error",
            "ks_statistic", "ks_pvalue", "relation_rms", "relation_max",
            "n_real", "n_injected", "n_ks", "n_noise", "n_relation",
        )
    }
    checks = result.as_dict()
    out["checks"] = {name: {k: _finite(v) for k, v in c.items()} for name, c in checks["checks"].items()}
    out["passed"] = checks["passed"]
    return out


def _sources_summary(sources: Table) -> dict[str, Any]:
    ok = np.asarray(sources["injected"], bool) & np.isfinite(np.asarray(sources["flux_pull"], np.float64))
    pulls = np.asarray(sources["flux_pull"], np.float64)[ok]
    ratio = np.asarray(sources["flux_ratio"], np.float64)[ok]
    rer = np.asarray(sources["rerendered_model_flux"], np.float64)[ok]
    model = np.asarray(sources["injection_model_flux"], np.float64)[ok]
    expected = np.asarray(sources["expected_flux"], np.float64)[ok]
    return {
        "n_sources": len(sources),
        "n_injected": int(ok.sum()),
        "flux_ratio_median": _finite(np.median(ratio)) if len(ratio) else None,
        "flux_pull_mean": _finite(np.mean(pulls)) if len(pulls) else None,
        "flux_pull_rms": _finite(np.sqrt(np.mean(pulls**2))) if len(pulls) else None,
        "total_flux_ratio": _finite(np.sum(np.asarray(sources["injection_flux"])[ok]) / np.sum(expected))
        if len(expected) else None,
        "rerender_max_relative_difference": _finite(np.max(np.abs(rer / model - 1.0))) if len(model) else None,
    }


def _source_records(sources: Table) -> list[dict[str, Any]]:
    return [{name: _finite(row[name].item() if hasattr(row[name], "item") else row[name]) for name in sources.colnames}
            for row in sources]


# --------------------------------------------------------------------------- API


def diagnose(
    butler: Butler,
    *,
    visit: int | Sequence[int] | None,
    detector: int | Sequence[int] | None,
    collections: str | Sequence[str],
    cutout: tuple[int, int, int, int] | Sequence[tuple[int, int, int, int]] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    compare_upstream: bool = False,
    config: VisitInjectConfig | None = None,
    input_collections: str | Sequence[str] | None = None,
    instrument: str | None = None,
    bands: Sequence[str] | None = None,
    config_dataset: str = "inject_visit_config",
    seed: int = 0,
    figures: bool = True,
    catalog_checks: bool = True,
    truth: Callable[[int, int], MaskedImage] | None = None,
    progress: Callable[[str], None] | None = None,
    discriminate: bool = False,
) -> DiagnosisResult:
    """Diagnose injected visit images against the ISR flux–variance relation.

    Parameters
    ----------
    butler
        A `lsst.daf.butler.Butler` (read-only is enough).
    visit, detector
        One ID or a list; `None` takes every one with an
        ``injected_visit_image`` in ``collections`` (optionally in ``bands``).
    collections
        Where the run's outputs (``injected_visit_image``, its catalog and
        ``<label>_config``) are; the ``pipetask -o`` chain also reaches the inputs.
    cutout
        ``(x0, y0, width, height)`` [absolute pixels], or a list of them
        (e.g. from `boxes_around`): statistics and maps use only these
        regions of every detector (pooled, each with its own baseline fit);
        default the whole detectors.  Overlapping cutouts count their
        shared pixels twice.
    output_dir
        Where to write PNGs and JSON; `None` writes nothing.
    compare_upstream
        Also evaluate what ``lsst.source.injection`` HEAD does with the same
        model on the same image (`isrinject.diagnostics.upstream`).
    config
        The task configuration of the run; default: read ``config_dataset``.
    input_collections
        Where ``visit_image``, ``flat`` and ``illuminationCorrection`` are
        (default ``collections``).
    instrument
        Needed only when the repository has several.
    bands
        Restrict to visits in these bands.
    seed
        Seeds the KS subsample, the upstream arm's noise and the classifier.
    figures
        Write the PNGs (with ``output_dir``).
    catalog_checks
        Forced PSF photometry and detection completeness of the injected
        stars (`isrinject.diagnostics.photometry`) in the injected image and,
        with ``compare_upstream``, in the upstream-emulated injection.
    truth
        For simulations: ``(visit, detector) → VisitImage`` of the same
        catalog put physically into the pre-flat electrons (e.g.
        `isrinject.demo.build.simulate_truth`); its catalog-level checks are
        reported as ``truth`` beside isrinject's.
    progress
        Called with one line per visit (e.g. `print`).
    discriminate
        Run the classifier two-sample test (`isrinject.diagnostics.discriminate`):
        real stars of the image against isolated injected stars of matched
        flux, per band and arm (isrinject, upstream with ``compare_upstream``,
        the truth with ``truth``); ROC AUC with bootstrap intervals in the
        JSON and ``<stem>_roc.png``.

    Raises
    ------
    MissingDatasetError
        If a dataset is missing (its message names the dataset type, data ID
        and collections).
    """
    outputs = _as_collections(collections)
    inputs = outputs if input_collections is None else _as_collections(input_collections)
    if message := missing_collections_message(butler, [*outputs, *inputs]):
        raise LookupError(message)
    instrument = _instrument(butler, instrument)
    if config is None:
        ref = _find(butler, config_dataset, {}, outputs,
                    hint="Are these the pipetask -o output collections? If the task label is not inject_visit, "
                    "pass --config-dataset <label>_config (or config= in Python).")
        config = butler.get(ref)
    run = _Run(
        butler=butler, instrument=instrument, collections=outputs, input_collections=inputs, config=config,
        config_dataset=config_dataset, compare_upstream=compare_upstream, cutouts=_as_cutouts(cutout),
        seed=seed, catalog_checks=catalog_checks, truth=truth, discriminate=discriminate,
    )
    targets = _data_ids(
        butler, instrument, _as_list(visit), _as_list(detector), list(bands) if bands else None, outputs
    )
    out_dir = Path(output_dir) if output_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    results: list[VisitDiagnosis] = []
    all_paths: list[Path] = []
    for k, (visit_id, data_ids) in enumerate(targets.items(), start=1):
        diagnosis, regions = _diagnose_visit(run, visit_id, data_ids)
        if out_dir is not None:
            _write_visit_outputs(run, diagnosis, regions, out_dir, figures=figures)
            all_paths.extend(diagnosis.paths)
        results.append(diagnosis)
        if progress is not None:
            progress(_progress_line(k, len(targets), diagnosis))
    overall = _overall_summary(results)
    if out_dir is not None:
        summary_path = out_dir / "diagnose_summary.json"
        summary_path.write_text(json.dumps(overall, indent=1))
        all_paths.append(summary_path)
    return DiagnosisResult(visits=results, paths=all_paths, summary=overall)


def _as_collections(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@dataclasses.dataclass(frozen=True)
class _Run:
    """What `diagnose` was asked to compare, the same for every visit."""

    butler: Butler
    instrument: str
    collections: list[str]
    input_collections: list[str]
    config: VisitInjectConfig
    config_dataset: str
    compare_upstream: bool
    cutouts: list[tuple[int, int, int, int]] | None
    seed: int
    catalog_checks: bool
    truth: Callable[[int, int], MaskedImage] | None
    discriminate: bool = False


def _diagnose_visit(
    run: _Run, visit_id: int, data_ids: list[DataCoordinate]
) -> tuple[VisitDiagnosis, list[RegionData]]:
    """Statistics, verdicts, catalog checks and JSON summary of one visit (all its detectors pooled)."""
    band = str(data_ids[0]["band"])
    regions = [
        region
        for did in data_ids
        for region in _detector_regions(
            run.butler, did, collections=run.collections, input_collections=run.input_collections,
            config=run.config, compare_upstream=run.compare_upstream, cutouts=run.cutouts, seed=run.seed,
            catalog_checks=run.catalog_checks, truth=run.truth, discriminate=run.discriminate,
        )
    ]
    detectors = sorted({r.detector for r in regions})
    per_detector = {r.detector: r for r in regions}.values()
    sources = Table(np.concatenate([np.asarray(r.sources) for r in per_detector]))
    nothing_injected = not np.any(sources["injected"])
    # Statistics of empty pixel sets are NaN by design (the verdict says n/a):
    # numpy need not warn about them.
    with np.errstate(invalid="ignore", divide="ignore"):
        stats_isr = injection_statistics([r.pixels for r in regions], seed=run.seed)
        verdict_isr = verdict(stats_isr)
        stats_upstream: InjectionStatistics | None = None
        verdict_upstream: Verdict | None = None
        if run.compare_upstream:
            stats_upstream = injection_statistics(
                [r.upstream_pixels for r in regions if r.upstream_pixels is not None], seed=run.seed
            )
            verdict_upstream = verdict(stats_upstream)
    config = run.config
    summary: dict[str, Any] = {
        "visit": visit_id, "band": band, "instrument": run.instrument, "detectors": detectors,
        "unit": regions[0].unit, "collections": run.collections, "input_collections": run.input_collections,
        "cutouts": run.cutouts,
        "flats": {str(r.detector): {"run": r.flat_ref.run, "id": str(r.flat_ref.id)} for r in per_detector},
        "config": {"dataset": run.config_dataset, "add_noise": config.add_noise, "noise_seed": config.noise_seed,
                   "scaling_source": config.scaling_source,
                   "include_flat_variance": config.include_flat_variance,
                   "do_illumination_correction": config.do_illumination_correction},
        "criteria": criteria(),
        "isrinject": statistics_dict(stats_isr, verdict_isr),
        "flux_recovery": _sources_summary(sources),
        "sources": _source_records(sources),
    }
    if stats_upstream is not None and verdict_upstream is not None:
        summary["upstream"] = statistics_dict(stats_upstream, verdict_upstream) | {
            "algorithm": UPSTREAM_REFERENCE,
            "slopes": {str(r.detector): r.upstream_slopes.slopes.tolist() for r in per_detector
                       if r.upstream_slopes is not None},
            "fallbacks": {str(r.detector): r.upstream_slopes.fallback for r in per_detector
                          if r.upstream_slopes is not None and r.upstream_slopes.fallback},
        }
    if nothing_injected:
        summary["status"] = NOTHING_INJECTED
        summary["isrinject"]["passed"] = None
    checks = _catalog_checks(regions) if run.catalog_checks and not nothing_injected else {}
    if checks:
        summary["catalog_checks"] = _json_ready({label: c.as_dict() for label, c in checks.items()})
    discrimination = _discrimination(regions, run.seed) if run.discriminate else {}
    if discrimination:
        summary["discrimination"] = _json_ready({label: d.as_dict() for label, d in discrimination.items()})
    diagnosis = VisitDiagnosis(
        visit=visit_id, band=band, detectors=detectors, unit=regions[0].unit,
        statistics=stats_isr, verdict=verdict_isr, upstream=stats_upstream, upstream_verdict=verdict_upstream,
        sources=sources, summary=summary, catalog_checks=checks, discrimination=discrimination,
        forum=forum_cutout(regions) if run.compare_upstream and not nothing_injected else None,
        nothing_injected=nothing_injected,
    )
    return diagnosis, regions


def _write_visit_outputs(
    run: _Run, diagnosis: VisitDiagnosis, regions: list[RegionData], out_dir: Path, *, figures: bool
) -> None:
    """Write one visit's PNGs (with ``figures``) and JSON summary; list them in ``diagnosis.paths``."""
    visit_id, band, checks = diagnosis.visit, diagnosis.band, diagnosis.catalog_checks
    stem = f"diagnose_{visit_id}_{band}"
    if figures and not diagnosis.nothing_injected:
        from .figures import (
            plot_completeness,
            plot_flux_variance,
            plot_forum,
            plot_maps,
            plot_pulls,
            plot_roc,
        )

        title = f"visit {visit_id}, band {band}"
        diagnosis.paths.append(plot_flux_variance(diagnosis, out_dir / f"{stem}_flux_variance.png"))
        if diagnosis.forum is not None:
            diagnosis.paths.append(plot_forum(diagnosis.forum, out_dir / f"{stem}_forum.png"))
        if checks:
            diagnosis.paths.append(plot_completeness(checks, out_dir / f"{stem}_completeness.png", title=title))
            diagnosis.paths.append(plot_pulls(checks, out_dir / f"{stem}_pulls.png", title=title))
        if diagnosis.discrimination:
            diagnosis.paths.append(plot_roc(diagnosis.discrimination, out_dir / f"{stem}_roc.png", title=title))
        for i, region in enumerate(regions):
            suffix = f"_{i}" if run.cutouts and len(run.cutouts) > 1 else ""
            diagnosis.paths.append(plot_maps(region, out_dir / f"{stem}_maps_d{region.detector}{suffix}.png",
                                             visit=visit_id, band=band, compare_upstream=run.compare_upstream))
    json_path = out_dir / f"{stem}.json"
    diagnosis.summary["paths"] = [str(p) for p in diagnosis.paths] + [str(json_path)]
    json_path.write_text(json.dumps(diagnosis.summary, indent=1))
    diagnosis.paths.append(json_path)


def _progress_line(k: int, n_visits: int, diagnosis: VisitDiagnosis) -> str:
    """One line per visit: both verdicts and the catalog checks."""
    line = f"[{k}/{n_visits}] visit {diagnosis.visit} band {diagnosis.band} detectors {diagnosis.detectors}: "
    if diagnosis.nothing_injected:
        return line + nothing_injected_line(np.asarray(diagnosis.sources["injection_flag"]))
    line += f"isrinject {diagnosis.verdict.describe()}"
    if diagnosis.upstream_verdict is not None:
        line += f" | upstream: {diagnosis.upstream_verdict.describe()}"
    for label, c in diagnosis.catalog_checks.items():
        line += (f" | {label}: pulls {c.pulls.mean:+.2f}±{c.pulls.mean_error:.2f}, std {c.pulls.std:.2f}"
                 f"±{c.pulls.std_error:.2f} ({c.pulls.n} stars), detected "
                 f"{int(c.completeness.n_detected.sum())}/{int(c.completeness.n_injected.sum())}")
    for label, d in diagnosis.discrimination.items():
        line += (f" | AUC {label}: {d.auc:.3f} [{d.auc_interval[0]:.3f}, {d.auc_interval[1]:.3f}], "
                 f"S/N≥50 {d.auc_high_snr:.3f} ({d.n_real_high_snr}/{d.n_injected_high_snr} stars)")
    return line


def _overall_summary(results: list[VisitDiagnosis]) -> dict[str, Any]:
    """``diagnose_summary.json``: the overall verdict and each visit's statistics."""
    records: list[dict[str, Any]] = []
    for v in results:
        record = {"visit": v.visit, "band": v.band, "detectors": v.detectors, "isrinject": v.summary["isrinject"],
                  **({"upstream": v.summary["upstream"]} if "upstream" in v.summary else {}),
                  "flux_recovery": v.summary["flux_recovery"]}
        if "catalog_checks" in v.summary:
            record["catalog_checks"] = {label: {k: c[k] for k in ("pulls", "completeness")}
                                        for label, c in v.summary["catalog_checks"].items()}
        if "discrimination" in v.summary:
            record["discrimination"] = v.summary["discrimination"]
        records.append(record)
    checked = [v for v in results if not v.nothing_injected]
    return {"passed": bool(checked) and all(v.passed for v in checked), "criteria": criteria(), "visits": records,
            "nothing_injected": [v.visit for v in results if v.nothing_injected]}

