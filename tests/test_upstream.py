"""The emulation of lsst.source.injection HEAD's visit-image variance and noise (diagnostics.upstream).

Known answers on synthetic planes: the straight-line slope, each fallback of
the per-amplifier fit, and the moments of the injected noise (recorded
variance s·M, realized variance M/s) with tolerances from the sample size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from isrinject.diagnostics.upstream import (
    UPSTREAM_BAD_MASK_NAMES,
    fit_upstream_slopes,
    upstream_injection,
    variance_slope,
)


def _planes(slopes: list[float], n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row of ``n`` pixels per amplifier with V = s·I + 5 exactly."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(-50, 500, (len(slopes), n))
    variance = np.asarray(slopes)[:, None] * image + 5.0
    amp = np.repeat(np.arange(len(slopes))[:, None], n, axis=1)
    return image, variance, amp


def test_mask_planes_are_the_peer_defaults() -> None:
    assert UPSTREAM_BAD_MASK_NAMES == ("BAD", "CR", "CROSSTALK", "INTRP", "NO_DATA", "SAT", "SUSPECT", "UNMASKEDNAN")


def test_one_slope_per_amplifier() -> None:
    image, variance, amp = _planes([0.5, 2.0, 3.0])
    fit = fit_upstream_slopes(image, variance, amp_index=amp)
    np.testing.assert_allclose(fit.slopes, [0.5, 2.0, 3.0], rtol=1e-10)
    assert fit.fallback == ""
    np.testing.assert_allclose(fit.on(amp)[:, 0], [0.5, 2.0, 3.0])
    # Masked pixels are left out of the fit: corrupt some and mask them.
    bad = np.zeros(image.shape, bool)
    bad[1, :100] = True
    variance[1, :100] = 1e6
    assert fit_upstream_slopes(image, variance, bad=bad, amp_index=amp).slopes[1] == pytest.approx(2.0, rel=1e-10)
    assert abs(variance_slope(image[1], variance[1]) - 2.0) > 1.0  # unmasked, the outliers pull it away


def test_fallbacks() -> None:
    # A negative slope takes the median of the other amplifiers' gains 1/s (here 1/median(1/2, 1/4) = 8/3).
    image, variance, amp = _planes([2.0, -1.0, 4.0])
    fit = fit_upstream_slopes(image, variance, amp_index=amp)
    assert fit.slopes[1] == pytest.approx(1 / np.median([1 / 2.0, 1 / 4.0]))
    assert fit.fallback == "median of the other amplifiers" and fit.fitted[1] == pytest.approx(-1.0)
    # No amplifier fits (every one has a single usable pixel): one fit over the whole image.
    image, variance, amp = _planes([3.0, 3.0], n=50)
    bad = np.ones(image.shape, bool)
    bad[0, 0] = bad[1, 1] = False
    fit = fit_upstream_slopes(image, variance, bad=bad, amp_index=amp)
    assert fit.fallback == "whole-image fit" and fit.slopes == pytest.approx([3.0, 3.0])
    # Nothing fits at all: s = 1.
    image, variance, amp = _planes([-2.0, -3.0])
    fit = fit_upstream_slopes(image, variance, amp_index=amp)
    assert fit.fallback == "s = 1" and list(fit.slopes) == [1.0, 1.0]


def test_noise_is_poisson_of_s_m_over_s() -> None:
    """ΔV = n, ΔI = n/s with n ~ Poisson(s·M): E[ΔV] = s·M, Var(ΔI) = M/s, so realized/recorded = 1/s²."""
    n = 200_000
    model = np.full(n, 40.0)
    zeros = np.zeros(n)
    for s in (0.5, 3.0):
        image, variance = upstream_injection(zeros, zeros, model, slope=s, rng=np.random.default_rng(1))
        # Standard errors: Var(n) = λ = s·M per pixel.
        lam = s * 40.0
        assert np.mean(variance) == pytest.approx(lam, abs=5 * math.sqrt(lam / n))
        np.testing.assert_allclose(variance, image * s, rtol=1e-12)  # recorded variance = s × injected image
        realized = np.var(image)
        # Var of a sample variance ≈ 2σ⁴/n (Poisson with λ ≫ 1 is near-Gaussian).
        assert realized == pytest.approx(40.0 / s, rel=5 * math.sqrt(2 / n))
        assert realized / np.mean(variance) == pytest.approx(1 / s**2, rel=0.02)
    # Without noise: ΔI = M, ΔV = s·M; negative model pixels get no photons but keep ΔV = s·M.
    image, variance = upstream_injection(zeros[:3], zeros[:3], np.array([-1.0, 0.0, 2.0]), slope=2.0,
                                         rng=np.random.default_rng(0), add_noise=False)
    np.testing.assert_allclose(image, [-1.0, 0.0, 2.0])
    np.testing.assert_allclose(variance, [-2.0, 0.0, 4.0])
    image, variance = upstream_injection(zeros[:2], zeros[:2], np.array([-1.0, 0.0]), slope=2.0,
                                         rng=np.random.default_rng(0))
    np.testing.assert_allclose(image, [0.0, 0.0])
    np.testing.assert_allclose(variance, [-2.0, 0.0])
