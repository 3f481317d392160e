"""Run the demo: ``pipetask`` as a subprocess, then evaluate every band.

`run_pipetask` runs exactly what a user would type::

    pipetask --log-level isrinject=INFO run -b REPO -i INPUTS -o u/demo/inject \\
        --output-run u/demo/inject/<UTC time> -p pipelines/inject.yaml --register-dataset-types \\
        [-c inject_visit:do_illumination_correction=True]

(each run writes a new RUN, so re-running is safe).  `band_statistics`
reads the original and injected images back, re-runs `inject_sources` with
``add_noise=False`` for the noiseless model M and expected variance, and
calls `isrinject.diagnostics.stats.injection_statistics`.
"""

from __future__ import annotations

__all__ = [
    "PipetaskResult",
    "band_statistics",
    "detector_pixels",
    "find_pipeline",
    "find_pipetask",
    "gain_only_pixels",
    "run_pipetask",
    "scaling_map",
]

import dataclasses
import datetime
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lsst.daf.butler import Butler, Timespan
from lsst.images import VisitImage

from ..calibration import image_units_per_njy
from ..catalog import compose_catalog
from ..diagnostics.stats import (
    DetectorPixels,
    InjectionStatistics,
    gain_only_injection,
    injection_statistics,
    mean_gain,
)
from ..sim.camera import amplifier_index_map
from ..task import VisitInjectConfig, inject_sources
from .build import EXPOSURE_TIME_S, DemoRepo

#: Mask planes whose pixels the statistics ignore.
IGNORED_MASK_PLANES: tuple[str, ...] = ("BAD", "SATURATED", "NO_DATA", "SUSPECT", "COSMIC_RAY", "INTERPOLATED")


@dataclasses.dataclass
class PipetaskResult:
    """Outcome of `run_pipetask`."""

    command: list[str]
    returncode: int
    output: str
    """The output CHAINED collection."""
    output_run: str
    """The RUN this invocation wrote."""
    stdout: str
    stderr: str
    wall_time: float
    """Seconds."""


def find_pipeline(name: str = "inject.yaml") -> Path:
    """Locate ``pipelines/<name>``: ``$ISRINJECT_DIR`` first, then the source tree.

    Raises
    ------
    FileNotFoundError
        If neither has it.
    """
    candidates = []
    if os.environ.get("ISRINJECT_DIR"):
        candidates.append(Path(os.environ["ISRINJECT_DIR"]) / "pipelines" / name)
    candidates.append(Path(__file__).resolve().parents[3] / "pipelines" / name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"Cannot find pipelines/{name} in {[str(c) for c in candidates]}; set ISRINJECT_DIR.")


def find_pipetask() -> Path:
    """``pipetask`` next to the running Python (the virtualenv's), else on PATH."""
    local = Path(sys.executable).parent / "pipetask"
    if local.exists():
        return local
    found = shutil.which("pipetask")
    if found is None:
        raise FileNotFoundError(f"No pipetask next to {sys.executable} or on PATH; install lsst-ctrl-mpexec.")
    return Path(found)


def run_pipetask(
    repo: str | os.PathLike[str],
    inputs: str,
    *,
    output: str = "u/demo/inject",
    do_illumination_correction: bool = False,
    extra_args: Sequence[str] = (),
    timeout: float = 3600.0,
) -> PipetaskResult:
    """Run the injection pipeline on ``repo`` with ``pipetask`` (a subprocess).

    Each call writes a new RUN ``<output>/<UTC timestamp>`` chained into
    ``output``.
    """
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    output_run = f"{output}/{stamp}"
    command = [
        str(find_pipetask()), "--log-level", "isrinject=INFO", "run",
        "-b", str(repo), "-i", inputs, "-o", output, "--output-run", output_run,
        "-p", str(find_pipeline()), "--register-dataset-types",
    ]
    if do_illumination_correction:
        command += ["-c", "inject_visit:do_illumination_correction=True"]
    command += list(extra_args)
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return PipetaskResult(
        command=command, returncode=proc.returncode, output=output, output_run=output_run,
        stdout=proc.stdout, stderr=proc.stderr, wall_time=time.monotonic() - start,
    )


def scaling_map(visit_image: VisitImage) -> np.ndarray | float:
    """c, image units per pre-flat e⁻: 1 for an image in electrons, else the
    photometric scaling [nJy/e⁻] rendered on the image times image units per nJy."""
    per_njy = image_units_per_njy(visit_image.unit)
    if per_njy is None:
        return 1.0
    field = visit_image.photometric_scaling
    rendered = field.render(visit_image.bbox)
    array = np.asarray(getattr(rendered, "array", rendered), dtype=np.float64)
    return array * per_njy


def _mask_union(image: VisitImage, names: Sequence[str]) -> np.ndarray:
    present = set(image.mask.schema.names)
    out = np.zeros(image.bbox.shape, dtype=bool)
    for name in names:
        if name in present:
            out |= image.mask.get(name)
    return out


