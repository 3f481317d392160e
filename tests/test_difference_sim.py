"""Direct injection into a simulated difference image against the truth: the same
transients injected into the science visit, then subtracted (isrinject.sim.difference).

Both kernel directions: the template convolved (the difference then has the
science PSF and the injection is the visit pixel model itself) and the science
convolved (the injection is carried through the kernel, its noise correlated).
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from scipy import stats

from isrinject import DifferenceInjectConfig, DifferenceInjectTask, VisitInjectConfig, VisitInjectTask
from isrinject.engine.difference import convolved_image
from isrinject.sim.difference import SimulatedDifference, simulate_difference

SHAPE = (320, 320)
N_SIDE = 12  # 144 transients, 24 px apart: stamps overlap only in their faint wings
SIGMAS = {"template": (2.2, 1.6), "science": (1.6, 2.2)}  # (science σ, template σ) [pixels]


def _transients(n_side: int = N_SIDE) -> Table:
    step = SHAPE[1] / (n_side + 1)
    xs, ys = np.meshgrid(np.arange(1, n_side + 1) * step + 0.3, np.arange(1, n_side + 1) * step - 0.2)
    n = xs.size
    return Table({"injection_id": np.arange(n), "x": xs.ravel(), "y": ys.ravel(),
                  "source_type": ["Star"] * n, "mag": np.full(n, 18.5)})


def _config(config, *, noise: bool, seed: int):
    config.add_noise = noise
    config.noise_seed = seed
    config.calib_flux_radius = None
    return config


def _inject_then_subtract(pair: SimulatedDifference, *, noise: bool, seed: int):
    """The truth: the transients in the science visit (VisitInjectTask), then the subtraction."""
    task = VisitInjectTask(config=_config(VisitInjectConfig(), noise=noise, seed=seed))
    science = task.run(visit_image=pair.science.visit_image, injection_catalogs=[_transients()],
                       flat=pair.science.flat)
    injected = science.injected_visit_image
    return pair.subtract(injected), injected, science.injected_visit_image_catalog


def _direct(pair: SimulatedDifference, *, noise: bool, seed: int):
    config = _config(DifferenceInjectConfig(), noise=noise, seed=seed)
    result = DifferenceInjectTask(config=config).run(
        difference_image=pair.difference_image, injection_catalogs=[_transients()], flat=pair.science.flat,
        science_psf=pair.science.visit_image.psf,
    )
    return result.injected_difference_image, result.injected_difference_image_catalog


def _deltas(pair: SimulatedDifference, image) -> tuple[np.ndarray, np.ndarray]:
    before = pair.difference_image
    return (
        image.image.array.astype(np.float64) - before.image.array,
        image.variance.array.astype(np.float64) - before.variance.array,
    )


def _selected(expected: np.ndarray) -> np.ndarray:
    """Pixels where the transients put ≥ 2 % of their peak (λ ≳ 50 e⁻)."""
    return expected > 0.02 * expected.max()


#: Noise realisations per path.  The science-convolved noise is correlated over
#: ~14 px (the kernel's σ_k = 1.5 px), so it needs more of them for
#: ⟨realized²/ΔV⟩ to be known to ±0.01 (1σ): ~2·14/0.01² pixel samples.
REALISATIONS = {"template": 2, "science": 14}


@pytest.fixture(scope="module", params=sorted(SIGMAS))
def runs(request: pytest.FixtureRequest):
    convolved = request.param
    science_sigma, template_sigma = SIGMAS[convolved]
    pair = simulate_difference(
        band="r", visit=31, detector=2, seed=17, shape=SHAPE, convolved=convolved,
        science_psf_sigma=science_sigma, template_psf_sigma=template_sigma,
        n_background_stars=10, n_background_galaxies=5,
    )
    truth_noiseless, _, truth_catalog = _inject_then_subtract(pair, noise=False, seed=0)
    direct_noiseless, direct_catalog = _direct(pair, noise=False, seed=0)
    expected = {"truth": _deltas(pair, truth_noiseless)[0], "direct": _deltas(pair, direct_noiseless)[0]}
    pick = _selected(expected["truth"])
    lattice = np.zeros(SHAPE, dtype=bool)
    lattice[::4, ::4] = True
    chi2: dict[str, list[np.ndarray]] = {"truth": [], "direct": []}
    normalised: dict[str, list[np.ndarray]] = {"truth": [], "direct": []}
    first = {}
    for realisation in range(REALISATIONS[convolved]):
        truth_image, truth_science, _ = _inject_then_subtract(pair, noise=True, seed=100 + realisation)
        direct_image, direct_noisy_catalog = _direct(pair, noise=True, seed=200 + realisation)
        for path, image in (("truth", truth_image), ("direct", direct_image)):
            delta_image, delta_variance = _deltas(pair, image)
            residual = delta_image - expected[path]
            chi2[path].append(residual[pick] ** 2 / delta_variance[pick])
            normalised[path].append((residual / np.sqrt(np.where(pick, delta_variance, 1.0)))[pick & lattice])
            if realisation == 0:
                first[path] = (delta_image, delta_variance)
        if realisation == 0:
            # The variance of a sum of convolved pixels is the science pixels' (Σk = 1).
            science_variance = float(np.sum(truth_science.variance.array.astype(np.float64)
                                            - pair.science.visit_image.variance.array))
            first_catalog = direct_noisy_catalog
    return {
        "convolved": convolved, "pair": pair, "expected": expected, "pick": pick,
        "chi2": {path: np.concatenate(values) for path, values in chi2.items()},
        "normalised": {path: np.concatenate(values) for path, values in normalised.items()},
        "first": first, "science_variance": science_variance, "first_catalog": first_catalog,
        "truth_catalog": truth_catalog, "direct_catalog": direct_catalog,
    }


def test_kernel_direction_is_read_without_metadata(runs) -> None:
    difference = runs["pair"].difference_image.copy()
    assert convolved_image(difference).convolved == runs["convolved"]
    del difference.metadata["CONVOLVED_EXPOSURE"]
    assert convolved_image(difference).convolved == runs["convolved"]


def test_noiseless_injection_equals_inject_then_subtract(runs) -> None:
    """Noise off, the direct injection is the subtracted science injection, pixel for pixel,
    and every transient's flux is the same to 1e-6."""
    truth, direct = runs["expected"]["truth"], runs["expected"]["direct"]
    assert truth.max() > 1000.0
    np.testing.assert_allclose(direct, truth, rtol=0, atol=2e-5 * truth.max())
    truth_flux = np.asarray(runs["truth_catalog"]["injection_flux"])
    np.testing.assert_allclose(np.asarray(runs["direct_catalog"]["injection_flux"]), truth_flux, rtol=1e-6)
    assert direct.sum() == pytest.approx(truth_flux.sum(), rel=1e-6)


