"""BPS end to end: ``bps submit bps/local_threads.yaml`` and
``bps submit bps/local_htex.yaml`` (ctrl_bps_parsl: a ThreadPoolExecutor and a
HighThroughputExecutor) on a temporary demo-style repository with 4 visits ×
2 detectors (8 quanta).  bps writes its submit directory under ``$PWD/submit``
and parsl its ``runinfo/`` under the working directory: both go to the test's
``tmp_path``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table, vstack
from astropy.time import Time, TimeDelta

from isrinject.catalog import ingest_injection_catalog
from isrinject.flags import FATAL_FLAGS
from isrinject.demo.repo import (
    RepoLayout,
    certify_calibration,
    detector_region,
    put_visit_image,
    register_dataset_types,
    register_instrument,
    register_visit,
    set_input_chain,
)
from isrinject.sim import simulate_exposure

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHAPE = (128, 128)
BAND = "r"
VISITS = (301, 302, 303, 304)
DETECTORS = (1, 2)
T0 = Time("2026-04-01T00:00:00", scale="tai")


def populate_repo(butler, *, visits=VISITS, detectors=DETECTORS, shape=SHAPE) -> list[tuple[int, int]]:
    """Fill an empty writeable butler with visit images, certified flats and
    a catalog of two sources per visit+detector; return the (visit, detector)
    pairs.  Shared by test_postgres.py."""
    from lsst.images import XY

    layout = RepoLayout()
    filters = register_instrument(butler, layout.instrument, bands=[BAND], detectors=list(detectors))
    register_dataset_types(butler)
    tables = []
    flats_done: set[int] = set()
    for k, visit in enumerate(visits):
        begin = T0 + TimeDelta(3600 * k, format="sec")
        regions = {}
        sims = {}
        for detector in detectors:
            # Each detector looks at its own patch of sky.
            centre = (150.0 + 0.05 * detector, 2.0)
            sim = simulate_exposure(
                band=BAND, visit=visit, detector=detector, shape=shape, seed=visit * 10 + detector,
                instrument=layout.instrument, obs_time=begin, ra_dec_center=centre,
                n_background_stars=3, n_background_galaxies=2,
            )
            vi = sim.visit_image
            regions[detector] = detector_region(vi.sky_projection, vi.bbox)
            sims[detector] = sim
            if detector not in flats_done:
                certify_calibration(
                    butler, "flat", sim.flat,
                    data_id={"instrument": layout.instrument, "detector": detector,
                             "physical_filter": filters[BAND]},
                    run=layout.calib_run, calib_collection=layout.calib_collection, begin=T0, end=None,
                )
                flats_done.add(detector)
            if k == 0:
                sky = vi.sky_projection.pixel_to_sky(XY(x=np.array([40.0, 90.0]), y=np.array([60.0, 70.0])))
                tables.append(Table({
                    "injection_id": [detector * 10 + 1, detector * 10 + 2],
                    "source_type": ["Star", "Sersic"], "mag": [19.0, 20.0], "n": [1.0, 1.5],
                    "half_light_radius": [0.0, 0.8], "q": [1.0, 0.6], "beta": [0.0, 45.0],
                    "ra": sky.ra.deg, "dec": sky.dec.deg,
                }))
        register_visit(butler, layout.instrument, visit=visit, physical_filter=filters[BAND], begin=begin,
                       end=begin + TimeDelta(30, format="sec"), detector_regions=regions)
        for detector, sim in sims.items():
            put_visit_image(butler, sim.visit_image, instrument=layout.instrument, visit=visit,
                            detector=detector, run=layout.raw_run)
    ingest_injection_catalog(butler, vstack(tables), BAND, layout.catalog_run)
    set_input_chain(butler, layout.inputs, [layout.raw_run, layout.calib_collection, layout.catalog_run])
    return [(v, d) for v in visits for d in detectors]


def registry_pairs(butler, dataset_type: str, collections: str) -> list[tuple[int, int]]:
    """The sorted (visit, detector) of every ``dataset_type`` dataset the registry finds in
    ``collections`` (duplicates kept, so a doubled output shows)."""
    refs = butler.query_datasets(dataset_type, collections=collections, explain=False)
    return sorted((int(ref.dataId["visit"]), int(ref.dataId["detector"])) for ref in refs)


def check_inputs(butler, pairs) -> None:
    """The registry holds a ``visit_image`` for each of ``pairs`` (at least 8, the quanta to run)."""
    inputs = registry_pairs(butler, "visit_image", RepoLayout.inputs)
    assert len(inputs) >= 8, inputs
    assert inputs == sorted(pairs), (inputs, pairs)


def check_outputs(butler, pairs, collection: str) -> None:
    # The registry holds exactly one output of each kind per (visit, detector): none missing, none extra.
    for dataset_type in ("injected_visit_image", "injected_visit_image_catalog"):
        found = registry_pairs(butler, dataset_type, collection)
        assert found == sorted(pairs), (dataset_type, found)
    for visit, detector in pairs:
        data_id = {"instrument": RepoLayout.instrument, "visit": visit, "detector": detector}
        catalog = butler.get("injected_visit_image_catalog", data_id, collections=collection)
        assert len(catalog) == 2, catalog
        assert np.all((np.asarray(catalog["injection_flag"]) & int(FATAL_FLAGS)) == 0), catalog
        image = butler.get("injected_visit_image", data_id, collections=collection)
        assert image.mask.get("INJECTED").sum() > 0


def bps_environment(cwd: Path | None = None) -> dict[str, str]:
    """Environment for a ``bps submit`` subprocess: this venv's tools first,
    ``bps/`` (site classes) and ``python/`` on PYTHONPATH, ISRINJECT_DIR.
    With ``cwd``, also PWD (bps's default ``submitPath`` is
    ``${PWD}/submit/{outputRun}``; subprocess's ``cwd=`` does not change it)."""
    env = dict(os.environ)
    if cwd is not None:
        env["PWD"] = str(cwd)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bps"), str(ROOT / "python"),
                                                      env.get("PYTHONPATH", "")]))
    env["ISRINJECT_DIR"] = str(ROOT)
    env.setdefault("USER", "isrinject")
    return env


