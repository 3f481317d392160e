"""Issue 7: bad inputs, partial failures and data safety (in memory, no butler).

Every test feeds one kind of bad input (numbered ``B<n>`` as in the table of
``tests/README.md``) to `inject_sources` / `VisitInjectTask.run` and checks
what the user sees: a per-source ``injection_flag`` bit, a warning naming the
problem, or, for configuration errors, an exception naming what is wrong and
where (visit/detector, column, row).  The input images are never modified.
"""

from __future__ import annotations

import logging

import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsst.images import XY, Box, Image, MaskedImage, MaskSchema
from lsst.images.serialization import ArchiveReadError
from lsst.pipe.base import NoWorkFound

from isrinject import VisitInjectConfig, VisitInjectTask
from isrinject.engine.calibration import CalibrationError
from isrinject.engine.catalog import compose_catalog
from isrinject.engine.flags import FATAL_FLAGS, InjectionFlag
from isrinject.engine.inject import inject_sources
from isrinject.sim import simulate_exposure

SHAPE = (128, 128)
VISIT, DETECTOR = 31, 2
LOG = logging.getLogger("isrinject.test_reliability")
F = InjectionFlag


@pytest.fixture(scope="module")
def sim():
    return simulate_exposure(
        band="r", visit=VISIT, detector=DETECTOR, shape=SHAPE, seed=3, n_background_stars=5, n_background_galaxies=3
    )


def _sky(sim, x, y):
    sky = sim.visit_image.sky_projection.pixel_to_sky(XY(x=np.asarray(x, float), y=np.asarray(y, float)))
    return sky.ra.deg, sky.dec.deg


def _catalog(sim, x, y, **columns) -> Table:
    """Stars at absolute pixel positions (x, y), given as ra/dec; extra columns override."""
    x, y = np.atleast_1d(x).astype(float), np.atleast_1d(y).astype(float)
    ra, dec = _sky(sim, x, y)
    n = len(x)
    table = Table({"injection_id": np.arange(n), "ra": ra, "dec": dec, "source_type": ["Star"] * n,
                   "mag": np.full(n, 19.0)})
    for name, values in columns.items():
        table[name] = values
    return table


def _masked(image: np.ndarray, bbox: Box, variance: np.ndarray | None = None) -> MaskedImage:
    return MaskedImage(
        Image(np.asarray(image, np.float32), bbox=bbox),
        variance=None if variance is None else Image(np.asarray(variance, np.float32), bbox=bbox),
        mask_schema=MaskSchema([]),
    )


def _config(**values) -> VisitInjectConfig:
    config = VisitInjectConfig()
    for key, value in values.items():
        setattr(config, key, value)
    return config


def _inject(sim, catalog, *, visit_image=None, flat=None, illumination=None, seed=1, **config):
    return inject_sources(
        sim.visit_image if visit_image is None else visit_image,
        compose_catalog([catalog]),
        flat=sim.flat if flat is None else flat,
        illumination=illumination,
        config=_config(**config),
        rng=np.random.default_rng(seed),
        log=LOG,
        visit_id=VISIT,
    )


def _delta(sim, result) -> np.ndarray:
    return result.image.image.array.astype(float) - sim.visit_image.image.array.astype(float)


def _flags(result) -> dict[int, int]:
    return {int(i): int(f) for i, f in zip(result.catalog["injection_id"], result.catalog["injection_flag"])}


def _planes(obj) -> list[np.ndarray]:
    """The pixel planes of a `SimulatedExposure` (visit image and flat) or of one masked image."""
    if hasattr(obj, "visit_image") and hasattr(obj, "flat"):
        return _planes(obj.visit_image) + _planes(obj.flat)
    return [obj.image.array, obj.variance.array, obj.mask.array]


@pytest.fixture
def untouched():
    """Factory: ``untouched(sim, *images)`` snapshots the pixels of the simulation (visit image and
    flat) and of any further masked images that the test injects into; after the test they must be
    unchanged.  Call it before injecting, with the objects the test really passes to the injection."""
    watched: list[tuple[object, list[np.ndarray]]] = []

    def watch(*objects) -> None:
        assert objects, "untouched() needs the inputs to watch"
        watched.extend((obj, [a.copy() for a in _planes(obj)]) for obj in objects)

    yield watch
    assert watched, "the test requested `untouched` but never called it on its inputs"
    for obj, before in watched:
        after = _planes(obj)  # fetched afresh: catches replaced planes as well as in-place writes
        assert len(after) == len(before)
        for i, (b, a) in enumerate(zip(before, after)):
            assert a.shape == b.shape and a.dtype == b.dtype, (type(obj).__name__, i)
            assert np.array_equal(a, b, equal_nan=True), f"input {type(obj).__name__} plane {i} was modified"


# --------------------------------------------------------------------------
# Calibration inputs
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flat_box",
    [Box.factory[0:100, 0:128], Box.factory[5:133, 0:128]],
    ids=["B1-flat-smaller", "B2-flat-offset"],
)
def test_flat_bbox_mismatch_names_both_boxes_and_where(sim, flat_box) -> None:
    flat = _masked(np.ones(flat_box.shape), flat_box)
    with pytest.raises(ValueError) as info:
        _inject(sim, _catalog(sim, 64, 64), flat=flat)
    message = str(info.value)
    assert "flat bounding box" in message and str(flat_box) in message and str(sim.visit_image.bbox) in message
    assert f"visit {VISIT}, detector {DETECTOR}" in message


