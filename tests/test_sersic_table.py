"""The shipped Sérsic Fourier table against GalSim's exact `galsim.Sersic`."""

from __future__ import annotations

import galsim
import numpy as np
import pytest

from isrinject.engine.catalog import source_spec
from isrinject.engine.draw import (
    RenderSettings,
    aperture_fraction,
    draw_source,
    local_jacobian,
)
from isrinject.engine.draw.fast import fft_grid_size, fft_stamp, kernel_spectrum
from isrinject.engine.draw.sersic_table import fourier_table, k_image

# GalSim's Sersic at its defaults is itself off by up to 1.6e-4 in T(k) at low
# k; the reference is GalSim at the accuracy the table was built with.
ACCURATE = galsim.GSParams(kvalue_accuracy=1e-8, maxk_threshold=1e-5, folding_threshold=1e-4)
PSF_SIGMA = 1.7  # pixels: a 0.8" FWHM seeing disc at 0.2"/pixel
JACOBIAN = galsim.JacobianWCS(-0.188, 0.068, 0.068, 0.188)  # 0.2"/pixel, rotated 20 degrees, flipped


def _kernel() -> np.ndarray:
    """Pixelized Gaussian PSF kernel (GalSim's draw includes the pixel)."""
    kernel = galsim.Gaussian(sigma=PSF_SIGMA).drawImage(nx=25, ny=25, scale=1.0).array
    return kernel / kernel.sum()


def _galaxy(n: float, hlr: float, q: float, beta: float, flux: float = 1e4, **kwargs) -> galsim.GSObject:
    """A sky-frame Sérsic mapped to pixels, as `draw_source` builds it."""
    sky = galsim.Sersic(n, half_light_radius=hlr, **kwargs).shear(q=q, beta=beta * galsim.degrees).withFlux(flux)
    return JACOBIAN.profileToImage(sky)


