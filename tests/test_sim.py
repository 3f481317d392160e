"""Tests of the physical detector/ISR simulator `isrinject.sim`.

Every statistical tolerance is derived from the sample size: the sample
variance of N unit-variance normal deviates has standard deviation
``sqrt(2/N)``; we allow 5 of those.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table
from lsst.images import VisitImage

from isrinject.sim import (
    BAND_PARAMETERS,
    amplifier_boxes,
    amplifier_index_map,
    default_comcam_csv,
    load_comcam_amplifiers,
    make_comcam_detector,
    make_detector,
    make_flat,
    measure_flat,
    photometric_scaling_njy_per_electron,
    simulate_exposure,
    true_flat,
    vignetting,
)

SHAPE = (256, 256)


def _design_variance(exp) -> np.ndarray:
    """doc/isrinject/design.md: V = (c/R)² [(S + σ²)/f² + (S/f)² V_f/f²]."""
    s = exp.pre_flat_electrons
    f = exp.flat.image.array.astype(float)
    vf = exp.flat.variance.array.astype(float)
    r = exp.illumination_or_ones
    return (exp.scaling / r) ** 2 * ((s + exp.read_noise_map**2) / f**2 + (s / f) ** 2 * vf / f**2)


def _noiseless_empty_field(band: str, shape: tuple[int, int], *, seed: int, **kwargs: Any) -> dict[str, Any]:
    """`simulate_exposure` arguments of a noiseless detector with no background scene."""
    return {
        "band": band,
        "visit": 1,
        "detector": 8,
        "shape": shape,
        "seed": seed,
        "add_noise": False,
        "n_background_stars": 0,
        "n_background_galaxies": 0,
        **kwargs,
    }


def _star(x: float, y: float, mag: float) -> Table:
    return Table({"x": [x], "y": [y], "source_type": ["Star"], "mag": [mag]})


# ---------------------------------------------------------------- camera


def test_comcam_table_is_package_data():
    """The table ships inside isrinject.sim (importlib.resources), 144 amplifiers of 9 sensors."""
    import isrinject.sim

    table = default_comcam_csv()
    assert Path(str(table)).parent == Path(isrinject.sim.__file__).parent / "data"
    with table.open() as stream:
        assert len(stream.read().splitlines()) == 1 + 144
    assert load_comcam_amplifiers(ccd="S00") == load_comcam_amplifiers(table, ccd="S00")


def test_load_comcam_amplifiers_s11():
    amps = load_comcam_amplifiers(default_comcam_csv(), ccd="S11")
    assert len(amps) == 16
    by_name = {a["name"]: a for a in amps}
    # Values straight from the CSV (ITL-3800C-283).
    assert by_name["C10"]["gain"] == pytest.approx(1.3544)
    assert by_name["C10"]["read_noise"] == pytest.approx(5.8)
    assert [a["name"] for a in amps] == sorted(by_name)


def test_load_comcam_amplifiers_errors(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_comcam_amplifiers(missing)
    with pytest.raises(ValueError, match="S99"):
        load_comcam_amplifiers(default_comcam_csv(), ccd="S99")


def test_make_detector_amplifiers_tile_and_calibrations():
    shape = (100, 203)  # not divisible by the grid
    gains = np.linspace(1.2, 1.6, 16)
    det = make_detector(
        instrument="ISRSim",
        detector_id=8,
        shape=shape,
        gains=gains,
        read_noises=np.full(16, 6.0),
        saturations=120000.0 / gains,
        visit=42,
    )
    boxes = [a.bbox for a in det.amplifiers]
    index = amplifier_index_map(shape, boxes)
    assert (index >= 0).all()
    assert sum(b.y.size * b.x.size for b in boxes) == shape[0] * shape[1]
    assert [a.name for a in det.amplifiers][:3] == ["C00", "C01", "C02"]
    assert det.amplifiers[-1].name == "C17"
    for a, g in zip(det.amplifiers, gains):
        cal = a.nominal_calibrations
        assert cal.gain == pytest.approx(g)
        assert cal.saturation * cal.gain == pytest.approx(120000.0)
    assert det.frame.bbox.shape == shape
    assert det.visit == 42 and det.id == 8
    # Detector centre maps to the focal-plane origin.
    fp = det.to_focal_plane.apply_forward(x=np.array([(shape[1] - 1) / 2]), y=np.array([(shape[0] - 1) / 2]))
    assert abs(fp.x[0]) < 1e-9 and abs(fp.y[0]) < 1e-9


def test_make_detector_validation_quotes_values():
    kwargs = {
        "instrument": "X",
        "detector_id": 1,
        "shape": (64, 64),
        "read_noises": [5.0] * 16,
        "saturations": [1e5] * 16,
    }
    with pytest.raises(ValueError, match="got 3"):
        make_detector(gains=[1.0, 1.0, 1.0], **kwargs)
    with pytest.raises(ValueError, match="-1.0"):
        make_detector(gains=[-1.0] + [1.0] * 15, **kwargs)


# ---------------------------------------------------------------- flat


def test_vignetting_floor_at_far_corner():
    v = vignetting(SHAPE, 0.3)
    assert v[-1, -1] == pytest.approx(0.3)
    assert v.argmax() == 0  # pixel (0, 0) is nearest the optical axis
    with pytest.raises(ValueError, match="1.5"):
        vignetting(SHAPE, 1.5)


def test_flat_structure_and_variance():
    rng = np.random.default_rng(11)
    boxes = amplifier_boxes(SHAPE)
    truth = true_flat(SHAPE, band="u", amp_boxes=boxes, rng=rng, vignetting_floor=0.3)
    n, e = 20, 50000.0
    f, vf = measure_flat(truth, rng=rng, n_flat_exposures=n, flat_electrons_per_exposure=e)
    assert truth.mean() == pytest.approx(1.0, abs=1e-12)
    assert f.mean() == pytest.approx(1.0, abs=1e-12)
    # Corners: the far corner is down to ~floor relative to the near one.
    v = vignetting(SHAPE, 0.3)
    ratio = np.median(f[-10:, -10:]) / np.median(f[:10, :10])
    assert ratio == pytest.approx(v[-5, -5] / v[5, 5], rel=0.15)
    assert ratio < 0.45
    # V_f = f²/C ≈ f/(N e): the stacked flat's Poisson variance.
    np.testing.assert_allclose(vf * n * e / f, 1.0, rtol=2e-3)
    # And it is the realised variance of the measured flat around the truth.
    z = (f - truth) / np.sqrt(vf)
    assert np.var(z) == pytest.approx(1.0, abs=5 * math.sqrt(2 / z.size))
    # Amplifier QE steps: jumps across vertical amp boundaries stand out of
    # the column-to-column scatter inside amplifiers.
    flat_over_vig = truth / v
    col = np.median(flat_over_vig[:128], axis=0)
    steps = np.abs(np.diff(col))
    boundaries = [b.x.start - 1 for b in boxes[1:8]]
    inside = np.delete(steps, boundaries)
    assert np.max(steps[boundaries]) > 5 * np.median(inside)


def test_make_flat_bands_and_errors():
    rng = np.random.default_rng(2)
    boxes = amplifier_boxes(SHAPE)
    f_u, _ = make_flat(SHAPE, band="u", amp_boxes=boxes, rng=np.random.default_rng(2))
    f_y, _ = make_flat(SHAPE, band="y", amp_boxes=boxes, rng=np.random.default_rng(2))
    assert not np.allclose(f_u, f_y)
    # PRNU: u has more pixel-scale structure than y.
    def pixel_step_rms(a: np.ndarray) -> float:
        return float(np.std(a[:, 1:] - a[:, :-1]))

    assert pixel_step_rms(f_u) > pixel_step_rms(f_y)
    with pytest.raises(ValueError, match="'w'"):
        make_flat(SHAPE, band="w", amp_boxes=boxes, rng=rng)
    with pytest.raises(ValueError, match="0"):
        measure_flat(np.ones(SHAPE), rng=rng, n_flat_exposures=0)


# ---------------------------------------------------------------- ISR relation


@pytest.mark.parametrize("units", ["nJy", "electron"])
@pytest.mark.parametrize("illumination", [False, True])
def test_design_relation_per_pixel(units, illumination):
    exp = simulate_exposure(
        band="g",
        visit=1,
        detector=8,
        shape=SHAPE,
        seed=5,
        units=units,
        do_illumination_correction=illumination,
    )
    vi = exp.visit_image
    assert vi.unit == (u.nJy if units == "nJy" else u.electron)
    assert vi.variance.unit == vi.unit**2
    c0 = photometric_scaling_njy_per_electron("g")
    assert exp.scaling == pytest.approx(c0 if units == "nJy" else 1.0)
    assert (exp.illumination is not None) == illumination
    if illumination:
        assert 0.02 < np.ptp(exp.illumination) < 0.2
    f = exp.flat.image.array.astype(float)
    r = exp.illumination_or_ones
    image = exp.scaling * (exp.pre_flat_electrons / f - exp.background_electrons) / r
    np.testing.assert_allclose(vi.image.array, image, rtol=1e-6, atol=1e-6 * np.abs(image).max())
    np.testing.assert_allclose(vi.variance.array, _design_variance(exp), rtol=1e-6)
    # Background: the smooth sky, s·R, in post-flat electrons.
    np.testing.assert_allclose(exp.background_electrons, BAND_PARAMETERS["g"].sky_electrons * r)


@pytest.mark.parametrize("units", ["nJy", "electron"])
def test_realised_noise_matches_variance_including_flat_term(units):
    # A noisy flat (1 exposure of 2000 e⁻) makes the V_f term ≈ 45 % of the
    # Poisson term at r-band sky, so leaving it out would fail the test.
    boxes = amplifier_boxes(SHAPE)
    flat = make_flat(
        SHAPE,
        band="r",
        amp_boxes=boxes,
        rng=np.random.default_rng(1),
        n_flat_exposures=1,
        flat_electrons_per_exposure=2000.0,
    )
    exp = simulate_exposure(
        band="r",
        visit=1,
        detector=8,
        shape=SHAPE,
        seed=9,
        units=units,
        flat=flat,
        do_illumination_correction=True,
    )
    vi = exp.visit_image
    good = ~vi.mask.get("SATURATED")
    resid = vi.image.array[good] - exp.truth_image[good]
    chi2 = resid**2 / vi.variance.array[good]
    tol = 5 * math.sqrt(2 / good.sum())
    assert chi2.mean() == pytest.approx(1.0, abs=tol)
    # Without the flat-variance term the recorded variance is far too small.
    f = exp.flat.image.array.astype(float)[good]
    r = exp.illumination_or_ones[good]
    s = exp.pre_flat_electrons[good]
    v_no_flat = (exp.scaling / r) ** 2 * (s + exp.read_noise_map[good] ** 2) / f**2
    assert (resid**2 / v_no_flat).mean() > 1.2


# ---------------------------------------------------------------- sources, flux, saturation


@pytest.mark.parametrize("units", ["nJy", "electron"])
@pytest.mark.parametrize("illumination", [False, True])
def test_flux_bookkeeping_noiseless(units, illumination):
    kw = _noiseless_empty_field("r", SHAPE, seed=21, units=units, do_illumination_correction=illumination)
    star = _star(128.3, 120.7, 18.0)
    with_star = simulate_exposure(sources=star, **kw)
    without = simulate_exposure(**kw)
    diff = with_star.visit_image.image.array.astype(float) - without.visit_image.image.array
    c0 = with_star.photometric_scaling_njy_per_electron
    expected = 10 ** (-0.4 * (18.0 - 31.4)) * (with_star.scaling / c0)
    assert diff.sum() == pytest.approx(expected, rel=5e-3)
    # Truth catalog records it.
    added = with_star.truth_catalog[with_star.truth_catalog["origin"] == "added"]
    assert len(added) == 1 and added["flux_njy"][0] == pytest.approx(10 ** (-0.4 * (18.0 - 31.4)))


def test_added_sources_only_change_their_pixels_and_conserve_flux():
    kw = {"band": "r", "visit": 3, "detector": 8, "shape": SHAPE, "seed": 4}
    star = _star(60.0, 190.0, 18.0)
    a = simulate_exposure(sources=star, **kw)
    b = simulate_exposure(**kw)
    diff = a.visit_image.image.array.astype(float) - b.visit_image.image.array
    changed = a.added_electrons > 0
    assert np.all(diff[~changed] == 0)  # same noise everywhere else
    # Noisy flux: Poisson error on the added electrons (≈ 3×10⁵ e⁻).
    flux = 10 ** (-0.4 * (18.0 - 31.4))
    n_expected = flux / a.photometric_scaling_njy_per_electron
    assert diff.sum() == pytest.approx(flux, rel=5 / math.sqrt(n_expected) + 2e-3)
    # The background scene and truth are identical.
    assert np.array_equal(a.truth_catalog[:-1]["x"], b.truth_catalog["x"])


def test_star_matches_visit_image_psf():
    kw = _noiseless_empty_field("i", (64, 64), seed=2)
    x, y = 31.4, 30.8
    exp = simulate_exposure(sources=_star(x, y, 20.0), **kw)
    model = exp.source_model_njy
    stellar = exp.visit_image.psf.compute_stellar_image(x=x, y=y)
    b = stellar.bbox
    stamp = model[b.y.start : b.y.stop, b.x.start : b.x.stop]
    flux = 10 ** (-0.4 * (20.0 - 31.4))
    np.testing.assert_allclose(stamp / flux, stellar.array, atol=2e-4 * stellar.array.max())


def test_sources_by_ra_dec_match_pixel_positions():
    kw = _noiseless_empty_field("z", (64, 64), seed=2)
    by_xy = simulate_exposure(sources=_star(20.2, 40.6, 19.0), **kw)
    ra, dec = by_xy.truth_catalog["ra"][0], by_xy.truth_catalog["dec"][0]
    sky = by_xy.visit_image.sky_projection.pixel_to_sky(x=np.array([20.2]), y=np.array([40.6]))
    assert sky.ra.deg[0] == pytest.approx(ra, abs=1e-9) and sky.dec.deg[0] == pytest.approx(dec, abs=1e-9)
    table = Table({"ra": [ra], "dec": [dec], "source_type": ["Star"], "mag": [19.0]})
    by_radec = simulate_exposure(sources=table, **kw)
    np.testing.assert_allclose(
        by_radec.source_model_njy, by_xy.source_model_njy, atol=1e-6 * by_xy.source_model_njy.max()
    )


def test_galaxy_sources_are_drawn():
    table = Table(
        {
            "x": [100.0, 150.0, 60.0],
            "y": [100.0, 60.0, 180.0],
            "source_type": ["Sersic", "Exponential", "DeVaucouleurs"],
            "mag": [19.0, 19.5, 20.0],
            "n": [1.5, np.nan, np.nan],
            "half_light_radius": [0.8, 0.6, 0.5],
            "q": [0.5, 0.8, 0.7],
            "beta": [30.0, 100.0, 0.0],
        }
    )
    exp = simulate_exposure(sources=table, **_noiseless_empty_field("r", SHAPE, seed=1))
    total = exp.source_model_njy.sum()
    expected = np.sum(10 ** (-0.4 * (np.array([19.0, 19.5, 20.0]) - 31.4)))
    assert total == pytest.approx(expected, rel=0.02)  # profile tails beyond the stamps


def test_saturation_sets_mask_and_clips():
    """With the bleed and ISR's interpolation off: S clipped at the full well, SATURATED there."""
    exp = simulate_exposure(
        band="r", visit=1, detector=8, shape=SHAPE, seed=3, sources=_star(100.0, 100.0, 12.0),
        do_bleed=False, do_saturation_interpolation=False,
    )
    vi = exp.visit_image
    sat = vi.mask.get("SATURATED")
    assert sat.sum() > 10
    assert sat[100, 100]
    s = exp.pre_flat_electrons
    assert np.all(s <= exp.saturation_map_electrons)
    np.testing.assert_array_equal(sat, s >= exp.saturation_map_electrons)
    assert np.all(exp.expected_pre_flat_electrons[sat] > 0.5 * exp.saturation_map_electrons[sat])


