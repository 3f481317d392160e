"""DifferenceInjectTask on a real DP2 difference image, and the matching-kernel step.

The fixture is lsst.images' minified DP2 ``difference_image`` (tests/data/README.md):
LSSTCam visit 3277205294330000, detector 85 (R21_S11), r band, 16 × 16 px, with its
real Piff PSF, matching kernel, templates and photometric scaling.  Every test
uses the FITS file that ``DifferenceImage.write`` makes of it, as a user holds it.
"""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table
from lsst.images import XY, Box, DifferenceImage, Image
from lsst.images.convolution_kernels import ImageBasisConvolutionKernel
from lsst.images.fields import ChebyshevField
from lsst.images.serialization import read_archive

from isrinject import DifferenceInjectConfig, DifferenceInjectConnections, DifferenceInjectTask
from isrinject.engine.calibration import CalibrationError
from isrinject.engine.difference import convolve_injection, convolved_image

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "lsst_images_difference_image-1.0.0-dp2.json"
VISIT, DETECTOR = 3277205294330000, 85
READ_NOISE = 9.0  # e⁻: the crop's amplifiers are not in the fixture's detector
STAR_X, STAR_Y, STAR_MAG = 7.3, 8.2, 20.0


@pytest.fixture(scope="module")
def fits_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dp2") / "difference_image.fits"
    read_archive(FIXTURE, DifferenceImage).write(str(path))
    return path


@pytest.fixture()
def difference_image(fits_path: Path) -> DifferenceImage:
    return DifferenceImage.read(str(fits_path))


def _flat(bbox: Box) -> Image:
    """±15 % structure in x and y, so c/f differs in every pixel."""
    grid = bbox.meshgrid()
    return Image((1.0 + 0.15 * np.sin(grid.x / 3.0) * np.cos(grid.y / 4.0)).astype(np.float32), bbox=bbox)


def _star(image: DifferenceImage) -> Table:
    sky = image.sky_projection.pixel_to_sky(XY(x=np.array([STAR_X]), y=np.array([STAR_Y])))
    return Table({"injection_id": [7], "ra": sky.ra.deg, "dec": sky.dec.deg, "source_type": ["Star"],
                  "mag": [STAR_MAG]})


def _run(image: DifferenceImage, flat: Image, science_psf=None, **config_values):
    config = DifferenceInjectConfig()
    config.read_noise = READ_NOISE
    for key, value in config_values.items():
        setattr(config, key, value)
    return DifferenceInjectTask(config=config).run(
        difference_image=image, injection_catalogs=[_star(image)], flat=flat, science_psf=science_psf
    )


def test_fixture_is_a_real_dp2_difference_image(difference_image: DifferenceImage) -> None:
    """What the DP2 file holds: kernel, templates, a product-field scaling, nJy, Piff."""
    assert difference_image.unit == u.nJy
    assert difference_image.obs_info.visit_id == VISIT and difference_image.detector.id == DETECTOR
    assert type(difference_image.psf).__module__ == "lsst.images.psfs._piff"
    assert isinstance(difference_image.kernel, ImageBasisConvolutionKernel)
    assert len(difference_image.kernel) == 2 and difference_image.kernel.kernel_bbox.shape == (3, 3)
    assert [(t.tract, t.patch) for t in difference_image.templates] == [(9571, 97), (9571, 98)]
    scaling = difference_image.photometric_scaling.render(difference_image.bbox).array
    assert type(difference_image.photometric_scaling).__name__ == "ProductField"
    assert scaling.mean() == pytest.approx(0.49740, abs=1e-5) and np.ptp(scaling) > 1e-6
    assert {"SAT_TEMPLATE", "HIGH_VARIANCE"} <= set(difference_image.mask.schema.names)


