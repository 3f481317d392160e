"""A real Rubin DP1 visit image (Piff PSF, nJy, no photometric_scaling) read, injected into, run.

The fixture is lsst.images' minified DP1 ``visit_image`` (tests/data/README.md):
LSSTComCam visit 2024110800246, detector 0, r band, 16 × 16 px.  Every test
uses the FITS file that ``VisitImage.write`` makes of it, as a user holds it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table
from astropy.time import TimeDelta
from lsst.daf.butler import Butler, DatasetRef, FileDataset
from lsst.images import XY, Image, MaskedImage, MaskSchema, VisitImage
from lsst.images.serialization import read_archive

from isrinject import VisitInjectConfig, VisitInjectTask
from isrinject.engine.calibration import CalibrationError
from isrinject.engine.catalog import ingest_injection_catalog
from isrinject.engine.flags import InjectionFlag

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "lsst_images_visit_image-1.0.0-dp1.json"
VISIT, DETECTOR = 2024110800246, 0
#: A visit_summary zeroPoint typical of a 30 s LSSTComCam r visit (SMTN-002: r
#: zero point 28.36 mag for 1 e⁻/s; + 2.5·log10(30 s)).  The fixture carries no
#: calibration, so the test configures c from it as a user would.
ZERO_POINT = 32.05
SCALING = float((ZERO_POINT * u.ABmag).to_value(u.nJy))  # nJy per e⁻ (≈ 0.55)
READ_NOISE = 9.0  # e⁻, between the detector's C10 (8.7) and C11 (10.0)
#: The star: off the pixel grid, inside the 16 × 16 crop.
STAR_X, STAR_Y, STAR_MAG = 7.3, 8.2, 20.0


@pytest.fixture(scope="module")
def fits_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dp1") / "visit_image.fits"
    read_archive(FIXTURE, VisitImage).write(str(path))
    return path


@pytest.fixture()
def visit_image(fits_path: Path) -> VisitImage:
    return VisitImage.read(str(fits_path))


def _flat(bbox) -> Image:
    """A flat with ±15 % structure in x and y, so c/f differs in every pixel."""
    grid = bbox.meshgrid()
    values = 1.0 + 0.15 * np.sin(grid.x / 3.0) * np.cos(grid.y / 4.0)
    return Image(values.astype(np.float32), bbox=bbox)


def _star_catalog(visit_image: VisitImage) -> Table:
    sky = visit_image.sky_projection.pixel_to_sky(XY(x=np.array([STAR_X]), y=np.array([STAR_Y])))
    return Table({"injection_id": [7], "ra": sky.ra.deg, "dec": sky.dec.deg, "source_type": ["Star"],
                  "mag": [STAR_MAG]})


def _run(visit_image: VisitImage, flat, **config_values):
    config = VisitInjectConfig()
    for key, value in config_values.items():
        setattr(config, key, value)
    return VisitInjectTask(config=config).run(
        visit_image=visit_image, injection_catalogs=[_star_catalog(visit_image)], flat=flat
    )


def test_fixture_is_a_real_dp1_visit_image(visit_image: VisitImage) -> None:
    """What makes real visit images different from the simulator's."""
    assert visit_image.unit == u.nJy
    assert visit_image.photometric_scaling is None
    assert type(visit_image.psf).__module__ == "lsst.images.psfs._piff"
    assert visit_image.obs_info.visit_id == VISIT and visit_image.detector.id == DETECTOR
    assert [amp.name for amp in visit_image.detector.amplifiers] == ["C10", "C11"]
    assert all(not amp.bbox.contains(visit_image.bbox) for amp in visit_image.detector.amplifiers)
    assert int(visit_image.mask.get("BAD").sum()) == 186


def test_piff_psf_evaluates(visit_image: VisitImage) -> None:
    """The archived Piff PSF evaluates with the pinned piff (1.6.x)."""
    psf = visit_image.psf
    kernel = psf.compute_kernel_image(x=STAR_X, y=STAR_Y)
    assert kernel.array.shape == (25, 25)
    assert kernel.bbox.x.center == 0 and kernel.bbox.y.center == 0
    assert kernel.array.sum() == pytest.approx(1.0, abs=1e-10)
    # A real, resolved PSF: second-moment σ ≈ 3.1 px (0.62″), peak far below 1.
    grid = kernel.bbox.meshgrid()
    weights = kernel.array / kernel.array.sum()
    cx, cy = (weights * grid.x).sum(), (weights * grid.y).sum()
    sigma = np.sqrt((weights * ((grid.x - cx) ** 2 + (grid.y - cy) ** 2)).sum() / 2)
    assert 2.0 < sigma < 4.5, sigma
    assert kernel.array.max() < 0.1
    # The stellar image is the kernel moved to (x, y): same centroid offset.
    star = psf.compute_stellar_image(x=STAR_X, y=STAR_Y)
    assert star.array.sum() == pytest.approx(1.0, abs=1e-10)
    sgrid = star.bbox.meshgrid()
    sweights = star.array / star.array.sum()
    assert (sweights * sgrid.x).sum() - cx == pytest.approx(STAR_X, abs=0.02)
    assert (sweights * sgrid.y).sum() - cy == pytest.approx(STAR_Y, abs=0.02)


