"""`isrinject.diagnostics.photometry` on a synthetic image whose noise is known exactly (fast).

The demo-scale check (isrinject against the simulator's truth) is
tests/test_catalog_checks.py (slow); this one pins the measurement itself:
stars drawn with a Gaussian PSF on Gaussian noise of a known, constant
variance.  With the variance plane right the forced-photometry pulls are unit
normal (no weight–noise correlation: the variance is not measured from the
noisy signal); with the variance plane 4× too large they have width ½.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import Table
from lsst.images import Box
from lsst.images.psfs import GaussianPointSpreadFunction

from isrinject.diagnostics.photometry import detect, isolated, measure_stars, psf_fwhm

BBOX = Box.factory[0:240, 0:240]
SIGMA_PSF = 1.8  # pixels
NOISE = 10.0  # image units per pixel
N_SIDE = 7  # 7 × 7 stars, 30 px apart (≥ 4 FWHM: isolated)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, GaussianPointSpreadFunction, Table]:
    psf = GaussianPointSpreadFunction(SIGMA_PSF, bounds=BBOX, stamp_size=31)
    rng = np.random.default_rng(28)
    grid = 30.0 * np.arange(N_SIDE) + 30.0
    x = np.repeat(grid, N_SIDE) + rng.uniform(-0.5, 0.5, N_SIDE**2)
    y = np.tile(grid, N_SIDE) + rng.uniform(-0.5, 0.5, N_SIDE**2)
    flux = rng.uniform(2e3, 2e4, N_SIDE**2)  # S/N ≈ 30 … 300 for σ_PSF 1.8 px, noise 10
    image = rng.normal(0.0, NOISE, BBOX.shape)
    for xi, yi, fi in zip(x, y, flux):
        stamp = psf.compute_stellar_image(x=float(xi), y=float(yi))
        image[stamp.bbox.y.start - BBOX.y.start:stamp.bbox.y.stop - BBOX.y.start,
              stamp.bbox.x.start - BBOX.x.start:stamp.bbox.x.stop - BBOX.x.start] += fi * stamp.array
    fwhm = psf_fwhm(psf, 120.0, 120.0)
    stars = Table({"x": x, "y": y, "mag": np.full(len(x), 20.0), "flux": flux, "fwhm": np.full(len(x), fwhm)})
    return image, psf, stars


def test_fwhm_of_a_gaussian_psf(scene) -> None:
    _, psf, _ = scene
    # FWHM = 2√(2 ln 2) σ; the kernel is sampled on pixels (σ² grows by 1/12 px² at most).
    assert psf_fwhm(psf, 60.0, 90.0) == pytest.approx(2 * math.sqrt(2 * math.log(2)) * SIGMA_PSF, rel=0.03)


def test_pulls_are_unit_normal_when_the_variance_is_right(scene) -> None:
    image, psf, stars = scene
    measured = measure_stars(image, np.full(image.shape, NOISE**2), None, psf, BBOX, stars)
    pulls = np.asarray(measured["pull"])
    n = len(pulls)
    assert n == N_SIDE**2 and np.all(np.isfinite(pulls))
    # σ(mean) = 1/√n, σ(std) = 1/√(2n): 4σ bands (n = 49: ±0.57, ±0.40).
    assert abs(float(np.mean(pulls))) < 4 / math.sqrt(n), pulls
    assert abs(float(np.std(pulls, ddof=1)) - 1.0) < 4 / math.sqrt(2 * n), pulls
    # The flux errors are the PSF-weighted noise: σ_F = σ / √ΣP² = σ · √(4π) σ_PSF for a Gaussian.
    expected_error = NOISE * math.sqrt(4 * math.pi) * SIGMA_PSF
    assert np.median(measured["psf_flux_err"]) == pytest.approx(expected_error, rel=0.05)
    assert np.all(measured["detected"])


def test_pulls_are_too_narrow_when_the_variance_is_too_large(scene) -> None:
    image, psf, stars = scene
    measured = measure_stars(image, np.full(image.shape, 4 * NOISE**2), None, psf, BBOX, stars)
    std = float(np.std(measured["pull"], ddof=1))
    n = len(stars)
    assert abs(std - 0.5) < 4 * 0.5 / math.sqrt(2 * n), std


@pytest.mark.filterwarnings("ignore::photutils.utils.exceptions.NoDetectionsWarning")  # (the pure-noise image)
def test_detection_and_isolation(scene) -> None:
    image, psf, stars = scene
    fwhm = float(stars["fwhm"][0])
    # Pure noise has no 5σ matched-filter detection; the stars are each a segment.
    noise = np.random.default_rng(1).normal(0.0, NOISE, BBOX.shape)
    assert detect(noise, np.full(BBOX.shape, NOISE**2), None, fwhm).max() == 0
    segments = detect(image, np.full(BBOX.shape, NOISE**2), None, fwhm)
    assert len(np.unique(segments[segments > 0])) == len(stars)
    # A second source 2 FWHM from a star makes it not isolated; so does leaving the image.
    x, y = np.asarray(stars["x"]), np.asarray(stars["y"])
    others_x, others_y = np.append(x, x[0] + 2 * fwhm), np.append(y, y[0])
    empty = np.zeros(BBOX.shape, np.int64)
    alone = isolated(x, y, others_x, others_y, np.asarray(stars["fwhm"]), empty, BBOX)
    assert not alone[0] and alone[1:].all()
    edge = isolated(np.array([2.0]), np.array([120.0]), np.array([2.0]), np.array([120.0]),
                    np.array([fwhm]), empty, BBOX)
    assert not edge[0]
