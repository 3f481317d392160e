"""Noise-aware stamp extent and the INJECTED threshold (issue 22).

The rule (`isrinject.engine.draw.extent`): an automatic stamp ends where the
model is below t·σ in every pixel outside it *and* where at most ε·σ_F of
the flux is left outside, σ_F = σ / √(Σ m²) the source's sky-limited flux
error; bounded below by the PSF kernel, above by stamp_size_factor × GalSim's
good size (the stamp drawn with the rule off).
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from lsst.images import Box, DetectorFrame, SkyProjection
from lsst.images.psfs import GaussianPointSpreadFunction

from isrinject import VisitInjectConfig, VisitInjectTask
from isrinject.engine.catalog import source_spec
from isrinject.engine.draw import RenderSettings, draw_source
from isrinject.engine.draw.extent import (
    DEFAULT_STAMP_FLUX_ERROR_FRACTION,
    DEFAULT_STAMP_NOISE_FRACTION,
    centred_crop,
    flux_error,
    flux_half_width,
    noise_half_width,
)
from isrinject.engine.draw.psf_cache import PsfCache
from isrinject.engine.noise_level import local_sky_sigma
from isrinject.sim import simulate_exposure

BBOX = Box.factory[0:1200, 0:1200]
SIGMA = 1.0  # the local sky σ [image units]; fluxes below are in units of it
KERNEL = 25  # PSF kernel side [pixels]: the lower bound


@pytest.fixture(scope="module")
def drawing():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [601.0, 601.0]
    wcs.wcs.cd = 0.2 / 3600.0 * np.array([[-1.0, 0.0], [0.0, 1.0]])
    projection = SkyProjection.from_fits_wcs(
        wcs, DetectorFrame(instrument="Test", detector=1, visit=1, bbox=BBOX), pixel_bounds=BBOX
    )
    # FWHM 0.85" at 0.2"/px, Rubin r-band seeing.
    psf = GaussianPointSpreadFunction(1.8, bounds=BBOX, stamp_size=KERNEL)
    cache = PsfCache(psf, projection, calib_flux_radius=None, bounds=(0, 1199, 0, 1199))

    def draw(row: dict, flux: float, settings: RenderSettings):
        return draw_source(
            source_spec(row), x=600.3, y=600.7, flux=flux, psf=psf, sky_projection=projection, image_bbox=BBOX,
            settings=settings, psf_cache=cache, noise_sigma=SIGMA,
        )

    return draw


#: Stars and Sérsic galaxies over GalSim's whole index range, small to large, round and flat.
ROWS = [{"source_type": "Star"}] + [
    {"source_type": "Sersic", "n": n, "half_light_radius": hlr, "q": q, "beta": 30.0}
    for n in (0.31, 1.0, 2.3, 4.0, 6.19)
    for hlr in (0.1, 0.8, 3.0)
    for q in (0.3, 1.0)
]
#: Total flux in units of the per-pixel σ: from barely detected to saturating.
FLUXES = (5.0, 300.0, 1e5)


def _outside_over_flux_error(upper, cut) -> float:
    """Flux of the upper-bound stamp left outside the cut, over σ_F = σ / √(Σ m²)."""
    unit = upper.model / upper.profile_flux
    flux_error = SIGMA / np.sqrt(np.sum(unit**2))
    return float((upper.model.sum() - cut.model.sum()) / flux_error)


def test_flux_left_outside_is_within_a_tenth_of_the_flux_error(drawing) -> None:
    """ΔF ≤ 0.1 σ_F for every catalog type, bright and faint; the stamp never
    exceeds the upper bound, never goes below the kernel, and pixels outside it
    are below t·σ."""
    on = RenderSettings(calib_flux_radius=None, stamp_noise_fraction=DEFAULT_STAMP_NOISE_FRACTION)
    off = RenderSettings(calib_flux_radius=None, stamp_noise_fraction=0.0)
    ratios, pixels_on, pixels_off, at_upper = [], 0, 0, 0
    for row in ROWS:
        for flux in FLUXES:
            upper, cut = drawing(row, flux, off), drawing(row, flux, on)
            assert cut.flags == upper.flags == 0
            assert KERNEL <= cut.draw_size <= upper.draw_size
            pixels_on += cut.draw_size**2
            pixels_off += upper.draw_size**2
            if cut.draw_size == upper.draw_size:
                # Faint galaxies are always cut; what keeps the upper bound is bright, or a star's kernel.
                assert flux > FLUXES[0] or row["source_type"] == "Star" or upper.draw_size == KERNEL
                at_upper += 1
                np.testing.assert_allclose(cut.model, upper.model, rtol=0, atol=1e-9 * upper.model.max())
                continue
            ratios.append(_outside_over_flux_error(upper, cut))
            # Outside the cut, the upper-bound model is below t·σ everywhere.
            outside = upper.model.copy()
            inner = centred_crop(outside, cut.draw_size)
            inner[...] = -np.inf
            assert outside.max() < DEFAULT_STAMP_NOISE_FRACTION * SIGMA
            # What the catalog reports: the fraction of the profile's flux not drawn.
            assert cut.truncated_fraction == pytest.approx(1 - cut.model.sum() / cut.profile_flux, abs=1e-12)
    ratios = np.array(ratios)
    assert ratios.max() <= DEFAULT_STAMP_FLUX_ERROR_FRACTION
    # The budget is used, not wasted: some stamps are cut right at it.
    assert ratios.max() > 0.5 * DEFAULT_STAMP_FLUX_ERROR_FRACTION
    # Only bright extended sources keep their upper bound; the pixel count drops a lot.
    assert at_upper < len(ROWS) * len(FLUXES) / 2
    assert pixels_on < 0.5 * pixels_off


def test_a_per_pixel_threshold_alone_loses_bright_wings(drawing) -> None:
    """Why the flux budget is part of the rule: t·σ per pixel alone cuts a
    bright n = 4 galaxy's wings by many σ_F (no constant t avoids it: the flux
    under the threshold grows with the flux of the source)."""
    row = {"source_type": "Sersic", "n": 4.0, "half_light_radius": 0.8, "q": 1.0, "beta": 0.0}
    off = RenderSettings(calib_flux_radius=None, stamp_noise_fraction=0.0)
    pixel_only = RenderSettings(calib_flux_radius=None, stamp_noise_fraction=0.05, stamp_flux_error_fraction=0.0)
    both = RenderSettings(calib_flux_radius=None, stamp_noise_fraction=0.05)
    upper = drawing(row, 1e5, off)
    assert _outside_over_flux_error(upper, drawing(row, 1e5, pixel_only)) > 10.0
    cut = drawing(row, 1e5, both)
    assert cut.draw_size == upper.draw_size or _outside_over_flux_error(upper, cut) <= 0.1


def test_half_widths_on_a_known_stamp() -> None:
    """The two box rules on a stamp whose rings are known exactly."""
    size = 11
    offset = np.abs(np.arange(size) - size // 2)
    ring = np.maximum(offset[:, None], offset[None, :])
    stamp = 10.0 ** (-ring.astype(float))  # 1 at the centre, 0.1 on ring 1, ...
    assert noise_half_width(stamp, 0.05) == 1
    assert noise_half_width(stamp, 2.0) == 0
    assert noise_half_width(stamp, 1e-9) == size // 2
    total = stamp.sum()
    norm = np.sqrt(np.sum(stamp**2))
    # Flux outside ring h: Σ_{k>h} 8k·10^-k.  Budget ε·σ·F/‖M‖ with σ chosen so it is 0.01.
    sigma = 0.01 * norm / (0.1 * total)
    outside = [sum(8 * k * 10.0**-k for k in range(h + 1, size // 2 + 1)) for h in range(size // 2 + 1)]
    expected = next(h for h, value in enumerate(outside) if value <= 0.01 + 1e-15)
    assert flux_half_width(stamp, total, sigma, 0.1) == expected
    assert flux_half_width(stamp, total, sigma, 0.1, start=expected + 1) == expected + 1
    # Flux the stamp lacks (beyond its edge) counts as outside: no box meets a tiny budget.
    assert flux_half_width(stamp, 2 * total, sigma, 0.1) == size // 2


def test_local_sky_sigma_is_the_cell_median() -> None:
    """σ is the cell's sky: a bright blob under a source does not raise it; bad cells give NaN."""
    variance = np.full((256, 384), 4.0)
    variance[10:30, 10:30] = 400.0  # a real star in cell (0, 0)
    variance[:, 256:] = 9.0
    variance[128:, 256:] = np.nan  # NO_DATA cell
    sigma = local_sky_sigma(
        variance, np.array([120.0, 20.0, 300.0, 300.0, np.nan, 1000.0]) + 5,
        np.array([20.0, 20.0, 20.0, 200.0, 0.0, 0.0]) + 7, x0=5, y0=7, cell=128,
    )
    np.testing.assert_allclose(sigma[:3], [2.0, 2.0, 3.0])
    assert np.all(np.isnan(sigma[3:]))