def test_saturation_bleeds_and_interpolates():
    """Defaults (issue 23): S bled along the columns, ≤ the full well; SATURATED = the pixels at
    the level grown by one (Manhattan); INTERPOLATED on them."""
    from isrinject.engine.saturation import grow_manhattan

    exp = simulate_exposure(band="r", visit=1, detector=8, shape=SHAPE, seed=3, sources=_star(100.0, 100.0, 12.0))
    s, level = exp.pre_flat_electrons, exp.saturation_map_electrons
    assert np.all(s <= level)
    at_level = s >= level
    sat = exp.visit_image.mask.get("SATURATED")
    np.testing.assert_array_equal(sat, grow_manhattan(at_level, 1))
    np.testing.assert_array_equal(exp.visit_image.mask.get("INTERPOLATED"), sat)
    # The trail is longer than the unbled core.
    assert at_level[:, 100].sum() > (exp.expected_pre_flat_electrons[:, 100] > level[:, 100]).sum()


def test_defects_masks():
    exp = simulate_exposure(band="u", visit=1, detector=8, shape=(64, 64), seed=3, defects=True)
    vi = exp.visit_image
    no_data = vi.mask.get("NO_DATA")
    assert no_data[-4:].all() and not no_data[:-4].any()
    assert np.isnan(vi.image.array[no_data]).all()
    assert vi.mask.get("BAD").any(axis=0).sum() == 2


