"""VisitInjectTask.run called the way lsst.source.injection's users call it."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from lsst.images import XY, SkyProjection
from lsst.images.psfs import GaussianPointSpreadFunction

from isrinject import VisitInjectConfig, VisitInjectTask
from isrinject.sim import simulate_exposure
from isrinject.tasks.call import run_inputs

SHAPE = (128, 128)
STAR_XY = (64.3, 60.2)


@pytest.fixture(scope="module")
def sim():
    return simulate_exposure(band="r", visit=31, detector=2, shape=SHAPE, seed=9, units="nJy")


def _one_row(visit_img, mag: float = 17.0) -> Table:
    """The one-row catalog of the issue, with a string column to pass through."""
    sky = visit_img.sky_projection.pixel_to_sky(XY(x=np.array([STAR_XY[0]]), y=np.array([STAR_XY[1]])))
    return Table(
        {"injection_id": [7], "ra": sky.ra.deg, "dec": sky.dec.deg, "source_type": ["Star"], "mag": [mag],
         "seed": ["123"]}
    )


def test_source_injection_call_equals_the_isrinject_call(sim) -> None:
    """The snippet's call (lsst.images objects for visit_img, plus flat) gives the
    same pixels and catalog as run(visit_image=...), under both result names."""
    visit_img = sim.visit_image
    my_injection_catalog = _one_row(visit_img)
    before = visit_img.image.array.copy()
    inject_task = VisitInjectTask(config=VisitInjectConfig())
    injected_output = inject_task.run(
        injection_catalogs=my_injection_catalog,
        input_exposure=visit_img.copy(),
        psf=visit_img.psf,
        photo_calib=visit_img.photometric_scaling,
        wcs=visit_img.sky_projection,
        flat=sim.flat,
    )
    assert injected_output.output_exposure is injected_output.injected_visit_image
    assert injected_output.output_catalog is injected_output.injected_visit_image_catalog
    reference = inject_task.run(visit_image=visit_img, injection_catalogs=[my_injection_catalog], flat=sim.flat)
    out = injected_output.output_exposure
    np.testing.assert_array_equal(out.image.array, reference.injected_visit_image.image.array)
    np.testing.assert_array_equal(out.variance.array, reference.injected_visit_image.variance.array)
    catalog = injected_output.output_catalog
    assert len(catalog) == 1 and catalog["injection_flag"][0] == 0
    np.testing.assert_array_equal(catalog["injection_flux"], reference.injected_visit_image_catalog["injection_flux"])
    # The extra string column comes through as it went in.
    assert catalog["seed"].dtype.kind == "U" and list(catalog["seed"]) == ["123"]
    assert catalog["x"][0] == pytest.approx(STAR_XY[0], abs=1e-6)
    # A bright star: tens of thousands of electrons, all but its faintest wings in INJECTED pixels
    # (model ≥ injected_noise_fraction × σ); nothing outside its stamp.
    assert catalog["injection_flux_electrons"][0] > 1e5
    delta = (out.image.array - before).astype(np.float64)
    injected = out.mask.get("INJECTED")
    assert abs(delta[~injected].sum()) < 1e-3 * delta.sum()
    half = int(catalog["injection_draw_size"][0]) // 2
    ix = int(np.floor(catalog["x"][0] + 0.5)) - out.bbox.x.start
    iy = int(np.floor(catalog["y"][0] + 0.5)) - out.bbox.y.start
    stamp = np.zeros_like(injected)
    stamp[max(iy - half, 0) : iy + half + 1, max(ix - half, 0) : ix + half + 1] = True
    assert np.all(delta[~stamp] == 0) and np.all(stamp[injected])
    np.testing.assert_array_equal(visit_img.image.array, before)  # the caller's image is untouched
    assert my_injection_catalog.colnames == ["injection_id", "ra", "dec", "source_type", "mag", "seed"]


def test_photo_calib_float_is_nJy_per_electron(sim) -> None:
    """c = 0.5 nJy/e⁻ instead of the image's c0: the same flux is c0/0.5 times as many electrons."""
    visit_img = sim.visit_image
    config = VisitInjectConfig()
    config.add_noise = False
    task = VisitInjectTask(config=config)
    catalog = _one_row(visit_img)
    own = task.run(injection_catalogs=catalog, input_exposure=visit_img, flat=sim.flat).output_catalog
    half = task.run(injection_catalogs=catalog, input_exposure=visit_img, photo_calib=0.5, flat=sim.flat).output_catalog
    c0 = sim.photometric_scaling_njy_per_electron
    ratio = half["injection_flux_electrons"][0] / own["injection_flux_electrons"][0]
    assert ratio == pytest.approx(c0 / 0.5, rel=1e-6)
    # In image units the flux is the catalog's either way.
    assert half["injection_flux"][0] == pytest.approx(own["injection_flux"][0], rel=1e-6)