def test_flat_larger_than_image_is_cut_out(sim) -> None:
    """B3: a flat covering more than the image (full detector vs a cutout) is fine."""
    big = Box.factory[-10:138, -10:138]
    array = np.full(big.shape, 1.0, np.float32)
    array[10:138, 10:138] = sim.flat.image.array
    flat = _masked(array, big, np.full(big.shape, 1e-6))
    result = _inject(sim, _catalog(sim, 64, 64), flat=flat, add_noise=False)
    assert result.catalog["injection_flag"][0] == 0
    np.testing.assert_allclose(result.catalog["injection_flat"][0], sim.flat.image.array[64, 64], rtol=1e-6)


@pytest.mark.parametrize("bad_value", [0.0, np.nan, -0.5, np.inf], ids=["B4-zero", "B5-nan", "B6-negative", "B7-inf"])
def test_flat_holes_get_no_photons(sim, untouched, bad_value) -> None:
    flat = sim.flat.copy()
    flat.image.array[62:66, 60:64] = bad_value
    untouched(sim, flat)
    result = _inject(sim, _catalog(sim, [64.2, 30.0], [63.7, 30.0]), flat=flat)
    delta = _delta(sim, result)
    assert np.all(delta[62:66, 60:64] == 0)
    flags = _flags(result)
    assert flags[0] == F.NO_PHOTONS and flags[1] == 0
    # The rest of the source is injected.
    assert result.catalog["injection_flux"][0] > 0.5 * result.catalog["injection_model_flux"][0]
    assert np.all(np.isfinite(result.image.image.array[:-4]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pattern=st.lists(st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf, 1e-30]), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_random_flat_defects(sim, pattern, seed) -> None:
    """B8: random NaN/±inf/0/negative/denormal-ish flat pixels under a bright star."""
    rng = np.random.default_rng(seed)
    flat = sim.flat.copy()
    ys = rng.integers(58, 70, len(pattern))
    xs = rng.integers(58, 70, len(pattern))
    flat.image.array[ys, xs] = pattern
    result = _inject(sim, _catalog(sim, 64, 64, mag=[16.0]), flat=flat, seed=seed)
    delta = _delta(sim, result)
    f = flat.image.array
    bad = ~(np.isfinite(f) & (f > 0))
    assert np.all(delta[bad] == 0)
    assert np.all(np.isfinite(result.image.image.array[:-4]))
    assert np.all(np.isfinite(result.image.variance.array[~bad]))
    flag = int(result.catalog["injection_flag"][0])
    assert flag & ~int(F.NO_PHOTONS | F.SATURATED) == 0
    assert bool(flag & F.NO_PHOTONS) == bool(bad[ys, xs].any())


@pytest.mark.parametrize("bad_value", [np.nan, -1e-3, np.inf], ids=["B9-nan", "B10-negative", "B11-inf"])
def test_bad_flat_variance_pixels_are_ignored(sim, bad_value) -> None:
    flat = sim.flat.copy()
    flat.variance.array[60:68, 60:68] = bad_value
    result = _inject(sim, _catalog(sim, 64, 64, mag=[16.0]), flat=flat)
    assert result.catalog["injection_flag"][0] == 0
    assert np.all(np.isfinite(result.image.variance.array[:-4]))
    assert np.all(result.image.variance.array >= sim.visit_image.variance.array)


def _assert_no_flat_variance_term(sim, result) -> None:
    """ΔV = c²·n/f² exactly: the V_f term was skipped."""
    delta = _delta(sim, result)
    delta_variance = result.image.variance.array.astype(float) - sim.visit_image.variance.array
    f = sim.flat.image.array.astype(float)
    inj = result.image.mask.get("INJECTED") & (delta > 0)
    np.testing.assert_allclose(delta_variance[inj], sim.scaling * delta[inj] / f[inj], rtol=1e-3, atol=1e-3)


def test_flat_without_variance_plane_image(sim, caplog) -> None:
    """B12: the flat is an lsst.images Image (no variance plane)."""
    flat = Image(sim.flat.image.array.copy(), bbox=sim.flat.bbox)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = _inject(sim, _catalog(sim, 64, 64, mag=[16.0]), flat=flat, add_noise=False)
    assert "has no variance plane" in caplog.text and f"visit {VISIT}, detector {DETECTOR}" in caplog.text
    assert result.catalog["injection_flag"][0] == 0
    _assert_no_flat_variance_term(sim, result)


def test_flat_with_default_variance_plane(sim, caplog) -> None:
    """B13: a MaskedImage whose variance is lsst.images' default 1.0."""
    flat = _masked(sim.flat.image.array.copy(), sim.flat.bbox)
    assert np.all(flat.variance.array == 1.0)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = _inject(sim, _catalog(sim, 64, 64, mag=[16.0]), flat=flat, add_noise=False)
    assert "has no variance plane" in caplog.text
    _assert_no_flat_variance_term(sim, result)


def test_flat_of_wrong_type(sim) -> None:
    """B14: a bare numpy array instead of a flat."""
    with pytest.raises(TypeError, match="flat must be an lsst.images MaskedImage or Image; got ndarray"):
        _inject(sim, _catalog(sim, 64, 64), flat=sim.flat.image.array)


def test_illumination_requested_but_missing(sim) -> None:
    """B15: do_illumination_correction=True without an illumination correction."""
    with pytest.raises(ValueError, match=f"no illumination correction.*visit {VISIT}, detector {DETECTOR}"):
        _inject(sim, _catalog(sim, 64, 64), do_illumination_correction=True)


def test_illumination_with_holes(sim) -> None:
    """B16: R ≤ 0 or NaN pixels receive no photons (like the flat)."""
    r = np.ones(SHAPE, np.float32)
    r[62:66, 62:66] = np.nan
    r[60, 60:64] = 0.0
    illumination = Image(r, bbox=sim.visit_image.bbox)
    result = _inject(sim, _catalog(sim, 64, 64, mag=[16.0]), illumination=illumination,
                     do_illumination_correction=True)
    delta = _delta(sim, result)
    assert np.all(delta[62:66, 62:66] == 0) and np.all(delta[60, 60:64] == 0)
    assert result.catalog["injection_flag"][0] == F.NO_PHOTONS


def test_illumination_bbox_mismatch(sim) -> None:
    """B17: illumination correction smaller than the image."""
    small = Box.factory[0:64, 0:64]
    with pytest.raises(ValueError, match="illumination correction bounding box.*visit 31, detector 2"):
        _inject(sim, _catalog(sim, 64, 64), illumination=Image(np.ones(small.shape, np.float32), bbox=small),
                do_illumination_correction=True)


# --------------------------------------------------------------------------
# Visit image
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bad_value", [np.nan, -5.0, 0.0], ids=["B18-nan", "B19-negative", "B20-zero"])
def test_bad_variance_pixels(sim, untouched, bad_value) -> None:
    vi = sim.visit_image.copy()
    vi.variance.array[60:68, 60:68] = bad_value
    untouched(sim, vi)
    result = _inject(sim, _catalog(sim, 64, 64, mag=[17.0]), visit_image=vi)
    assert result.catalog["injection_flag"][0] == 0
    delta = _delta(sim, result)
    assert np.all(np.isfinite(delta[:-4])) and delta[60:68, 60:68].sum() > 0
    with np.errstate(invalid="ignore"):
        dv = result.image.variance.array.astype(float) - vi.variance.array
    ok = np.isfinite(dv)
    assert np.all(dv[ok] >= 0)
    if np.isnan(bad_value):  # a NaN variance stays NaN (never invented)
        assert np.all(np.isnan(result.image.variance.array[60:68, 60:68]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.one_of(st.just(np.nan), st.just(np.inf), st.floats(-1e6, 0.0)), min_size=1, max_size=30),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_random_variance_defects(sim, values, seed) -> None:
    """B21: random NaN/inf/negative variance pixels under sources never crash and never
    produce NaN image pixels or negative ΔV."""
    rng = np.random.default_rng(seed)
    vi = sim.visit_image.copy()
    ys = rng.integers(50, 80, len(values))
    xs = rng.integers(50, 80, len(values))
    vi.variance.array[ys, xs] = values
    result = _inject(sim, _catalog(sim, [64.0, 70.0], [64.0, 55.0], mag=[16.0, 18.0]), visit_image=vi, seed=seed)
    assert np.all(result.catalog["injection_flag"] & int(FATAL_FLAGS) == 0)
    assert np.all(np.isfinite(result.image.image.array[:-4]))
    with np.errstate(invalid="ignore"):
        dv = result.image.variance.array.astype(float) - vi.variance.array
    assert np.all(dv[np.isfinite(dv)] >= 0)


def test_no_data_and_bad_regions(untouched) -> None:
    """B22: NO_DATA rows (NaN image/variance) receive nothing; BAD columns still collect photons."""
    sim = simulate_exposure(band="r", visit=VISIT, detector=DETECTOR, shape=SHAPE, seed=4, defects=True,
                            n_background_stars=3, n_background_galaxies=2)
    no_data = sim.visit_image.mask.get("NO_DATA")
    bad = sim.visit_image.mask.get("BAD")
    bad_x = int(np.flatnonzero(bad.any(axis=0))[0])
    catalog = _catalog(sim, [64.0, 64.0, float(bad_x)], [126.0, 40.0, 64.0], mag=[17.5, 19.0, 17.5])
    untouched(sim)  # the local, defect-carrying simulation that is injected into
    result = _inject(sim, catalog)
    out = result.image
    assert np.all(np.isnan(out.image.array[no_data])) and np.all(np.isnan(out.variance.array[no_data]))
    assert not np.any(out.mask.get("INJECTED")[no_data] & ~np.isnan(out.image.array[no_data]))
    flags = _flags(result)
    assert flags[0] == F.NO_PHOTONS | F.PARTIAL_OVERLAP
    assert flags[1] == 0 and flags[2] == 0
    assert np.nansum(_delta(sim, result)[bad & ~no_data]) > 0
    assert result.catalog["injection_flux"][0] > 0


class _FailingPsf:
    """A PSF model whose evaluation raises (e.g. a Piff model outside its validity)."""

    def compute_kernel_image(self, *, x, y):
        raise RuntimeError(f"PSF not defined at ({x}, {y})")


class _NanPsf:
    def compute_kernel_image(self, *, x, y):
        return Image(np.full((5, 5), np.nan))


@pytest.mark.parametrize(
    "psf",
    [ArchiveReadError("Piff model could not be read: piff not installed"), _FailingPsf(), _NanPsf()],
    ids=["B23-unreadable", "B24-raises", "B25-nan-kernel"],
)
def test_psf_failure_flags_every_source(sim, caplog, psf) -> None:
    vi = sim.visit_image.copy()
    vi.psf = psf  # the setter stores it as is; lsst.images keeps an unreadable PSF as the ArchiveReadError
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = _inject(sim, _catalog(sim, [64.0, 30.0], [64.0, 30.0]), visit_image=vi)
    assert np.all(result.catalog["injection_flag"] == F.PSF_COMPUTE_ERROR)
    assert np.array_equal(result.image.image.array, vi.image.array, equal_nan=True)
    if isinstance(psf, ArchiveReadError):
        assert f"PSF of visit {VISIT}, detector {DETECTOR} is unusable" in caplog.text
    # Through the task: all sources failed, the visit is still produced (unchanged pixels, flagged rows).
    output = VisitInjectTask(config=_config()).run(
        visit_image=vi, injection_catalogs=[_catalog(sim, 64.0, 64.0)], flat=sim.flat
    )
    assert np.all(output.injected_visit_image_catalog["injection_flag"] & F.PSF_COMPUTE_ERROR)
    assert np.array_equal(output.injected_visit_image.image.array, vi.image.array, equal_nan=True)


def test_missing_sky_projection(sim) -> None:
    """B26: a visit image without a sky projection (only possible by bypassing the constructor)."""
    vi = sim.visit_image.copy()
    vi.image._sky_projection = None
    assert vi.sky_projection is None
    with pytest.raises(CalibrationError, match=f"visit {VISIT}, detector {DETECTOR} has no sky projection"):
        _inject(sim, _catalog(sim, 64, 64), visit_image=vi)


@pytest.fixture(scope="module")
def u_band():
    """u band 256×256: enough read-noise-dominated pixels per amplifier for the empirical fit."""
    return simulate_exposure(band="u", visit=11, detector=0, shape=(256, 256), seed=5, n_background_stars=10,
                             n_background_galaxies=5)


@pytest.mark.parametrize(
    "scaling", [None, 0.0, np.nan, "wrong-unit"], ids=["B27-none", "B28-zero", "B29-nan", "B30-wrong-unit"]
)
def test_unusable_photometric_scaling_falls_back_to_empirical(u_band, caplog, scaling) -> None:
    from lsst.images.fields import ChebyshevField

    vi = u_band.visit_image.copy()
    if scaling is None:
        vi._photometric_scaling = None
    elif scaling == "wrong-unit":
        vi.photometric_scaling = ChebyshevField(vi.bbox, np.array([[1.0]]), unit=u.m)
    else:
        vi.photometric_scaling = ChebyshevField(vi.bbox, np.array([[scaling]]), unit=u.nJy / u.electron)
    catalog = Table({"injection_id": [0], "ra": [0.0], "dec": [0.0], "source_type": ["Star"], "mag": [18.0]})
    catalog["ra"], catalog["dec"] = _sky(u_band, [128.0], [128.0])
    with caplog.at_level(logging.INFO, logger=LOG.name):
        result = _inject(u_band, catalog, visit_image=vi, add_noise=False)
    assert "no usable photometric_scaling" in caplog.text and "Empirical c per amplifier" in caplog.text
    assert result.catalog.meta["scaling_source"] == "empirical"
    # The fitted c (logged per amplifier) is within 1 % of the truth.
    fitted = [float(item.split("=")[1]) for item in caplog.text.split("Empirical c per amplifier: ")[1]
              .splitlines()[0].split(", ")]
    assert len(fitted) == 16
    np.testing.assert_allclose(fitted, u_band.scaling, rtol=0.01)
    gain = result.catalog["injection_effective_gain"][0]
    assert gain == pytest.approx(result.catalog["injection_flat"][0] / u_band.scaling, rel=0.01)


@pytest.mark.parametrize("unit", [u.adu, u.m, u.mag], ids=["B31-adu", "B32-metre", "B33-mag"])
def test_unit_neither_electrons_nor_flux_density(sim, unit) -> None:
    vi = sim.visit_image.copy()
    vi.image._unit = unit
    with pytest.raises(CalibrationError) as info:
        _inject(sim, _catalog(sim, 64, 64), visit_image=vi)
    message = str(info.value)
    assert f"unit {unit!s} is neither electrons nor a flux density" in message
    assert f"visit {VISIT}, detector {DETECTOR}" in message


def test_electron_image_without_any_scaling(sim) -> None:
    """B34: an e⁻ image with no photometric_scaling and none configured: magnitudes cannot be converted."""
    electrons = simulate_exposure(band="r", visit=VISIT, detector=DETECTOR, shape=SHAPE, seed=3, units="electron",
                                  n_background_stars=2, n_background_galaxies=1)
    vi = electrons.visit_image.copy()
    vi._photometric_scaling = None
    with pytest.raises(CalibrationError, match=r"visit 31, detector 2: .*electrons.*config.photometric_scaling"):
        _inject(electrons, _catalog(sim, 64, 64), visit_image=vi)
    # With the constant configured it works.
    result = _inject(electrons, _catalog(sim, 64, 64), visit_image=vi,
                     photometric_scaling=electrons.photometric_scaling_njy_per_electron)
    assert result.catalog["injection_flag"][0] == 0


def test_config_scaling_without_value(sim) -> None:
    """B35: scaling_source='constant' (or its former name 'config', deprecated) and no
    photometric_scaling: a configuration error."""
    with pytest.raises(CalibrationError, match="visit 31, detector 2: scaling_source='constant' needs"):
        _inject(sim, _catalog(sim, 64, 64), scaling_source="constant")
    with pytest.warns(FutureWarning, match="scaling_source='config' is deprecated: use scaling_source='constant'"):
        config = _config(scaling_source="config")
    assert config.scaling_source == "constant"


# --------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------


def _good_and(sim, extra: dict, n_bad: int = 1) -> Table:
    """Row 0 a good star at the centre, rows 1.. with the given column values."""
    n = 1 + n_bad
    x = np.linspace(40, 90, n)
    catalog = _catalog(sim, x, np.full(n, 64.0))
    for name, values in extra.items():
        column = list(values)
        if name in catalog.colnames:
            column = [catalog[name][0], *column]
        else:
            column = [_neutral(name), *column]
        catalog[name] = column
    return catalog


def _neutral(name):
    return {"draw_size": 0, "half_light_radius": 0.5, "q": 1.0, "beta": 0.0, "n": 1.0, "stamp": "",
            "trail_length": 10.0}.get(name, np.nan)


BAD_ROWS = {
    "B36-unknown-type": ({"source_type": ["Blob"]}, F.TYPE_UNKNOWN, "source_type"),
    "B37-empty-type": ({"source_type": [""]}, F.TYPE_UNKNOWN, "source_type"),
    "B38-nan-mag": ({"mag": [np.nan]}, F.MAG_BAD, "mag"),
    "B39-inf-mag": ({"mag": [np.inf]}, F.MAG_BAD, "mag"),
    "B40-faint-mag": ({"mag": [99.0]}, F.MAG_BAD, "mag"),
    "B41-bright-mag": ({"mag": [-50.0]}, F.MAG_BAD, "mag"),
    "B42-nan-ra": ({"ra": [np.nan]}, F.POSITION_BAD, "ra"),
    "B43-dec-over-90": ({"dec": [95.0]}, F.POSITION_BAD, "dec"),
    "B44-negative-draw-size": ({"draw_size": [-5]}, F.DRAW_SIZE_BAD, "draw_size"),
    "B45-huge-draw-size": ({"draw_size": [10**6]}, F.DRAW_SIZE_BAD, "draw_size"),
    "B46-nan-draw-size": ({"draw_size": [np.nan]}, None, None),
    "B47-negative-hlr": ({"source_type": ["Exponential"], "half_light_radius": [-1.0]}, F.PARAM_BAD,
                         "half_light_radius"),
    "B48-q-zero": ({"source_type": ["Exponential"], "half_light_radius": [0.5], "q": [0.0], "beta": [0.0]},
                   F.PARAM_BAD, "q"),
    "B49-sersic-n-extreme": ({"source_type": ["Sersic"], "half_light_radius": [0.5], "n": [9.0]},
                             F.SERSIC_EXTREME, "n"),
    "B50-sersic-without-n": ({"source_type": ["Sersic"], "half_light_radius": [0.5]}, F.PARAM_BAD, None),
    "B51-trail-without-length": ({"source_type": ["Trail"], "trail_length": [np.nan]}, F.PARAM_BAD,
                                 "trail_length"),
    "B52-stamp-missing": ({"source_type": ["Stamp"], "stamp": ["/nonexistent/stamp.fits"]}, F.STAMP_MISSING,
                          "stamp"),
    "B53-huge-hlr-fft": ({"source_type": ["Exponential"], "half_light_radius": [2000.0], "q": [1.0],
                          "beta": [0.0]}, F.FFT_SIZE_ERROR, None),
}


@pytest.mark.parametrize("case", list(BAD_ROWS), ids=list(BAD_ROWS))
def test_bad_catalog_row_is_flagged_and_the_rest_injected(sim, caplog, untouched, case) -> None:
    extra, flag, column = BAD_ROWS[case]
    catalog = _good_and(sim, extra)
    untouched(sim)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = _inject(sim, catalog)
    flags = _flags(result)
    assert flags[0] == 0, case
    assert result.catalog["injection_flux"][0] > 0
    if flag is None:  # NaN draw_size means "automatic" (as an absent value)
        assert flags[1] == 0
        return
    assert flags[1] & flag, (case, flags[1])
    assert flags[1] & int(FATAL_FLAGS)
    assert np.isnan(result.catalog["injection_flux"][1])
    if column is not None:  # the warning names the column, the row and the injection_id
        assert f"column {column!r} [{flag.name}]" in caplog.text
        assert "row [1]" in caplog.text and "injection_id [1]" in caplog.text


@pytest.mark.parametrize(
    "missing", ["mag", "source_type", "ra/dec"], ids=["B54-no-mag-column", "B55-no-type-column", "B56-no-position"]
)
def test_missing_required_column(sim, caplog, missing) -> None:
    catalog = _catalog(sim, [64.0, 40.0], [64.0, 40.0])
    catalog.remove_columns(missing.split("/"))
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = _inject(sim, catalog)
    expected = {"mag": F.MAG_BAD, "source_type": F.TYPE_UNKNOWN, "ra/dec": F.POSITION_BAD}[missing]
    assert len(result.catalog) == 2 and np.all(result.catalog["injection_flag"] & expected)
    assert {"mag": "required column 'mag' is missing", "source_type": "required column 'source_type' is missing",
            "ra/dec": "has no position columns (need 'ra' and 'dec' or 'x' and 'y')"}[missing] in caplog.text
    assert np.array_equal(result.image.image.array, sim.visit_image.image.array, equal_nan=True)
    # The visit is still produced, with every row flagged.
    output = VisitInjectTask(config=_config()).run(
        visit_image=sim.visit_image, injection_catalogs=[catalog], flat=sim.flat
    )
    assert len(output.injected_visit_image_catalog) == 2
    assert np.all(output.injected_visit_image_catalog["injection_flag"] & expected)


def test_masked_and_string_magnitudes(sim) -> None:
    """B57: a masked magnitude and a string column with a non-number and a numeric string."""
    catalog = _catalog(sim, [64.0, 40.0, 90.0], [64.0, 40.0, 90.0])
    catalog["mag"] = MaskedColumn([19.0, 19.0, 19.0], mask=[False, True, False])
    result = _inject(sim, catalog)
    assert list(result.catalog["injection_flag"]) == [0, F.MAG_BAD, 0]
    catalog["mag"] = ["19", "bright", "19.5"]
    result = _inject(sim, catalog)
    assert list(result.catalog["injection_flag"]) == [0, F.MAG_BAD, 0]
    assert np.all(result.catalog["injection_flux"][[0, 2]] > 0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mags=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-20, 50)),
                     min_size=1, max_size=6))