@pytest.mark.parametrize("n", [0.3, 0.5, 1.0, 1.77, 4.0, 6.2])
def test_k_image_matches_galsim_drawkimage(n: float) -> None:
    """ĝ(k) of a sheared, Jacobian-mapped, shifted Sérsic, phases included,
    equals GalSim's drawKImage to 3e-5 of the flux on every k-point."""
    size = 64
    profile = _galaxy(n, 0.9, 0.45, 33.0, flux=5.0).shift(size / 2 + 0.3, size / 2 - 0.4)
    table_spectrum = k_image(profile, size)
    galsim_image = galsim.ImageCD(galsim.BoundsI(0, size // 2, -size // 2, size // 2 - 1))
    profile.withGSParams(ACCURATE).drawKImage(image=galsim_image, scale=2.0 * np.pi / size, recenter=False)
    expected = np.fft.ifftshift(galsim_image.array, axes=0)  # GalSim rows k_y = −N/2 … → FFT order
    assert table_spectrum.shape == expected.shape
    assert table_spectrum[0, 0] == pytest.approx(5.0, rel=1e-6)
    assert np.abs(table_spectrum - expected).max() < 3e-5 * 5.0


@pytest.mark.parametrize("n", [0.3, 0.31, 0.5, 0.9, 1.0, 2.45, 4.0, 5.55, 6.2])
def test_table_rows_between_nodes_match_galsim(n: float) -> None:
    """Interpolated in n and k, T_n(k) is within 2e-5 of GalSim's exact
    transform over 1e-4 ≤ k ≤ 1e3 (k per half-light radius)."""
    table = fourier_table()
    k = np.logspace(-4, 3, 97)
    reference = galsim.Sersic(n, half_light_radius=1.0, gsparams=ACCURATE)
    expected = np.array([reference.kValue(galsim.PositionD(value, 0.0)).real for value in k])
    index = (np.log(k) - table.ln_k_start) / table.ln_k_step
    interpolated = np.interp(index, np.arange(table.values.shape[1]), table.row(n))
    assert np.abs(interpolated - expected).max() < 2e-5


CASES = [
    # n, half-light radius [arcsec], q, beta [deg]
    (0.3, 0.3, 1.0, 0.0),
    (0.3, 1.5, 0.3, 75.0),
    (0.5, 0.8, 0.6, 10.0),
    (1.0, 0.3, 0.3, 140.0),
    (1.0, 1.5, 0.8, 45.0),
    (2.3, 0.8, 0.5, 120.0),
    (4.0, 0.3, 0.7, 30.0),
    (4.0, 1.5, 0.3, 100.0),
    (6.2, 0.3, 0.4, 60.0),
    (6.2, 1.5, 0.9, 170.0),
]


@pytest.mark.parametrize("n, hlr, q, beta", CASES)
def test_stamp_matches_galsim_exact_sersic(n: float, hlr: float, q: float, beta: float) -> None:
    """A tabulated-Sérsic stamp ⊗ pixelized PSF (one FFT, as the task draws)
    against GalSim's exact Convolve(Sersic, Gaussian, Pixel) on the stamp the
    task would draw: every pixel within 1e-3 of the peak.  Fluxes: the
    periodic grid holds exactly the profile's flux, and the stamp the same
    flux as GalSim's own analytic k-image on that grid (1e-4), which also
    folds the wings beyond the grid period back in."""
    kernel = _kernel()
    galaxy = _galaxy(n, hlr, q, beta)
    psf = galsim.Gaussian(sigma=PSF_SIGMA)
    good = galsim.Convolve(galaxy, psf).getGoodImageSize(1.0)
    size = min(int(np.ceil(1.5 * good)) | 1, 401)
    grid = fft_grid_size(max(size, good))
    dx, dy = 0.27, -0.41
    spectrum = kernel_spectrum(kernel, grid)
    stamp = fft_stamp(galaxy, spectrum, size, dx, dy)
    exact = galsim.Convolve(galaxy, psf, galsim.Pixel(1.0), gsparams=ACCURATE).drawImage(
        nx=size, ny=size, scale=1.0, offset=(dx, dy), method="no_pixel"
    ).array
    assert np.abs(stamp - exact).max() <= 1e-3 * exact.max()
    assert fft_stamp(galaxy, spectrum, grid - 1, dx, dy).sum() == pytest.approx(1e4, rel=1e-4)
    # Convolving with a unit delta function hides the Sérsic from the table.
    galsim_k_image = fft_stamp(galsim.Convolve(galaxy, galsim.DeltaFunction()), spectrum, size, dx, dy)
    assert stamp.sum() == pytest.approx(galsim_k_image.sum(), rel=1e-4)


def test_truncated_sersic_is_left_to_galsim() -> None:
    """trunc > 0 changes the profile's shape: the table declines it and the
    FFT stamp is GalSim's own truncated Sérsic."""
    truncated = _galaxy(2.0, 0.8, 0.6, 20.0, trunc=1.6)
    assert k_image(truncated, 64) is None
    kernel = _kernel()
    stamp = fft_stamp(truncated, kernel_spectrum(kernel, fft_grid_size(101)), 101, 0.1, 0.2)
    psf = galsim.Gaussian(sigma=PSF_SIGMA)
    exact = galsim.Convolve(truncated, psf, galsim.Pixel(1.0), gsparams=ACCURATE).drawImage(
        nx=101, ny=101, scale=1.0, offset=(0.1, 0.2), method="no_pixel"
    ).array
    assert np.abs(stamp - exact).max() <= 1e-3 * exact.max()
    untruncated = fft_stamp(_galaxy(2.0, 0.8, 0.6, 20.0), kernel_spectrum(kernel, fft_grid_size(101)), 101, 0.1, 0.2)
    assert np.abs(untruncated - stamp).max() > 0.05 * stamp.max()  # the truncation is visible


def test_draw_source_keeps_the_calib_flux_radius_convention() -> None:
    """Through `draw_source`, a Sérsic of catalog flux F inside
    ``calib_flux_radius`` carries F / A(r) in total, A the PSF's aperture
    fraction, and its stamp holds that flux less what lies beyond the stamp
    (as GalSim's exact profile on the same stamp)."""
    from astropy.wcs import WCS
    from lsst.images import Box, DetectorFrame, SkyProjection
    from lsst.images.psfs import GaussianPointSpreadFunction

    bbox = Box.factory[0:400, 0:400]
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [201.0, 201.0]
    wcs.wcs.cd = np.diag([-0.2 / 3600.0, 0.2 / 3600.0])
    projection = SkyProjection.from_fits_wcs(wcs, DetectorFrame(instrument="Test", detector=1, visit=1, bbox=bbox),
                                             pixel_bounds=bbox)
    psf = GaussianPointSpreadFunction(PSF_SIGMA, bounds=bbox, stamp_size=31)
    settings = RenderSettings(calib_flux_radius=5.0)
    row = {"source_type": "Sersic", "n": 3.3, "half_light_radius": 0.7, "q": 0.5, "beta": 40.0}
    drawn = draw_source(source_spec(row), x=200.2, y=199.7, flux=1e4, psf=psf, sky_projection=projection,
                        image_bbox=bbox, settings=settings)
    assert drawn.flags == 0
    kernel = np.asarray(psf.compute_kernel_image(x=200.0, y=200.0).array, dtype=np.float64)
    kernel /= kernel.sum()
    expected_total = 1e4 / aperture_fraction(kernel, 5.0)
    assert drawn.total_flux == pytest.approx(expected_total, rel=1e-12)
    jacobian = local_jacobian(projection, 192.0, 192.0)  # the PSF cache's cell centre
    galaxy = jacobian.profileToImage(
        galsim.Sersic(3.3, half_light_radius=0.7).shear(q=0.5, beta=40.0 * galsim.degrees).withFlux(expected_total)
    )
    # The kernel is a sampled Gaussian: GalSim draws the same through an
    # InterpolatedImage, exactly in k-space (no FFT of the PSF profile).
    psf_profile = galsim.InterpolatedImage(galsim.Image(kernel, scale=1.0), gsparams=ACCURATE)
    half = drawn.draw_size // 2
    exact = galsim.Convolve(galaxy, psf_profile, gsparams=ACCURATE).drawImage(
        nx=drawn.draw_size, ny=drawn.draw_size, scale=1.0, offset=(0.2, -0.3), method="no_pixel"
    ).array
    assert drawn.model.shape == exact.shape == (2 * half + 1, 2 * half + 1)
    # Both stamps miss the flux beyond their edge (0.2 %); the periodic FFT
    # grid folds part of it back in (as GalSim's own FFT draws do).
    assert drawn.model.sum() == pytest.approx(exact.sum(), rel=5e-4)
    assert drawn.model.sum() == pytest.approx(expected_total, rel=2e-3)
