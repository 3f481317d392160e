"""A science + template pair and their difference image: the truth for difference injection.

`simulate_difference` simulates a science visit with `simulate_exposure` (the
physical ISR of doc/isrinject/design.md), a template of the same static scene (noiseless
scene drawn with the template's Gaussian PSF, plus Gaussian noise of a
constant variance ``V_t`` [nJy²] as a warped coadd has), a Gaussian matching
kernel between the two PSFs and the Alard–Lupton difference (ip_diffim's
two modes)::

    convolved="template":  D = I_s − k ⊗ I_t,    V_D = V_s + k² ⊗ V_t,    PSF σ_s
    convolved="science":   D = k ⊗ I_s − I_t,    V_D = k² ⊗ V_s + V_t,    PSF σ_t

with ``σ_k² = |σ_s² − σ_t²|`` (k normalised: both images are in nJy).  Pixels
whose kernel footprint leaves the image keep the unconvolved values (afw's
copy-edge).  `SimulatedDifference.subtract` re-runs the same subtraction on
another science image (the science visit with injected transients), which is
the truth a direct injection into the difference image is compared with.
The `DifferenceImage` carries the kernel, a template record with the template
PSF's second moments (σ_t², σ_t², 0) and ``CONVOLVED_EXPOSURE`` metadata.
"""

from __future__ import annotations

__all__ = [
    "SimulatedDifference",
    "difference_from_scene",
    "gaussian_matching_kernel",
    "gaussian_sigma",
    "simulate_difference",
]

import dataclasses
import math
import uuid
from typing import Any, Literal

import numpy as np
from lsst.images import Box, DifferenceImage, DifferenceImageTemplateInfo, Image, Polygon, VisitImage
from lsst.images.convolution_kernels import ImageBasisConvolutionKernel
from lsst.images.fields import ChebyshevField
from lsst.images.psfs import GaussianPointSpreadFunction
from scipy import signal

from .isr import SimulatedExposure, simulate_exposure


def gaussian_matching_kernel(sigma: float, bbox: Box) -> ImageBasisConvolutionKernel:
    """A constant, normalised Gaussian kernel of σ [pixels] (one basis image,
    side 2·⌈4σ⌉ + 1, at least 3) valid over ``bbox``."""
    half = max(int(math.ceil(4.0 * sigma)), 1)
    grid = np.arange(-half, half + 1, dtype=np.float64)
    if sigma > 0:
        profile = np.exp(-0.5 * (grid / sigma) ** 2)
    else:
        profile = (grid == 0).astype(np.float64)
    image = np.outer(profile, profile)
    image /= image.sum()
    return ImageBasisConvolutionKernel(image[np.newaxis], [ChebyshevField(bbox, np.array([[1.0]]))])


def gaussian_sigma(image: VisitImage) -> float:
    """σ [pixels] of the simulator's Gaussian PSF of ``image``.

    Raises
    ------
    TypeError
        If the image's PSF is not a `GaussianPointSpreadFunction`.
    """
    psf = image.psf
    if not isinstance(psf, GaussianPointSpreadFunction):
        raise TypeError(f"Expected the simulator's GaussianPointSpreadFunction; got {type(psf).__name__}.")
    return float(psf.sigma)


