"""The verdict on a sparse u-band field: injected stars are the only sources.

A simulated u-band visit (the simulator's flat structure: PRNU, dust donuts,
amplifier steps, vignetting down to f ≈ 0.1 in the far corner; sky 80 e⁻;
ComCam R22 S11 read noise 5.8–8.0 e⁻) with no real sources at all, exactly
the situation where a real-vs-injected slope or KS comparison has nothing to
compare with.  The correct injection must PASS on the checks that can run
(per-pixel relation residual, realized-noise ratio) with slopes and KS
reported as not available; the emulated lsst.source.injection injection of
the same model on the same data (one slope per amplifier) must FAIL.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy.table import Table
from lsst.images import XY

from isrinject import VisitInjectConfig
from isrinject.diagnostics.figures import histogram_bins, plot_flux_variance
from isrinject.diagnostics.results import VisitDiagnosis
from isrinject.diagnostics.stats import DetectorPixels, injection_statistics
from isrinject.diagnostics.upstream import fit_upstream_slopes, upstream_injection
from isrinject.diagnostics.verdict import MIN_REAL_PIXELS, RELATION_TOLERANCE, verdict
from isrinject.engine.catalog import compose_catalog
from isrinject.engine.inject import inject_sources
from isrinject.sim import (
    amplifier_boxes,
    amplifier_index_map,
    make_flat,
    simulate_exposure,
)

SHAPE = (256, 256)
#: Star positions (x, y) [pixels] and AB magnitudes; the first three sit in the vignetted corner.
STARS = [(247.0, 248.0, 18.0), (236.0, 250.0, 18.5), (250.0, 233.0, 19.0), (60.0, 200.0, 19.5),
         (128.0, 100.0, 20.5), (200.0, 60.0, 19.0)]


@pytest.fixture(scope="module")
def sparse() -> tuple[DetectorPixels, np.ndarray]:
    boxes = amplifier_boxes(SHAPE)
    flat = make_flat(SHAPE, band="u", amp_boxes=boxes, rng=np.random.default_rng(11), vignetting_floor=0.05)
    sim = simulate_exposure(band="u", visit=21, detector=0, shape=SHAPE, seed=4, units="nJy", flat=flat,
                            n_background_stars=0, n_background_galaxies=0)
    vi = sim.visit_image
    xs, ys, mags = (np.array(column) for column in zip(*STARS))
    sky = vi.sky_projection.pixel_to_sky(XY(x=xs, y=ys))
    catalog = compose_catalog([Table({"injection_id": np.arange(len(xs)), "ra": sky.ra.deg, "dec": sky.dec.deg,
                                      "source_type": ["Star"] * len(xs), "mag": mags})])

    def run(noise: bool):
        config = VisitInjectConfig()
        config.add_noise = noise
        return inject_sources(vi, catalog, flat=sim.flat, illumination=None, config=config,
                              rng=np.random.default_rng(8))

    noisy, noiseless = run(True), run(False)
    i0, v0 = vi.image.array.astype(float), vi.variance.array.astype(float)
    pixels = DetectorPixels(
        original_image=i0, original_variance=v0,
        image=noisy.image.image.array.astype(float), variance=noisy.image.variance.array.astype(float),
        flat=sim.flat.image.array.astype(float), flat_variance=sim.flat.variance.array.astype(float),
        scaling=sim.scaling, injected=noisy.image.mask.get("INJECTED"),
        model=noiseless.image.image.array.astype(float) - i0,
        expected_variance=noiseless.image.variance.array.astype(float) - v0,
        bad=vi.mask.get("SATURATED") | noisy.image.mask.get("SATURATED"),
        amp_index=amplifier_index_map(SHAPE, boxes), read_noise=sim.read_noise_map,
    )
    return pixels, sim.flat.image.array.astype(float)


def test_field_is_sparse_and_vignetted(sparse) -> None:
    pixels, flat = sparse
    assert 0.08 < flat.min() < 0.12
    # The injected stars sit where the flat is low.
    for x, y, _ in STARS[:3]:
        assert flat[int(y), int(x)] < 0.3
    with np.errstate(invalid="ignore"):
        bright_real = pixels.original_image > 5 * np.sqrt(pixels.original_variance)
    # Only noise peaks: a 5σ pixel occurs ~ 2.9e-7 × 65536 ≈ 0.02 times.
    assert bright_real.sum() <= 2


def test_correct_injection_passes_on_the_checks_that_run(sparse) -> None:
    pixels, _ = sparse
    s = injection_statistics([pixels])
    result = verdict(s)
    assert s.n_real < MIN_REAL_PIXELS
    assert result["slopes"].passed is None and "real pixels" in result["slopes"].reason
    assert result["ks"].passed is None and "real pixels" in result["ks"].reason
    # Every injected pixel on the ISR relation of its own pixel (float32 rounding only).
    assert s.n_relation > 200
    assert s.relation_rms < 1e-5, s.relation_rms
    assert result["relation"].passed
    # The realized noise matches the recorded variance.
    assert s.noise_ratio == pytest.approx(1.0, abs=3 * s.noise_ratio_error)
    assert s.noise_ratio_error < 0.05
    assert result["noise_ratio"].passed
    assert result.passed, result.describe()


def test_upstream_injection_fails_on_the_same_data(sparse) -> None:
    pixels, _ = sparse
    fit = fit_upstream_slopes(pixels.original_image, pixels.original_variance, bad=pixels.bad,
                              amp_index=pixels.amp_index)
    slope = fit.on(pixels.amp_index)
    image, variance = upstream_injection(pixels.original_image, pixels.original_variance, pixels.model, slope=slope,
                                         rng=np.random.default_rng(2))
    upstream = dataclasses.replace(pixels, image=image, variance=variance,
                                   expected_variance=slope * np.clip(pixels.model, 0, None))
    s = injection_statistics([upstream])
    result = verdict(s)
    # Its noise is Poisson(s·M)/s: variance M/s against the recorded s·M, so the ratio is 1/s² (u, nJy: s ≈ 3).
    inj = pixels.injected & (pixels.model > 0)
    # Per pixel E[(ΔI − M)²]/E[ΔV] = 1/s² of its amplifier; k̂ weights pixels by λ/(1 + 2λ), λ = M·g.
    used = pixels.injected & (pixels.model > 0) & np.isfinite(pixels.gain)
    lam = (pixels.model * pixels.gain)[used]
    weights = lam / (1 + 2 * lam)
    expected = float(np.sum(weights * slope[used] ** -2.0) / np.sum(weights))
    assert s.noise_ratio == pytest.approx(expected, abs=4 * s.noise_ratio_error), (s.noise_ratio, expected)
    assert not result["noise_ratio"].passed
    # ... and the pixels are off their own ISR relation by s·g − 1 (the amplifier's vignetting gradient).
    ratio = (pixels.gain * slope)[inj & np.isfinite(pixels.gain)]
    assert np.std(ratio) > 0.05
    assert s.relation_rms > 30 * RELATION_TOLERANCE, s.relation_rms
    assert not result["relation"].passed
    assert not result.passed, result.describe()


def test_figure_resolves_the_residuals(sparse, tmp_path) -> None:
    """The relation residuals (≈ 10⁻⁷) spread over many bins; the figure is written with no real pixels."""
    import matplotlib.image

    pixels, _ = sparse
    s = injection_statistics([pixels])
    edges, exponent = histogram_bins([s.relation])
    counts, _ = np.histogram(np.clip(s.relation / 10.0**exponent, edges[0], edges[-1]), edges)
    assert exponent <= -6 and counts.max() < 0.3 * len(s.relation) and (counts > 0).sum() >= 15, (exponent, counts)
    diagnosis = VisitDiagnosis(visit=21, band="u", detectors=[0], unit="nJy", statistics=s, verdict=verdict(s),
                               upstream=None, upstream_verdict=None, sources=Table(), summary={})
    png = plot_flux_variance(diagnosis, tmp_path / "sparse.png")
    image = matplotlib.image.imread(png)
    assert image.shape[1] > 1500 and np.std(image[..., :3]) > 0.05
