r"""Run the demo: ``pipetask`` as a subprocess, then evaluate every band.

`run_pipetask` runs exactly what a user would type::

    pipetask --log-level isrinject=INFO run -b REPO -i INPUTS -o u/demo/inject \
        --output-run u/demo/inject/<UTC time> -p pipelines/inject.yaml --register-dataset-types \
        [-c inject_visit:do_illumination_correction=True]

(each run writes a new RUN, so re-running is safe).  `diagnose_demo`
evaluates every band with `isrinject.diagnostics.diagnose` (the same reader,
statistics, verdict and figures as ``isrinject diagnose``).
"""

from __future__ import annotations

__all__ = [
    "PipetaskResult",
    "diagnose_demo",
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

from lsst.daf.butler import Butler
from lsst.images import VisitImage

from ..diagnostics.diagnose import diagnose
from ..diagnostics.results import DiagnosisResult
from ..tasks.pipeline_tools import find_pipeline
from .build import DemoRepo, simulate_truth


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


def diagnose_demo(
    demo: DemoRepo,
    output_run: str,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    with_truth: bool = True,
    discriminate: bool = True,
) -> DiagnosisResult:
    """`isrinject.diagnostics.diagnose.diagnose` on every visit of the demo.

    The same reader, statistics, verdict and figures as ``isrinject
    diagnose``: the flat of the visit's time, the run's own config for the
    noise-free re-run, and the emulated ``lsst.source.injection`` injection
    (`isrinject.diagnostics.upstream`) of the same model for comparison.
    With ``with_truth`` the catalog-level checks (forced photometry,
    completeness) and the classifier test also run on the simulator's
    physical injection of the same catalog (`simulate_truth`).  With
    ``discriminate`` the classifier two-sample test
    (`isrinject.diagnostics.discriminate`) runs in every arm.  With
    ``output_dir`` the PNGs and JSON are written there.
    """
    band_of_visit = {visit: band for band, visit in demo.visits.items()}

    def truth(visit: int, detector: int) -> VisitImage:
        return simulate_truth(demo, band_of_visit[visit], detector).visit_image

    butler = Butler.from_config(str(demo.root))
    return diagnose(
        butler,
        visit=[demo.visits[band] for band in demo.bands],
        detector=list(demo.detectors),
        collections=[output_run],
        input_collections=[demo.layout.inputs],
        instrument=demo.layout.instrument,
        compare_upstream=True,
        discriminate=discriminate,
        output_dir=output_dir,
        figures=output_dir is not None,
        truth=truth if with_truth else None,
        seed=seed,
    )
