"""VisitInjectTask.run on simulated visit images with a strongly structured flat."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from isrinject import VisitInjectConfig, VisitInjectTask
from isrinject.engine.flags import InjectionFlag
from isrinject.sim import simulate_exposure

SHAPE = (256, 256)


def _grid_catalog(sim, n_side: int = 5, mag: float = 18.5, types=("Star", "Sersic")) -> Table:
    """Sources on a grid of pixel positions, given as ra/dec."""
    from lsst.images import XY

    step = SHAPE[1] / (n_side + 1)
    xs, ys = np.meshgrid(np.arange(1, n_side + 1) * step + 0.3, np.arange(1, n_side + 1) * step - 0.2)
    sky = sim.visit_image.sky_projection.pixel_to_sky(XY(x=xs.ravel(), y=ys.ravel()))
    n = xs.size
    source_type = [types[i % len(types)] for i in range(n)]
    return Table(
        {
            "injection_id": np.arange(n),
            "ra": sky.ra.deg,
            "dec": sky.dec.deg,
            "source_type": source_type,
            "mag": np.full(n, mag),
            "n": np.full(n, 1.5),
            "half_light_radius": np.full(n, 0.6),
            "q": np.full(n, 0.7),
            "beta": np.full(n, 30.0),
        }
    )


def _run(sim, catalog, **config_values):
    # No simulation here has an illumination correction (R = 1); one would be silently ignored.
    assert sim.illumination is None
    config = VisitInjectConfig()
    for key, value in config_values.items():
        setattr(config, key, value)
    task = VisitInjectTask(config=config)
    return task.run(
        visit_image=sim.visit_image,
        injection_catalogs=[catalog],
        flat=sim.flat,
        illumination_correction=None,
    )


@pytest.fixture(scope="module")
def u_band():
    """u band: read-noise dominated sky and the strongest vignetting."""
    return simulate_exposure(band="u", visit=11, detector=0, shape=SHAPE, seed=5, units="nJy")


@pytest.mark.parametrize("units", ["nJy", "electron"])
def test_injected_pixels_lie_on_the_isr_relation_of_their_pixel(units) -> None:
    """V_out equals ISR's variance of S + n with the simulator's own S, f, V_f, σ."""
    sim = simulate_exposure(band="u", visit=12, detector=1, shape=SHAPE, seed=6, units=units)
    catalog = _grid_catalog(sim)
    result = _run(sim, catalog, scaling_source="visit_image",
                  photometric_scaling=sim.photometric_scaling_njy_per_electron)
    out = result.injected_visit_image
    injected = out.mask.get("INJECTED")
    assert injected.sum() > 2000
    c = sim.scaling
    f = sim.flat.image.array.astype(float)
    vf = sim.flat.variance.array.astype(float)
    gain = f / c
    delta_image = out.image.array.astype(float) - sim.visit_image.image.array
    electrons = delta_image * gain  # the injected pre-flat electrons n
    # n is an integer count per pixel (float32 storage rounds it).
    big = injected & (electrons > 50)
    n = electrons[injected]
    assert np.allclose(n, np.round(n), atol=2e-3 * np.maximum(1, n))
    signal = sim.pre_flat_electrons + np.round(electrons)
    expected_variance = c**2 * ((signal + sim.read_noise_map**2) / f**2 + (signal / f) ** 2 * vf / f**2)
    np.testing.assert_allclose(out.variance.array[big], expected_variance[big], rtol=2e-5)


def test_injection_matches_physically_added_sources(u_band) -> None:
    """Injected pixels vs the same sources added physically by the simulator:
    same flat-normalised (I, V) slope within 2 % and the same realized noise."""
    catalog = _grid_catalog(u_band, n_side=6, mag=19.0)
    truth = simulate_exposure(band="u", visit=11, detector=0, shape=SHAPE, seed=5, units="nJy", sources=catalog)
    result = _run(u_band, catalog)
    out = result.injected_visit_image
    injected = out.mask.get("INJECTED")
    gain = u_band.flat.image.array / u_band.scaling  # e⁻ per image unit, R = 1

    def slope(image, variance, select):
        x = image[select] * gain[select]
        y = variance[select] * gain[select] ** 2
        return np.polyfit(x, y, 1)[0]

    model_electrons = truth.source_model_njy * gain / u_band.photometric_scaling_njy_per_electron * u_band.scaling
    bright = injected & (model_electrons > 30)
    slope_injected = slope(out.image.array, out.variance.array, bright)
    slope_truth = slope(truth.visit_image.image.array, truth.visit_image.variance.array, bright)
    assert slope_injected == pytest.approx(slope_truth, rel=0.02)
    assert slope_injected == pytest.approx(1.0, rel=0.03)

    # Realized noise about the noiseless model (the background scene is
    # identical in all three images, so subtracting the original removes it).
    model = truth.truth_image - u_band.truth_image  # only the added sources
    n = bright.sum()
    noise_injected = (out.image.array - u_band.visit_image.image.array - model)[bright]
    noise_truth = (truth.visit_image.image.array - u_band.visit_image.image.array - model)[bright]
    recorded = (out.variance.array - u_band.visit_image.variance.array)[bright]
    ratio_injected = np.mean(noise_injected**2) / recorded.mean()
    assert ratio_injected == pytest.approx(1.0, abs=6 * np.sqrt(2 / n) + 0.02)
    # The truth image's added noise matches too (same physics, independent draw).
    assert np.mean(noise_injected**2) == pytest.approx(np.mean(noise_truth**2), rel=6 * np.sqrt(2 / n) + 0.03)


def test_flux_noise_off_equals_catalog_flux(u_band) -> None:
    """Sum of ΔI over each stamp (noise off) = catalog flux / A(calib_flux_radius) less the
    truncated fraction the output catalog reports (exactly), and within 0.1 % of it."""
    catalog = _grid_catalog(u_band, n_side=3, mag=20.0)
    result = _run(u_band, catalog, add_noise=False)
    out_catalog = result.injected_visit_image_catalog
    assert np.all(out_catalog["injection_flag"] == 0)
    flux_njy = 10 ** (-0.4 * (20.0 - 31.4))
    # The simulator's PSF kernel fits inside calib_flux_radius = 12 px, so A = 1.
    np.testing.assert_allclose(out_catalog["injection_model_flux"], flux_njy, rtol=1e-6)
    truncated = np.asarray(out_catalog["injection_truncated_fraction"])
    # Noise-aware stamps leave out a little of each galaxy's wings (stars: nothing), and say how much.
    assert np.all((truncated >= -1e-6) & (truncated < 3e-3)) and truncated.max() > 1e-5
    np.testing.assert_allclose(out_catalog["injection_flux"], flux_njy * (1 - truncated), rtol=1e-6)
    np.testing.assert_allclose(out_catalog["injection_flux"], flux_njy, rtol=3e-3)
    delta = result.injected_visit_image.image.array.astype(float) - u_band.visit_image.image.array
    assert delta.sum() == pytest.approx(np.sum(flux_njy * (1 - truncated)), rel=1e-6)
    # Star and Sersic both pass; electrons = flux·f/c summed over the stamp.
    assert set(out_catalog["source_type"]) == {"Star", "Sersic"}


def test_same_seed_identical_and_input_untouched(u_band) -> None:
    catalog = _grid_catalog(u_band, n_side=3)
    before_image = u_band.visit_image.image.array.copy()
    before_variance = u_band.visit_image.variance.array.copy()
    before_mask = u_band.visit_image.mask.array.copy()
    first = _run(u_band, catalog, noise_seed=42)
    second = _run(u_band, catalog, noise_seed=42)
    third = _run(u_band, catalog, noise_seed=43)
    assert np.array_equal(first.injected_visit_image.image.array, second.injected_visit_image.image.array)
    assert np.array_equal(first.injected_visit_image.variance.array, second.injected_visit_image.variance.array)
    assert not np.array_equal(first.injected_visit_image.image.array, third.injected_visit_image.image.array)
    assert np.array_equal(u_band.visit_image.image.array, before_image)
    assert np.array_equal(u_band.visit_image.variance.array, before_variance)
    assert np.array_equal(u_band.visit_image.mask.array, before_mask)


def test_two_detectors_have_uncorrelated_noise() -> None:
    """Identical scenes on detectors 0 and 1 with one noise_seed: independent noise."""
    sims = [simulate_exposure(band="r", visit=21, detector=d, shape=SHAPE, seed=9) for d in (0, 1)]
    catalog = _grid_catalog(sims[0], n_side=6, mag=17.0)
    residuals = []
    for sim in sims:
        noisy = _run(sim, catalog, noise_seed=7).injected_visit_image.image.array.astype(float)
        clean = _run(sim, catalog, noise_seed=7, add_noise=False).injected_visit_image
        added_variance = clean.variance.array.astype(float) - sim.visit_image.variance.array
        injected = added_variance > 0
        # Standardised residuals: every pixel weighs the same in the
        # correlation (raw residuals are dominated by a few star cores).
        residuals.append(((noisy - clean.image.array) / np.sqrt(np.where(injected, added_variance, 1.0)))[injected])
    size = min(len(r) for r in residuals)
    a, b = residuals[0][:size], residuals[1][:size]
    assert np.std(a) > 0
    correlation = np.corrcoef(a, b)[0, 1]
    assert abs(correlation) < 5 / np.sqrt(size)


def test_masks_and_catalog_columns(u_band) -> None:
    catalog = _grid_catalog(u_band, n_side=2)
    catalog.add_row({"injection_id": 99, "ra": 10.0, "dec": -40.0, "source_type": "Star", "mag": 20.0,
                     "n": 1.0, "half_light_radius": 1.0, "q": 1.0, "beta": 0.0})
    catalog.add_row({"injection_id": 100, "ra": catalog["ra"][0], "dec": catalog["dec"][0],
                     "source_type": "Blob", "mag": 20.0, "n": 1.0, "half_light_radius": 1.0, "q": 1.0, "beta": 0.0})
    result = _run(u_band, catalog)
    out_catalog = result.injected_visit_image_catalog
    # The far-away source is not drawn; it stays in the catalog flagged NO_OVERLAP (issue 26).
    far = out_catalog[out_catalog["injection_id"] == 99]
    assert list(far["injection_flag"]) == [InjectionFlag.NO_OVERLAP] and np.isnan(far["injection_flux"][0])
    unknown = out_catalog[out_catalog["injection_id"] == 100]
    assert unknown["injection_flag"][0] & InjectionFlag.TYPE_UNKNOWN
    good = out_catalog[out_catalog["injection_flag"] == 0]
    assert len(good) == 4
    for column in ("x", "y", "injection_flux", "injection_flux_electrons", "injection_flat",
                   "injection_effective_gain", "injection_draw_size"):
        assert column in out_catalog.colnames and np.all(np.isfinite(good[column]))
    np.testing.assert_allclose(good["injection_effective_gain"], good["injection_flat"] / u_band.scaling, rtol=1e-6)
    assert out_catalog.meta["NO_PHOTONS"] == 6 and out_catalog.meta["MAG_BAD"] == 0
    mask = result.injected_visit_image.mask
    core = mask.get("INJECTED_CORE")
    assert core.sum() == 4 * 9
    assert np.all(mask.get("INJECTED")[core])


def test_flat_holes_get_no_photons(u_band) -> None:
    """f ≤ 0 / NaN pixels receive nothing and the source says so."""
    catalog = _grid_catalog(u_band, n_side=1, mag=18.0)
    flat = u_band.flat.copy()
    x, y = 128.3, 127.8  # the single grid source (n_side=1) sits at the image centre
    flat.image.array[126:130, 126:131] = 0.0
    flat.image.array[131, 128] = np.nan
    config = VisitInjectConfig()
    result = VisitInjectTask(config=config).run(visit_image=u_band.visit_image, injection_catalogs=[catalog], flat=flat)
    delta = result.injected_visit_image.image.array - u_band.visit_image.image.array
    assert np.all(delta[126:130, 126:131] == 0) and delta[131, 128] == 0
    row = result.injected_visit_image_catalog[0]
    assert row["injection_flag"] == InjectionFlag.NO_PHOTONS
    assert abs(row["x"] - x) < 1 and abs(row["y"] - y) < 1


def test_no_catalog_rows(u_band) -> None:
    """No sources: NoWorkFound by default, an unchanged copy with empty planes on request."""
    from lsst.pipe.base import NoWorkFound

    task = VisitInjectTask(config=VisitInjectConfig())
    with pytest.raises(NoWorkFound, match="visit 11, detector 0"):
        task.run(visit_image=u_band.visit_image, injection_catalogs=[], flat=u_band.flat)
    config = VisitInjectConfig()
    config.process_all_data_ids = True
    result = VisitInjectTask(config=config).run(visit_image=u_band.visit_image, injection_catalogs=[], flat=u_band.flat)
    out = result.injected_visit_image
    assert np.array_equal(out.image.array, u_band.visit_image.image.array)
    assert out.mask.get("INJECTED").sum() == 0 and len(result.injected_visit_image_catalog) == 0


def test_selection_and_renamed_columns(u_band) -> None:
    catalog = _grid_catalog(u_band, n_side=2)
    catalog["mag"] = [18.0, 19.0, 21.0, 22.0]
    catalog.rename_column("mag", "r_mag")
    result = _run(u_band, catalog, col_mag="r_mag", selection="injection_catalog['mag'] < 20")
    out_catalog = result.injected_visit_image_catalog
    assert sorted(out_catalog["mag"]) == [18.0, 19.0]


def test_in_place_injection_equals_the_copy(u_band) -> None:
    """runQuantum injects into the butler's own copy (in_place=True): the
    result is pixel for pixel what run() returns on a copy."""
    catalog = _grid_catalog(u_band, n_side=3)
    expected = _run(u_band, catalog, noise_seed=5)
    target = u_band.visit_image.copy()
    config = VisitInjectConfig()
    config.noise_seed = 5
    result = VisitInjectTask(config=config).run(
        visit_image=target, injection_catalogs=[catalog], flat=u_band.flat, in_place=True
    )
    assert result.injected_visit_image is target
    for plane in ("image", "variance", "mask"):
        np.testing.assert_array_equal(getattr(target, plane).array, getattr(expected.injected_visit_image, plane).array)


def test_amplifier_lookup_equals_painting_the_boxes_in_order() -> None:
    """The one amplifier lookup (`AmplifierLayout`, per pixel and per box)
    equals painting each amplifier's box in order (later boxes win) on every
    pixel, gaps and overlaps included, and PixelCalibration's σ_a and
    saturation follow it (NaN and +inf outside every amplifier)."""
    from lsst.images import Box

    from isrinject.engine.calibration import AmplifierLayout, AmplifierTerms, PixelCalibration

    boxes = [Box.factory[0:50, 0:30], Box.factory[0:50, 30:64], Box.factory[50:100, 0:40],
             Box.factory[60:100, 35:64]]  # a gap at y 50-59, x 40-63 and an overlap at x 35-39
    image_box = Box.factory[-5:105, -5:70]
    painted = np.full(image_box.shape, -1)
    for i, box in enumerate(boxes):
        painted[box.y.start + 5 : box.y.stop + 5, box.x.start + 5 : box.x.stop + 5] = i
    assert (painted == -1).sum() > 0 and (painted == 2).sum() < 50 * 40  # a gap; box 3 covers part of box 2
    layout = AmplifierLayout(boxes)
    np.testing.assert_array_equal(layout.index_on(image_box), painted)
    yy, xx = np.mgrid[image_box.y.start : image_box.y.stop, image_box.x.start : image_box.x.stop]
    np.testing.assert_array_equal(layout.index_at(xx.ravel(), yy.ravel()).reshape(painted.shape), painted)
    amps = [AmplifierTerms(f"A{i}", box, read_noise=float(i + 1), saturation=1e5 * (i + 1))
            for i, box in enumerate(boxes)]
    calibration = PixelCalibration(image_box, amps, None, 1.0, 1.0, "config")
    read_noise, saturation = calibration.amplifier_terms_at(xx.ravel(), yy.ravel())
    outside = painted.ravel() == -1
    np.testing.assert_array_equal(read_noise[~outside], painted.ravel()[~outside] + 1.0)
    np.testing.assert_array_equal(saturation[~outside], 1e5 * (painted.ravel()[~outside] + 1))
    assert np.all(np.isnan(read_noise[outside])) and np.all(np.isinf(saturation[outside]))


def test_amplifiers_that_leave_pixels_uncovered_need_configured_constants(caplog) -> None:
    """A detector whose amplifiers cover the image gives their own terms; one that
    leaves pixels uncovered (a cutout beyond its amplifiers) gives an error naming
    them and the config fields, or one constant pseudo-amplifier when configured."""
    from lsst.images import Box

    from isrinject.engine.calibration import CalibrationError, amplifier_terms
    from isrinject.sim import make_detector

    detector = make_detector(instrument="X", detector_id=3, shape=(20, 16), gains=[1.5, 2.0],
                             read_noises=[5.0, 7.0], saturations=[1e5, 1e5], amp_grid=(1, 2))
    inside = amplifier_terms(detector, Box.factory[2:12, 4:14])
    assert [(t.name, t.read_noise, t.saturation) for t in inside] == [("C00", 5.0, 1.5e5), ("C01", 7.0, 2.0e5)]
    beyond = Box.factory[10:30, 0:16]  # half the rows lie above the detector
    with pytest.raises(CalibrationError) as caught:
        amplifier_terms(detector, beyond)
    message = str(caught.value)
    assert "cover 160 of the 320 pixels of the image [y=10:30, x=0:16]" in message
    assert "C00 [y=0:20, x=0:8], C01 [y=0:20, x=8:16]" in message
    assert "config.read_noise" in message and "config.saturation" in message
    with caplog.at_level("WARNING", logger="isrinject.engine.calibration"):
        (constant,) = amplifier_terms(detector, beyond, read_noise=6.0)
    assert (constant.name, constant.bbox, constant.read_noise, constant.saturation) == ("ALL", beyond, 6.0, np.inf)
    assert "SATURATED is never set" in caplog.text
    (configured,) = amplifier_terms(detector, beyond, read_noise=6.0, saturation=9e4)
    assert configured.saturation == 9e4


def test_overlapping_sources_in_one_pass_equal_one_after_the_other(u_band) -> None:
    """Overlapping stamps go through the pixel model in one batch; their
    electrons are summed per pixel first, so image and variance (ΔV's flat
    term is quadratic in n) equal injecting one source, then the other into
    that result.  Noise off, flat variance on, three sources on top of each
    other."""
    from lsst.images import XY

    xs, ys = np.array([120.3, 126.8, 123.1]), np.array([130.6, 127.2, 135.4])
    sky = u_band.visit_image.sky_projection.pixel_to_sky(XY(x=xs, y=ys))
    catalog = Table({
        "injection_id": [1, 2, 3], "ra": sky.ra.deg, "dec": sky.dec.deg,
        "source_type": ["Sersic", "Star", "Sersic"], "mag": [16.0, 16.5, 17.0], "n": [1.0, 1.0, 2.5],
        "half_light_radius": [0.8, 0.0, 0.5], "q": [0.6, 1.0, 0.9], "beta": [20.0, 0.0, 70.0],
    })
    config = VisitInjectConfig()
    config.add_noise = False
    task = VisitInjectTask(config=config)
    together = task.run(visit_image=u_band.visit_image, injection_catalogs=[catalog], flat=u_band.flat)
    assert np.all(together.injected_visit_image_catalog["injection_flag"] == 0)
    image = u_band.visit_image
    for k in range(len(catalog)):
        one = task.run(visit_image=image, injection_catalogs=[catalog[k : k + 1]], flat=u_band.flat)
        image = one.injected_visit_image
    delta_together = together.injected_visit_image.variance.array.astype(float) - u_band.visit_image.variance.array
    delta_one_by_one = image.variance.array.astype(float) - u_band.visit_image.variance.array
    # The flat-variance cross terms are what a per-stamp pass would miss.
    assert np.abs(delta_together).max() > 0
    np.testing.assert_allclose(delta_together, delta_one_by_one, rtol=1e-5, atol=1e-6 * np.abs(delta_together).max())
    np.testing.assert_allclose(together.injected_visit_image.image.array, image.image.array, rtol=1e-6, atol=1e-3)


def test_scaling_on_a_stamp_box_equals_the_field_at_each_pixel() -> None:
    """c on a stamp (rendered separably) equals the photometric-scaling field
    evaluated pixel by pixel, for a field that varies across the detector."""
    import astropy.units as u
    from lsst.images import Box
    from lsst.images.fields import ChebyshevField

    from isrinject.engine.calibration import PixelCalibration

    image_box = Box.factory[0:400, 0:500]
    coefficients = np.array([[0.2, 0.01, -0.004], [0.008, 0.003, 0.0], [-0.002, 0.0, 0.0]])
    field = ChebyshevField(image_box, coefficients, unit=u.nJy / u.electron)
    calibration = PixelCalibration(image_box, [], field, None, 3.0, "visit_image")
    for stamp_box in (Box.factory[10:41, 300:361], Box.factory[370:400, 480:500]):
        grid = stamp_box.meshgrid()
        expected = 3.0 * np.asarray(field(x=grid.x, y=grid.y))
        scaling = calibration.image_per_electron_on(stamp_box)
        assert np.ptp(expected) > 1e-3 * expected.mean()  # the field does vary over the stamp
        np.testing.assert_allclose(scaling, expected, rtol=1e-12)
        at_pixels = calibration.image_per_electron_at(grid.x.ravel(), grid.y.ravel())
        np.testing.assert_allclose(at_pixels, expected.ravel(), rtol=1e-12)
