"""Butler repositories and pipetask/bps runs shared by the end-to-end tests.

One place for what `test_pipetask.py`, `test_reliability_pipetask.py`,
`test_bps.py` and `test_postgres.py` build: a repository of simulated visit
images (`isrinject.demo.repo` does the registration), certified flats and
ingested injection catalogs, and the ``pipetask``/``bps`` subprocesses run on
it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.table import Table, vstack
from astropy.time import Time, TimeDelta
from lsst.daf.butler import Butler, DatasetRef
from lsst.images import MaskedImage

from isrinject.demo.build import DemoRepo
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
from isrinject.engine.catalog import ingest_injection_catalog
from isrinject.engine.flags import FATAL_FLAGS, InjectionFlag
from isrinject.sim import SimulatedExposure, simulate_exposure

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PIPELINE = ROOT / "pipelines" / "inject.yaml"
LAYOUT = RepoLayout()


def new_repo(butler: Butler, *, band: str, detectors: list[int]) -> dict[str, str]:
    """Register the test instrument (one ``band``) and the dataset types in an
    empty writeable butler; return band → physical filter."""
    filters = register_instrument(butler, LAYOUT.instrument, bands=[band], detectors=detectors)
    register_dataset_types(butler)
    return filters


def add_visit(
    butler: Butler, sims: Mapping[int, SimulatedExposure], *, visit: int, physical_filter: str, begin: Time
) -> None:
    """Register a 30 s visit with the regions of the detectors in ``sims``
    (detector → simulation) and put their visit images in the raw RUN."""
    regions = {
        detector: detector_region(sim.visit_image.sky_projection, sim.visit_image.bbox)
        for detector, sim in sims.items()
    }
    register_visit(
        butler, LAYOUT.instrument, visit=visit, physical_filter=physical_filter, begin=begin,
        end=begin + TimeDelta(30, format="sec"), detector_regions=regions,
    )
    for detector, sim in sims.items():
        put_visit_image(
            butler, sim.visit_image, instrument=LAYOUT.instrument, visit=visit, detector=detector, run=LAYOUT.raw_run
        )


def certify_flat(
    butler: Butler,
    flat: MaskedImage,
    *,
    detector: int,
    physical_filter: str,
    begin: Time | None,
    end: Time | None,
    run: str = LAYOUT.calib_run,
) -> DatasetRef:
    """Certify ``flat`` for one detector and filter over [begin, end); return its ref."""
    return certify_calibration(
        butler, "flat", flat,
        data_id={"instrument": LAYOUT.instrument, "detector": detector, "physical_filter": physical_filter},
        run=run, calib_collection=LAYOUT.calib_collection, begin=begin, end=end,
    )


def set_inputs(butler: Butler) -> None:
    """Chain raw images, calibrations and catalogs as ``LAYOUT.inputs``, and
    the same without calibrations as ``no_flats``."""
    set_input_chain(butler, LAYOUT.inputs, [LAYOUT.raw_run, LAYOUT.calib_collection, LAYOUT.catalog_run])
    set_input_chain(butler, "no_flats", [LAYOUT.raw_run, LAYOUT.catalog_run])


def run_pipetask(repo: Path | str, inputs: str, output: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``pipetask run`` of the inject pipeline on ``repo`` (registering dataset types)."""
    command = [
        str(BIN / "pipetask"), "run", "-b", str(repo), "-i", inputs, "-o", output, "-p", str(PIPELINE),
        "--register-dataset-types", "-d", f"instrument='{LAYOUT.instrument}'", *extra,
    ]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)


# --- the 4 visits × 2 detectors repository of the BPS and PostgreSQL tests ----

BAND = "r"
VISITS = (301, 302, 303, 304)
DETECTORS = (1, 2)
SHAPE = (128, 128)
T0 = Time("2026-04-01T00:00:00", scale="tai")


