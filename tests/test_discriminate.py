"""The classifier two-sample test (diagnostics.discriminate) on one simulated u-band detector.

180 real stars put into the observed scene by the simulator and 180 injected
stars of the same magnitudes, on distinct slots of a 24-pixel grid of a 512²
detector: the real stars must be found in the image alone; a classifier must
not tell isrinject's (or the simulator's physical) injection from the real
stars (AUC within 3σ of 0.5 for the sample size), and must tell the emulated
lsst.source.injection injection (noise off by 1/s² ≈ 0.1 in u) from them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from astropy.table import Table
from lsst.images import XY

from isrinject import VisitInjectConfig
from isrinject.demo.build import magnitude_range
from isrinject.diagnostics import photometry
from isrinject.diagnostics.discriminate import (
    FEATURES,
    discriminate,
    find_real_stars,
    roc_auc,
    roc_curve,
    star_features,
)
from isrinject.diagnostics.upstream import fit_upstream_slopes, upstream_injection
from isrinject.engine.catalog import compose_catalog
from isrinject.engine.inject import inject_sources
from isrinject.sim import amplifier_index_map, simulate_exposure

pytestmark = pytest.mark.slow

SHAPE = (512, 512)
N_STARS = 180
SEED = 7


def _null_sigma(n_real: int, n_injected: int) -> float:
    """Standard deviation of the AUC of uninformative scores (Mann–Whitney under the null)."""
    return math.sqrt((n_real + n_injected + 1) / (12 * n_real * n_injected))


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(SEED)
    xs, ys = np.meshgrid(np.arange(12.0, SHAPE[1] - 12, 24.0), np.arange(12.0, SHAPE[0] - 12, 24.0))
    slots = np.stack([xs.ravel(), ys.ravel()], axis=1)[rng.permutation(xs.size)] + rng.uniform(-1, 1, (xs.size, 2))
    bright, _ = magnitude_range("u")
    _, faint = magnitude_range("u", faint_snr=100.0)
    real = Table({"x": slots[:N_STARS, 0], "y": slots[:N_STARS, 1], "source_type": ["Star"] * N_STARS,
                  "mag": rng.uniform(bright, faint, N_STARS)})
    inj_xy = slots[N_STARS : 2 * N_STARS]
    common: dict[str, Any] = {"band": "u", "visit": 5, "detector": 0, "shape": SHAPE, "seed": SEED, "units": "nJy",
                              "background_sources": real, "n_background_stars": 10, "n_background_galaxies": 5}
    sim = simulate_exposure(**common)
    vi = sim.visit_image
    sky = vi.sky_projection.pixel_to_sky(XY(x=inj_xy[:, 0], y=inj_xy[:, 1]))
    mags = rng.uniform(bright, faint, N_STARS)
    catalog = compose_catalog([Table({"injection_id": np.arange(N_STARS), "ra": sky.ra.deg, "dec": sky.dec.deg,
                                      "source_type": ["Star"] * N_STARS, "mag": mags})])

    def run(noise: bool):
        config = VisitInjectConfig()
        config.add_noise = noise
        return inject_sources(vi, catalog, flat=sim.flat, illumination=None, config=config,
                              rng=np.random.default_rng(SEED)).image

    noisy, noiseless = run(True), run(False)
    i0, v0 = vi.image.array.astype(float), vi.variance.array.astype(float)
    bad = vi.mask.get("SATURATED") | noisy.mask.get("SATURATED")
    amp = amplifier_index_map(SHAPE, [a.bbox for a in vi.detector.amplifiers])
    slope = fit_upstream_slopes(i0, v0, bad=bad, amp_index=amp).on(amp)
    up_image, up_variance = upstream_injection(i0, v0, noiseless.image.array - i0, slope=slope,
                                               rng=np.random.default_rng(SEED))
    truth = simulate_exposure(**common, sources=Table({"x": inj_xy[:, 0], "y": inj_xy[:, 1],
                                                       "source_type": ["Star"] * N_STARS, "mag": mags})).visit_image
    fwhm = photometry.psf_fwhm(vi.psf, 256.0, 256.0)
    arms = {
        "isrinject": (noisy.image.array.astype(float), noisy.variance.array.astype(float)),
        "upstream": (up_image, up_variance),
        "truth": (truth.image.array.astype(float), truth.variance.array.astype(float)),
    }
    found = find_real_stars(i0, v0, bad, fwhm, inj_xy[:, 0], inj_xy[:, 1])
    features = {
        label: (star_features(image, variance, bad, vi.psf, np.asarray(found["x"]), np.asarray(found["y"]), fwhm),
                star_features(image, variance, bad, vi.psf, inj_xy[:, 0], inj_xy[:, 1], fwhm))
        for label, (image, variance) in arms.items()
    }
    return real, found, features


def test_real_stars_come_from_the_image(field) -> None:
    planted, found, _ = field
    d = np.hypot(np.asarray(found["x"])[:, None] - np.asarray(planted["x"])[None, :],
                 np.asarray(found["y"])[:, None] - np.asarray(planted["y"])[None, :])
    # Almost every detection is a planted real star (the random scene adds a few), within a fraction of a pixel.
    assert np.mean(d.min(axis=1) < 0.5) > 0.9
    assert len(found) > 0.8 * N_STARS, len(found)


def test_features_measure_the_noise(field) -> None:
    _, _, features = field
    real, isr = features["isrinject"]
    _, up = features["upstream"]
    for table in (real, isr):
        # The realized/recorded variance ratio in the wings is 1 for real and isrinject stars alike.
        ring = np.asarray(table["chi2_r2"])
        ring = ring[np.isfinite(ring)]
        assert np.median(ring) == pytest.approx(1.0, abs=0.1)
    # The peer package's noise is Poisson(s·M)/s: the core χ² of bright stars is ≈ 1/s² ≈ 0.1 in u.
    bright = np.asarray(up["peak_snr"]) > 50
    assert np.median(np.asarray(up["chi2_r0"])[bright]) < 0.3
    assert set(FEATURES) <= set(real.colnames)


def test_isrinject_cannot_be_told_apart_upstream_can(field) -> None:
    _, _, features = field
    results = {label: discriminate(label, real, injected, seed=SEED) for label, (real, injected) in features.items()}
    for d in results.values():
        print(d.label, d.auc, d.auc_interval, d.n_real, d.auc_high_snr, d.auc_high_snr_interval, d.n_real_high_snr)
    for label in ("isrinject", "truth"):
        d = results[label]
        assert d.n_real >= 100 and d.n_real == d.n_injected, d
        # Under the null hypothesis the AUC is 0.5 ± σ(n); 3σ one-sided.
        assert d.auc < 0.5 + 3 * _null_sigma(d.n_real, d.n_injected), d
        assert d.auc_interval[0] < 0.5 + 1.5 * _null_sigma(d.n_real, d.n_injected) and d.auc_interval[0] < d.auc
        assert d.auc_high_snr < 0.5 + 3 * _null_sigma(d.n_real_high_snr, d.n_injected_high_snr), d
    d = results["upstream"]
    assert d.auc >= 0.9 and d.auc_high_snr >= 0.9, d
    assert d.auc_interval[0] > 0.8


def test_auc_matches_the_definition() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + 0.5 * labels
    scores[:20] = 0.0  # ties count ½
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr = roc_curve(labels, scores)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)