def test_default_config_names_what_to_configure(visit_image: VisitImage) -> None:
    """No amplifier covers the crop: the error lists them and names read_noise and saturation."""
    with pytest.raises(CalibrationError) as caught:
        _run(visit_image, _flat(visit_image.bbox))
    message = str(caught.value)
    assert message.startswith(f"visit {VISIT}, detector {DETECTOR}: ")
    assert "detector 'R22_S00' (C10 [y=2000:4000, x=0:509], C11 [y=2000:4000, x=509:1018])" in message
    assert "cover 0 of the 256 pixels of the image [y=0:16, x=0:16]" in message
    assert "config.read_noise" in message and "config.saturation" in message


def test_read_noise_alone_says_how_to_give_c(visit_image: VisitImage) -> None:
    """The empirical c needs 100 good pixels per amplifier; the crop has fewer, and the error says so."""
    bad = np.zeros(visit_image.bbox.shape, dtype=bool)
    for name in ("BAD", "COSMIC_RAY", "CROSSTALK", "INTERPOLATED", "NO_DATA", "SATURATED", "SUSPECT"):
        bad |= visit_image.mask.get(name)
    n_good = int(np.sum(~bad & np.isfinite(visit_image.image.array) & np.isfinite(visit_image.variance.array)))
    assert n_good == 70
    with pytest.raises(CalibrationError) as caught:
        _run(visit_image, _flat(visit_image.bbox), read_noise=READ_NOISE)
    message = str(caught.value)
    assert f"ALL: {n_good} good pixels (needs 100)" in message
    assert "config.scaling_source='constant'" in message and "config.photometric_scaling" in message


def test_injected_star_follows_c_over_f_per_pixel(visit_image: VisitImage, fits_path: Path) -> None:
    """With read_noise and c configured: ΔV/ΔI = c/f per pixel, injection_flux = ΣΔI."""
    flat = _flat(visit_image.bbox)
    before = visit_image.copy()
    result = _run(visit_image, flat, read_noise=READ_NOISE, scaling_source="constant",
                  photometric_scaling=SCALING)
    out = result.injected_visit_image
    catalog = result.injected_visit_image_catalog
    # The 25 × 25 Piff stamp is larger than the crop: injected, flagged partial only.
    assert list(catalog["injection_flag"]) == [int(InjectionFlag.PARTIAL_OVERLAP)]
    assert catalog.meta["scaling_source"] == "constant"
    delta_image = out.image.array.astype(np.float64) - before.image.array
    delta_variance = out.variance.array.astype(np.float64) - before.variance.array
    f = flat.array.astype(np.float64)
    electrons = delta_image * f / SCALING
    hit = electrons > 0.5
    assert hit.sum() > 200  # the whole crop lies within the star's PSF
    # n is a whole number of pre-flat electrons in every pixel (float32 storage).
    np.testing.assert_allclose(electrons[hit], np.round(electrons[hit]), rtol=2e-5, atol=2e-3)
    # Pixels with ≥ 100 e⁻ keep float32 rounding of image and variance below 1e-5 of ΔI, ΔV.
    bright = electrons > 100
    assert bright.sum() > 100
    np.testing.assert_allclose(delta_variance[bright] / delta_image[bright], SCALING / f[bright], rtol=1e-4)
    # Every pixel's ratio differs (the flat varies by ±15 %): the test sees per-pixel c/f.
    assert np.ptp(SCALING / f[bright]) > 0.1 * SCALING
    assert float(catalog["injection_flux"][0]) == pytest.approx(delta_image.sum(), rel=1e-5)
    assert float(catalog["injection_flux_electrons"][0]) == pytest.approx(np.round(electrons).sum(), rel=1e-5)
    iy, ix = int(np.floor(STAR_Y + 0.5)), int(np.floor(STAR_X + 0.5))
    assert float(catalog["injection_effective_gain"][0]) == pytest.approx(f[iy, ix] / SCALING, rel=1e-6)
    # No saturation level is known for these pixels: SATURATED is never set.
    assert not out.mask.get("SATURATED").any()
    # INJECTED: where the model is ≥ 0.1 σ of the sky, every pixel with ≥ 100 e⁻ among them.
    assert out.mask.get("INJECTED")[bright].all()
    # The user's file and the input image are untouched.
    np.testing.assert_array_equal(visit_image.image.array, before.image.array)
    np.testing.assert_array_equal(VisitImage.read(str(fits_path)).image.array, before.image.array)


