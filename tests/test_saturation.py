"""Issue 23: bleed trails and ISR's saturation treatment (SAT grown, SUSPECT, interpolation).

Pixel-level checks of `isrinject.engine.saturation` on its own, through
`inject_sources`, in the simulator, and the real-vs-injected comparison of
`isrinject.demo.bright_stars`.  Pre-flat electrons of an output image
are read back from its variance plane with the ISR relation
(`reconstruct_pre_flat_electrons`), whose float32 round trip is good to
≈1e-7 relative: the tolerances below are 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from isrinject import VisitInjectConfig
from isrinject.demo.bright_stars import compare_bright_stars, peak_magnitude, plot_bright_stars
from isrinject.engine.catalog import compose_catalog
from isrinject.engine.flags import InjectionFlag as F
from isrinject.engine.inject import inject_sources
from isrinject.engine.model import reconstruct_pre_flat_electrons
from isrinject.engine.saturation import bleed_image, bleed_segment, grow_manhattan, interpolate_over
from isrinject.sim import simulate_exposure
from isrinject.sim.camera import COMCAM_FULL_WELL_ELECTRONS

LEVEL = COMCAM_FULL_WELL_ELECTRONS
SHAPE = (1024, 128)  # 2 × 8 amplifiers of 512 rows × 16 columns


def test_bleed_segment_by_hand() -> None:
    """L = 10: [2, 30, 2, 0, 0] → excess 20, 10 each way; down: 8 fit, 2 lost past row 0."""
    bled, low, high = bleed_segment(np.array([2.0, 30.0, 2.0, 0.0, 0.0]), 10.0)
    assert bled.tolist() == [10.0, 10.0, 10.0, 2.0, 0.0]
    assert (low, high) == (2.0, 0.0)
    # Two over-full runs merge; nothing above the level, charge conserved.
    column = np.array([0.0, 25.0, 0.0, 0.0, 40.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    bled, low, high = bleed_segment(column, 10.0)
    assert bled.max() <= 10.0 and np.isclose(bled.sum() + low + high, column.sum(), rtol=0, atol=1e-12)
    # An infinite level (no saturation known) bleeds nothing.
    assert np.array_equal(bleed_segment(column, np.inf)[0], column)


def _gaussian_star(shape: tuple[int, int], x: float, y: float, total: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return total * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)


def test_star_at_100x_saturation_bleeds_symmetric_trails_conserving_charge() -> None:
    """The physics alone: peak 100 L, symmetric trails, Σ T' = Σ T − lost to 1e-12, T' ≤ L."""
    sigma = 1.8
    total = 100 * LEVEL * 2 * np.pi * sigma**2
    shape = (600, 32)
    sky = np.full(shape, 900.0)
    electrons = sky + _gaussian_star(shape, 16.0, 300.0, total, sigma)
    amps = [(slice(0, 600), slice(0, 16)), (slice(0, 600), slice(16, 32))]
    result = bleed_image(electrons, np.full(shape, LEVEL), amps)
    assert result.electrons.max() <= LEVEL
    assert result.lost == 0.0
    assert abs(result.electrons.sum() - electrons.sum()) <= 1e-12 * electrons.sum()
    # Symmetric about the centre row 300 (the star and the sky are).
    assert np.allclose(result.electrons[300 + 1 :][:250], result.electrons[: 300][::-1][:250], rtol=0, atol=1e-6)
    trail = np.flatnonzero(result.at_level[:, 16])
    assert 300 - trail.min() == trail.max() - 300 and len(trail) > 100
    # The same star 40 rows from the amplifier's end: part of the trail leaves it.
    near = sky + _gaussian_star(shape, 16.0, 40.0, total, sigma)
    cut = bleed_image(near, np.full(shape, LEVEL), amps)
    assert cut.lost > 0.1 * total
    assert abs(cut.electrons.sum() + cut.lost - near.sum()) <= 1e-12 * near.sum()
    assert cut.at_level[0, 16]


def test_grow_is_manhattan_and_interpolation_is_linear_along_rows() -> None:
    mask = np.zeros((7, 7), dtype=bool)
    mask[3, 3] = True
    grown = grow_manhattan(mask, 1)
    assert grown.sum() == 5 and grown[2, 3] and grown[3, 2] and not grown[2, 2]
    assert grow_manhattan(mask, 2).sum() == 13
    image = np.tile(np.arange(10, dtype=float), (3, 1)) * 2.0 + 1.0
    variance = image.copy() * 3.0
    image[1, 3:6] = 1e9
    targets = np.zeros(image.shape, dtype=bool)
    targets[1, 4] = True
    defects = np.zeros(image.shape, dtype=bool)
    defects[1, 3] = defects[1, 5] = True  # touching the target: one defect, as ISR merges them
    done = interpolate_over(image, variance, targets, defects)
    assert done.sum() == 3 and done[1, 3:6].all()
    # A linear row is reproduced exactly, in the image and in the variance.
    assert np.allclose(image[1], 2.0 * np.arange(10) + 1.0)
    assert np.allclose(variance[1], 3 * (2.0 * np.arange(10) + 1.0))
    # At the image edge: the one good side, constant; a row without good pixels: the plane's median.
    image[0, :2] = image[2, :] = -1e9
    edge = np.zeros(image.shape, dtype=bool)
    edge[0, :2] = edge[2, :] = True
    interpolate_over(image, variance, edge, np.zeros(image.shape, dtype=bool))
    assert image[0, 0] == image[0, 1] == image[0, 2] == 5.0
    assert np.all(image[2] == np.median(np.concatenate([image[0, 2:], image[1]])))


@pytest.fixture(scope="module")
def sim():
    """r band, a flat of exactly 1 (V_f = 0) so a centred star is symmetric, no background sources."""
    flat = (np.ones(SHAPE), np.zeros(SHAPE))
    return simulate_exposure(
        band="r", visit=7, detector=1, shape=SHAPE, seed=5, n_background_stars=0, n_background_galaxies=0,
        flat=flat,
    )


def _star_catalog(sim, x: float, y: float, mag: float, injection_id: int = 0) -> Table:
    return Table({"injection_id": [injection_id], "x": [x], "y": [y], "source_type": ["Star"], "mag": [mag]})


def _inject(sim, catalog: Table, **config_values):
    config = VisitInjectConfig()
    for name, value in config_values.items():
        setattr(config, name, value)
    return inject_sources(
        sim.visit_image, compose_catalog([catalog]), flat=sim.flat, illumination=None, config=config,
        rng=np.random.default_rng(11),
    )


def _pre_flat(sim, image) -> np.ndarray:
    """S [e⁻] of an image of the simulator, from its variance plane (the ISR relation)."""
    return reconstruct_pre_flat_electrons(
        image.variance.array, sim.flat.image.array, sim.scaling, sim.read_noise_map,
        flat_variance=sim.flat.variance.array,
    )


def test_injected_star_at_100x_saturation(sim) -> None:
    """Through the engine: no pixel above the level before the flat; the bled charge equals the
    injected charge minus what left the amplifier, to 1e-6; the trails are symmetric; flags."""
    mag = peak_magnitude("r", 100.0)
    before = _pre_flat(sim, sim.visit_image)
    for y, expect_lost in ((256.0, False), (490.0, True)):  # amplifier rows 0-511
        result = _inject(sim, _star_catalog(sim, 8.0, y, mag), do_saturation_interpolation=False)
        row = result.catalog[0]
        after = _pre_flat(sim, result.image)
        assert after.max() <= LEVEL * (1 + 1e-6)
        lost = float(row["injection_lost_electrons"])
        added = float(row["injection_flux_electrons"])
        assert (lost > 0.01 * added) == expect_lost
        assert abs((after - before).sum() - (added - lost)) <= 1e-6 * added
        # injection_flux is the flux that stayed: Σ ΔI over the image.
        delta = result.image.image.array.astype(float) - sim.visit_image.image.array
        assert np.isclose(delta.sum(), row["injection_flux"], rtol=1e-6)
        assert row["injection_flag"] & F.SATURATED and row["injection_flag"] & F.BLED
        assert not row["injection_flag"] & F.INTERPOLATED
        # SATURATED (not grown without interpolation) = the pixels at the level.
        new_sat = result.image.mask.get("SATURATED") & ~sim.visit_image.mask.get("SATURATED")
        assert np.array_equal(new_sat, after >= LEVEL * (1 - 1e-6))
        if not expect_lost:
            trail = np.flatnonzero(new_sat[:, 8])
            above, below = trail.max() - 256, 256 - trail.min()
            assert trail.size > 100 and abs(above - below) <= 1
            assert np.all(np.diff(trail) == 1)


def test_interpolation_suspect_and_flags(sim) -> None:
    """Defaults: SAT = the bled pixels grown by one (Manhattan), interpolated along rows
    (INTERPOLATED, variance alike); SUSPECT from the configured level; a faint star far away
    is untouched by any of it."""
    mag = peak_magnitude("r", 20.0)
    catalog = Table({
        "injection_id": [0, 1], "x": [8.0, 100.0], "y": [256.0, 700.0], "source_type": ["Star", "Star"],
        "mag": [mag, 20.0],
    })
    bled = _inject(sim, catalog, do_saturation_interpolation=False)
    full = _inject(sim, catalog, suspect_level=0.5 * LEVEL)
    old_sat = sim.visit_image.mask.get("SATURATED")
    at_level = bled.image.mask.get("SATURATED") & ~old_sat
    sat = full.image.mask.get("SATURATED") & ~old_sat
    assert np.array_equal(sat, grow_manhattan(at_level, 1) & ~old_sat)
    interpolated = full.image.mask.get("INTERPOLATED")
    assert np.array_equal(interpolated, sat)
    # Row through the trail: the run is a straight line between its good neighbours.
    y = 300
    xs = np.flatnonzero(sat[y])
    left, right = xs.min() - 1, xs.max() + 1
    for plane in ("image", "variance"):
        values = getattr(full.image, plane).array[y].astype(float)
        weights = (np.arange(left, right + 1) - left) / (right - left)
        line = (1 - weights) * values[left] + weights * values[right]
        assert np.allclose(values[left : right + 1], line, rtol=1e-6)
    # SUSPECT where the bled pre-flat electrons reach half the full well.
    after = _pre_flat(sim, bled.image)
    suspect = full.image.mask.get("SUSPECT") & ~sim.visit_image.mask.get("SUSPECT")
    assert suspect.any()
    assert np.all(after[suspect] >= 0.5 * LEVEL * (1 - 1e-6))
    assert np.all(suspect[after >= 0.5 * LEVEL * (1 + 1e-6)])
    assert not _inject(sim, catalog, suspect_level=0.5 * LEVEL, do_suspect=False).image.mask.get("SUSPECT").any()
    flags = np.asarray(full.catalog["injection_flag"])
    assert flags[0] & F.BLED and flags[0] & F.INTERPOLATED and flags[0] & F.SATURATED
    assert not flags[1] & (F.BLED | F.INTERPOLATED | F.SATURATED)
    assert full.catalog["injection_lost_electrons"][1] == 0.0
    # The faint star's pixels are bit-identical with the treatment off.
    off = _inject(sim, catalog, do_bleed=False, do_saturation_interpolation=False)
    box = (slice(680, 720), slice(80, 120))
    assert np.array_equal(full.image.image.array[box], off.image.image.array[box])
    assert np.array_equal(full.image.variance.array[box], off.image.variance.array[box])


def test_switched_off_is_the_old_behaviour(sim) -> None:
    """do_bleed=False, do_saturation_interpolation=False: S + n stays above the level, SATURATED
    exactly where S + n passes it, no BLED/INTERPOLATED, nothing lost."""
    result = _inject(sim, _star_catalog(sim, 8.0, 256.0, peak_magnitude("r", 100.0)),
                     do_bleed=False, do_saturation_interpolation=False)
    after = _pre_flat(sim, result.image)
    assert after.max() > 50 * LEVEL
    new_sat = result.image.mask.get("SATURATED") & ~sim.visit_image.mask.get("SATURATED")
    assert np.all(after[new_sat] > LEVEL * (1 - 1e-6)) and np.all(new_sat[after > LEVEL * (1 + 1e-6)])
    assert not result.image.mask.get("INTERPOLATED").any()
    flag = int(result.catalog["injection_flag"][0])
    assert flag & F.SATURATED and not flag & (F.BLED | F.INTERPOLATED)
    assert result.catalog["injection_lost_electrons"][0] == 0.0


def test_simulator_bleeds_its_real_stars_and_leaves_faint_scenes_bit_identical() -> None:
    """The simulator's own bright star: every pre-flat pixel ≤ L, charge conserved (no noise, no
    loss), ISR's masks; a scene without saturation is the same with the treatment on or off."""
    star = Table({"x": [40.0], "y": [128.0], "source_type": ["Star"], "mag": [peak_magnitude("g", 20.0)]})
    kwargs = {"band": "g", "visit": 1, "detector": 0, "shape": (512, 128), "seed": 2, "n_background_stars": 0,
              "n_background_galaxies": 0, "add_noise": False}
    bright = simulate_exposure(sources=star, **kwargs)
    assert bright.pre_flat_electrons.max() <= LEVEL
    total = bright.expected_pre_flat_electrons.sum()
    assert abs(bright.pre_flat_electrons.sum() - total) <= 1e-9 * total
    masks = bright.visit_image.mask
    assert masks.get("SATURATED").sum() > masks.get("SATURATED")[:, 40].sum() > 20
    assert np.array_equal(masks.get("INTERPOLATED"), masks.get("SATURATED"))
    faint = simulate_exposure(sources=Table({**star, "mag": [20.0]}), **kwargs)
    faint_off = simulate_exposure(sources=Table({**star, "mag": [20.0]}), do_bleed=False,
                                  do_saturation_interpolation=False, **kwargs)
    assert not faint.visit_image.mask.get("SATURATED").any()
    for a, b in ((faint.visit_image.image, faint_off.visit_image.image),
                 (faint.visit_image.variance, faint_off.visit_image.variance),
                 (faint.visit_image.mask, faint_off.visit_image.mask)):
        assert np.array_equal(a.array, b.array)