def _convolve(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """True convolution of ``values`` with an odd-sized centred ``kernel``;
    pixels within half a kernel of the edge keep their input value."""
    out = signal.fftconvolve(values, kernel, mode="same")
    hy, hx = kernel.shape[0] // 2, kernel.shape[1] // 2
    edge = np.ones(values.shape, dtype=bool)
    edge[hy : values.shape[0] - hy, hx : values.shape[1] - hx] = False
    return np.where(edge, values, out)


@dataclasses.dataclass
class SimulatedDifference:
    """A simulated science visit, its template and their difference."""

    science: SimulatedExposure
    """The science visit (its visit image, flat and every ISR intermediate)."""
    template_image: np.ndarray
    """I_t [nJy] on the science pixel grid: the scene with the template PSF plus noise."""
    template_variance: np.ndarray
    """V_t [nJy²]."""
    template_psf_sigma: float
    """σ_t [pixels]."""
    kernel: ImageBasisConvolutionKernel
    """The matching kernel k."""
    convolved: Literal["template", "science"]
    """Which image k convolved."""
    difference_image: DifferenceImage
    """D, V_D, the science masks, the difference PSF, kernel and template record."""

    def subtract(self, science_image: VisitImage) -> DifferenceImage:
        """The difference of another science image (same grid, e.g. the
        science visit with injected sources) and this template, made exactly
        as `difference_image` was."""
        k = np.asarray(self.kernel.compute_kernel_image(x=0, y=0).array, dtype=np.float64)
        science = np.asarray(science_image.image.array, dtype=np.float64)
        science_variance = np.asarray(science_image.variance.array, dtype=np.float64)
        if self.convolved == "template":
            image = science - _convolve(self.template_image, k)
            variance = science_variance + _convolve(self.template_variance, k**2)
            psf = science_image.psf
        else:
            image = _convolve(science, k) - self.template_image
            variance = _convolve(science_variance, k**2) + self.template_variance
            bbox = science_image.bbox
            stamp = 2 * math.ceil(5 * self.template_psf_sigma) + 1
            psf = GaussianPointSpreadFunction(self.template_psf_sigma, bounds=bbox, stamp_size=stamp)
        return _difference_image(science_image, image, variance, psf, self.kernel, self.convolved,
                                 self.template_psf_sigma)


def _difference_image(
    science: VisitImage,
    image: np.ndarray,
    variance: np.ndarray,
    psf: Any,
    kernel: ImageBasisConvolutionKernel,
    convolved: str,
    template_sigma: float,
) -> DifferenceImage:
    bbox = science.bbox
    corners_x = np.array([bbox.x.min - 0.5, bbox.x.max + 0.5, bbox.x.max + 0.5, bbox.x.min - 0.5])
    corners_y = np.array([bbox.y.min - 0.5, bbox.y.min - 0.5, bbox.y.max + 0.5, bbox.y.max + 0.5])
    template = DifferenceImageTemplateInfo(
        skymap="isrinject_sim", tract=0, patch=0, dataset_id=uuid.UUID(int=0), dataset_run="sim/templates",
        bounds=Polygon(x_vertices=corners_x, y_vertices=corners_y),
        psf_shape_xx=template_sigma**2, psf_shape_yy=template_sigma**2, psf_shape_xy=0.0, psf_shape_flag=False,
    )
    difference = DifferenceImage(
        Image(image.astype(np.float32), bbox=bbox, unit=science.unit),
        mask=science.mask.copy(),
        variance=Image(variance.astype(np.float32), bbox=bbox, unit=science.unit**2),
        sky_projection=science.sky_projection,
        obs_info=science.obs_info,
        photometric_scaling=science.photometric_scaling,
        psf=psf,
        detector=science.detector,
        band=science.band,
        kernel=kernel,
        templates=[template],
    )
    difference.metadata["CONVOLVED_EXPOSURE"] = convolved.capitalize()
    return difference


def simulate_difference(
    *,
    band: str,
    visit: int,
    detector: int,
    seed: int,
    shape: tuple[int, int] = (256, 256),
    convolved: Literal["template", "science"] = "template",
    science_psf_sigma: float = 2.2,
    template_psf_sigma: float = 1.6,
    template_variance_fraction: float = 0.25,
    **science_options: Any,
) -> SimulatedDifference:
    """Simulate a science visit, its template and their difference (module docstring).

    Parameters
    ----------
    band, visit, detector, seed, shape
        As `simulate_exposure` (the science visit; always in nJy).
    convolved
        Which image the matching kernel convolves: ``"template"`` needs
        σ_s ≥ σ_t, ``"science"`` σ_t ≥ σ_s.
    science_psf_sigma, template_psf_sigma
        Gaussian PSF σ [pixels] of the science visit and the template.
    template_variance_fraction
        V_t as a fraction of the science visit's median variance (a coadd of
        ~1/fraction visits).
    **science_options
        Passed on to `simulate_exposure` for the science visit.

    Raises
    ------
    ValueError
        For a kernel direction that would need a deconvolution, or a
        negative variance fraction.
    """
    if convolved == "template" and science_psf_sigma < template_psf_sigma:
        raise ValueError(
            f"convolved='template' needs science_psf_sigma >= template_psf_sigma; got "
            f"{science_psf_sigma!r} < {template_psf_sigma!r}."
        )
    if convolved == "science" and template_psf_sigma < science_psf_sigma:
        raise ValueError(
            f"convolved='science' needs template_psf_sigma >= science_psf_sigma; got "
            f"{template_psf_sigma!r} < {science_psf_sigma!r}."
        )
    if not (template_variance_fraction >= 0):
        raise ValueError(f"template_variance_fraction must be >= 0; got {template_variance_fraction!r}.")
    science = simulate_exposure(
        band=band, visit=visit, detector=detector, shape=shape, seed=seed, units="nJy",
        psf_sigma_pixels=science_psf_sigma, **science_options,
    )
    # The same seed draws the same static scene; only its PSF differs.
    scene_options = {key: value for key, value in science_options.items() if key != "sources"}
    template_scene = simulate_exposure(
        band=band, visit=visit, detector=detector, shape=shape, seed=seed, units="nJy",
        psf_sigma_pixels=template_psf_sigma, add_noise=False, **{**scene_options, "defects": False},
    ).source_model_njy
    return difference_from_scene(
        science, template_scene, template_psf_sigma=template_psf_sigma, convolved=convolved,
        template_variance_fraction=template_variance_fraction, seed=seed,
    )


def difference_from_scene(
    science: SimulatedExposure,
    template_scene: np.ndarray,
    *,
    template_psf_sigma: float,
    convolved: Literal["template", "science"],
    template_variance_fraction: float = 0.25,
    seed: int = 0,
) -> SimulatedDifference:
    """The template and difference of a simulated science visit, given the
    template's noiseless scene [nJy] (the science scene drawn with the
    template PSF σ_t); the matching kernel is a Gaussian of ``σ_k² = |σ_s² − σ_t²|``
    with σ_s the science visit's Gaussian PSF σ.  Noise of variance
    ``template_variance_fraction`` × the science's median variance is added
    to the template (seeded by ``seed``)."""
    science_sigma = gaussian_sigma(science.visit_image)
    science_variance = np.asarray(science.visit_image.variance.array, dtype=np.float64)
    template_var = template_variance_fraction * float(np.nanmedian(science_variance))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    shape = science_variance.shape
    template_image = template_scene + math.sqrt(template_var) * rng.standard_normal(shape)
    template_variance = np.full(shape, template_var)
    sigma_k = math.sqrt(abs(science_sigma**2 - template_psf_sigma**2))
    kernel = gaussian_matching_kernel(sigma_k, science.visit_image.bbox)
    pair = SimulatedDifference(
        science=science, template_image=template_image, template_variance=template_variance,
        template_psf_sigma=template_psf_sigma, kernel=kernel, convolved=convolved,
        difference_image=None,  # type: ignore[arg-type]  # set just below from subtract()
    )
    pair.difference_image = pair.subtract(science.visit_image)
    return pair