@pytest.mark.slow
def test_pipetask_on_the_dp1_file(fits_path: Path, tmp_path: Path) -> None:
    """The FITS file ingested as ``visit_image`` into a SQLite repo, injected by the real pipetask."""
    from isrinject.demo.repo import (
        certify_calibration,
        create_repo,
        detector_region,
        register_dataset_types,
        register_instrument,
        register_visit,
        set_input_chain,
    )

    visit_image = VisitImage.read(str(fits_path))
    instrument, band = "LSSTComCam", "r"
    physical_filter = visit_image.obs_info.physical_filter
    butler = create_repo(str(tmp_path / "repo"))
    register_instrument(butler, instrument, bands=[band], detectors=[DETECTOR],
                        physical_filter_template=physical_filter)
    register_dataset_types(butler)
    begin = visit_image.obs_info.datetime_begin
    register_visit(butler, instrument, visit=VISIT, physical_filter=physical_filter, begin=begin,
                   end=begin + TimeDelta(30, format="sec"),
                   detector_regions={DETECTOR: detector_region(visit_image.sky_projection, visit_image.bbox)})
    raw_run = "LSSTComCam/runs/DP1"
    butler.registry.registerRun(raw_run)
    dataset_type = butler.get_dataset_type("visit_image")
    data_id = butler.registry.expandDataId(instrument=instrument, visit=VISIT, detector=DETECTOR)
    ref = DatasetRef(dataset_type, data_id, run=raw_run)
    butler.ingest(FileDataset(path=str(fits_path), refs=[ref]), transfer="copy")
    flat_image = _flat(visit_image.bbox)
    # A flat known exactly (V_f = 0), so ΔV/ΔI = c/f holds per pixel.
    flat = MaskedImage(flat_image, variance=Image(np.zeros(visit_image.bbox.shape, np.float32),
                                                  bbox=visit_image.bbox), mask_schema=MaskSchema([]))
    certify_calibration(butler, "flat", flat,
                        data_id={"instrument": instrument, "detector": DETECTOR, "physical_filter": physical_filter},
                        run="LSSTComCam/calib/flat", calib_collection="LSSTComCam/calib", begin=None, end=None)
    ingest_injection_catalog(butler, _star_catalog(visit_image), band, "injection/catalogs")
    set_input_chain(butler, "inputs", [raw_run, "LSSTComCam/calib", "injection/catalogs"])
    del butler

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]),
           "ISRINJECT_DIR": str(ROOT)}
    command = [
        str(bin_dir / "pipetask"), "--log-level", "isrinject=INFO", "run", "-b", str(tmp_path / "repo"),
        "-i", "inputs", "-o", "u/test/dp1", "-p", str(ROOT / "pipelines" / "inject.yaml"),
        "--register-dataset-types", "-d", f"instrument='{instrument}' AND visit={VISIT}",
        "-c", f"inject_visit:read_noise={READ_NOISE}", "-c", "inject_visit:scaling_source='constant'",
        "-c", f"inject_visit:photometric_scaling={SCALING!r}",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Injected 1 of 1 sources (c from constant)" in run.stderr + run.stdout

    butler = Butler.from_config(str(tmp_path / "repo"), collections="u/test/dp1")
    data_id = {"instrument": instrument, "visit": VISIT, "detector": DETECTOR}
    out = butler.get("injected_visit_image", data_id)
    catalog = butler.get("injected_visit_image_catalog", data_id)
    assert list(catalog["injection_id"]) == [7]
    assert type(out.psf).__module__ == "lsst.images.psfs._piff"  # the Piff PSF survives the round trip
    delta_image = out.image.array.astype(np.float64) - visit_image.image.array
    delta_variance = out.variance.array.astype(np.float64) - visit_image.variance.array
    f = flat_image.array.astype(np.float64)
    bright = delta_image * f / SCALING > 100
    assert bright.sum() > 100
    np.testing.assert_allclose(delta_variance[bright] / delta_image[bright], SCALING / f[bright], rtol=1e-4)
    assert float(catalog["injection_flux"][0]) == pytest.approx(delta_image.sum(), rel=1e-5)
