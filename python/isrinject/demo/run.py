"""Run the demo: ``pipetask`` as a subprocess, then evaluate every band.

`run_pipetask` runs exactly what a user would type::

    pipetask --log-level isrinject=INFO run -b REPO -i INPUTS -o u/demo/inject \\
        --output-run u/demo/inject/<UTC time> -p pipelines/inject.yaml --register-dataset-types \\
        [-c inject_visit:do_illumination_correction=True]

(each run writes a new RUN, so re-running is safe).  `band_statistics`
evaluates every band with `isrinject.diagnostics.diagnose` (the same reader
and statistics as ``isrinject diagnose``).
"""

from __future__ import annotations

__all__ = [
    "PipetaskResult",
    "band_statistics",
    "find_pipeline",
    "find_pipetask",
    "run_pipetask",
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

import astropy.units
from lsst.daf.butler import Butler

from ..diagnostics.diagnose import diagnose
from ..diagnostics.stats import InjectionStatistics
from ..pipeline_tools import find_pipeline
from .build import DemoRepo

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


def band_statistics(
    demo: DemoRepo, output_run: str, *, seed: int = 0
) -> dict[str, tuple[InjectionStatistics, InjectionStatistics, astropy.units.UnitBase]]:
    """Statistics of every band (detectors pooled), of a flux/gain injection of
    the same sources for comparison, and the image unit.

    This is `isrinject.diagnostics.diagnose` on the demo's visits: the flat of
    the visit's time, the run's own config for the noise-free re-run, and a
    flux/gain injection with one gain per amplifier.

    Returns
    -------
    results
        band → (statistics, gain-only statistics, image unit).
    """
    butler = Butler.from_config(str(demo.root))
    diagnosis = diagnose(
        butler,
        visit=[demo.visits[band] for band in demo.bands],
        detector=list(demo.detectors),
        collections=[output_run],
        input_collections=[demo.layout.inputs],
        instrument=demo.layout.instrument,
        compare_gain_only=True,
        figures=False,
        seed=seed,
    )
    by_band = diagnosis.by_band()
    return {
        band: (by_band[band].statistics, by_band[band].gain_only, astropy.units.Unit(by_band[band].unit))
        for band in demo.bands
    }