def bps_logs(cwd: Path) -> str:
    """The ends of the logs a ``bps submit`` run in ``cwd`` left: quantum-graph
    generation, parsl's log, and every job log that mentions an error."""
    logs = []
    paths = (sorted(cwd.glob("submit/**/quantumGraphGeneration.out")) + sorted(cwd.glob("runinfo/*/parsl.log"))
             + sorted(cwd.glob("submit/**/*.stderr")))
    for path in paths:
        text = path.read_text(errors="replace")
        if path.suffix != ".stderr" or "error" in text.lower():
            logs.append(f"--- {path}\n{text[-2000:]}")
    return "\n".join(logs)


def bps_submit(site: str | Path, butler_config: str, output: str, cwd: Path, *extra_args: str) -> float:
    """Run ``bps submit bps/<site>.yaml`` (or the configuration file ``site``
    when it is a Path) in ``cwd`` on the repository ``butler_config`` (a path
    or URI), inputs ``RepoLayout.inputs``, output collection ``output``, then
    ``extra_args`` (e.g. ``-d QUERY``); return the wall time.  On failure the
    message carries bps's output and the logs (``bps_logs``)."""
    config = site if isinstance(site, Path) else ROOT / "bps" / f"{site}.yaml"
    start = time.monotonic()
    result = subprocess.run(
        [str(BIN / "bps"), "submit", str(config), "-b", butler_config,
         "-i", RepoLayout.inputs, "-o", output, *extra_args],
        check=False, capture_output=True, text=True, timeout=600, cwd=cwd, env=bps_environment(cwd),
    )
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        pytest.fail(f"bps submit {site} exited with {result.returncode}\n--- bps stdout\n{result.stdout[-2000:]}"
                    f"\n--- bps stderr\n{result.stderr[-4000:]}\n{bps_logs(cwd)}")
    return elapsed


def check_bps_outputs(butler, pairs, collection: str, cwd: Path) -> None:
    """``check_outputs`` after ``bps_submit``: a failed job does not make
    ``bps submit`` (parsl) exit non-zero, its outputs are just missing; then
    show the job logs."""
    try:
        check_outputs(butler, pairs, collection)
    except (AssertionError, LookupError) as error:  # LookupError: DatasetNotFoundError
        pytest.fail(f"{type(error).__name__}: {error}\n{bps_logs(cwd)}")


@pytest.mark.parametrize("site", ["local_threads", "local_htex"])
def test_bps_submit_runs_every_quantum(tmp_path: Path, site: str) -> None:
    from lsst.daf.butler import Butler

    root = tmp_path / "repo"
    Butler.makeRepo(str(root))
    butler = Butler.from_config(str(root), writeable=True)
    pairs = populate_repo(butler)
    check_inputs(Butler.from_config(str(root)), pairs)
    output = "u/test/bps"
    elapsed = bps_submit(site, str(root), output, tmp_path)
    # bps's submit directory and parsl's runinfo are under this test's directory; one
    # job (and log) per visit (bps/clustering.yaml).
    assert len(list(tmp_path.glob("submit/u/test/bps/*/logs/visit/*/*.stderr"))) == len({v for v, _ in pairs})
    assert list(tmp_path.glob("runinfo/*/parsl.log"))
    check_bps_outputs(Butler.from_config(str(root)), pairs, output, tmp_path)
    print(f"bps submit {site}: {len(pairs)} quanta in {elapsed:.1f} s")
