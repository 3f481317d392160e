"""diagnostics.stats on a simulated, strongly vignetted u-band visit: a correct
(ISR) injection passes, the emulated lsst.source.injection injection is flagged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy.table import Table
from lsst.images import XY

from isrinject import VisitInjectConfig
from isrinject.diagnostics.stats import (
    DetectorPixels,
    fit_baseline,
    flat_normalised,
    injection_statistics,
    matched_subsample,
    realized_noise_ratio,
    relation_residual,
)
from isrinject.diagnostics.upstream import fit_upstream_slopes, upstream_injection
from isrinject.diagnostics.verdict import verdict
from isrinject.engine.catalog import compose_catalog
from isrinject.engine.inject import inject_sources
from isrinject.sim import amplifier_index_map, simulate_exposure

SHAPE = (256, 256)


def _pixels(band: str, seed: int) -> DetectorPixels:
    sim = simulate_exposure(band=band, visit=11, detector=0, shape=SHAPE, seed=seed, units="nJy")
    rng = np.random.default_rng(seed)
    n = 24
    xs, ys = rng.uniform(15, 240, n), rng.uniform(15, 240, n)
    sky = sim.visit_image.sky_projection.pixel_to_sky(XY(x=xs, y=ys))
    catalog = compose_catalog([Table({
        "injection_id": np.arange(n), "ra": sky.ra.deg, "dec": sky.dec.deg,
        "source_type": ["Star", "Sersic"] * (n // 2), "mag": rng.uniform(17.5, 22.5, n),
        "n": np.full(n, 1.5), "half_light_radius": np.full(n, 0.6), "q": np.full(n, 0.7), "beta": np.full(n, 30.0),
    })])

    def run(noise: bool):
        config = VisitInjectConfig()
        config.add_noise = noise
        return inject_sources(sim.visit_image, catalog, flat=sim.flat, illumination=None, config=config,
                              rng=np.random.default_rng(3)).image

    noisy, noiseless = run(True), run(False)
    vi = sim.visit_image
    i0, v0 = vi.image.array.astype(float), vi.variance.array.astype(float)
    return DetectorPixels(
        original_image=i0, original_variance=v0,
        image=noisy.image.array.astype(float), variance=noisy.variance.array.astype(float),
        flat=sim.flat.image.array.astype(float), flat_variance=sim.flat.variance.array.astype(float),
        scaling=sim.scaling, injected=noisy.mask.get("INJECTED"),
        model=noiseless.image.array.astype(float) - i0, expected_variance=noiseless.variance.array.astype(float) - v0,
        bad=vi.mask.get("SATURATED") | noisy.mask.get("SATURATED"),
        amp_index=amplifier_index_map(SHAPE, [a.bbox for a in vi.detector.amplifiers]),
        read_noise=sim.read_noise_map,
    )


@pytest.fixture(scope="module")
def u_band() -> DetectorPixels:
    return _pixels("u", 5)


def test_correct_injection_passes(u_band) -> None:
    s = injection_statistics([u_band])
    assert s.n_real > 100 and s.n_injected > 300 and s.n_ks > 100
    assert s.slope_real == pytest.approx(1.0, abs=1e-4)
    assert s.slope_injected == pytest.approx(s.slope_real, rel=1e-4)
    assert s.noise_ratio == pytest.approx(1.0, abs=max(4 * s.noise_ratio_error, 0.03))
    assert s.noise_ratio_error < 0.03
    assert s.ks_pvalue > 1e-3
    assert s.relation_rms < 1e-5
    result = verdict(s)
    assert all(c.passed for c in result.checks), result.describe()
    assert result.passed


def test_upstream_injection_is_flagged_in_u(u_band) -> None:
    fit = fit_upstream_slopes(u_band.original_image, u_band.original_variance, bad=u_band.bad,
                              amp_index=u_band.amp_index)
    slope = fit.on(u_band.amp_index)
    image, variance = upstream_injection(
        u_band.original_image, u_band.original_variance, u_band.model, slope=slope, rng=np.random.default_rng(1)
    )
    upstream = dataclasses.replace(u_band, image=image, variance=variance,
                                   expected_variance=slope * np.clip(u_band.model, 0, None))
    s = injection_statistics([upstream])
    # The per-amplifier fit finds ISR's c/f on average (nJy: c ≈ 3.05 nJy/e⁻ in u) ...
    assert np.median(fit.slopes) == pytest.approx(np.median(u_band.scaling / u_band.flat), rel=0.1)
    # ... the recorded variance is s·M, the realized one M/s: ratio 1/s² ≈ 0.1.
    # Per pixel E[(ΔI − M)²]/E[ΔV] = 1/s² of its amplifier; k̂ weights pixels by λ/(1 + 2λ), λ = M·g.
    used = u_band.injected & (u_band.model > 0) & np.isfinite(u_band.gain)
    lam = (u_band.model * u_band.gain)[used]
    weights = lam / (1 + 2 * lam)
    expected = float(np.sum(weights * slope[used] ** -2.0) / np.sum(weights))
    assert s.noise_ratio == pytest.approx(expected, abs=4 * s.noise_ratio_error), (s.noise_ratio, expected)
    assert s.noise_ratio < 0.2
    # ... and the pixels leave the per-pixel relation: residual spread ≈ spread of s·g within an amplifier.
    assert s.ks_pvalue < 1e-10
    assert np.std(s.injected.residual) > 0.02
    assert np.std(s.real.residual) < 1e-4
    result = verdict(s)
    assert not result["noise_ratio"].passed
    assert not result["ks"].passed and not result["relation"].passed and not result.passed


def test_relation_residual_is_zero_for_the_isr_model_and_g_over_gbar_for_one_gain() -> None:
    """The ISR variance of n added pre-flat electrons, with the flat-variance term, gives r = 0."""
    rng = np.random.default_rng(4)
    flat = rng.uniform(0.1, 1.2, 10_000)
    flat_variance = flat / 1e6
    c, sigma = 3.0, 8.0
    signal = rng.poisson(80.0 * flat).astype(float) + sigma * rng.standard_normal(flat.size)
    signal = np.clip(signal, 1.0, None)
    # ISR (doc/isrinject/design.md, R = 1): V₀ = c²·[(S + σ²)/f² + (S/f)²·V_f/f²], I₀ = c·(S/f − B).
    v0 = c**2 * ((signal + sigma**2) / flat**2 + (signal / flat) ** 2 * flat_variance / flat**2)
    i0 = c * (signal / flat - 80.0)
    n = rng.poisson(5000.0 * flat).astype(float)
    image = i0 + c * n / flat
    variance = v0 + c**2 * n / flat**2 + c**2 * flat_variance / flat**4 * (2 * signal * n + n**2)
    r = relation_residual(i0, v0, image, variance, flat, c, flat_variance=flat_variance, read_noise=sigma)
    assert np.max(np.abs(r)) < 1e-9
    # One gain ḡ = mean(g): ΔV = ΔI/ḡ gives r = g/ḡ − 1 (no flat-variance term).
    g = flat / c
    gbar = g.mean()
    r_one = relation_residual(i0, v0, image, v0 + (image - i0) / gbar, flat, c, read_noise=sigma)
    np.testing.assert_allclose(r_one, g / gbar - 1, rtol=0, atol=1e-9)


def test_realized_noise_ratio_on_poisson_draws() -> None:
    rng = np.random.default_rng(7)
    gain = rng.uniform(0.3, 1.2, 200_000)  # e⁻ per unit
    model = rng.exponential(50.0, gain.size)  # units
    lam = model * gain
    delta = rng.poisson(lam) / gain
    ratio, error, n = realized_noise_ratio(delta, model, model / gain, gain)
    assert n == gain.size
    assert ratio == pytest.approx(1.0, abs=4 * error)
    # Recording twice the variance halves the ratio.
    ratio2, _, _ = realized_noise_ratio(delta, model, 2 * model / gain, gain)
    assert ratio2 == pytest.approx(0.5, abs=4 * error)


def test_baseline_recovers_sky_and_read_noise() -> None:
    rng = np.random.default_rng(2)
    flat = rng.uniform(0.5, 1.1, (64, 64))
    amp = np.zeros((64, 64), int)
    amp[:, 32:] = 1
    sigma2 = np.where(amp == 0, 30.0, 50.0)
    s = rng.poisson(flat * 200.0).astype(float)
    c = 2.0
    image = c * (s / flat - 200.0)
    variance = c**2 * (s + sigma2) / flat**2
    x, y = flat_normalised(image, variance, flat / c)
    fit = fit_baseline(x, y, flat, good=np.ones_like(flat, bool), amp_index=amp)
    np.testing.assert_allclose(fit.offset, sigma2, atol=1e-6)
    np.testing.assert_allclose(fit.sky, 200.0 * flat, rtol=1e-8)


def test_matched_subsample_has_equal_histograms() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(3, 1, 5000), rng.lognormal(4, 0.5, 800)
    ia, ib = matched_subsample(a, b, n_bins=10, rng=rng)
    assert len(ia) == len(ib) > 100
    edges = np.geomspace(max(a.min(), b.min()), min(a.max(), b.max()), 11)
    np.testing.assert_array_equal(np.histogram(a[ia], edges)[0], np.histogram(b[ib], edges)[0])
