"""``isrinject diagnose``: check an injection run against the ISR flux–variance relation.

For every visit (pooling its detectors) this reads from the butler

- ``injected_visit_image`` and ``injected_visit_image_catalog`` (the run's outputs),
- ``visit_image`` (the original), the ``flat`` certified at the visit's
  time (calibration lookup with the visit's timespan) and, when the run
  used one, ``illuminationCorrection``,
- ``<label>_config`` (default ``inject_visit_config``): the task
  configuration of the run,

re-renders the noiseless model ``M`` and its expected variance ``ΔV`` by
running `isrinject.inject.inject_sources` on the original image with the run's
configuration and ``add_noise=False`` on the output catalog's rows, and
computes with `isrinject.diagnostics.stats`:

- the slopes of the flat-normalised ``(x, y) = (I·g, V·g²)`` relation of
  real and injected pixels (1 for ISR),
- the KS test of the per-pixel residuals ``r = (y − b̂ − q̂)/x − 1``,
- the realized-noise ratio ``var(ΔI − M)/E[ΔV]`` of the injected pixels,
- per-source flux recovery (realized vs model flux, and its pull
  ``(F − F_model)/√(F_model/g)``).

With ``compare_gain_only`` the same is computed for what a flux/gain
injection (`stats.gain_only_injection`, one mean gain per amplifier) would
have produced from the same model on the same image.

Outputs (per visit, in ``output_dir``): ``<stem>_flux_variance.png``,
``<stem>_maps_d<detector>.png`` and ``<stem>.json``, plus
``diagnose_summary.json`` over all visits.
"""

from __future__ import annotations

__all__ = [
    "DiagnosisResult",
    "MissingDatasetError",
    "VisitDiagnosis",
    "diagnose",
]

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table

from ..calibration import amplifier_index
from ..catalog import compose_catalog
from ..flags import FATAL_FLAGS
from ..inject import INJECTION_RESULT_COLUMNS, inject_sources
from ..masks import mask_bits
from ..task import VisitInjectConfig
from .stats import (
    RATIO_TOLERANCE,
    SLOPE_TOLERANCE,
    DetectorPixels,
    InjectionStatistics,
    gain_only_injection,
    injection_statistics,
    mean_gain,
)

_LOG = logging.getLogger(__name__)

#: Columns the task adds to the injection catalog (dropped before re-rendering).
_OUTPUT_COLUMNS = ("x", "y", *INJECTION_RESULT_COLUMNS)
#: KS p-value below which the residuals of real and injected pixels differ.
KS_PVALUE_MIN = 0.01


class MissingDatasetError(LookupError):
    """A dataset needed by the diagnosis is not in the given collections."""

    def __init__(self, dataset_type: str, data_id: Any, collections: Sequence[str], hint: str = "") -> None:
        self.dataset_type = dataset_type
        self.data_id = dict(data_id.required) if hasattr(data_id, "required") else dict(data_id)
        self.collections = list(collections)
        ids = ", ".join(f"{k}={v!r}" for k, v in self.data_id.items()) or "(no dimensions)"
        message = f"Dataset {dataset_type!r} not found for data ID {{{ids}}} in collections {self.collections}."
        if hint:
            message += " " + hint
        super().__init__(message)


@dataclasses.dataclass
class DetectorData:
    """The arrays and metadata of one visit/detector (internal, kept for figures)."""

    detector: int
    pixels: DetectorPixels
    gain_only_pixels: DetectorPixels | None
    bbox: Any
    unit: str
    mean_gain: np.ndarray
    sources: Table
    flat_ref: Any


@dataclasses.dataclass
class VisitDiagnosis:
    """The diagnosis of one visit (its detectors pooled)."""

    visit: int
    band: str
    detectors: list[int]
    unit: str
    statistics: InjectionStatistics
    """Statistics of the injection as run (isrinject)."""
    gain_only: InjectionStatistics | None
    """Statistics of a flux/gain injection of the same model (``compare_gain_only``)."""
    sources: Table
    """Per-source flux recovery (all detectors)."""
    summary: dict[str, Any]
    """What ``<stem>.json`` holds."""
    paths: list[Path] = dataclasses.field(default_factory=list)
    """Files written."""

    @property
    def passed(self) -> bool:
        return bool(self.summary["isrinject"]["passed"])