def test_kernel_direction_is_read_from_the_psf_sizes(difference_image: DifferenceImage) -> None:
    """No metadata: the difference PSF is wider than template + kernel predicts for a
    science-convolved image, so the template was convolved (DP2 ran convolveTemplate).
    D3: bad metadata; D4: neither metadata nor template PSF shapes."""
    direction = convolved_image(difference_image)
    assert direction.convolved == "template"
    assert "PSF traces" in direction.reason
    difference_image.metadata["CONVOLVED_EXPOSURE"] = "Science"
    assert convolved_image(difference_image).convolved == "science"
    difference_image.metadata["CONVOLVED_EXPOSURE"] = "both"
    with pytest.raises(CalibrationError, match="CONVOLVED_EXPOSURE='both'"):
        convolved_image(difference_image)
    d = difference_image
    no_templates = DifferenceImage(
        d.image, mask=d.mask, variance=d.variance, sky_projection=d.sky_projection, obs_info=d.obs_info,
        psf=d.psf, detector=d.detector, band=d.band, kernel=d.kernel,
    )
    with pytest.raises(CalibrationError, match="set config.convolved_image to 'template' or 'science'"):
        convolved_image(no_templates)


def test_injected_transient_follows_c_over_f_per_pixel(difference_image: DifferenceImage, fits_path: Path) -> None:
    """c from the image's photometric_scaling (a product field), f configured:
    ΔV/ΔI = c/f per pixel to 1e-4 and injection_flux = ΣΔI to 1e-6."""
    flat = _flat(difference_image.bbox)
    before = difference_image.copy()
    result = _run(difference_image, flat)
    out = result.injected_difference_image
    catalog = result.injected_difference_image_catalog
    assert isinstance(out, DifferenceImage) and out.kernel is not None and len(out.templates) == 2
    assert catalog.meta["convolved_image"] == "template" and catalog.meta["scaling_source"] == "visit_image"
    assert out.metadata["INJECTED"] == "difference_image"
    delta_image = out.image.array.astype(np.float64) - before.image.array
    delta_variance = out.variance.array.astype(np.float64) - before.variance.array
    c = difference_image.photometric_scaling.render(difference_image.bbox).array
    f = flat.array.astype(np.float64)
    electrons = delta_image * f / c
    hit = electrons > 0.5
    assert hit.sum() > 200
    np.testing.assert_allclose(electrons[hit], np.round(electrons[hit]), rtol=2e-5, atol=2e-3)
    bright = electrons > 100
    assert bright.sum() > 100
    np.testing.assert_allclose(delta_variance[bright] / delta_image[bright], c[bright] / f[bright], rtol=1e-4)
    assert np.ptp(c[bright] / f[bright]) > 0.1 * c.mean()
    assert float(catalog["injection_flux"][0]) == pytest.approx(delta_image.sum(), rel=1e-6)
    # 20 mag is the flux within the 12 px calibration aperture: the whole model holds a little more.
    assert 1.0 < float(catalog["injection_model_flux"][0]) / (STAR_MAG * u.ABmag).to_value(u.nJy) < 1.1
    # The output round-trips through FITS as a DifferenceImage; the user's file is untouched.
    out_path = fits_path.parent / "injected.fits"
    out.write(str(out_path))
    reread = DifferenceImage.read(str(out_path))
    np.testing.assert_array_equal(reread.image.array, out.image.array)
    assert reread.kernel.kernel_bbox == out.kernel.kernel_bbox
    np.testing.assert_array_equal(DifferenceImage.read(str(fits_path)).image.array, before.image.array)
    out_path.unlink()


def test_science_convolved_injection_is_the_kernel_applied_to_the_science_pixels(
    difference_image: DifferenceImage,
) -> None:
    """convolved_image='science': ΣΔD = Σ w·ΔI_s to 1e-6 and the catalog flux is
    w at the centre times the science flux; D2: the science PSF is required."""
    flat = _flat(difference_image.bbox)
    where = f"^difference image of visit {VISIT}, detector {DETECTOR}: "
    with pytest.raises(CalibrationError, match=where + ".*science_psf"):
        _run(difference_image, flat, convolved_image="science")
    before = difference_image.copy()
    science = _run(difference_image, flat, science_psf=difference_image.psf, convolved_image="science",
                   add_noise=False)
    template = _run(difference_image, flat, convolved_image="template", add_noise=False)
    delta_science = science.injected_difference_image.image.array.astype(np.float64) - before.image.array
    delta_template = template.injected_difference_image.image.array.astype(np.float64) - before.image.array
    # Noise off: the template-convolved ΔI is ΔI_s itself.
    response = convolve_injection(
        delta_template, np.zeros_like(delta_template), difference_image.kernel, difference_image.bbox
    )
    np.testing.assert_allclose(delta_science, response.delta_image, rtol=1e-5, atol=1e-4)
    assert delta_science.sum() == pytest.approx((response.kept * delta_template).sum(), rel=1e-6)
    catalog = science.injected_difference_image_catalog
    assert float(catalog["injection_science_flux"][0]) == pytest.approx(delta_template.sum(), rel=1e-6)
    iy, ix = round(STAR_Y), round(STAR_X)
    assert float(catalog["injection_flux"][0]) == pytest.approx(
        delta_template.sum() * response.kept[iy, ix], rel=1e-6
    )


