"""Light curves: per-visit rows and time-dependent magnitudes, for visit and difference injection."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table
from astropy.time import Time

from isrinject import DifferenceInjectConfig, DifferenceInjectTask, VisitInjectConfig, VisitInjectTask
from isrinject.engine.catalog.lightcurve import evaluate_light_curves, exposure_midpoint_mjd
from isrinject.sim import simulate_difference, simulate_exposure

SHAPE = (128, 128)
T0 = 60300.0  # MJD (TAI) of the first visit's start
VISITS = {41: T0, 42: T0 + 5.0, 43: T0 + 12.0}  # visit → start [MJD TAI]; 30 s exposures
EXPOSURE_DAYS = 30.0 / 86400.0
PEAK_MJD, PEAK_MAG, RISE, DECLINE = T0 + 3.0, 19.0, 0.4, 0.08
LC_MJD = [T0 - 1.0, T0 + 3.0, T0 + 10.0, np.nan]  # NaN-padded table
LC_MAG = [22.0, 19.5, 21.0, np.nan]


def _catalog() -> Table:
    """A: rise/decline model; B: (mjd, mag) table; C: one row per visit; D: constant."""
    n = 6
    masked = np.full(n, np.nan)
    catalog = Table({
        "injection_id": np.arange(n),
        "x": [30.2, 90.3, 30.4, 30.4, 30.4, 90.1],
        "y": [30.1, 30.2, 90.3, 90.3, 90.3, 90.2],
        "source_type": ["Star"] * n,
        "mag": [np.nan, np.nan, 20.0, 20.3, 20.6, 20.5],
        "visit": [-1, -1, 41, 42, 43, -1],
        "peak_mjd": [PEAK_MJD, *masked[1:]],
        "peak_mag": [PEAK_MAG, *masked[1:]],
        "rise_rate": [RISE, *masked[1:]],
        "decline_rate": [DECLINE, *masked[1:]],
        "lc_mjd": [[np.nan] * 4, LC_MJD] + [[np.nan] * 4] * 4,
        "lc_mag": [[np.nan] * 4, LC_MAG] + [[np.nan] * 4] * 4,
    })
    return catalog


def _expected(visit: int) -> dict[int, float]:
    """injection_id → AB mag at the visit's midpoint, computed here from the definitions."""
    t = VISITS[visit] + EXPOSURE_DAYS / 2
    dt = t - PEAK_MJD
    expected = {0: PEAK_MAG + (RISE * -dt if dt < 0 else DECLINE * dt)}
    if LC_MJD[0] <= t <= LC_MJD[2]:
        expected[1] = float(np.interp(t, LC_MJD[:3], LC_MAG[:3]))
    expected[{41: 2, 42: 3, 43: 4}[visit]] = {41: 20.0, 42: 20.3, 43: 20.6}[visit]
    expected[5] = 20.5
    return expected


def _configure(config):
    config.add_noise = False
    config.calib_flux_radius = None  # the catalog flux is the total flux
    return config


def _check(image_before, image_after, catalog: Table, visit: int) -> None:
    expected = _expected(visit)
    assert sorted(catalog["injection_id"]) == sorted(expected)
    midpoint = VISITS[visit] + EXPOSURE_DAYS / 2
    for row in catalog:
        source = int(row["injection_id"])
        assert float(row["mag"]) == pytest.approx(expected[source], abs=1e-9)
        if source in (0, 1):
            assert float(row["injection_mjd"]) == pytest.approx(midpoint, abs=1e-9)
        # The model flux injected is the light curve's flux at the midpoint (image in nJy).
        model_njy = (expected[source] * u.ABmag).to_value(u.nJy)
        assert float(row["injection_model_flux"]) == pytest.approx(model_njy, rel=1e-6)
        # Noise off, what reached the pixels is that model within the stamp (its wings cut).
        assert 0.98 < float(row["injection_flux"]) / model_njy <= 1.0 + 1e-6
    delta = image_after.image.array.astype(np.float64) - image_before.image.array
    assert delta.sum() == pytest.approx(float(np.sum(catalog["injection_flux"])), rel=1e-6)