def test_hypothesis_garbage_magnitudes(sim, mags) -> None:
    """B58: any float magnitude: flagged MAG_BAD outside (-10, 40) or non-finite, injected otherwise."""
    n = len(mags)
    x = 20.0 + 90.0 * np.arange(n) / max(n, 1)
    catalog = _catalog(sim, x, np.full(n, 64.0), mag=np.asarray(mags, dtype=float))
    result = _inject(sim, catalog, add_noise=False, do_saturation=False)
    for mag, flag, flux in zip(mags, result.catalog["injection_flag"], result.catalog["injection_flux"]):
        good = np.isfinite(mag) and -10 < mag < 40
        if good:
            assert flag & int(FATAL_FLAGS) == 0 and flux >= 0 and np.isfinite(flux)
        else:
            assert flag & F.MAG_BAD
    assert np.all(np.isfinite(result.image.image.array))


def test_sources_partly_and_wholly_off_the_image(sim, caplog) -> None:
    """B59: partly off (PARTIAL_OVERLAP, injected), off but within trim_padding (NO_OVERLAP),
    far off (kept as NO_OVERLAP with a warning; left out with keep_off_image_rows=False)."""
    catalog = _catalog(sim, [64.0, -2.0, -60.0, -5000.0], [64.0, 64.0, 64.0, 64.0])
    with caplog.at_level(logging.INFO, logger=LOG.name):
        result = _inject(sim, catalog)
    flags = _flags(result)
    assert flags[0] == 0
    assert flags[1] == F.PARTIAL_OVERLAP and result.catalog["injection_flux"][1] > 0
    assert flags[2] == F.NO_OVERLAP
    assert flags[3] == F.NO_OVERLAP and np.isnan(result.catalog["injection_flux"][3])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        f"1 of 4 sources for visit {VISIT}, detector {DETECTOR} are centred outside the image padded by 100 px "
        "(trim_padding) and are not injected (kept in the output catalog, flagged NO_OVERLAP)."
    )
    # The image is 128 px × 0.2"; the far row is 5064 px × 0.2" = 0.281° from the centre.
    assert "the nearest of these rows is 0.281 deg from its centre" in warnings[0]
    result = _inject(sim, catalog, keep_off_image_rows=False)
    assert sorted(_flags(result)) == [0, 1, 2]