def populate_repo(butler: Butler) -> list[tuple[int, int]]:
    """Fill an empty writeable butler with `VISITS` × `DETECTORS` visit
    images, certified flats and a catalog of two sources per detector; return
    the (visit, detector) pairs."""
    from lsst.images import XY

    filters = new_repo(butler, band=BAND, detectors=list(DETECTORS))
    tables = []
    for k, visit in enumerate(VISITS):
        begin = T0 + TimeDelta(3600 * k, format="sec")
        sims = {
            # Each detector looks at its own patch of sky.
            detector: simulate_exposure(
                band=BAND, visit=visit, detector=detector, shape=SHAPE, seed=visit * 10 + detector,
                instrument=LAYOUT.instrument, obs_time=begin, ra_dec_center=(150.0 + 0.05 * detector, 2.0),
                n_background_stars=3, n_background_galaxies=2,
            )
            for detector in DETECTORS
        }
        add_visit(butler, sims, visit=visit, physical_filter=filters[BAND], begin=begin)
        if k > 0:
            continue
        for detector, sim in sims.items():
            certify_flat(butler, sim.flat, detector=detector, physical_filter=filters[BAND], begin=T0, end=None)
            sky = sim.visit_image.sky_projection.pixel_to_sky(XY(x=np.array([40.0, 90.0]), y=np.array([60.0, 70.0])))
            tables.append(Table({
                "injection_id": [detector * 10 + 1, detector * 10 + 2],
                "source_type": ["Star", "Sersic"], "mag": [19.0, 20.0], "n": [1.0, 1.5],
                "half_light_radius": [0.0, 0.8], "q": [1.0, 0.6], "beta": [0.0, 45.0],
                "ra": sky.ra.deg, "dec": sky.dec.deg,
            }))
    ingest_injection_catalog(butler, vstack(tables), BAND, LAYOUT.catalog_run)
    set_inputs(butler)
    return [(v, d) for v in VISITS for d in DETECTORS]


def registry_pairs(butler: Butler, dataset_type: str, collections: str) -> list[tuple[int, int]]:
    """The sorted (visit, detector) of every ``dataset_type`` dataset the registry finds in
    ``collections`` (duplicates kept, so a doubled output shows)."""
    refs = butler.query_datasets(dataset_type, collections=collections, explain=False)
    return sorted((int(ref.dataId["visit"]), int(ref.dataId["detector"])) for ref in refs)


def check_inputs(butler: Butler, pairs: list[tuple[int, int]]) -> None:
    """The registry holds a ``visit_image`` for each of ``pairs`` (at least 8, the quanta to run)."""
    inputs = registry_pairs(butler, "visit_image", LAYOUT.inputs)
    assert len(inputs) >= 8, inputs
    assert inputs == sorted(pairs), (inputs, pairs)


def check_outputs(butler: Butler, pairs: list[tuple[int, int]], collection: str) -> None:
    """Exactly one output of each kind per (visit, detector), none missing, none
    extra; both sources injected unflagged into each (the other visits' rows of
    the same htm7 shards are kept, flagged NO_OVERLAP: ``keep_off_image_rows``)."""
    for dataset_type in ("injected_visit_image", "injected_visit_image_catalog"):
        found = registry_pairs(butler, dataset_type, collection)
        assert found == sorted(pairs), (dataset_type, found)
    for visit, detector in pairs:
        data_id = {"instrument": LAYOUT.instrument, "visit": visit, "detector": detector}
        catalog = butler.get("injected_visit_image_catalog", data_id, collections=collection)
        catalog = catalog[(np.asarray(catalog["injection_flag"]) & int(InjectionFlag.NO_OVERLAP)) == 0]
        assert len(catalog) == 2, catalog
        assert np.all((np.asarray(catalog["injection_flag"]) & int(FATAL_FLAGS)) == 0), catalog
        image = butler.get("injected_visit_image", data_id, collections=collection)
        assert image.mask.get("INJECTED").sum() > 0


def stamp_footprint(catalog: Table, image: Any) -> np.ndarray:
    """Pixels an injection may change: the drawn stamps (each row's
    ``injection_draw_size`` box centred on its nearest pixel, as
    `isrinject.engine.draw.render` places it) and the pixels ISR's saturation
    treatment touched (SATURATED, INTERPOLATED, SUSPECT: bleed trails leave the
    stamp along the column).  ``INJECTED`` no longer covers whole stamps (it is
    set where the model is above a fraction of the sky noise), so the changed
    pixels are checked against this."""
    bbox = image.bbox
    footprint = np.zeros(image.image.array.shape, dtype=bool)
    for x, y, size in zip(catalog["x"], catalog["y"], catalog["injection_draw_size"], strict=True):
        if not (np.isfinite(x) and np.isfinite(y)) or np.ma.is_masked(size):
            continue
        half = int(size) // 2
        ix, iy = int(np.floor(x + 0.5)) - bbox.x.start, int(np.floor(y + 0.5)) - bbox.y.start
        footprint[max(iy - half, 0) : max(iy + half + 1, 0), max(ix - half, 0) : max(ix + half + 1, 0)] = True
    for plane in ("SATURATED", "INTERPOLATED", "SUSPECT"):
        footprint |= image.mask.get(plane)
    return footprint