@dataclasses.dataclass
class DiagnosisResult:
    """Result of `diagnose`."""

    visits: list[VisitDiagnosis]
    paths: list[Path]
    """Every file written (figures, per-visit JSON, the summary JSON)."""
    summary: dict[str, Any]
    """What ``diagnose_summary.json`` holds."""

    @property
    def passed(self) -> bool:
        """True when every visit passed."""
        return all(v.passed for v in self.visits)

    def by_band(self) -> dict[str, VisitDiagnosis]:
        """band → diagnosis (the last visit of each band)."""
        return {v.band: v for v in self.visits}


# --------------------------------------------------------------------------- butler access


def _as_list(value: int | Iterable[int] | None) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return [int(value)]
    return [int(v) for v in value]


def _find(
    butler: Any, dataset_type: str, data_id: Any, collections: Sequence[str], hint: str = "", **kwargs: Any
) -> Any:
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


def _get(butler: Any, dataset_type: str, data_id: Any, collections: Sequence[str], **kwargs: Any) -> tuple[Any, Any]:
    ref = _find(butler, dataset_type, data_id, collections, **kwargs)
    return butler.get(ref), ref


def _instrument(butler: Any, instrument: str | None) -> str:
    if instrument:
        return instrument
    names = sorted(rec.name for rec in butler.registry.queryDimensionRecords("instrument"))
    if len(names) != 1:
        raise ValueError(f"The repository has instruments {names}; choose one with instrument=/--instrument.")
    return names[0]


def _data_ids(
    butler: Any,
    instrument: str,
    visits: list[int] | None,
    detectors: list[int] | None,
    bands: list[str] | None,
    collections: Sequence[str],
) -> dict[int, list[Any]]:
    """visit → expanded data IDs (one per detector) to diagnose."""
    result: dict[int, list[Any]] = {}
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
            what = {"instrument": instrument}
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


def _amp_index(visit_image: Any) -> np.ndarray:
    amps = list(getattr(visit_image.detector, "amplifiers", None) or [])
    return amplifier_index([amp.bbox for amp in amps], visit_image.bbox)


def _rerender_catalog(catalog: Table) -> Table:
    """The output catalog's rows as the task composed them (before drawing)."""
    table = Table(catalog, copy=True)
    has_sky = {"ra", "dec"} <= set(table.colnames)
    drop = [c for c in _OUTPUT_COLUMNS if c in table.colnames and (has_sky or c not in ("x", "y"))]
    table.remove_columns(drop)
    return compose_catalog([table])


def _detector_data(
    butler: Any,
    data_id: Any,
    *,
    collections: Sequence[str],
    input_collections: Sequence[str],
    config: VisitInjectConfig,
    compare_gain_only: bool,
    seed: int,
) -> DetectorData:
    injected, _ = _get(butler, "injected_visit_image", data_id, collections)
    catalog, _ = _get(butler, "injected_visit_image_catalog", data_id, collections)
    original, _ = _get(butler, "visit_image", data_id, input_collections)
    timespan = data_id.records["visit"].timespan if data_id.hasRecords() else None
    flat, flat_ref = _get(butler, "flat", data_id, input_collections, timespan=timespan)
    illumination = None
    if config.do_illumination_correction:
        illumination, _ = _get(butler, "illuminationCorrection", data_id, input_collections, timespan=timespan)
    visit_id, detector_id = int(data_id["visit"]), int(data_id["detector"])

    # Noiseless re-render with the run's configuration.
    noiseless_config = config.copy()
    noiseless_config.add_noise = False
    noiseless_config.inject_variance = True
    rows = _rerender_catalog(catalog)
    rng = np.random.default_rng([seed, visit_id, detector_id])
    noiseless = inject_sources(
        original, rows, flat=flat, illumination=illumination, config=noiseless_config, rng=rng,
        log=_LOG, visit_id=visit_id,
    )
    i0 = np.asarray(original.image.array, np.float64)
    v0 = np.asarray(original.variance.array, np.float64)
    model = np.asarray(noiseless.image.image.array, np.float64) - i0
    expected_variance = np.asarray(noiseless.image.variance.array, np.float64) - v0

    bbox = original.bbox
    # The planes and c the noiseless injection used (the run's configuration).
    used = noiseless.planes
    flat_image, flat_variance, illum_image = used.flat, used.flat_variance, used.illumination
    scaling = used.calibration.image_per_electron_on(bbox)
    amp_index = _amp_index(original)
    injected_mask = np.asarray(injected.mask.get(config.mask_plane_name), bool)
    bad = mask_bits(injected, config.bad_mask_names) | mask_bits(original, config.bad_mask_names)
    pixels = DetectorPixels(
        original_image=i0, original_variance=v0,
        image=np.asarray(injected.image.array, np.float64), variance=np.asarray(injected.variance.array, np.float64),
        flat=flat_image, flat_variance=flat_variance, scaling=scaling, injected=injected_mask,
        model=model, expected_variance=expected_variance, illumination=illum_image, bad=bad, amp_index=amp_index,
    )
    g_bar = mean_gain(flat_image, scaling, illum_image, amp_index)
    gain_only_pixels = None
    if compare_gain_only:
        injected_model = np.where(injected_mask, model, 0.0)
        image_g, variance_g = gain_only_injection(i0, v0, injected_model, gain=g_bar, rng=rng)
        gain_only_pixels = dataclasses.replace(
            pixels, image=image_g, variance=variance_g,
            expected_variance=np.clip(injected_model, 0.0, None) / g_bar,
        )
    sources = _source_table(catalog, noiseless.catalog, visit_id, detector_id)
    return DetectorData(
        detector=detector_id, pixels=pixels, gain_only_pixels=gain_only_pixels, bbox=bbox,
        unit=str(original.unit), mean_gain=g_bar, sources=sources, flat_ref=flat_ref,
    )


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


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "nan" if value is None else format(value, spec)