def test_all_sources_off_the_image(sim, caplog) -> None:
    """B69: every source off the image: a WARNING with the counts and the likely cause; the
    rows are in the output catalog flagged NO_OVERLAP (through run() as well)."""
    catalog = _catalog(sim, [-3000.0, 4000.0, 64.0], [64.0, 64.0, 9000.0])
    task = VisitInjectTask(config=_config())
    with caplog.at_level(logging.WARNING):
        output = task.run(visit_image=sim.visit_image, injection_catalogs=[catalog], flat=sim.flat)
    result = output.injected_visit_image_catalog
    assert list(result["injection_flag"]) == [F.NO_OVERLAP] * 3
    assert np.array_equal(output.injected_visit_image.image.array, sim.visit_image.image.array, equal_nan=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = "\n".join(r.getMessage() for r in warnings)
    assert f"3 of 3 sources for visit {VISIT}, detector {DETECTOR} are centred outside the image" in text
    assert (f"0 of 3 sources were injected into visit {VISIT}, detector {DETECTOR} (flags: NO_OVERLAP(3)); "
            "likely cause: every source is centred off the image") in text
    # run() warns through the task's own logger (isrinject.<label> under pipetask, whose WARNINGs
    # pipetask shows at its default log level: test_reliability_pipetask.py).
    assert {r.name for r in warnings} == {task.log.name} == {"isrinject.visitInject"}
    # From runQuantum (htm7 shards) a partial drop is INFO, a total one still a warning.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        VisitInjectTask(config=_config()).run(
            visit_image=sim.visit_image, injection_catalogs=[_catalog(sim, [64.0, -3000.0], [64.0, 64.0])],
            flat=sim.flat, catalogs_are_shards=True,
        )
    [drop] = [r for r in caplog.records if "centred outside the image" in r.getMessage()]
    assert drop.levelno == logging.INFO
    # An e⁻ image whose c is a Chebyshev field: far-off rows are NO_OVERLAP only (c is read at the
    # image centre for them, never 5000 px outside the field's domain).
    electrons = simulate_exposure(band="r", visit=VISIT, detector=DETECTOR, shape=SHAPE, seed=3, units="electron",
                                  n_background_stars=2, n_background_galaxies=0)
    result = _inject(electrons, _catalog(electrons, [64.0, -5000.0, 64.0], [64.0, 64.0, 90000.0]))
    assert list(result.catalog["injection_flag"]) == [0, F.NO_OVERLAP, F.NO_OVERLAP]