def test_psf_and_wcs_overrides_are_used(sim) -> None:
    """A σ = 3 px Gaussian PSF gives the star second moments of σ² + 1/12 px²;
    a sky projection shifted by 10 px moves it by 10 px."""
    visit_img = sim.visit_image
    config = VisitInjectConfig()
    config.add_noise = False
    task = VisitInjectTask(config=config)
    catalog = _one_row(visit_img)
    sigma = 3.0
    psf = GaussianPointSpreadFunction(sigma, bounds=visit_img.bounds, stamp_size=41)
    out = task.run(injection_catalogs=catalog, input_exposure=visit_img, psf=psf, flat=sim.flat)
    delta = out.output_exposure.image.array.astype(float) - visit_img.image.array
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    total = delta.sum()
    var_x = (delta * (x - STAR_XY[0]) ** 2).sum() / total
    var_y = (delta * (y - STAR_XY[1]) ** 2).sum() / total
    # The stamp truncates the wings slightly (a few per cent of σ²).
    assert var_x == pytest.approx(sigma**2 + 1 / 12, rel=0.05)
    assert var_y == pytest.approx(sigma**2 + 1 / 12, rel=0.05)

    fits_wcs = visit_img.sky_projection.as_fits_wcs(visit_img.bbox)
    fits_wcs.wcs.crpix[0] += 10.0
    shifted = SkyProjection.from_fits_wcs(fits_wcs, visit_img.sky_projection.pixel_frame, pixel_bounds=visit_img.bbox)
    moved = task.run(injection_catalogs=catalog, input_exposure=visit_img, wcs=shifted, flat=sim.flat).output_catalog
    assert moved["x"][0] == pytest.approx(STAR_XY[0] + 10.0, abs=1e-3)
    assert moved["y"][0] == pytest.approx(STAR_XY[1], abs=1e-3)


def test_missing_flat_says_how_to_get_it(sim) -> None:
    task = VisitInjectTask(config=VisitInjectConfig())
    with pytest.raises(TypeError, match=r"needs the flat field.*find_isr_flat\(butler"):
        task.run(injection_catalogs=_one_row(sim.visit_image), input_exposure=sim.visit_image)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"visit_image": "IMAGE", "input_exposure": "IMAGE"}, TypeError, "exactly one.*got both"),
        ({}, TypeError, "exactly one.*got neither"),
        ({"input_exposure": "IMAGE", "injection_catalogs": {"ra": [1.0]}}, TypeError, "got dict"),
        ({"input_exposure": "IMAGE", "injection_catalogs": ["CATALOG", 3]}, TypeError, r"\[1\] int"),
        ({"input_exposure": "IMAGE", "photo_calib": -2.0}, ValueError, "got -2.0"),
        ({"input_exposure": "IMAGE", "photo_calib": "1.0"}, TypeError, "got str"),
        ({"input_exposure": "IMAGE", "psf": 1.5}, TypeError, "psf must be.*got float"),
        ({"input_exposure": "IMAGE", "wcs": "TAN"}, TypeError, "wcs must be.*got str"),
        ({"input_exposure": np.zeros((4, 4))}, TypeError, "input_exposure must be.*got ndarray"),
    ],
)
def test_bad_arguments_name_what_is_wrong(sim, kwargs, error, match) -> None:
    substitutes = {"IMAGE": sim.visit_image, "CATALOG": _one_row(sim.visit_image)}

    def resolve(value):
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return substitutes.get(value, value) if isinstance(value, str) else value

    arguments = {"injection_catalogs": _one_row(sim.visit_image), "flat": sim.flat}
    arguments.update({k: resolve(v) for k, v in kwargs.items()})
    with pytest.raises(error, match=match):
        run_inputs(**arguments)


def test_photo_calib_with_a_scaling_source_that_ignores_it(sim) -> None:
    with pytest.raises(ValueError, match="scaling_source='empirical' would ignore it"):
        run_inputs(input_exposure=sim.visit_image, injection_catalogs=_one_row(sim.visit_image), flat=sim.flat,
                   photo_calib=0.7, scaling_source="empirical")


def test_overrides_leave_the_callers_image_alone(sim) -> None:
    visit_img = sim.visit_image
    psf_before, scaling_before = visit_img.psf, visit_img.photometric_scaling
    inputs = run_inputs(input_exposure=visit_img, injection_catalogs=_one_row(visit_img), flat=sim.flat,
                        photo_calib=0.5, psf=GaussianPointSpreadFunction(2.5, bounds=visit_img.bounds, stamp_size=21))
    assert visit_img.psf is psf_before and visit_img.photometric_scaling is scaling_before
    assert inputs.visit_image.photometric_scaling(x=10, y=20) == pytest.approx(0.5)
    assert np.shares_memory(inputs.visit_image.image.array, visit_img.image.array)  # no pixel copy
    metadata_before = dict(visit_img.metadata)
    out = VisitInjectTask(config=VisitInjectConfig()).run(
        injection_catalogs=_one_row(visit_img), input_exposure=visit_img, psf=visit_img.psf, flat=sim.flat
    )
    assert out.output_exposure.metadata["INJECTION_N_SOURCES"] == 1
    assert dict(visit_img.metadata) == metadata_before
