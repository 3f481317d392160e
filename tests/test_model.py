"""The pixel model against the equations of doc/isrinject/design.md, with real numbers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from isrinject.engine.model import PixelTerms, effective_gain, reconstruct_pre_flat_electrons, usable_flat
from isrinject.engine.model import inject_pixels as _inject_pixels

N_PIXELS = 200_000
# The ratio var(ΔI − M)/mean(ΔV) over N Poisson pixels has a relative
# standard deviation ≈ sqrt(2/N) (≈0.0032 for 2e5); 0.02 is > 6σ.
RATIO_TOL = 0.02
assert 6 * np.sqrt(2 / N_PIXELS) < RATIO_TOL


def inject_pixels(model, *, pre_flat_electrons=None, flat_variance=None, saturation=None, **kwargs):
    """`isrinject.engine.model.inject_pixels` on one stamp, its per-pixel results on the stamp's shape."""
    terms = PixelTerms(pre_flat_electrons=pre_flat_electrons, flat_variance=flat_variance, saturation=saturation)
    result = _inject_pixels(model, terms=terms, **kwargs)
    return SimpleNamespace(
        delta_image=result.on_values(result.delta_image),
        delta_variance=result.on_values(result.delta_variance),
        electrons=result.on_values(result.electrons),
        saturated=result.on_values(result.saturated),
        expected_electrons=result.expected_electrons.reshape(result.shape),
        no_photons=result.no_photons.reshape(result.shape),
    )


def _scaling_for_units(units: str) -> float:
    # nJy images: c ≈ 0.6 nJy per electron (a typical Rubin zero point);
    # electron images: c = 1.
    return 0.6 if units == "nJy" else 1.0


@pytest.mark.parametrize("units", ["electron", "nJy"])
@pytest.mark.parametrize("slope", [0.3, 0.5, 1.0, 2.0, 4.0])
def test_realized_noise_matches_injected_variance(units: str, slope: float) -> None:
    """var(ΔI − M) / mean ΔV = 1 for per-pixel slopes 1/(f·R/c) from 0.3 to 4."""
    rng = np.random.default_rng(1234)
    c = _scaling_for_units(units)
    # Split the slope between flat and illumination so both paths are used:
    # slope = c/(f·R)  →  f·R = c/slope.
    illumination = 1.1
    flat = np.full(N_PIXELS, c / slope / illumination)
    # Model brightness: ~50 electrons per pixel, in image units.
    model = np.full(N_PIXELS, 50.0 / (flat[0] * illumination / c))
    result = inject_pixels(
        model, flat=flat, scaling=c, illumination=illumination, rng=rng, add_noise=True
    )
    residual = result.delta_image - model
    ratio = residual.var() / result.delta_variance.mean()
    assert ratio == pytest.approx(1.0, abs=RATIO_TOL)
    # The slope of the recorded variance against the injected flux is c/(f·R).
    assert result.delta_variance.sum() / result.delta_image.sum() == pytest.approx(slope, rel=1e-12)
    # Flux is conserved in expectation: mean ΔI = M within 5σ of its error.
    sigma_mean = np.sqrt(model[0] * slope / N_PIXELS)
    assert abs(result.delta_image.mean() - model[0]) < 5 * sigma_mean


def test_structured_flat_realized_noise() -> None:
    """A flat varying by 10× across pixels: each pixel gets its own slope."""
    rng = np.random.default_rng(7)
    c = 0.6
    flat = rng.uniform(0.2, 2.0, N_PIXELS)
    flat_variance = (0.002 * flat) ** 2
    model = rng.uniform(0.0, 200.0, N_PIXELS)
    signal = rng.uniform(0.0, 5000.0, N_PIXELS)
    result = inject_pixels(
        model,
        flat=flat,
        flat_variance=flat_variance,
        scaling=c,
        pre_flat_electrons=signal,
        rng=rng,
    )
    # Normalised residuals (ΔI − M)/sqrt(E[ΔV]) must have unit variance; the
    # V_f term is not Poisson noise of the injection, so compare with the
    # Poisson part only (the V_f part is added for the variance plane).
    poisson_expected = c * model / flat
    z = (result.delta_image - model) / np.sqrt(poisson_expected)
    assert z.var() == pytest.approx(1.0, abs=RATIO_TOL)