def test_radians_hint(sim, caplog) -> None:
    """B70: ra/dec given in radians: the warning says so and how to convert."""
    catalog = _catalog(sim, [64.0, 40.0], [64.0, 40.0])
    catalog["ra"], catalog["dec"] = np.radians(catalog["ra"]), np.radians(catalog["dec"])
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = _inject(sim, catalog)
    assert list(result.catalog["injection_flag"]) == [F.NO_OVERLAP] * 2
    assert ("These ra/dec look like radians: converted to degrees 2 of them fall on this image; give ra/dec in "
            "degrees (numpy.degrees)") in caplog.text
    # With the unit declared, the same values are converted and injected.
    catalog["ra"].unit = catalog["dec"].unit = u.rad
    assert list(_inject(sim, catalog).catalog["injection_flag"]) == [0, 0]


def test_implausible_magnitude_is_injected_with_a_warning(sim, caplog) -> None:
    """B71: mag −3 is legal (inside −10 < mag < 40) but implausible: injected, with a warning
    naming the value, the id and config.plausible_mag_range."""
    catalog = _catalog(sim, [64.0, 30.0], [64.0, 30.0], mag=[-3.0, 20.0])
    # Without the bleed: its 5.8e13 nJy would otherwise spill off the amplifier
    # (engine.saturation; tested in test_saturation.py), and what is tested here
    # is that the value is injected as given.
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = _inject(sim, catalog, do_bleed=False, do_saturation_interpolation=False)
    assert result.catalog["injection_flag"][0] & int(FATAL_FLAGS) == 0
    assert result.catalog["injection_flux"][0] > 1e13  # nJy: mag −3 is 10**(-0.4 * (-3 - 31.4)) = 5.8e13 nJy
    assert ("1 of 2 sources have magnitudes outside the plausible range 10 ≤ mag ≤ 35 (values: [-3]; "
            "injection_id [0])") in caplog.text and "config.plausible_mag_range" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        _inject(sim, catalog, plausible_mag_range=[-5.0, 30.0])
    assert "plausible range" not in caplog.text


