"""End to end: the real `pipetask` on a temporary SQLite repo with certified flats."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table, vstack
from astropy.time import Time, TimeDelta
from lsst.daf.butler import Butler

from _repo import BIN, LAYOUT, add_visit, certify_flat, new_repo, run_pipetask, set_inputs, stamp_footprint
from isrinject.demo.repo import create_repo
from isrinject.engine.catalog import ingest_injection_catalog
from isrinject.engine.flags import FATAL_FLAGS
from isrinject.sim import make_flat, simulate_exposure
from isrinject.sim.camera import amplifier_boxes
from isrinject.tasks.provenance import record_isr_flat

pytestmark = pytest.mark.slow

SHAPE = (200, 256)
BAND = "r"
T0 = Time("2026-03-01T00:00:00", scale="tai")
T_SWITCH = Time("2026-03-10T00:00:00", scale="tai")
VISITS = {101: T0 + TimeDelta(2 * 86400, format="sec"), 202: T_SWITCH + TimeDelta(2 * 86400, format="sec")}
DETECTOR = 4


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, np.ndarray]]:
    """Two visits, each simulated with the flat certified for its time."""
    root = tmp_path_factory.mktemp("repo")
    butler = create_repo(str(root))
    filters = new_repo(butler, band=BAND, detectors=[DETECTOR])
    rng = np.random.default_rng(11)
    flat_a = make_flat(SHAPE, band=BAND, amp_boxes=amplifier_boxes(SHAPE), rng=rng)
    # The second flat differs by a 25 % gradient, so the chosen one shows.
    gradient = np.linspace(1.0, 1.25, SHAPE[1])[None, :]
    flat_b = (flat_a[0] * gradient, flat_a[1] * gradient**2)
    flats = {101: flat_a, 202: flat_b}
    ranges = {101: (T0, T_SWITCH), 202: (T_SWITCH, None)}
    sources = Table(
        {"injection_id": [1, 2], "source_type": ["Star", "Sersic"], "mag": [19.0, 20.0],
         "n": [1.0, 1.5], "half_light_radius": [0.0, 0.8], "q": [1.0, 0.6], "beta": [0.0, 45.0]}
    )
    catalogs = []
    for visit, begin in VISITS.items():
        # Different pointings, so each visit receives only its own two sources.
        sim = simulate_exposure(
            band=BAND, visit=visit, detector=DETECTOR, shape=SHAPE, seed=visit, instrument=LAYOUT.instrument,
            flat=flats[visit], obs_time=begin, ra_dec_center=(150.0 + (visit // 101 - 1) * 0.5, 2.0),
        )
        vi = sim.visit_image
        flat_ref = certify_flat(
            butler, sim.flat, detector=DETECTOR, physical_filter=filters[BAND], begin=ranges[visit][0],
            end=ranges[visit][1], run=f"{LAYOUT.calib_run}/{visit}",
        )
        record_isr_flat(vi.metadata, flat_ref)  # as ISR does; the quantum checks it
        add_visit(butler, {DETECTOR: sim}, visit=visit, physical_filter=filters[BAND], begin=begin)
        # Sources at fixed pixel positions of each visit image, as sky coordinates.
        sky = vi.sky_projection.pixel_to_sky(_xy([80.0, 170.0], [100.0, 90.0]))
        table = sources.copy()
        table["injection_id"] = table["injection_id"] + visit * 10
        table["ra"], table["dec"] = sky.ra.deg, sky.dec.deg
        catalogs.append(table)
    ingest_injection_catalog(butler, vstack(catalogs), BAND, LAYOUT.catalog_run)
    set_inputs(butler)
    return root, {visit: flats[visit][0] for visit in VISITS}


def _xy(x, y):
    from lsst.images import XY

    return XY(x=np.asarray(x, float), y=np.asarray(y, float))


def test_pipetask_uses_the_flat_valid_at_the_visit_time(repo) -> None:
    root, flats = repo
    result = run_pipetask(root, LAYOUT.inputs, "u/test/inject")
    assert result.returncode == 0, result.stderr[-3000:]
    butler = Butler.from_config(str(root), collections="u/test/inject")
    for visit, flat in flats.items():
        catalog = butler.get("injected_visit_image_catalog", instrument=LAYOUT.instrument, visit=visit,
                             detector=DETECTOR)
        assert len(catalog) == 2
        assert np.all(catalog["injection_flag"] == 0), catalog["injection_flag"]
        ix = np.floor(np.asarray(catalog["x"]) + 0.5).astype(int)
        iy = np.floor(np.asarray(catalog["y"]) + 0.5).astype(int)
        np.testing.assert_allclose(catalog["injection_flat"], flat[iy, ix], rtol=1e-6)
        other = flats[202 if visit == 101 else 101]
        assert np.all(np.abs(np.asarray(catalog["injection_flat"]) / other[iy, ix] - 1) > 0.03)
        image = butler.get("injected_visit_image", instrument=LAYOUT.instrument, visit=visit, detector=DETECTOR)
        original = butler.get("visit_image", instrument=LAYOUT.instrument, visit=visit, detector=DETECTOR,
                              collections=LAYOUT.inputs)
        delta = image.image.array.astype(float) - original.image.array
        assert image.mask.get("INJECTED").sum() > 0
        assert np.all(delta[~stamp_footprint(catalog, image)] == 0.0)
        assert delta.sum() == pytest.approx(np.nansum(catalog["injection_flux"]), rel=1e-4)


def test_missing_flat_fails_at_graph_build(repo) -> None:
    root, _ = repo
    result = run_pipetask(root, "no_flats", "u/test/noflat")
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "flat" in message and "Not enough datasets" in message, message[-3000:]


def test_generate_ingest_run_with_no_hand_editing(repo) -> None:
    """`isrinject generate-catalog` over a visit footprint → repo → pipetask."""
    root, _ = repo
    isrinject = BIN / "isrinject"
    generate = subprocess.run(
        [str(isrinject), "generate-catalog", "-b", str(root), "--visits", "101", "--instrument",
         LAYOUT.instrument, "-n", "3", "-m", "18", "21", "-p", "source_type", "Star", "Exponential",
         "-p", "half_light_radius", "0.5", "--seed", "3", "--band", BAND, "--run", "u/test/generated"],
        capture_output=True, text=True, timeout=300,
    )
    assert generate.returncode == 0, generate.stderr[-2000:]
    inputs = f"{LAYOUT.raw_run},{LAYOUT.calib_collection},u/test/generated"
    result = run_pipetask(root, inputs, "u/test/generated_out", "-d", "visit=101")
    assert result.returncode == 0, result.stderr[-3000:]
    butler = Butler.from_config(str(root), collections="u/test/generated_out")
    catalog = butler.get("injected_visit_image_catalog", instrument=LAYOUT.instrument, visit=101,
                         detector=DETECTOR)
    assert len(catalog) == 6
    # Sources near the footprint edge may be PARTIAL_OVERLAP, but all are injected.
    assert np.all((np.asarray(catalog["injection_flag"]) & int(FATAL_FLAGS)) == 0)
    assert np.all(np.isfinite(catalog["injection_flux"]))
    assert set(catalog["source_type"]) == {"Star", "Exponential"}


def test_read_flat_gives_the_stored_image_and_variance_planes_only(repo) -> None:
    """The quantum reads the flat's image (and variance) planes, not its mask."""
    from lsst.daf.butler import DeferredDatasetHandle
    from lsst.images import Image, MaskedImage

    from isrinject.tasks.inputs import read_flat

    root, flats = repo
    butler = Butler.from_config(str(root))
    refs = list(butler.query_datasets("flat", collections=LAYOUT.calib_collection, find_first=False))
    assert len(refs) == len(flats)
    for ref in refs:
        stored = butler.get(ref)
        handle = DeferredDatasetHandle(butler=butler, ref=ref, parameters=None)
        flat = read_flat(handle, with_variance=True)
        assert isinstance(flat, MaskedImage)
        assert flat.bbox == stored.bbox
        np.testing.assert_array_equal(flat.image.array, stored.image.array)
        np.testing.assert_array_equal(flat.variance.array, stored.variance.array)
        def planes(masked):
            return [plane for plane in masked.mask.schema if plane is not None]

        assert planes(flat) == [] and planes(stored) != []
        image_only = read_flat(handle, with_variance=False)
        assert isinstance(image_only, Image)
        np.testing.assert_array_equal(image_only.array, stored.image.array)
