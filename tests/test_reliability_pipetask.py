"""Issue 7 through the real `pipetask`: data safety, failing quanta, missing calibrations.

One small SQLite repo (one visit, one 128×128 detector) whose flat has a hole
and whose catalog has bad rows.  Four pipetask runs (~5 s each):

- P1/P2: two runs with the same seed into two output collections: bit-identical
  outputs, input datastore files byte-identical, new datasets and files only in
  the output RUNs, bad rows flagged in the stored catalog;
- P3: a configuration error raised inside ``run()``: the run fails loudly and
  leaves no ``injected_visit_image`` (nor catalog) for the quantum;
- P4: no flat certified: graph building fails naming the dataset type;
- P5: outcomes that used to be silent (no catalog in ``-i``, every source off
  the image, an unquoted string config value) are warnings or one-line errors
  at pipetask's default log level.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from astropy.time import Time, TimeDelta
from lsst.daf.butler import Butler

from _repo import BIN, LAYOUT, PIPELINE, add_visit, certify_flat, file_hashes, new_repo, run_pipetask, set_inputs
from isrinject.cli import main
from isrinject.demo.repo import RepoLayout, create_repo
from isrinject.engine.catalog import ingest_injection_catalog
from isrinject.engine.flags import InjectionFlag
from isrinject.sim import simulate_exposure

pytestmark = pytest.mark.slow

SHAPE = (128, 128)
BAND = "r"
VISIT, DETECTOR = 301, 4
T0 = Time("2026-03-01T00:00:00", scale="tai")
INSTRUMENT = RepoLayout.instrument
DATA_ID = {"instrument": INSTRUMENT, "visit": VISIT, "detector": DETECTOR}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reliability_repo")
    butler = create_repo(str(root))
    filters = new_repo(butler, band=BAND, detectors=[DETECTOR])
    begin = T0 + TimeDelta(86400, format="sec")
    sim = simulate_exposure(band=BAND, visit=VISIT, detector=DETECTOR, shape=SHAPE, seed=17, instrument=INSTRUMENT,
                            obs_time=begin, n_background_stars=5, n_background_galaxies=3)
    vi = sim.visit_image
    add_visit(butler, {DETECTOR: sim}, visit=VISIT, physical_filter=filters[BAND], begin=begin)
    # A flat with a hole (0, NaN, negative) under source 2.
    flat = sim.flat.copy()
    flat.image.array[88:92, 38:41] = [0.0, np.nan, -1.0]
    certify_flat(butler, flat, detector=DETECTOR, physical_filter=filters[BAND], begin=T0, end=None)
    from lsst.images import XY

    x = np.array([64.0, 40.0, 100.0, 20.0, 110.0])
    y = np.array([64.0, 90.0, 30.0, 20.0, 110.0])
    sky = vi.sky_projection.pixel_to_sky(XY(x=x, y=y))
    catalog = Table({
        "injection_id": [1, 2, 3, 4, 5], "ra": sky.ra.deg, "dec": sky.dec.deg,
        "source_type": ["Star", "Star", "Blob", "Star", "Exponential"],
        "mag": [18.0, 17.0, 18.0, np.nan, 19.0],
        "half_light_radius": [np.nan, np.nan, np.nan, np.nan, 0.6],
    })
    ingest_injection_catalog(butler, catalog, BAND, LAYOUT.catalog_run)
    set_inputs(butler)
    return root


def _input_dataset_counts(butler: Butler) -> dict[str, int]:
    return {
        run: len(set(butler.registry.queryDatasets(..., collections=run)))
        for run in (LAYOUT.raw_run, LAYOUT.calib_run, LAYOUT.catalog_run)
    }


def test_data_safety_and_reproducibility(repo: Path) -> None:
    """P1/P2 (B63-B66): inputs byte-identical, outputs only in the output RUN, same seed → same bits,
    bad rows and flat holes flagged in the stored catalog."""
    before = file_hashes(repo)
    counts_before = _input_dataset_counts(Butler.from_config(str(repo)))
    runs = {}
    for output in ("u/rel/a", "u/rel/b"):
        result = run_pipetask(repo, RepoLayout.inputs, output, "-c", "inject_visit:noise_seed=5")
        assert result.returncode == 0, result.stderr[-3000:]
        runs[output] = result
    after = file_hashes(repo)
    butler = Butler.from_config(str(repo))

    # Inputs untouched: every pre-existing file byte-identical, no dataset added to an input RUN.
    assert {name: after[name] for name in before} == before
    assert _input_dataset_counts(butler) == counts_before
    # New files only under the output RUNs (u/rel/a/<timestamp>, u/rel/b/<timestamp>).
    new_files = set(after) - set(before)
    assert new_files and all(name.startswith("u/rel/") for name in new_files), sorted(new_files)
    for name in ("injected_visit_image", "injected_visit_image_catalog"):
        refs = butler.query_datasets(name, collections="*", find_first=False, explain=False)
        assert sorted(ref.run.rsplit("/", 1)[0] for ref in refs) == ["u/rel/a", "u/rel/b"]

    images = [butler.get("injected_visit_image", DATA_ID, collections=c) for c in ("u/rel/a", "u/rel/b")]
    catalogs = [butler.get("injected_visit_image_catalog", DATA_ID, collections=c) for c in ("u/rel/a", "u/rel/b")]
    for plane in ("image", "variance", "mask"):
        a, b = (getattr(image, plane).array for image in images)
        assert np.array_equal(a, b, equal_nan=True), plane
    original = butler.get("visit_image", DATA_ID, collections=RepoLayout.inputs)
    assert not np.array_equal(images[0].image.array, original.image.array, equal_nan=True)
    for column in ("injection_flag", "injection_flux", "x", "y"):
        assert np.array_equal(catalogs[0][column], catalogs[1][column], equal_nan=True)

    flags = {int(i): int(f) for i, f in zip(catalogs[0]["injection_id"], catalogs[0]["injection_flag"])}
    # (the galaxy's automatic stamp reaches past the image edge: PARTIAL_OVERLAP, still injected)
    assert flags == {1: 0, 2: InjectionFlag.NO_PHOTONS, 3: InjectionFlag.TYPE_UNKNOWN,
                     4: InjectionFlag.MAG_BAD, 5: InjectionFlag.PARTIAL_OVERLAP}
    delta = images[0].image.array.astype(float) - original.image.array
    assert np.all(delta[88:92, 38:41] == 0)
    # The per-row problems are in the pipetask log, naming column, row and injection_id.
    log = runs["u/rel/a"].stderr + runs["u/rel/a"].stdout
    assert "column 'source_type' [TYPE_UNKNOWN]" in log and "(injection_id [3])" in log
    assert "column 'mag' [MAG_BAD]" in log and "(injection_id [4])" in log


def test_failing_quantum_leaves_no_partial_output(repo: Path) -> None:
    """P3 (B67): scaling_source='constant' without photometric_scaling raises inside run()."""
    result = run_pipetask(repo, RepoLayout.inputs, "u/rel/fail", "-c", "inject_visit:scaling_source='constant'")
    assert result.returncode != 0
    log = result.stderr + result.stdout
    assert f"visit {VISIT}, detector {DETECTOR}: scaling_source='constant' needs config.photometric_scaling" in log
    butler = Butler.from_config(str(repo))
    for name in ("injected_visit_image", "injected_visit_image_catalog"):
        refs = butler.query_datasets(name, collections="u/rel/fail*", find_first=False, explain=False)
        assert refs == [], refs


def test_missing_flat_fails_at_graph_build(repo: Path) -> None:
    """P4 (B68): no flat certified for the visit.

    pipe_base's message (``FileNotFoundError: Not enough datasets (0) found
    for non-optional connection inject_visit.flat (flat) with minimum=1 for
    quantum data ID {instrument: ..., detector: 4, visit: 301, ...}``) names
    the connection, the dataset type and the data ID, but not the input
    collections searched (they are only on the command line)."""
    result = run_pipetask(repo, "no_flats", "u/rel/noflat")
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "Not enough datasets (0) found for non-optional connection inject_visit.flat (flat)" in message, \
        message[-3000:]
    assert f"detector: {DETECTOR}, visit: {VISIT}" in message, message[-3000:]
    assert "no_flats" not in message.split("Not enough datasets")[1].splitlines()[0]  # collections not named


def _off_image_catalog(butler: Butler) -> Table:
    """Two stars 400 px off the image, in the image centre's htm7 trixel (so the quantum gets them)."""
    from lsst.images import XY

    from isrinject.engine.catalog import htm_indices

    vi = butler.get("visit_image", DATA_ID, collections=RepoLayout.inputs)
    centre = vi.sky_projection.pixel_to_sky(XY(x=np.array([64.0]), y=np.array([64.0])))
    candidates = np.array([(-400.0, 64.0), (528.0, 64.0), (64.0, -400.0), (64.0, 528.0), (-400.0, -400.0)])
    sky = vi.sky_projection.pixel_to_sky(XY(x=candidates[:, 0], y=candidates[:, 1]))
    same = htm_indices(sky.ra.deg, sky.dec.deg) == htm_indices(centre.ra.deg, centre.dec.deg)[0]
    assert same.sum() >= 2, "no off-image position in the image's trixel"
    ra, dec = sky.ra.deg[same][:2], sky.dec.deg[same][:2]
    return Table({"injection_id": [11, 12], "ra": ra, "dec": dec, "source_type": ["Star", "Star"],
                  "mag": [20.0, 20.0]})