def test_source_types_any_case_and_did_you_mean(sim, caplog) -> None:
    """B72: 'star' and 'SERSIC' are Star and Sersic; 'Sersik' is TYPE_UNKNOWN with a did-you-mean."""
    catalog = _catalog(sim, [64.0, 30.0, 100.0], [64.0, 30.0, 100.0],
                       source_type=["star", "SERSIC", "Sersik"], n=[np.nan, 1.0, 1.0],
                       half_light_radius=[np.nan, 0.4, 0.4])
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = _inject(sim, catalog)
    flags = _flags(result)
    assert flags[0] == 0 and flags[1] & int(FATAL_FLAGS) == 0 and flags[2] == F.TYPE_UNKNOWN
    assert "'Sersik' (did you mean 'Sersic'?)" in caplog.text


def test_misnamed_magnitude_column_suggests_the_rename(sim, caplog) -> None:
    """B73: a 'magnitude' column: every row MAG_BAD, the warning names the column meant and
    config.col_mag; with col_mag set the rows are injected."""
    catalog = _catalog(sim, [64.0, 30.0], [64.0, 30.0])
    catalog.rename_column("mag", "magnitude")
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = _inject(sim, catalog)
    assert np.all(result.catalog["injection_flag"] & F.MAG_BAD)
    assert ("required column 'mag' is missing; did you mean 'magnitude'? set config.col_mag = 'magnitude' or "
            "rename the column to 'mag'") in caplog.text
    assert "likely cause: no usable magnitude" in caplog.text
    assert list(_inject(sim, catalog, col_mag="magnitude").catalog["injection_flag"]) == [0, 0]