def _passed(s: InjectionStatistics) -> dict[str, bool]:
    checks = {
        "ks_passed": bool(np.isfinite(s.ks_pvalue) and s.ks_pvalue > KS_PVALUE_MIN),
        "noise_ratio_passed": s.noise_ratio_passed(RATIO_TOLERANCE),
        "slopes_passed": s.slopes_passed(SLOPE_TOLERANCE),
    }
    checks["passed"] = all(checks.values())
    return checks


def statistics_dict(s: InjectionStatistics) -> dict[str, Any]:
    """The scalar statistics of `InjectionStatistics` with pass/fail (JSON-able)."""
    out = {
        name: _finite(getattr(s, name))
        for name in (
            "slope_real", "slope_injected", "slope_ratio", "noise_ratio", "noise_ratio_error",
            "ks_statistic", "ks_pvalue", "n_real", "n_injected", "n_ks", "n_noise",
        )
    }
    out.update(_passed(s))
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
    butler: Any,
    *,
    visit: int | Sequence[int] | None,
    detector: int | Sequence[int] | None,
    collections: str | Sequence[str],
    cutout: tuple[int, int, int, int] | None = None,
    output_dir: str | Path | None = None,
    compare_gain_only: bool = False,
    config: VisitInjectConfig | None = None,
    input_collections: str | Sequence[str] | None = None,
    instrument: str | None = None,
    bands: Sequence[str] | None = None,
    config_dataset: str = "inject_visit_config",
    seed: int = 0,
    figures: bool = True,
    progress: Callable[[str], None] | None = None,
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
        ``(x0, y0, width, height)`` [absolute pixels] of the maps; default the whole detector.
        Statistics always use whole detectors (the baseline fit needs the sky).
    output_dir
        Where to write PNGs and JSON; `None` writes nothing.
    compare_gain_only
        Also evaluate a flux/gain injection of the same model on the same image.
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
        Seeds the KS subsample and the gain-only noise.
    figures
        Write the PNGs (with ``output_dir``).
    progress
        Called with one line per visit (e.g. `print`).

    Raises
    ------
    MissingDatasetError
        If a dataset is missing (its message names the dataset type, data ID
        and collections).
    """
    collections = [collections] if isinstance(collections, str) else list(collections)
    if input_collections is None:
        input_collections = collections
    elif isinstance(input_collections, str):
        input_collections = [input_collections]
    else:
        input_collections = list(input_collections)
    instrument = _instrument(butler, instrument)
    if config is None:
        ref = _find(butler, config_dataset, {}, collections,
                    hint="Pass config= (or --config-dataset <label>_config) for the configuration of the run.")
        config = butler.get(ref)
    targets = _data_ids(butler, instrument, _as_list(visit), _as_list(detector), list(bands) if bands else None, collections)
    out_dir = Path(output_dir) if output_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda line: None)
    results: list[VisitDiagnosis] = []
    all_paths: list[Path] = []
    n_visits = len(targets)
    for k, (visit_id, data_ids) in enumerate(targets.items(), start=1):
        band = str(data_ids[0]["band"])
        data = [
            _detector_data(butler, did, collections=collections, input_collections=input_collections, config=config,
                           compare_gain_only=compare_gain_only, seed=seed)
            for did in data_ids
        ]
        stats_isr = injection_statistics([d.pixels for d in data], seed=seed)
        stats_gain = (
            injection_statistics([d.gain_only_pixels for d in data], seed=seed) if compare_gain_only else None
        )
        sources = Table(np.concatenate([np.asarray(d.sources) for d in data])) if len(data) > 1 else data[0].sources
        summary: dict[str, Any] = {
            "visit": visit_id, "band": band, "instrument": instrument, "detectors": [d.detector for d in data],
            "unit": data[0].unit, "collections": collections, "input_collections": input_collections,
            "flats": {str(d.detector): {"run": d.flat_ref.run, "id": str(d.flat_ref.id)} for d in data},
            "config": {"dataset": config_dataset, "add_noise": config.add_noise, "noise_seed": config.noise_seed,
                       "scaling_source": config.scaling_source,
                       "include_flat_variance": config.include_flat_variance,
                       "do_illumination_correction": config.do_illumination_correction},
            "criteria": {"ks_pvalue_min": KS_PVALUE_MIN, "noise_ratio_tolerance": RATIO_TOLERANCE,
                         "slope_ratio_tolerance": SLOPE_TOLERANCE},
            "isrinject": statistics_dict(stats_isr),
            "flux_recovery": _sources_summary(sources),
            "sources": _source_records(sources),
        }
        if stats_gain is not None:
            summary["gain_only"] = statistics_dict(stats_gain)
        diagnosis = VisitDiagnosis(
            visit=visit_id, band=band, detectors=[d.detector for d in data], unit=data[0].unit,
            statistics=stats_isr, gain_only=stats_gain, sources=sources, summary=summary,
        )
        if out_dir is not None:
            stem = f"diagnose_{visit_id}_{band}"
            if figures:
                from .figures import plot_flux_variance, plot_maps

                diagnosis.paths.append(plot_flux_variance(diagnosis, out_dir / f"{stem}_flux_variance.png"))
                for d in data:
                    diagnosis.paths.append(plot_maps(d, out_dir / f"{stem}_maps_d{d.detector}.png",
                                                     visit=visit_id, band=band, cutout=cutout,
                                                     compare_gain_only=compare_gain_only))
            json_path = out_dir / f"{stem}.json"
            summary["paths"] = [str(p) for p in diagnosis.paths] + [str(json_path)]
            json_path.write_text(json.dumps(summary, indent=1))
            diagnosis.paths.append(json_path)
            all_paths.extend(diagnosis.paths)
        results.append(diagnosis)
        s = summary["isrinject"]
        line = (
            f"[{k}/{n_visits}] visit {visit_id} band {band} detectors {diagnosis.detectors}: "
            f"slope inj/real {_fmt(s['slope_ratio'])}, noise ratio {_fmt(s['noise_ratio'])}"
            f"±{_fmt(s['noise_ratio_error'])}, KS p {_fmt(s['ks_pvalue'], '.3g')} → "
            f"{'PASS' if s['passed'] else 'FAIL'}"
        )
        if stats_gain is not None:
            gs = summary["gain_only"]
            line += (
                f" | gain-only: slope {_fmt(gs['slope_ratio'])}, KS p {_fmt(gs['ks_pvalue'], '.3g')} → "
                f"{'PASS' if gs['passed'] else 'FAIL'}"
            )
        say(line)
    overall = {
        "passed": all(v.passed for v in results),
        "visits": [
            {"visit": v.visit, "band": v.band, "detectors": v.detectors, "isrinject": v.summary["isrinject"],
             **({"gain_only": v.summary["gain_only"]} if "gain_only" in v.summary else {}),
             "flux_recovery": v.summary["flux_recovery"]}
            for v in results
        ],
    }
    if out_dir is not None:
        summary_path = out_dir / "diagnose_summary.json"
        summary_path.write_text(json.dumps(overall, indent=1))
        all_paths.append(summary_path)
    return DiagnosisResult(visits=results, paths=all_paths, summary=overall)