def test_midpoint_from_obs_info() -> None:
    sim = simulate_exposure(band="r", visit=41, detector=0, shape=(32, 32), seed=1,
                            obs_time=Time(T0, format="mjd", scale="tai"), n_background_stars=0,
                            n_background_galaxies=0)
    assert exposure_midpoint_mjd(sim.visit_image.obs_info) == pytest.approx(T0 + EXPOSURE_DAYS / 2, abs=1e-9)


def test_rows_of_other_visits_and_uncovered_tables_are_left_out() -> None:
    """D7: an uncovered table leaves the row out; D5: mismatched tables and no exposure time."""
    from types import SimpleNamespace

    catalog = _catalog()
    late = evaluate_light_curves(catalog, visit=43, mjd=VISITS[43] + EXPOSURE_DAYS / 2)
    assert sorted(late["injection_id"]) == [0, 4, 5]  # B's table ends at T0 + 10
    untimed = Table({"mag": [20.0, 21.0], "visit": [7, 8]})
    assert list(evaluate_light_curves(untimed, visit=8, mjd=None)["mag"]) == [21.0]
    with pytest.raises(ValueError, match="no exposure time"):
        evaluate_light_curves(catalog, visit=41, mjd=None)
    bad = Table({"mag": [20.0], "lc_mjd": [[1.0, 2.0]], "lc_mag": [[20.0, 21.0, 22.0]]})
    with pytest.raises(ValueError, match="Row 0: lc_mjd and lc_mag have different lengths"):
        evaluate_light_curves(bad, visit=1, mjd=1.5)
    with pytest.raises(ValueError, match="gives no exposure midpoint"):
        exposure_midpoint_mjd(SimpleNamespace(datetime_begin=None, datetime_end=None, exposure_time=None))
    plain = Table({"mag": [20.0]})
    assert evaluate_light_curves(plain, visit=1, mjd=None) is plain


@pytest.mark.parametrize("visit", sorted(VISITS))
def test_visit_injection_follows_the_light_curve(visit: int) -> None:
    sim = simulate_exposure(band="r", visit=visit, detector=0, shape=SHAPE, seed=visit,
                            obs_time=Time(VISITS[visit], format="mjd", scale="tai"))
    result = VisitInjectTask(config=_configure(VisitInjectConfig())).run(
        visit_image=sim.visit_image, injection_catalogs=[_catalog()], flat=sim.flat
    )
    _check(sim.visit_image, result.injected_visit_image, result.injected_visit_image_catalog, visit)


@pytest.mark.parametrize("visit", sorted(VISITS))
def test_difference_injection_follows_the_light_curve(visit: int) -> None:
    pair = simulate_difference(band="r", visit=visit, detector=0, shape=SHAPE, seed=visit,
                               obs_time=Time(VISITS[visit], format="mjd", scale="tai"))
    result = DifferenceInjectTask(config=_configure(DifferenceInjectConfig())).run(
        difference_image=pair.difference_image, injection_catalogs=[_catalog()], flat=pair.science.flat
    )
    _check(pair.difference_image, result.injected_difference_image, result.injected_difference_image_catalog,
           visit)


def test_a_light_curve_without_a_magnitude_is_flagged_mag_bad() -> None:
    """D6: a NaN peak_mag gives a NaN magnitude at the midpoint: MAG_BAD, the other row injected."""
    from isrinject.engine.flags import InjectionFlag

    sim = simulate_exposure(band="r", visit=41, detector=0, shape=(64, 64), seed=3,
                            obs_time=Time(T0, format="mjd", scale="tai"), n_background_stars=0,
                            n_background_galaxies=0)
    catalog = Table({"injection_id": [1, 2], "x": [20.0, 44.0], "y": [20.0, 44.0], "source_type": ["Star"] * 2,
                     "mag": [np.nan, np.nan], "peak_mjd": [T0, T0], "peak_mag": [np.nan, 19.0],
                     "rise_rate": [0.1, 0.1], "decline_rate": [0.1, 0.1]})
    result = VisitInjectTask(config=_configure(VisitInjectConfig())).run(
        visit_image=sim.visit_image, injection_catalogs=[catalog], flat=sim.flat
    )
    flags = result.injected_visit_image_catalog["injection_flag"]
    assert flags[0] & InjectionFlag.MAG_BAD and not flags[1] & int(InjectionFlag.MAG_BAD)