def bps_environment(cwd: Path | None = None) -> dict[str, str]:
    """Environment for a ``bps submit`` subprocess: this venv's tools first,
    ``bps/`` (site classes) and ``python/`` on PYTHONPATH, ISRINJECT_DIR.
    With ``cwd``, also PWD (bps's default ``submitPath`` is
    ``${PWD}/submit/{outputRun}``; subprocess's ``cwd=`` does not change it)."""
    env = dict(os.environ)
    if cwd is not None:
        env["PWD"] = str(cwd)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "bps"), str(ROOT / "python"), env.get("PYTHONPATH", "")])
    )
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
    or URI), inputs ``LAYOUT.inputs``, output collection ``output``, then
    ``extra_args`` (e.g. ``-d QUERY``); return the wall time.  On failure the
    message carries bps's output and the logs (``bps_logs``)."""
    config = site if isinstance(site, Path) else ROOT / "bps" / f"{site}.yaml"
    start = time.monotonic()
    result = subprocess.run(
        [str(BIN / "bps"), "submit", str(config), "-b", butler_config,
         "-i", LAYOUT.inputs, "-o", output, *extra_args],
        check=False, capture_output=True, text=True, timeout=600, cwd=cwd, env=bps_environment(cwd),
    )
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        pytest.fail(f"bps submit {site} exited with {result.returncode}\n--- bps stdout\n{result.stdout[-2000:]}"
                    f"\n--- bps stderr\n{result.stderr[-4000:]}\n{bps_logs(cwd)}")
    return elapsed


def check_bps_outputs(butler: Butler, pairs: list[tuple[int, int]], collection: str, cwd: Path) -> None:
    """``check_outputs`` after ``bps_submit``: a failed job does not make
    ``bps submit`` (parsl) exit non-zero, its outputs are just missing; then
    show the job logs."""
    try:
        check_outputs(butler, pairs, collection)
    except (AssertionError, LookupError) as error:  # LookupError: DatasetNotFoundError
        pytest.fail(f"{type(error).__name__}: {error}\n{bps_logs(cwd)}")


# --- comparing runs and checking that inputs are untouched -------------------


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every datastore file (the SQLite registry excluded)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith("gen3.sqlite3")
    }


def demo_pairs(demo: DemoRepo) -> list[tuple[int, int]]:
    """Sorted (visit, detector) of every quantum of the demo."""
    return sorted((demo.visits[band], detector) for band in demo.bands for detector in demo.detectors)


def assert_same_outputs(butler: Butler, pairs, collection_a: str, collection_b: str) -> None:
    """The injected images (image, variance, mask planes) and catalogs (every
    column) of ``pairs`` in the two collections are bit-identical."""
    for visit, detector in pairs:
        data_id = {"instrument": "ISRSim", "visit": visit, "detector": detector}
        images = [butler.get("injected_visit_image", data_id, collections=c) for c in (collection_a, collection_b)]
        for plane in ("image", "variance", "mask"):
            a, b = (getattr(image, plane).array for image in images)
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), (visit, detector, plane)
        catalogs = [butler.get("injected_visit_image_catalog", data_id, collections=c)
                    for c in (collection_a, collection_b)]
        assert catalogs[0].colnames == catalogs[1].colnames
        assert len(catalogs[0]) > 0, (visit, detector)
        for column in catalogs[0].colnames:
            a, b = (np.asarray(catalog[column]) for catalog in catalogs)
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), (visit, detector, column)


def input_run_counts(butler: Butler, exclude_prefix: str) -> dict[str, int]:
    """Number of datasets in every RUN collection whose name does not start with ``exclude_prefix``."""
    runs = [c for c in butler.collections.query("*", collection_types={"RUN"}) if not c.startswith(exclude_prefix)]
    return {run: len(butler.query_datasets("*", collections=run, find_first=False, explain=False)) for run in runs}