def detector_pixels(
    butler: Butler, demo: DemoRepo, band: str, detector: int, output_run: str
) -> DetectorPixels:
    """Read one visit/detector back and build its `DetectorPixels`.

    The flat (and illumination correction) is the one certified at the
    visit's time; M and the expected ΔV come from `inject_sources` with
    ``add_noise=False`` on the original image and the band's catalogs.
    """
    layout = demo.layout
    data_id = {"instrument": layout.instrument, "visit": demo.visits[band], "detector": detector}
    original = butler.get("visit_image", data_id, collections=layout.inputs)
    injected = butler.get("injected_visit_image", data_id, collections=output_run)
    begin = demo.visit_begin[band]
    span = Timespan(begin, begin + datetime.timedelta(seconds=EXPOSURE_TIME_S))
    calib_id = {"instrument": layout.instrument, "detector": detector, "physical_filter": demo.physical_filters[band]}
    flat_ref = butler.find_dataset("flat", calib_id, collections=layout.inputs, timespan=span)
    if flat_ref is None:
        raise LookupError(f"No flat certified for {calib_id} at {begin.isot}.")
    flat = butler.get(flat_ref)
    illumination = None
    if demo.do_illumination_correction:
        ref = butler.find_dataset("illuminationCorrection", calib_id, collections=layout.inputs, timespan=span)
        illumination = butler.get(ref)
    refs = butler.query_datasets(
        "injection_catalog", collections=layout.catalog_run, where=f"band = '{band}'", explain=False
    )
    catalog = compose_catalog([butler.get(ref) for ref in refs])
    config = VisitInjectConfig()
    config.add_noise = False
    config.do_illumination_correction = demo.do_illumination_correction
    noiseless = inject_sources(
        original, catalog, flat=flat, illumination=illumination, config=config,
        rng=np.random.default_rng(0), log=_QuietLog(), visit_id=demo.visits[band],
    ).image
    i0 = original.image.array.astype(np.float64)
    v0 = original.variance.array.astype(np.float64)
    r_array = None if illumination is None else np.asarray(illumination.array, dtype=np.float64)
    amp_boxes = [amp.bbox for amp in original.detector.amplifiers]
    return DetectorPixels(
        original_image=i0,
        original_variance=v0,
        image=injected.image.array.astype(np.float64),
        variance=injected.variance.array.astype(np.float64),
        flat=flat.image.array.astype(np.float64),
        flat_variance=flat.variance.array.astype(np.float64),
        scaling=scaling_map(original),
        injected=injected.mask.get("INJECTED"),
        model=noiseless.image.array.astype(np.float64) - i0,
        expected_variance=noiseless.variance.array.astype(np.float64) - v0,
        illumination=r_array,
        bad=_mask_union(original, IGNORED_MASK_PLANES) | _mask_union(injected, IGNORED_MASK_PLANES),
        amp_index=amplifier_index_map(original.bbox.shape, amp_boxes),
    )


class _QuietLog:
    """A logger stand-in that drops the re-run's messages."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def gain_only_pixels(pixels: DetectorPixels, *, seed: int = 0) -> DetectorPixels:
    """The same detector as a flux/gain injection would have made it.

    ΔV = M/ḡ with one ḡ = mean(f·R/c) for the detector, ΔI = M + N(0, ΔV)
    (see `gain_only_injection`).
    """
    gain = mean_gain(pixels.flat, pixels.scaling, pixels.illumination)
    image, variance = gain_only_injection(
        pixels.original_image, pixels.original_variance, pixels.model, gain=gain, rng=np.random.default_rng(seed)
    )
    return dataclasses.replace(
        pixels, image=image, variance=variance, expected_variance=np.clip(pixels.model, 0, None) / gain
    )


def band_statistics(
    demo: DemoRepo, output_run: str, *, snr_min: float = 5.0, seed: int = 0
) -> dict[str, tuple[InjectionStatistics, InjectionStatistics, VisitImage]]:
    """Statistics of every band (detectors pooled), of a flux/gain injection of
    the same sources for comparison, and one injected image (for units).

    Returns
    -------
    results
        band → (statistics, gain-only statistics, an injected `VisitImage`).
    """
    butler = Butler.from_config(str(demo.root))
    results = {}
    for band in demo.bands:
        pixels = [detector_pixels(butler, demo, band, d, output_run) for d in demo.detectors]
        example = butler.get(
            "injected_visit_image",
            {"instrument": demo.layout.instrument, "visit": demo.visits[band], "detector": demo.detectors[0]},
            collections=output_run,
        )
        gain_only = [gain_only_pixels(p, seed=seed + i) for i, p in enumerate(pixels)]
        results[band] = (
            injection_statistics(pixels, snr_min=snr_min, seed=seed),
            injection_statistics(gain_only, snr_min=snr_min, seed=seed),
            example,
        )
    return results