# ---------------------------------------------------------------- VisitImage round trip


@pytest.mark.parametrize("units", ["nJy", "electron"])
def test_visit_image_fits_round_trip(tmp_path, units):
    exp = simulate_exposure(
        band="u", visit=7, detector=8, shape=(64, 64), seed=3, units=units, sources=_star(30.0, 30.0, 13.0)
    )
    vi = exp.visit_image
    path = tmp_path / "visit_image.fits"
    vi.write(str(path))
    back = VisitImage.read(str(path))
    np.testing.assert_array_equal(back.image.array, vi.image.array)
    np.testing.assert_array_equal(back.variance.array, vi.variance.array)
    np.testing.assert_array_equal(back.mask.array, vi.mask.array)
    assert back.mask.get("SATURATED").any()
    assert back.unit == vi.unit and back.band == "u"
    assert back.obs_info.physical_filter == "u_sim"
    assert back.obs_info.exposure_time.to_value(u.s) == pytest.approx(30.0)
    assert back.detector == vi.detector
    for a, b in zip(back.detector.amplifiers, vi.detector.amplifiers):
        assert a.nominal_calibrations == b.nominal_calibrations
    assert back.photometric_scaling.unit == u.nJy / u.electron
    assert back.photometric_scaling(x=10.0, y=20.0) == pytest.approx(exp.photometric_scaling_njy_per_electron)
    assert back.psf.sigma == pytest.approx(vi.psf.sigma)
    # An electron image calibrates to the nJy one through photometric_scaling.
    if units == "electron":
        njy = back.convert_unit(u.nJy)
        np.testing.assert_allclose(
            njy.image.array, vi.image.array * exp.photometric_scaling_njy_per_electron, rtol=1e-6
        )


