"""The flat ISR used: find_isr_flat on a real SQLite repository, and the
quantum's check against the flat the graph resolved (real pipetask)."""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time, TimeDelta
from lsst.daf.butler import Butler, Timespan

from isrinject import find_isr_flat
from isrinject.demo.build import EPOCH_START, build_demo_repo
from isrinject.demo.repo import (
    RepoLayout,
    certify_calibration,
    create_repo,
    detector_region,
    put_visit_image,
    register_dataset_types,
    register_instrument,
    register_visit,
)
from isrinject.demo.run import run_pipetask
from isrinject.sim import simulate_exposure
from isrinject.tasks.provenance import (
    FLAT_RUN_CARD,
    FLAT_UUID_CARD,
    FlatProvenanceError,
    check_recorded_flat,
    record_isr_flat,
    recorded_flat,
)

SHAPE = (64, 64)
BAND = "r"
DETECTOR = 3
T0 = Time("2026-03-01T00:00:00", scale="tai")
T_SWITCH = Time("2026-03-10T00:00:00", scale="tai")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory):
    """Visit 1 records the older flat; visit 2 records nothing; an extra RUN
    holds visit 1 recording a flat this repository does not have."""
    layout = RepoLayout()
    butler = create_repo(str(tmp_path_factory.mktemp("prov")))
    filters = register_instrument(butler, layout.instrument, bands=[BAND], detectors=[DETECTOR])
    register_dataset_types(butler)
    data_id = {"instrument": layout.instrument, "detector": DETECTOR, "physical_filter": filters[BAND]}
    refs = {}
    images = {}
    for visit, begin in ((1, T0 + TimeDelta(86400, format="sec")), (2, T_SWITCH + TimeDelta(86400, format="sec"))):
        sim = simulate_exposure(band=BAND, visit=visit, detector=DETECTOR, shape=SHAPE, seed=visit,
                                instrument=layout.instrument, obs_time=begin)
        refs[visit] = certify_calibration(
            butler, "flat", sim.flat, data_id=data_id, run=f"{layout.calib_run}/{visit}",
            calib_collection=layout.calib_collection, begin=T0 if visit == 1 else T_SWITCH,
            end=T_SWITCH if visit == 1 else None,
        )
        region = detector_region(sim.visit_image.sky_projection, sim.visit_image.bbox)
        register_visit(butler, layout.instrument, visit=visit, physical_filter=filters[BAND], begin=begin,
                       end=begin + TimeDelta(30, format="sec"), detector_regions={DETECTOR: region})
        images[visit] = sim.visit_image
    record_isr_flat(images[1].metadata, refs[1])
    for visit, image in images.items():
        put_visit_image(butler, image, instrument=layout.instrument, visit=visit, detector=DETECTOR, run=layout.raw_run)
    stranger = images[1].copy()
    stranger.metadata[FLAT_UUID_CARD] = str(uuid.UUID(int=12345))
    put_visit_image(butler, stranger, instrument=layout.instrument, visit=1, detector=DETECTOR, run="elsewhere")
    return butler, refs


def _visit(visit: int) -> dict:
    return {"instrument": RepoLayout.instrument, "visit": visit, "detector": DETECTOR}


def test_find_isr_flat_reads_the_recorded_card(repo) -> None:
    butler, flats = repo
    found = find_isr_flat(butler, _visit(1), collections=RepoLayout.raw_run)
    assert found.id == flats[1].id and found.run == f"{RepoLayout.calib_run}/1"
    assert found.datasetType.name == "flat"
    image_ref = butler.find_dataset("visit_image", _visit(1), collections=RepoLayout.raw_run)
    assert find_isr_flat(butler, image_ref) == found
    # The card survives the butler round trip exactly as ISR writes it.
    stored = butler.get(image_ref)
    assert stored.metadata[FLAT_UUID_CARD] == str(flats[1].id)
    assert stored.metadata[FLAT_RUN_CARD] == flats[1].run


def test_nothing_recorded_is_a_clear_error(repo) -> None:
    butler, _ = repo
    with pytest.raises(FlatProvenanceError,
                       match=r"records no flat: no 'LSST CALIB UUID FLAT' card.*find_dataset"):
        find_isr_flat(butler, _visit(2), collections=RepoLayout.raw_run)
    with pytest.raises(FlatProvenanceError, match=r"No 'visit_image' with data ID"):
        find_isr_flat(butler, _visit(99), collections=RepoLayout.raw_run)


def test_recorded_flat_missing_from_the_repository(repo) -> None:
    butler, _ = repo
    with pytest.raises(FlatProvenanceError, match=r"records flat 00000000-0000-0000-0000-000000003039.*does not hold"):
        find_isr_flat(butler, _visit(1), collections="elsewhere")


def test_dp1_style_fits_header_card(tmp_path) -> None:
    """DP1 (afw) files carry the cards as HIERARCH cards of the primary header."""
    flat_id = uuid.UUID("3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7f8")
    header = fits.Header()
    header["HIERARCH LSST CALIB UUID FLAT"] = str(flat_id)
    header["HIERARCH LSST CALIB RUN FLAT"] = "LSSTComCam/calib/DM-12345/run"
    fits.PrimaryHDU(header=header).writeto(tmp_path / "dp1.fits")
    recorded = recorded_flat(fits.getheader(tmp_path / "dp1.fits"))
    assert recorded.id == flat_id and recorded.run == "LSSTComCam/calib/DM-12345/run"
    with pytest.raises(FlatProvenanceError, match="holds 'not-a-uuid'"):
        recorded_flat({FLAT_UUID_CARD: "not-a-uuid"})