def test_real_and_injected_saturated_stars_agree(tmp_path) -> None:
    """The demo's check on one band: trail lengths within 10 %, same mask kinds and extents,
    the star at the amplifier edge loses charge; the side-by-side figure is written."""
    comparison = compare_bright_stars("r")
    assert comparison.passed, comparison.table()
    for real, injected in zip(comparison.real, comparison.injected):
        assert real.trail_length > 20
        assert real.kinds == injected.kinds == {"SATURATED", "INTERPOLATED", "SUSPECT"}
    assert comparison.lost_electrons[0] == 0.0 and comparison.lost_electrons[1] > 0
    assert all(flag & F.BLED and flag & F.INTERPOLATED for flag in comparison.flags)
    png = plot_bright_stars([comparison], tmp_path / "bright.png")
    assert png.stat().st_size > 10_000


def test_charge_injected_onto_a_real_saturated_star_spills() -> None:
    """A real saturated star was interpolated (its variance no longer tells its signal): its
    SATURATED pixels count as full, so a star injected on it — unsaturated on its own — bleeds,
    lengthening the real trail."""
    real_star = Table({"x": [40.0], "y": [128.0], "source_type": ["Star"], "mag": [peak_magnitude("r", 10.0)]})
    sim = simulate_exposure(band="r", visit=1, detector=0, shape=(512, 128), seed=4, n_background_stars=0,
                            n_background_galaxies=0, sources=real_star)
    real_sat = sim.visit_image.mask.get("SATURATED")
    assert real_sat[:, 40].sum() > 20
    faint = _star_catalog(sim, 40.0, 128.0, peak_magnitude("r", 0.3))
    result = _inject(sim, faint)
    flag = int(result.catalog["injection_flag"][0])
    assert flag & F.SATURATED and flag & F.BLED
    assert result.image.mask.get("SATURATED")[:, 40].sum() > real_sat[:, 40].sum()
    # The same star on an empty part of the image does not saturate.
    alone = _inject(sim, _star_catalog(sim, 104.0, 400.0, peak_magnitude("r", 0.3)))
    assert not int(alone.catalog["injection_flag"][0]) & (F.SATURATED | F.BLED)