def test_duplicate_injection_ids(sim, caplog) -> None:
    """B60: two rows share an injection_id: both flagged, named in the warning."""
    catalog = _catalog(sim, [64.0, 40.0, 90.0], [64.0, 40.0, 90.0])
    catalog["injection_id"] = [7, 7, 8]
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = _inject(sim, catalog)
    assert list(result.catalog["injection_flag"]) == [F.DUPLICATE_ID, F.DUPLICATE_ID, 0]
    assert "column 'injection_id' [DUPLICATE_ID]" in caplog.text and "rows [0, 1]" in caplog.text


def test_empty_catalog(sim, caplog) -> None:
    """B61: no catalog rows: NoWorkFound, or a copy with the INJECTED planes if process_all_data_ids."""
    empty = _catalog(sim, [64.0], [64.0])[:0]
    with pytest.raises(NoWorkFound, match=f"visit {VISIT}, detector {DETECTOR}"):
        VisitInjectTask(config=_config()).run(visit_image=sim.visit_image, injection_catalogs=[empty], flat=sim.flat)
    # B74: pipetask logs NoWorkFound at INFO only: the task warns as well.
    with caplog.at_level(logging.WARNING), pytest.raises(NoWorkFound):
        VisitInjectTask(config=_config()).run(visit_image=sim.visit_image, injection_catalogs=[empty], flat=sim.flat)
    assert (f"No injection catalog rows for visit {VISIT}, detector {DETECTOR} (1 catalog(s) given, all empty): "
            "nothing injected") in caplog.text
    result = VisitInjectTask(config=_config(process_all_data_ids=True)).run(
        visit_image=sim.visit_image, injection_catalogs=[], flat=sim.flat
    )
    assert np.array_equal(result.injected_visit_image.image.array, sim.visit_image.image.array, equal_nan=True)
    assert result.injected_visit_image.mask.get("INJECTED").sum() == 0
    assert len(result.injected_visit_image_catalog) == 0


# --------------------------------------------------------------------------
# Saturation
# --------------------------------------------------------------------------


def test_bright_star_saturates(sim) -> None:
    """B62: a mag-10 star passes the amplifier saturation level in pre-flat electrons (with the
    bleed and ISR's interpolation off; with them on see tests/test_saturation.py)."""
    catalog = _catalog(sim, [64.0, 30.0], [64.0, 30.0], mag=[10.0, 21.0])
    result = _inject(sim, catalog, do_bleed=False, do_saturation_interpolation=False)
    flags = _flags(result)
    assert flags[0] == F.SATURATED | F.PARTIAL_OVERLAP or flags[0] == F.SATURATED
    bled = _flags(_inject(sim, catalog))[0]
    assert bled & F.SATURATED and bled & F.BLED and bled & F.INTERPOLATED
    assert not flags[1] & F.SATURATED
    saturated = result.image.mask.get("SATURATED") & ~sim.visit_image.mask.get("SATURATED")
    assert saturated.sum() > 0 and saturated[64, 64]
    # SATURATED only where pre-flat electrons S + n pass the level.
    f = sim.flat.image.array.astype(float)
    electrons = sim.pre_flat_electrons + _delta(sim, result) * f / sim.scaling
    level = sim.saturation_map_electrons
    assert np.all(electrons[saturated] > level[saturated] * 0.999)
    newly_over = (electrons > level * 1.001) & ~sim.visit_image.mask.get("SATURATED") & (_delta(sim, result) > 0)
    assert np.all(saturated[newly_over])
    # do_saturation=False: no SATURATED anywhere new, no flag.
    off = _inject(sim, catalog, do_saturation=False)
    assert not _flags(off)[0] & F.SATURATED
    assert np.array_equal(off.image.mask.get("SATURATED"), sim.visit_image.mask.get("SATURATED"))