def test_delta_variance_formula_to_float_precision() -> None:
    """ΔV matches the formula of doc/isrinject/design.md exactly, with every term present."""
    rng = np.random.default_rng(99)
    shape = (64, 64)
    c = 0.7
    flat = rng.uniform(0.3, 1.5, shape)
    flat_variance = rng.uniform(1e-6, 1e-4, shape)
    illumination = rng.uniform(0.9, 1.1, shape)
    signal = rng.uniform(0.0, 2e4, shape)
    model = rng.uniform(0.0, 500.0, shape)
    result = inject_pixels(
        model,
        flat=flat,
        flat_variance=flat_variance,
        illumination=illumination,
        scaling=c,
        pre_flat_electrons=signal,
        rng=rng,
    )
    n = result.electrons
    np.testing.assert_allclose(result.expected_electrons, model * flat * illumination / c, rtol=1e-14)
    assert np.all(n == np.round(n))
    expected_dv = c**2 * n / (flat * illumination) ** 2 + (c / illumination) ** 2 * (
        flat_variance / flat**4
    ) * (2 * signal * n + n**2)
    np.testing.assert_allclose(result.delta_variance, expected_dv, rtol=1e-13, atol=0)
    np.testing.assert_allclose(result.delta_image, c * n / (flat * illumination), rtol=1e-13)


