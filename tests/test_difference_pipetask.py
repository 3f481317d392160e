"""End to end: `pipetask run -p pipelines/inject_difference.yaml` on a SQLite repo of
simulated difference images (one template-convolved visit, one science-convolved)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table, vstack
from astropy.time import Time, TimeDelta
from lsst.daf.butler import Butler, DatasetType
from lsst.images import XY

from _repo import BIN, LAYOUT, add_visit, certify_flat, new_repo, set_inputs
from isrinject.demo.repo import create_repo
from isrinject.engine.catalog import ingest_injection_catalog
from isrinject.engine.flags import FATAL_FLAGS, InjectionFlag
from isrinject.sim import simulate_difference

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "inject_difference.yaml"
SHAPE = (128, 128)
BAND = "r"
DETECTOR = 3
T0 = Time("2026-05-01T00:00:00", scale="tai")
#: visit → (which image the kernel convolved, science σ, template σ)
VISITS = {501: ("template", 2.2, 1.6), 502: ("science", 1.6, 2.2)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("difference_repo")
    butler = create_repo(str(root))
    filters = new_repo(butler, band=BAND, detectors=[DETECTOR])
    butler.registry.registerDatasetType(
        DatasetType("difference_image", ("instrument", "visit", "detector"), "DifferenceImage",
                    universe=butler.dimensions)
    )
    pairs = {}
    tables = []
    for k, (visit, (convolved, science_sigma, template_sigma)) in enumerate(VISITS.items()):
        begin = T0 + TimeDelta(3600 * k, format="sec")
        pair = simulate_difference(
            band=BAND, visit=visit, detector=DETECTOR, seed=visit, shape=SHAPE, convolved=convolved,
            science_psf_sigma=science_sigma, template_psf_sigma=template_sigma, instrument=LAYOUT.instrument,
            obs_time=begin, ra_dec_center=(150.0 + 0.1 * k, 2.0), n_background_stars=3, n_background_galaxies=2,
        )
        add_visit(butler, {DETECTOR: pair.science}, visit=visit, physical_filter=filters[BAND], begin=begin)
        butler.put(pair.difference_image, "difference_image", instrument=LAYOUT.instrument, visit=visit,
                   detector=DETECTOR, run=LAYOUT.raw_run)
        if k == 0:
            certify_flat(butler, pair.science.flat, detector=DETECTOR, physical_filter=filters[BAND], begin=T0,
                         end=None)
        sky = pair.difference_image.sky_projection.pixel_to_sky(
            XY(x=np.array([40.3, 85.7]), y=np.array([50.2, 80.1]))
        )
        tables.append(Table({"injection_id": [visit * 10 + 1, visit * 10 + 2], "source_type": ["Star", "Star"],
                             "mag": [19.0, 20.0], "ra": sky.ra.deg, "dec": sky.dec.deg}))
        pairs[visit] = pair
    ingest_injection_catalog(butler, vstack(tables), BAND, LAYOUT.catalog_run)
    set_inputs(butler)
    return root, pairs


def test_pipetask_injects_both_kernel_directions(repo) -> None:
    root, pairs = repo
    command = [
        str(BIN / "pipetask"), "run", "-b", str(root), "-i", LAYOUT.inputs, "-o", "u/test/difference",
        "-p", str(PIPELINE), "--register-dataset-types", "-d", f"instrument='{LAYOUT.instrument}'",
        "-c", "inject_difference:use_science_psf=True",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    butler = Butler.from_config(str(root), collections="u/test/difference")
    for visit, pair in pairs.items():
        data_id = {"instrument": LAYOUT.instrument, "visit": visit, "detector": DETECTOR}
        image = butler.get("injected_difference_image", data_id)
        catalog = butler.get("injected_difference_image_catalog", data_id)
        assert image.metadata["INJECTION_CONVOLVED"] == VISITS[visit][0]
        # The other visit's rows share the htm7 shard: kept, flagged NO_OVERLAP (keep_off_image_rows).
        on_image = (np.asarray(catalog["injection_flag"]) & int(InjectionFlag.NO_OVERLAP)) == 0
        assert sorted(catalog["injection_id"][on_image]) == [visit * 10 + 1, visit * 10 + 2]
        assert not np.any(np.asarray(catalog["injection_flag"])[on_image] & int(FATAL_FLAGS))
        delta = image.image.array.astype(np.float64) - pair.difference_image.image.array
        assert delta.sum() == pytest.approx(float(np.sum(catalog["injection_flux"][on_image])), rel=1e-5)
        assert image.kernel is not None and image.metadata["INJECTED"] == "difference_image"
        # The stored input is untouched.
        stored = butler.get("difference_image", data_id)
        np.testing.assert_array_equal(stored.image.array, pair.difference_image.image.array)


def test_pipetask_on_the_demo_repository(demo_repo) -> None:
    """The demo repository's difference images injected by the real pipetask."""
    from _repo import demo_pairs

    command = [
        str(BIN / "pipetask"), "run", "-b", str(demo_repo.root), "-i", demo_repo.layout.inputs,
        "-o", "u/test/demo_difference", "-p", str(PIPELINE), "--register-dataset-types",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    butler = Butler.from_config(str(demo_repo.root), collections="u/test/demo_difference")
    refs = butler.query_datasets("injected_difference_image_catalog", explain=False)
    assert sorted((int(r.dataId["visit"]), int(r.dataId["detector"])) for r in refs) == sorted(demo_pairs(demo_repo))
    for ref in refs:
        catalog = butler.get(ref)
        image = butler.get("injected_difference_image", ref.dataId)
        # Its own 8 sources, plus the neighbour's within the trim padding.
        on_image = image.bbox.contains(x=np.round(catalog["x"]).astype(int), y=np.round(catalog["y"]).astype(int))
        assert int(on_image.sum()) == 8
        assert not np.any(np.asarray(catalog["injection_flag"][on_image]) & int(FATAL_FLAGS))
        assert image.metadata["INJECTION_CONVOLVED"] == "template"


def test_bps_submit(repo, tmp_path: Path) -> None:
    """``bps submit bps/difference_local_threads.yaml`` (parsl threads, one job per visit)."""
    from _repo import bps_submit

    root, pairs = repo
    output = "u/test/difference_bps"
    elapsed = bps_submit(ROOT / "bps" / "difference_local_threads.yaml", str(root), output, tmp_path,
                         "-d", f"instrument='{LAYOUT.instrument}'", "--extra-qgraph-options",
                         "-c inject_difference:use_science_psf=True")
    assert len(list(tmp_path.glob(f"submit/{output}/*/logs/visit/*/*.stderr"))) == len(pairs)
    butler = Butler.from_config(str(root), collections=output)
    refs = butler.query_datasets("injected_difference_image_catalog", explain=False)
    assert sorted(int(r.dataId["visit"]) for r in refs) == sorted(pairs)
    print(f"bps submit difference_local_threads: {len(pairs)} quanta in {elapsed:.1f} s")