@pytest.fixture(scope="module")
def r_band():
    return simulate_exposure(band="r", visit=2, detector=0, shape=(300, 340), seed=22, units="nJy")


def test_injected_plane_is_the_model_above_its_threshold(r_band) -> None:
    """INJECTED = {ΔI ≥ f·σ} with noise off (ΔI = M); f ≤ 0 marks whole stamps
    (source_injection); INJECTED_CORE unchanged; coverage measured."""
    rng = np.random.default_rng(3)
    n = 24
    x, y = rng.uniform(30, 310, n), rng.uniform(30, 270, n)
    from astropy.table import Table
    from lsst.images import XY

    sky = r_band.visit_image.sky_projection.pixel_to_sky(XY(x=x, y=y))
    catalog = Table({
        "injection_id": np.arange(n), "ra": sky.ra.deg, "dec": sky.dec.deg,
        "source_type": np.where(np.arange(n) % 2 == 0, "Star", "Sersic"),
        "mag": rng.uniform(19.0, 25.0, n), "n": rng.uniform(0.5, 6.0, n),
        "half_light_radius": rng.uniform(0.2, 1.5, n), "q": rng.uniform(0.3, 1.0, n), "beta": rng.uniform(0, 180, n),
    })
    results = {}
    for fraction in (0.1, 0.0):
        config = VisitInjectConfig()
        config.add_noise = False
        config.injected_noise_fraction = fraction
        results[fraction] = VisitInjectTask(config=config).run(
            visit_image=r_band.visit_image, injection_catalogs=[catalog], flat=r_band.flat
        )
    out = results[0.1].injected_visit_image
    delta = out.image.array.astype(float) - r_band.visit_image.image.array
    sigma = local_sky_sigma(r_band.visit_image.variance.array, x, y)  # bbox starts at 0
    injected = out.mask.get("INJECTED")
    # Each source's footprint is its own model ≥ 0.1 σ: summed models are at least that.
    assert np.all(delta[injected] >= 0.1 * sigma.min() * (1 - 1e-4))
    assert np.all(injected[delta >= 0.1 * sigma.max() * (1 + 1e-4) * n])
    whole = results[0.0].injected_visit_image.mask.get("INJECTED")
    assert np.all(whole[injected]) and injected.mean() < 0.5 * whole.mean()
    core_on = out.mask.get("INJECTED_CORE")
    core_off = results[0.0].injected_visit_image.mask.get("INJECTED_CORE")
    assert np.array_equal(core_on, core_off) and 8 * n < core_on.sum() <= 9 * n


def test_flux_error_is_the_scatter_of_the_optimal_flux_estimate() -> None:
    """σ_F of `flux_error` (sky + the source's own Poisson noise) is the measured
    scatter of the inverse-variance model-weighted flux over noise realizations."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[-10:11, -10:11]
    unit = np.exp(-(xx**2 + yy**2) / (2 * 2.0**2))
    unit /= unit.sum()
    flux, sigma, gain = 2000.0, 3.0, 0.5  # the source's Poisson noise matters: M/g ~ σ² at the peak
    model = flux * unit
    variance = sigma**2 + model / gain
    weights = unit / variance
    trials = 4000
    noisy = model + rng.normal(size=(trials, *model.shape)) * np.sqrt(variance)
    estimates = (noisy * weights).sum(axis=(1, 2)) / (unit * weights).sum()
    expected = flux_error(model, flux, sigma, gain)
    # The standard deviation of a sample of N has a relative error of 1/√(2N); 5 of them.
    assert estimates.std() == pytest.approx(expected, rel=5 / np.sqrt(2 * trials))
    assert flux_error(model, flux, sigma) == pytest.approx(sigma / np.sqrt(np.sum(unit**2)), rel=1e-12)
    assert expected > 1.2 * flux_error(model, flux, sigma)