def test_no_data_pixels_stay_where_they_are(difference_image: DifferenceImage) -> None:
    """D8: a NaN (NO_DATA) pixel next to the transient: science-convolved, the kernel does not
    spread it; its neighbours are injected and finite."""
    d = difference_image
    d.image.array[8, 9] = np.nan
    d.variance.array[8, 9] = np.nan
    d.mask.set("NO_DATA", d.mask.get("NO_DATA") | (np.arange(256).reshape(16, 16) == 8 * 16 + 9))
    before = d.copy()
    result = _run(d, _flat(d.bbox), science_psf=d.psf, convolved_image="science")
    out = result.injected_difference_image
    assert np.array_equal(~np.isfinite(out.image.array), ~np.isfinite(before.image.array))
    assert np.array_equal(~np.isfinite(out.variance.array), ~np.isfinite(before.variance.array))
    assert np.nansum(out.image.array - before.image.array) > 1000.0


def test_missing_scaling_says_what_to_configure(difference_image: DifferenceImage) -> None:
    """D1: no photometric scaling, or the empirical fit, is refused with what to set."""
    d = difference_image
    unscaled = DifferenceImage(
        d.image, mask=d.mask, variance=d.variance, sky_projection=d.sky_projection, obs_info=d.obs_info,
        psf=d.psf, detector=d.detector, band=d.band, kernel=d.kernel, templates=d.templates,
    )
    with pytest.raises(CalibrationError, match=f"^difference image of visit {VISIT}, detector {DETECTOR}: .*"
                       "config.photometric_scaling"):
        _run(unscaled, _flat(d.bbox))
    # Given as a constant, it works (the fixture's own value).
    result = _run(unscaled, _flat(d.bbox), scaling_source="constant", photometric_scaling=0.4974)
    assert result.injected_difference_image_catalog.meta["scaling_source"] == "constant"
    config = DifferenceInjectConfig()
    config.scaling_source = "empirical"
    with pytest.raises(ValueError, match="difference pixels do not follow"):
        config.validate()


def _varying_kernel(bbox: Box) -> ImageBasisConvolutionKernel:
    """An asymmetric 5 × 3 kernel whose second basis image grows across the image."""
    rng = np.random.default_rng(4)
    basis = rng.uniform(0.0, 1.0, size=(2, 5, 3))
    spatial = [
        ChebyshevField(bbox, np.array([[1.0]])),
        ChebyshevField(bbox, np.array([[0.5, 0.4], [0.0, 0.0]])),
    ]
    return ImageBasisConvolutionKernel(basis, spatial)