def test_check_recorded_flat(repo, caplog) -> None:
    _, flats = repo
    metadata = {}
    record_isr_flat(metadata, flats[1])
    assert check_recorded_flat(metadata, flats[1], strict=True, where="here").id == flats[1].id
    assert check_recorded_flat({}, flats[2], strict=True, where="here") is None
    with pytest.raises(FlatProvenanceError) as info:
        check_recorded_flat(metadata, flats[2], strict=True, where="Quantum visit 1")
    message = str(info.value)
    for ref in flats.values():
        assert str(ref.id) in message and ref.run in message
    assert "check_flat_provenance=False" in message
    with caplog.at_level(logging.WARNING):
        check_recorded_flat(metadata, flats[2], strict=False, where="Quantum visit 1")
    assert str(flats[1].id) in caplog.text and str(flats[2].id) in caplog.text


@pytest.fixture(scope="module")
def recertified(tmp_path_factory: pytest.TempPathFactory):
    """A demo repository whose visit was divided by the old flat, after the
    calibration collection was re-certified to give the new flat for all time."""
    demo = build_demo_repo(tmp_path_factory.mktemp("recert") / "repo", bands=(BAND,), detectors=(0,),
                           shape=(96, 96), n_sources=4, seed=2)
    assert demo.flat_epoch(BAND) == "old"
    butler = Butler.from_config(str(demo.root), writeable=True)
    flat_data_id = {"instrument": demo.layout.instrument, "detector": 0, "physical_filter": demo.physical_filters[BAND]}
    recorded = butler.find_dataset("flat", flat_data_id, collections=demo.flat_runs["old"])
    replacement = butler.find_dataset("flat", flat_data_id, collections=demo.flat_runs["new"])
    visit_id = {"instrument": demo.layout.instrument, "visit": demo.visits[BAND], "detector": 0}
    assert find_isr_flat(butler, visit_id, collections=demo.layout.inputs) == recorded
    butler.registry.decertify(demo.layout.calib_collection, "flat", Timespan(None, None))
    butler.registry.certify(demo.layout.calib_collection, [replacement], Timespan(EPOCH_START, None))
    return demo, recorded, replacement, visit_id


@pytest.mark.slow
def test_pipetask_fails_when_the_graph_resolves_another_flat(recertified) -> None:
    demo, recorded, replacement, visit_id = recertified
    result = run_pipetask(demo.root, demo.layout.inputs, output="u/test/recorded")
    assert result.returncode != 0
    log = result.stdout + result.stderr
    for ref in (recorded, replacement):
        assert str(ref.id) in log and ref.run in log, log[-3000:]
    assert "records flat" in log and "check_flat_provenance=False" in log

    # With the check off it warns and injects with the resolved flat.
    result = run_pipetask(demo.root, demo.layout.inputs, output="u/test/unchecked",
                          extra_args=["-c", "inject_visit:check_flat_provenance=False"])
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "injecting with the resolved flat" in log and str(recorded.id) in log
    butler = Butler.from_config(str(demo.root))
    catalog = butler.get("injected_visit_image_catalog", visit_id, collections=result.output_run)
    flat = butler.get(replacement).image.array
    ix = np.floor(np.asarray(catalog["x"]) + 0.5).astype(int)
    iy = np.floor(np.asarray(catalog["y"]) + 0.5).astype(int)
    assert len(catalog) > 0
    np.testing.assert_allclose(catalog["injection_flat"], flat[iy, ix], rtol=1e-6)
    # The output keeps the input's record of what ISR used.
    injected = butler.find_dataset("injected_visit_image", visit_id, collections=result.output_run)
    assert find_isr_flat(butler, injected) == recorded

    # The fix the message suggests: the recorded flat's RUN first in the inputs.
    result = run_pipetask(demo.root, f"{recorded.run},{demo.layout.inputs}", output="u/test/fixed")
    assert result.returncode == 0, result.stderr[-3000:]
    catalog = butler.get("injected_visit_image_catalog", visit_id, collections=result.output_run)
    np.testing.assert_allclose(catalog["injection_flat"], butler.get(recorded).image.array[iy, ix], rtol=1e-6)


@pytest.mark.slow
def test_find_isr_flat_follows_butler_provenance(recertified) -> None:
    """An image without the card: the flat is found as an input of the quantum
    that wrote the injected image (its LSST BUTLER INPUT cards)."""
    demo, _, replacement, visit_id = recertified
    butler = Butler.from_config(str(demo.root), writeable=True)
    image = butler.get("visit_image", visit_id, collections=demo.layout.inputs)
    del image.metadata[FLAT_UUID_CARD]
    del image.metadata[FLAT_RUN_CARD]
    put_visit_image(butler, image, instrument=demo.layout.instrument, visit=visit_id["visit"], detector=0,
                    run="u/test/no_card")
    inputs = f"u/test/no_card,{demo.layout.calib_collection},{demo.layout.catalog_run}"
    result = run_pipetask(demo.root, inputs, output="u/test/no_card_out")
    assert result.returncode == 0, result.stderr[-3000:]
    butler = Butler.from_config(str(demo.root))
    injected = butler.find_dataset("injected_visit_image", visit_id, collections=result.output_run)
    header = fits.getheader(butler.getURI(injected).ospath)
    assert str(replacement.id) in [str(v) for k, v in header.items() if k.startswith("LSST BUTLER INPUT")]
    assert find_isr_flat(butler, injected) == replacement
    with pytest.raises(FlatProvenanceError, match="records no flat"):
        find_isr_flat(butler, visit_id, collections="u/test/no_card")