def test_a_real_star_below_the_level_saturates_with_an_injected_one() -> None:
    """The bleed works on S + n: a real star at 0.7 L and an injected one at 0.7 L on it saturate
    together, though neither does alone; the bled charge is conserved to 1e-6."""
    real_star = Table({"x": [40.0], "y": [128.0], "source_type": ["Star"], "mag": [peak_magnitude("r", 0.7)]})
    flat = (np.ones((512, 128)), np.zeros((512, 128)))
    sim = simulate_exposure(band="r", visit=1, detector=0, shape=(512, 128), seed=4, n_background_stars=0,
                            n_background_galaxies=0, sources=real_star, flat=flat)
    assert not sim.visit_image.mask.get("SATURATED").any()
    result = _inject(sim, _star_catalog(sim, 40.0, 128.0, peak_magnitude("r", 0.7)),
                     do_saturation_interpolation=False)
    row = result.catalog[0]
    assert row["injection_flag"] & F.SATURATED and row["injection_flag"] & F.BLED
    before, after = _pre_flat(sim, sim.visit_image), _pre_flat(sim, result.image)
    assert after.max() <= LEVEL * (1 + 1e-6)
    added = float(row["injection_flux_electrons"])
    assert abs((after - before).sum() - (added - row["injection_lost_electrons"])) <= 1e-6 * added
    assert result.image.mask.get("SATURATED")[:, 40].sum() >= 3
