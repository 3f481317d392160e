"""Fast stamp kernels: an extended source by one FFT with a cached PSF spectrum.

It works on the *pixelized* PSF kernel K (the image of a point source,
already containing the pixel response, unit sum, odd sides, centred), which
is what ``method="no_pixel"`` drawing with the PSF as an
`galsim.InterpolatedImage` convolves with.  (Point sources are the PSF
model's own stellar image at their position: `isrinject.engine.draw.stellar`.)

Extended source with pixel-frame profile g (the sky profile mapped through
the local Jacobian) on an even N × N periodic grid (N ≥ stamp side)::

    M = IDFT[ ĝ(k) · K̂(k) · exp(−i k·(c + δ)) ]

ĝ(k) = ∫ g(x) e^{−i k·x} d²x from GalSim's analytic ``drawKImage`` (for a
Sérsic: from the shipped table of `isrinject.engine.draw.sersic_table`, which needs
no per-index Hankel transform) at the N grid's frequencies k = 2π·(p, q)/N (``|k| ≤ π``, the Nyquist band of the
pixel grid), K̂ the DFT of the kernel (cached per PSF cell and N) and the
phase factor places the profile centre at c + δ.  Because K is the pixelized
PSF, ĝ·K̂ is the spectrum of the pixel-sampled convolved image up to the
profile's power beyond Nyquist times K̂ there (K̂ of a PSF of FWHM ≥ 2 px is
below 1e-3 at the Nyquist frequency).  The N grid sums to ĝ(0)·K̂(0) = F;
the stamp (centred in it) holds F less the flux beyond the stamp edge, and
flux beyond the period N folds back, as in GalSim's own FFT draws.
"""

from __future__ import annotations

__all__ = ["fft_grid_size", "fft_stamp", "kernel_spectrum"]

import functools

import galsim
import numpy as np
import scipy.fft

from .sersic_table import k_image as sersic_k_image


@functools.cache
def fft_grid_size(size: int) -> int:
    """Even FFT-friendly grid side N ≥ ``size``."""
    n = scipy.fft.next_fast_len(size, real=True)
    while n % 2:
        n = scipy.fft.next_fast_len(n + 1, real=True)
    return n


def kernel_spectrum(kernel: np.ndarray, n: int) -> np.ndarray:
    """DFT (``rfft2`` layout, N × (N/2+1), complex64) of the kernel with its
    centre moved to pixel (0, 0) of an N × N periodic grid::

        K̂[p, q] = Σ_{j, i} K[j, i] · exp(−2πi·p·(j − c_y)/N) · exp(−2πi·q·(i − c_x)/N)
                = (E_y · K · E_x)[p, q]

    with c the kernel centre: two small matrix products with cached phase
    tables (E_y is N × k_y, E_x is k_x × (N/2+1)).  The kernel is small, so
    this takes fewer operations than FFTs of the zero-padded grid (and no
    padding); the phases are periodic in N, so a kernel wider than the grid
    folds onto it by itself.
    """
    phase_y, phase_x = _dft_phases(n, *kernel.shape)
    return phase_y @ (kernel.astype(np.complex64) @ phase_x)


@functools.lru_cache(maxsize=256)
def _dft_phases(n: int, ky: int, kx: int) -> tuple[np.ndarray, np.ndarray]:
    """E_y (N × k_y) and E_x (k_x × (N/2+1)) of `kernel_spectrum`, complex64."""
    rows = np.arange(ky) - ky // 2
    columns = np.arange(kx) - kx // 2
    phase_y = np.exp(-2j * np.pi * np.outer(np.arange(n), rows) / n).astype(np.complex64)
    phase_x = np.exp(-2j * np.pi * np.outer(columns, np.arange(n // 2 + 1)) / n).astype(np.complex64)
    return phase_y, phase_x


def fft_stamp(
    profile: galsim.GSObject, spectrum: np.ndarray, size: int, dx: float, dy: float
) -> np.ndarray:
    """Return the ``size × size`` stamp of ``profile`` ⊗ PSF centred at
    (size//2 + dx, size//2 + dy) (see module docstring).

    Parameters
    ----------
    profile
        Surface-brightness profile in *pixel* coordinates (flux included).
    spectrum
        `kernel_spectrum` of the PSF kernel on the N grid, N = `fft_grid_size`
        (``size``).
    size
        Odd stamp side [pixels].
    dx, dy
        Sub-pixel offset of the source from the stamp centre [pixels].

    Raises
    ------
    galsim.GalSimError
        GalSim cannot evaluate the profile's Fourier transform.
    """
    n = spectrum.shape[0]
    half = n // 2
    # Centre the stamp in the grid: the guard band N − size is split between
    # both sides, so wings beyond the period fold back symmetrically.  The
    # shift's phases are applied while the k-image is drawn.
    shifted = profile.shift(half + dx, half + dy)
    # A Sérsic comes from the shipped table (no per-index Hankel transform).
    product = sersic_k_image(shifted, n)
    if product is not None:
        product *= spectrum
    else:
        # Single precision: the stamp ends in a float32 image, and pocketfft's
        # complex64 transforms are several times faster at these sizes.
        k_image = galsim.ImageCF(galsim.BoundsI(0, half, -half, half - 1))
        shifted.drawKImage(image=k_image, scale=2.0 * np.pi / n, recenter=False)
        # GalSim's rows run over k_y = −N/2 … N/2−1 and FFT order starts at
        # k_y = 0: multiply the halves crosswise instead of rotating a copy.
        profile_spectrum = k_image.array
        product = np.empty_like(spectrum)
        np.multiply(profile_spectrum[half:], spectrum[:half], out=product[:half])
        np.multiply(profile_spectrum[:half], spectrum[half:], out=product[half:])
    start = half - size // 2
    stamp = scipy.fft.irfft2(product, s=(n, n))[start : start + size, start : start + size]
    return stamp.astype(np.float64)