def test_convolve_injection_equals_a_direct_sum_per_output_pixel() -> None:
    """ΔD(p) = Σ_q k_p(p − q) ΔI(q) with the kernel of p's cell, ΔV with k², the
    copied edge divided by ΣK; Σ ΔD = Σ w ΔI exactly."""
    bbox = Box.factory[10:50, 20:52]
    kernel = _varying_kernel(bbox)
    rng = np.random.default_rng(5)
    delta_image = np.zeros(bbox.shape)
    delta_image[5:30, 3:20] = rng.uniform(0.0, 10.0, size=(25, 17))
    delta_image[0:4, 28:32] = 3.0  # at the corner: part of its light leaves the image
    delta_variance = 2.0 * delta_image
    cell = 16
    response = convolve_injection(delta_image, delta_variance, kernel, bbox, cell_size=cell)
    kb = kernel.kernel_bbox
    expected_image = np.zeros(bbox.shape)
    expected_variance = np.zeros(bbox.shape)
    for iy in range(bbox.y.size):
        for ix in range(bbox.x.size):
            y, x = iy + bbox.y.start, ix + bbox.x.start
            cy = bbox.y.start + (iy // cell) * cell + min(cell, bbox.y.size - (iy // cell) * cell) // 2
            cx = bbox.x.start + (ix // cell) * cell + min(cell, bbox.x.size - (ix // cell) * cell) // 2
            raw = kernel.compute_kernel_image(x=cx, y=cy).array
            k = raw / raw.sum()
            corners = [(y - dy, x - dx) for dy in (kb.y.min, kb.y.max) for dx in (kb.x.min, kb.x.max)]
            inside = all(bbox.contains(x=cx_, y=cy_) for cy_, cx_ in corners)
            if not inside:
                expected_image[iy, ix] = delta_image[iy, ix] / raw.sum()
                expected_variance[iy, ix] = delta_variance[iy, ix] / raw.sum() ** 2
                continue
            for ky in range(kb.y.size):
                for kx in range(kb.x.size):
                    qy, qx = iy - (ky + kb.y.start), ix - (kx + kb.x.start)
                    expected_image[iy, ix] += k[ky, kx] * delta_image[qy, qx]
                    expected_variance[iy, ix] += k[ky, kx] ** 2 * delta_variance[qy, qx]
    np.testing.assert_allclose(response.delta_image, expected_image, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(response.delta_variance, expected_variance, rtol=1e-10, atol=1e-12)
    assert response.delta_image.sum() == pytest.approx((response.kept * delta_image).sum(), rel=1e-12)
    # Far from edges and cell borders a pixel keeps all of its light.
    assert response.kept[20, 10] == pytest.approx(1.0, abs=1e-12)
    assert response.kept[0, 31] != pytest.approx(1.0, abs=1e-3)


def test_pipeline_file_connections() -> None:
    """pipelines/inject_difference.yaml: the difference image in, the science flat as a
    calibration, the science PSF only when asked for."""
    from lsst.daf.butler import DimensionUniverse
    from lsst.pipe.base import Pipeline

    pipeline = Pipeline.from_uri(str(ROOT / "pipelines" / "inject_difference.yaml"))
    graph = pipeline.to_graph()
    graph.resolve(dimensions=DimensionUniverse())
    node = graph.tasks["inject_difference"]
    assert set(node.dimensions.required) == {"instrument", "visit", "detector"}
    assert node.inputs["difference_image"].dataset_type_name == "difference_image"
    assert node.get_connections().difference_image.storageClass == "DifferenceImage"
    assert node.prerequisite_inputs["flat"].is_calibration
    assert node.prerequisite_inputs["injection_catalogs"].dataset_type_name == "injection_catalog"
    assert "science_psf" not in node.inputs
    assert {"injected_difference_image", "injected_difference_image_catalog"} <= set(node.outputs)
    # A component of visit_image: resolving it needs a registry (the pipetask test has one).
    config = DifferenceInjectConfig()
    config.use_science_psf = True
    connections = DifferenceInjectConnections(config=config)
    assert connections.science_psf.name == "visit_image.psf"
    assert connections.science_psf.storageClass == "PointSpreadFunction"


def test_bps_config_clusters_the_difference_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """bps/difference_local_threads.yaml: local_threads' site and clustering, the difference pipeline."""
    from lsst.ctrl.bps import BpsConfig

    monkeypatch.setenv("ISRINJECT_DIR", str(ROOT))
    config = BpsConfig(str(ROOT / "bps" / "difference_local_threads.yaml"))
    assert config["pipelineYaml"] == f"{ROOT}/pipelines/inject_difference.yaml"
    assert config[".cluster.visit.pipetasks"] == "inject_difference"
    assert config[".cluster.visit.dimensions"] == "visit"
    assert config["computeSite"] == "local_threads"