@pytest.mark.parametrize("path", ["truth", "direct"])
def test_realized_noise_matches_the_recorded_variance(runs, path: str) -> None:
    """⟨(ΔD − E[ΔD])² / ΔV⟩ = 1 ± 0.03 over the transients' pixels and the noise realisations."""
    chi2 = runs["chi2"][path]
    assert runs["pick"].sum() > 15000
    ratio = float(np.mean(chi2))
    assert ratio == pytest.approx(1.0, abs=0.03), ratio


def test_normalised_residuals_agree(runs) -> None:
    """Residuals normalised by √ΔV on a 4-px lattice (where the kernel's correlation is
    small): the direct injection's and the truth's distributions agree (two-sample KS),
    and each is N(0, 1)."""
    samples = runs["normalised"]
    for path in ("truth", "direct"):
        assert samples[path].size > 1000
        assert stats.kstest(samples[path], "norm").pvalue > 0.01
    assert stats.ks_2samp(samples["truth"], samples["direct"]).pvalue > 0.01


def test_total_flux_agrees_within_noise(runs) -> None:
    """Σ ΔD of one realisation of each path: equal within 4σ, σ² = 2·Σ ΔV_s (the science
    pixels' variance, which a sum of normalised-kernel convolutions keeps)."""
    truth_image, _ = runs["first"]["truth"]
    direct_image, _ = runs["first"]["direct"]
    sigma = np.sqrt(2.0 * runs["science_variance"])
    assert abs(direct_image.sum() - truth_image.sum()) < 4 * sigma
    # The catalog accounts for what the direct injection added.
    assert np.sum(runs["first_catalog"]["injection_flux"]) == pytest.approx(direct_image.sum(), rel=1e-5)