def test_simulate_exposure_validation():
    kw = {"visit": 1, "detector": 8, "shape": (32, 32), "seed": 1}
    with pytest.raises(ValueError, match="'w'"):
        simulate_exposure(band="w", **kw)
    with pytest.raises(ValueError, match="'Jy'"):
        simulate_exposure(band="r", units="Jy", **kw)
    with pytest.raises(ValueError, match="'Box'"):
        simulate_exposure(
            band="r", sources=Table({"x": [1.0], "y": [1.0], "source_type": ["Box"], "mag": [20.0]}), **kw
        )
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        simulate_exposure(band="r", flat=(np.ones((16, 16)), np.zeros((16, 16))), **kw)
    with pytest.raises(ValueError, match="nan"):
        simulate_exposure(
            band="r", sources=Table({"x": [1.0], "y": [1.0], "source_type": ["Star"], "mag": [np.nan]}), **kw
        )


def test_comcam_detector_from_csv():
    det = make_comcam_detector(instrument="ISRSim", detector_id=8, shape=(64, 64))
    gains = {a.name: a.nominal_calibrations.gain for a in det.amplifiers}
    csv_gains = sorted(a["gain"] for a in load_comcam_amplifiers(default_comcam_csv()))
    assert sorted(gains.values()) == pytest.approx(csv_gains)