def test_silent_outcomes_are_warnings_at_the_default_log_level(repo: Path, tmp_path: Path, capsys) -> None:
    """P5 (B69, B75, B76, B78, B79): at pipetask's default log level (no --log-level),

    - the catalog's collection left out of ``-i``: rc 0, but a WARNING naming the dataset type and -i;
    - every source off the image: rc 0, a WARNING with the counts and the likely cause, the rows
      stored flagged NO_OVERLAP;
    - an unquoted ``scaling_source=config``: one line naming field, value and allowed values (and
      the new name), not the config's field dictionary;
    - ``isrinject diagnose`` on a misspelt collection lists the existing ones like it, and on the
      run that injected nothing says "nothing injected — nothing to check" (exit 3, no NaN, no
      numpy warning)."""
    writeable = Butler.from_config(str(repo), writeable=True)
    ingest_injection_catalog(writeable, _off_image_catalog(writeable), BAND, "u/cat/off_image")
    no_catalogs = f"{LAYOUT.raw_run},{LAYOUT.calib_collection}"

    result = run_pipetask(repo, no_catalogs, "u/rel/nocat")
    log = result.stderr + result.stdout
    assert result.returncode == 0, log[-3000:]
    assert "WARNING" in log and "No 'injection_catalog' dataset (dimensions htm7, band) was found for" in log, \
        log[-3000:]
    assert "Is the catalog's collection in the inputs? Add it to -i" in log

    result = run_pipetask(repo, f"{no_catalogs},u/cat/off_image", "u/rel/offimage")
    log = result.stderr + result.stdout
    assert result.returncode == 0, log[-3000:]
    assert f"2 of 2 sources for visit {VISIT}, detector {DETECTOR} are centred outside the image padded by " \
           "100 px" in log, log[-3000:]
    assert f"0 of 2 sources were injected into visit {VISIT}, detector {DETECTOR} (flags: NO_OVERLAP(2)); " \
           "likely cause: every source is centred off the image" in log
    [warning] = [line for line in log.splitlines() if "0 of 2 sources were injected" in line]
    assert "WARNING" in warning and "isrinject.inject_visit" in warning, warning
    catalog = Butler.from_config(str(repo)).get("injected_visit_image_catalog", DATA_ID, collections="u/rel/offimage")
    assert sorted(catalog["injection_id"]) == [11, 12]
    assert list(catalog["injection_flag"]) == [InjectionFlag.NO_OVERLAP] * 2

    capsys.readouterr()
    diagnose = ["diagnose", "-b", str(repo), "--input-collections", RepoLayout.inputs, "-o", str(tmp_path / "d")]
    assert main([*diagnose, "--collections", "u/rel/offimag"]) == 2
    err = capsys.readouterr().err
    assert "collection 'u/rel/offimag' does not exist (existing collections like it: u/rel/offimage, " \
           "u/rel/offimage/" in err, err
    assert "Pass config=" not in err
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert main([*diagnose, "--collections", "u/rel/offimage"]) == 3
    out = capsys.readouterr().out
    assert (f"visit {VISIT} band {BAND} detectors [{DETECTOR}]: nothing injected — nothing to check (2 sources in "
            "the catalog, none injected; flags: NO_OVERLAP(2)") in out, out
    assert "FAIL" not in out and "nan" not in out

    command = [str(BIN / "pipetask"), "build", "-p", str(PIPELINE), "-c", "inject_visit:scaling_source=config",
               "--show", "config=inject_visit::scaling_source"]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    log = result.stderr + result.stdout
    assert result.returncode != 0
    assert ("VisitInjectConfig.scaling_source: the VisitInjectConfig object itself is not allowed; expected one "
            "of 'visit_image', 'empirical', 'constant'.") in log.splitlines()[-1], log[-3000:]
    assert "-c LABEL:scaling_source=constant" in log
    assert "'trim_padding': 100" not in log  # the config's dictionary is not printed