# --------------------------------------------------------------------------
# Configuration errors (issue 26)
# --------------------------------------------------------------------------


def test_no_choice_is_a_name_pipetask_evaluates() -> None:
    """B76: pipetask evaluates a bare ``-c label:field=word`` in the config module's namespace
    plus ``config`` and ``parameters``; no choice of a ChoiceField may be such a name (the
    former scaling_source choice 'config' was: it became the config object)."""
    import inspect

    from lsst.pex.config import ChoiceField

    import isrinject.tasks.visit as visit_module

    namespace = {name for name in vars(inspect.getmodule(VisitInjectConfig) or visit_module)
                 if not name.startswith("__")} | {"config", "parameters"}
    choices = {name: set(field.allowed) - {None} for name, field in VisitInjectConfig._fields.items()
               if isinstance(field, ChoiceField)}
    assert choices["scaling_source"] == {"visit_image", "empirical", "constant"}
    assert all(not (allowed & namespace) for allowed in choices.values()), choices


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("scaling_source", "visit", "VisitInjectConfig.scaling_source: 'visit' is not allowed; expected one of "
                                    "'visit_image', 'empirical', 'constant'."),
        ("trim_padding", "abc", "VisitInjectConfig.trim_padding: 'abc' is not allowed; expected an integer."),
        ("injection_core_size", 4, "VisitInjectConfig.injection_core_size: 4 is not allowed; expected an odd "
                                   "integer ≥ 1."),
        ("photometric_scaling", -1.0, "VisitInjectConfig.photometric_scaling: -1.0 is not allowed; expected a "
                                      "finite number > 0 [nJy/e⁻] or None."),
        ("bad_mask_names", 3, "VisitInjectConfig.bad_mask_names: 3 is not allowed; expected a list of strings."),
    ],
    ids=["B77-choice", "B77-type", "B77-check", "B77-optional", "B77-list"],
)
def test_config_errors_are_one_line(field, value, message) -> None:
    """B77: every refused value fails in one line naming field, value and allowed values."""
    from lsst.pex.config import FieldValidationError

    with pytest.raises(FieldValidationError) as info:
        setattr(VisitInjectConfig(), field, value)
    assert str(info.value) == message


def test_config_validate_errors_are_one_line() -> None:
    """B77: what only ``validate()`` checks (a list's check, a required value) is one line too."""
    from lsst.pex.config import FieldValidationError

    config = VisitInjectConfig()
    config.plausible_mag_range = [30.0, 10.0]
    with pytest.raises(FieldValidationError) as info:
        config.validate()
    assert str(info.value) == ("VisitInjectConfig.plausible_mag_range: [30.0, 10.0] is not allowed; expected two "
                               "magnitudes [low, high] with low < high.")
    config = VisitInjectConfig()
    config.max_draw_size = None
    with pytest.raises(FieldValidationError, match=r"^VisitInjectConfig.max_draw_size: None is not allowed; "
                                                   r"expected an integer.$"):
        config.validate()


def test_config_object_as_value_names_the_fix() -> None:
    """B76: the config object itself (an unquoted ``config`` on the pipetask command line) is
    refused in one line, without the config's field dictionary, naming the new choice."""
    config = VisitInjectConfig()
    with pytest.raises(ValueError) as info:
        config.scaling_source = config
    text = str(info.value)
    assert "\n" not in text and "'trim_padding'" not in text
    assert text.startswith("VisitInjectConfig.scaling_source: the VisitInjectConfig object itself is not allowed")
    assert "the choice 'config' is now 'constant': -c LABEL:scaling_source=constant" in text


def test_demo_galaxies_fit_the_demo_detector() -> None:
    """B82 (issue 26): the demo's Sérsic galaxies (default 256 px detector, u band: the widest PSF)
    are drawn whole: none is PARTIAL_OVERLAP, so the flag marks a galaxy that really reaches past
    an edge.  (With the former n ≤ 3, half_light_radius ≤ 1.5″ all 10 were, stamps 87-301 px.)"""
    from isrinject.demo.build import _sources

    shape = (256, 256)
    layout = _sources(np.random.default_rng(0), 20, ("Star", "Sersic"), shape, margin=12.0)
    sim = simulate_exposure(band="u", visit=VISIT, detector=DETECTOR, shape=shape, seed=5, n_background_stars=0,
                            n_background_galaxies=0)
    catalog = _catalog(sim, layout["x"], layout["y"], source_type=layout["source_type"], n=layout["n"],
                       half_light_radius=layout["half_light_radius"], q=layout["q"], beta=layout["beta"])
    result = _inject(sim, catalog)
    galaxies = result.catalog[result.catalog["source_type"] == "Sersic"]
    assert len(galaxies) == 10
    assert np.all(galaxies["injection_flag"] == 0), list(galaxies["injection_flag"])
    sizes = np.asarray(galaxies["injection_draw_size"])
    # Real galaxies (51-163 px stamps), each within the two thirds of the detector its margin allows.
    assert sizes.max() > 100 and sizes.max() <= 2 * shape[0] / 3, sizes