def test_injected_pixel_lands_on_the_real_relation() -> None:
    """(I + ΔI, V + ΔV) equals what ISR makes from S + n, pixel by pixel."""
    rng = np.random.default_rng(5)
    shape = (50, 50)
    c, read_noise = 0.8, 9.0
    flat = rng.uniform(0.3, 1.3, shape)
    flat_variance = (0.003 * flat) ** 2
    signal = rng.poisson(3000.0, shape).astype(float)

    def isr(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = c * s / flat
        variance = c**2 * ((s + read_noise**2) / flat**2 + (s / flat) ** 2 * flat_variance / flat**2)
        return image, variance

    image, variance = isr(signal)
    recovered = reconstruct_pre_flat_electrons(
        variance, flat, c, read_noise, flat_variance=flat_variance
    )
    np.testing.assert_allclose(recovered, signal, rtol=1e-9, atol=1e-6)
    model = rng.uniform(0.0, 1000.0, shape)
    result = inject_pixels(
        model, flat=flat, flat_variance=flat_variance, scaling=c, pre_flat_electrons=recovered, rng=rng
    )
    truth_image, truth_variance = isr(signal + result.electrons)
    np.testing.assert_allclose(image + result.delta_image, truth_image, rtol=1e-12)
    np.testing.assert_allclose(variance + result.delta_variance, truth_variance, rtol=1e-10)


def test_no_noise_gives_the_model_exactly() -> None:
    model = np.array([0.0, 1.5, 100.0, 1e6])
    result = inject_pixels(model, flat=0.5, scaling=2.0, rng=None, add_noise=False)
    np.testing.assert_allclose(result.delta_image, model, rtol=1e-15)
    np.testing.assert_allclose(result.delta_variance, model * 2.0 / 0.5, rtol=1e-15)


def test_no_photons_where_flat_unusable() -> None:
    model = np.full(6, 100.0)
    flat = np.array([1.0, 0.0, -0.5, np.nan, np.inf, 0.8])
    excluded = np.array([False, False, False, False, False, True])
    result = inject_pixels(model, flat=flat, scaling=1.0, rng=np.random.default_rng(0), excluded=excluded)
    assert result.no_photons.tolist() == [False, True, True, True, True, True]
    assert np.all(result.delta_image[1:] == 0.0) and np.all(result.delta_variance[1:] == 0.0)
    assert result.delta_image[0] > 0
    assert np.all(np.isfinite(result.delta_variance))
    assert usable_flat(flat, illumination=np.array([1, 1, 1, 1, 1, 0.0])).tolist() == [
        True, False, False, False, False, False,
    ]


def test_saturation_in_pre_flat_electrons() -> None:
    model = np.array([10.0, 10.0, 10.0])
    flat = np.array([0.5, 1.0, 2.0])
    # 10 image units → 5, 10, 20 electrons; S = 90 e⁻; level 100 e⁻.
    result = inject_pixels(
        model, flat=flat, scaling=1.0, rng=None, add_noise=False, pre_flat_electrons=90.0, saturation=100.0
    )
    assert result.saturated.tolist() == [False, False, True]


def test_effective_gain() -> None:
    gain = effective_gain([0.5, 0.0, 2.0], 0.25, illumination=[2.0, 1.0, 1.0])
    assert gain[0] == pytest.approx(4.0) and np.isnan(gain[1]) and gain[2] == pytest.approx(8.0)


def test_poisson_handles_tiny_and_huge_expectations() -> None:
    rng = np.random.default_rng(3)
    model = np.concatenate([np.full(100_000, 1e-3), np.full(10, 1e9)])
    result = inject_pixels(model, flat=1.0, scaling=1.0, rng=rng)
    # Tiny λ: almost all zero, mean ≈ 1e-3 (Poisson, 5σ bound).
    tiny = result.electrons[:100_000]
    assert abs(tiny.mean() - 1e-3) < 5 * np.sqrt(1e-3 / 100_000)
    assert np.all(np.abs(result.electrons[100_000:] - 1e9) < 6 * np.sqrt(1e9))


def test_add_noise_requires_rng() -> None:
    with pytest.raises(ValueError, match="rng=None"):
        inject_pixels(np.ones(3), flat=1.0, scaling=1.0, rng=None)


def test_sparse_poisson_draw_is_exact_in_distribution() -> None:
    """draw_electrons draws faint pixels (λ < 0.1) jointly (Poisson total,
    multinomial split) and bright ones one by one: per pixel, the mean and
    variance equal λ and P(n = 0) = exp(−λ), within 5σ of 40,000 draws."""
    from isrinject.engine.model import draw_electrons

    rng = np.random.default_rng(2026)
    expected = np.array([0.002, 0.02, 0.08, 0.099, 0.1, 0.7, 3.0, 40.0])
    trials = 40_000
    counts = np.zeros((trials, expected.size))
    for k in range(trials):
        index, electrons = draw_electrons(expected, rng)
        assert np.all(np.diff(index) > 0) and np.all(electrons > 0)
        counts[k, index] = electrons
    mean, var = counts.mean(axis=0), counts.var(axis=0)
    sigma_mean = np.sqrt(expected / trials)
    assert np.all(np.abs(mean - expected) < 5 * sigma_mean), (mean, expected)
    # var of the sample variance of a Poisson: (λ + 2λ²)/N (fourth central moment λ + 3λ²).
    sigma_var = np.sqrt((expected + 2 * expected**2) / trials)
    assert np.all(np.abs(var - expected) < 5 * sigma_var), (var, expected)
    p0 = np.exp(-expected)
    assert np.all(np.abs((counts == 0).mean(axis=0) - p0) < 5 * np.sqrt(p0 * (1 - p0) / trials))
    # Pixels drawn jointly are independent: no correlation between two faint pixels.
    assert abs(np.corrcoef(counts[:, 1], counts[:, 2])[0, 1]) < 5 / np.sqrt(trials)


def test_no_noise_returns_every_positive_expectation() -> None:
    from isrinject.engine.model import draw_electrons

    index, electrons = draw_electrons(np.array([[0.0, 1e-9], [2.5, -1.0]]), None, add_noise=False)
    assert index.tolist() == [1, 2]
    np.testing.assert_array_equal(electrons, [1e-9, 2.5])


def test_values_on_one_pixel_are_summed_before_the_quadratic_terms() -> None:
    """Values of overlapping stamps on one pixel inject as one pixel: ΔV's n²
    term and the saturation test see the summed n (noise off), and each
    value's share of ΔI is its own n/g."""
    c, f, flat_variance, signal = 0.5, 0.8, 1e-4, 200.0
    model = np.array([300.0, 500.0, 200.0])  # n = M·f/c = 480, 800, 320
    result = _inject_pixels(
        model, flat=f, scaling=c, rng=None, add_noise=False, pixel=np.array([7, 7, 3]),
        terms=PixelTerms(pre_flat_electrons=signal, flat_variance=flat_variance, saturation=1400.0),
    )
    # Pixels in identifier order: 3 (value 2), then 7 (values 0 and 1).
    assert result.index.tolist() == [2, 0]
    n = np.array([320.0, 1280.0])
    np.testing.assert_allclose(result.electrons, n, rtol=1e-14)
    expected_dv = c**2 * n / f**2 + c**2 * flat_variance / f**4 * (2 * signal * n + n**2)
    np.testing.assert_allclose(result.delta_variance, expected_dv, rtol=1e-13)
    # 200 + 1280 > 1400, though neither value alone (200 + 480, 200 + 800) passes it.
    assert result.saturated.tolist() == [False, True]
    np.testing.assert_allclose(result.hit_electrons / result.effective_gain[result.hit_pixel], model, rtol=1e-14)
