"""Injection into a difference image: the visit pixel model, then the matching kernel.

A transient's photons arrive in the *science* exposure, so what it adds to a
difference image ``D`` is what it adds to the science image ``I_s`` carried
through the subtraction.  ip_diffim's Alard–Lupton subtraction (with a
matching kernel ``K``, normalised ``k = K / ΣK``) makes one of::

    convolveTemplate:  D = I_s − K ⊗ I_t             (D's PSF: the science PSF)
    convolveScience:   D = (K ⊗ I_s − I_t) / ΣK      (D's PSF: the template PSF)

so a transient injected as ΔI_s, ΔV_s into the science pixels (the pixel
model of `isrinject.engine.model`: ``ΔI_s = c·n/(f·R)``, n ~ Poisson(λ)) gives::

    convolveTemplate:  ΔD = ΔI_s,           ΔV_D = ΔV_s
    convolveScience:   ΔD = k ⊗ ΔI_s,       ΔV_D = k² ⊗ ΔV_s

(a convolution of independent pixels adds their variances with the squared
weights).  In the first case `inject_difference` runs the visit engine,
`isrinject.engine.inject.inject_sources`, on the difference image itself: per
pixel ``ΔV/ΔI = c/f`` exactly as in a visit image.  In the second it runs the
same engine on a science-grid scratch image (zero image in float64, the
difference's variance and mask, the *science* PSF), then convolves the noisy
ΔI_s with ``k`` and ΔV_s with ``k²``: the noise the kernel correlates is the
drawn Poisson noise itself, not a model of it.

The kernel is evaluated at the centre of cells of ``kernel_cell_size`` pixels
(ip_diffim's kernels vary smoothly, to first order over 4k pixels) and applied
to the output pixels of its cell, as afw evaluates a spatially varying kernel
at the output pixel.  Output pixels whose kernel footprint leaves the image get
``ΔI_s / ΣK`` and ``ΔV_s / ΣK²`` (afw's copy-edge, then ip_diffim's division
by ΣK).

Which image was convolved (`convolved_image`): a ``CONVOLVED_EXPOSURE`` (or
ip_diffim's ``convolvedExposure``) metadata entry ``Template``/``Science``
wins; otherwise the PSF sizes decide.  A template-convolved difference has the
science PSF, whose second moments are the template's plus the kernel's
(T_D ≈ T_t + T_k); a science-convolved one has the template PSF (T_D ≈ T_t).
T_D is the adaptive trace of the difference image's PSF at the image centre,
T_t the mean ``psf_shape_xx + psf_shape_yy`` of its ``templates``, T_k the
unweighted trace of the normalised kernel there; the closer prediction wins.
When T_k ≈ 0 the two cases agree (k is nearly a delta function), so the
choice no longer matters.

Not modelled: ip_diffim's decorrelation afterburner (``doDecorrelation``), a
further convolution the `DifferenceImage` does not record; the V_f term and
the saturation test reconstruct the science signal S from the difference's
variance plane, which also holds the template's variance (so S, and with it
that second-order term, is overestimated by the template's share).
"""

from __future__ import annotations

__all__ = [
    "CONVOLVED_IMAGE_KEYS",
    "ConvolvedImage",
    "DifferenceInjectionConfig",
    "KernelDirection",
    "KernelResponse",
    "convolve_injection",
    "convolved_image",
    "inject_difference",
]

import dataclasses
import logging
from typing import Literal, Protocol, cast

import astropy.units as u
import numpy as np
from astropy.table import Table
from lsst.images import Box, DifferenceImage, Image, Mask, MaskedImage, VisitImage
from lsst.images.convolution_kernels import ConvolutionKernel
from lsst.images.psfs import PointSpreadFunction
from lsst.utils.logging import LsstLoggers
from scipy import ndimage, signal

from .calibration import CalibrationError
from .inject import InjectionConfig, InjectionResult, inject_sources

_LOG = logging.getLogger(__name__)

#: Which image the matching kernel convolved.
type ConvolvedImage = Literal["template", "science"]

#: Metadata keys that record it (isrinject's, then ip_diffim's task metadata name).
CONVOLVED_IMAGE_KEYS: tuple[str, ...] = ("CONVOLVED_EXPOSURE", "convolvedExposure")


class DifferenceInjectionConfig(InjectionConfig, Protocol):
    """What `inject_difference` reads besides `InjectionConfig`
    (`isrinject.tasks.difference.DifferenceInjectConfig` is one)."""

    @property
    def convolved_image(self) -> str: ...  # "auto" or a ConvolvedImage
    @property
    def kernel_cell_size(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class KernelDirection:
    """Which image the matching kernel convolved, and how that was decided."""

    convolved: ConvolvedImage
    reason: str


def _metadata_direction(difference_image: VisitImage) -> KernelDirection | None:
    metadata = difference_image.metadata
    for key in CONVOLVED_IMAGE_KEYS:
        value = metadata.get(key) if metadata is not None else None
        if value is None:
            continue
        text = str(value).strip().lower()
        if text not in ("template", "science"):
            raise CalibrationError(
                f"Difference image metadata {key}={value!r}: expected 'Template' or 'Science'."
            )
        return KernelDirection(cast(ConvolvedImage, text), f"metadata {key}={value!r}")
    return None


def _adaptive_trace(psf: PointSpreadFunction, x: float, y: float) -> float:
    """Ixx + Iyy [pixels²] of the PSF at (x, y), from GalSim's adaptive moments."""
    import galsim

    kernel = psf.compute_kernel_image(x=x, y=y)
    moments = galsim.hsm.FindAdaptiveMom(galsim.Image(np.asarray(kernel.array, dtype=np.float64)))
    shear = moments.observed_shape
    # σ⁴ = det(I); T = 2σ² (1 + |g|²)/(1 − |g|²) for the ellipse of shear g.
    g2 = shear.g1**2 + shear.g2**2
    return float(2.0 * moments.moments_sigma**2 * (1.0 + g2) / (1.0 - g2))


def _kernel_trace(kernel: np.ndarray, bbox: Box) -> float:
    """Unweighted Ixx + Iyy [pixels²] of a normalised kernel image on ``bbox``."""
    grid = bbox.meshgrid()
    weights = kernel / kernel.sum()
    cx, cy = float((weights * grid.x).sum()), float((weights * grid.y).sum())
    return float((weights * ((grid.x - cx) ** 2 + (grid.y - cy) ** 2)).sum())


def convolved_image(difference_image: VisitImage, setting: str = "auto") -> KernelDirection:
    """Which image the difference image's matching kernel convolved.

    Parameters
    ----------
    difference_image
        The difference image (a `DifferenceImage`; a plain `VisitImage` or one
        without a kernel counts as template-convolved: nothing to apply).
    setting
        ``"template"`` or ``"science"`` to state it, ``"auto"`` to read it
        (metadata, then PSF sizes: see the module docstring).
    """
    if setting in ("template", "science"):
        return KernelDirection(cast(ConvolvedImage, setting), "configured")
    if setting != "auto":
        raise ValueError(f"convolved_image must be 'auto', 'template' or 'science'; got {setting!r}.")
    recorded = _metadata_direction(difference_image)
    if recorded is not None:
        return recorded
    kernel = getattr(difference_image, "_kernel", None)
    if kernel is None:
        return KernelDirection("template", "no matching kernel attached: the injection is not convolved")
    templates = getattr(difference_image, "_templates", None) or []
    shapes = [t.psf_shape_xx + t.psf_shape_yy for t in templates if not t.psf_shape_flag]
    if not shapes:
        raise CalibrationError(
            "Cannot tell which image the matching kernel convolved: the difference image has no "
            f"{'/'.join(CONVOLVED_IMAGE_KEYS)} metadata and no template PSF shapes; set "
            "config.convolved_image to 'template' or 'science'."
        )
    bbox = difference_image.bbox
    x, y = float(bbox.x.center), float(bbox.y.center)
    difference_trace = _adaptive_trace(difference_image.psf, x, y)
    template_trace = float(np.mean(shapes))
    kernel_image = kernel.compute_kernel_image(x=round(x), y=round(y))
    kernel_trace = _kernel_trace(np.asarray(kernel_image.array, dtype=np.float64), kernel_image.bbox)
    if_template = abs(difference_trace - (template_trace + kernel_trace))
    if_science = abs(difference_trace - template_trace)
    convolved: ConvolvedImage = "template" if if_template <= if_science else "science"
    return KernelDirection(
        convolved,
        f"PSF traces: difference {difference_trace:.3f}, template {template_trace:.3f}, kernel "
        f"{kernel_trace:.3f} px² (template-convolved predicts {template_trace + kernel_trace:.3f})",
    )


@dataclasses.dataclass
class KernelResponse:
    """The science-grid injection carried through the matching kernel (`convolve_injection`)."""

    delta_image: np.ndarray
    """ΔD = k ⊗ ΔI_s on the image bbox [image units]."""
    delta_variance: np.ndarray
    """ΔV_D = k² ⊗ ΔV_s [image units²]."""
    kept: np.ndarray
    """w(q): the fraction of an injected science pixel's ΔI_s that lands in
    the difference image, ``Σ_p ΔD(p) = Σ_q w(q)·ΔI_s(q)`` (1 inside, less
    where the kernel reaches past the edge, 1/ΣK on the copied edge); only
    meaningful where ΔI_s ≠ 0."""
    reach: np.ndarray
    """Where ΔD can be non-zero: the injected pixels dilated by the kernel box."""


def _cells(bbox: Box, cell_size: int) -> list[Box]:
    size = max(int(cell_size), 1)
    cells = []
    for y0 in range(bbox.y.start, bbox.y.stop, size):
        for x0 in range(bbox.x.start, bbox.x.stop, size):
            cells.append(Box.factory[y0 : min(y0 + size, bbox.y.stop), x0 : min(x0 + size, bbox.x.stop)])
    return cells


def convolve_injection(
    delta_image: np.ndarray,
    delta_variance: np.ndarray,
    kernel: ConvolutionKernel,
    bbox: Box,
    *,
    cell_size: int = 256,
) -> KernelResponse:
    """Carry a science-grid injection through a science-convolving subtraction.

    Per output pixel p of a cell c with kernel ``K_c`` evaluated at the
    cell's centre pixel (start + size // 2 on each axis) and ``k_c = K_c/ΣK_c`` (true convolution: a science pixel q
    spreads into ``k_c(p − q)``)::

        ΔD(p)   = Σ_q k_c(p − q)  · ΔI_s(q)        footprint of p inside the image
        ΔV_D(p) = Σ_q k_c(p − q)² · ΔV_s(q)
        ΔD(p)   = ΔI_s(p) / ΣK_c,  ΔV_D(p) = ΔV_s(p) / ΣK_c²    otherwise (copied edge)

    Parameters
    ----------
    delta_image, delta_variance
        ΔI_s and ΔV_s of the science pixels on ``bbox`` (float64).
    kernel
        The matching kernel (`DifferenceImage.kernel`).
    bbox
        The image bounding box.
    cell_size
        Side [pixels] of the cells over which the kernel is held constant.
    """
    kernel_box = kernel.kernel_bbox
    injected = (delta_image != 0) | (delta_variance != 0)
    # A rectangular dilation is a separable maximum filter (~30× faster than binary_dilation).
    reach = ndimage.maximum_filter(injected.view(np.uint8), size=kernel_box.shape).astype(bool)
    out_image = np.zeros(bbox.shape)
    out_variance = np.zeros(bbox.shape)
    kept = np.zeros(bbox.shape)
    # Output pixels whose whole kernel footprint lies inside the image; the
    # footprint of p is p − kernel_box (true convolution).
    inner = Box.factory[
        bbox.y.start + kernel_box.y.stop - 1 : bbox.y.stop + kernel_box.y.start,
        bbox.x.start + kernel_box.x.stop - 1 : bbox.x.stop + kernel_box.x.start,
    ] if (bbox.y.size >= kernel_box.y.size and bbox.x.size >= kernel_box.x.size) else None
    interior = np.zeros(bbox.shape, dtype=bool)
    if inner is not None:
        sl = inner.slice_within(bbox)
        interior[sl.y, sl.x] = True
    for full_cell in _cells(bbox, cell_size):
        fsl = full_cell.slice_within(bbox)
        rows = np.flatnonzero(reach[fsl.y, fsl.x].any(axis=1))
        if not rows.size:
            continue
        cols = np.flatnonzero(reach[fsl.y, fsl.x].any(axis=0))
        # Only the part of the cell the injection reaches is convolved.
        cell = Box.factory[
            full_cell.y.start + rows[0] : full_cell.y.start + rows[-1] + 1,
            full_cell.x.start + cols[0] : full_cell.x.start + cols[-1] + 1,
        ]
        csl = cell.slice_within(bbox)
        raw = np.asarray(
            kernel.compute_kernel_image(
                x=full_cell.x.start + full_cell.x.size // 2, y=full_cell.y.start + full_cell.y.size // 2
            ).array,
            dtype=np.float64,
        )
        norm = float(raw.sum())
        if not (np.isfinite(norm) and norm != 0):
            raise CalibrationError(f"The matching kernel at the centre of {full_cell} sums to {norm!r}.")
        k = raw / norm
        # Input box: the cell grown by the kernel reach, inside the image.
        grown = Box.factory[
            cell.y.start - (kernel_box.y.stop - 1) : cell.y.stop - kernel_box.y.start,
            cell.x.start - (kernel_box.x.stop - 1) : cell.x.stop - kernel_box.x.start,
        ].intersection(bbox)
        gsl = grown.slice_within(bbox)
        # Full convolution of the grown box; element (i, j) of it is output
        # pixel grown.start + (i, j) + kernel_box.start.
        full_image = signal.oaconvolve(delta_image[gsl.y, gsl.x], k, mode="full")
        full_variance = signal.oaconvolve(delta_variance[gsl.y, gsl.x], k**2, mode="full")
        oy = cell.y.start - (grown.y.start + kernel_box.y.start)
        ox = cell.x.start - (grown.x.start + kernel_box.x.start)
        window = (slice(oy, oy + cell.y.size), slice(ox, ox + cell.x.size))
        cell_interior = interior[csl.y, csl.x]
        out_image[csl.y, csl.x] = np.where(
            cell_interior, full_image[window], delta_image[csl.y, csl.x] / norm
        )
        out_variance[csl.y, csl.x] = np.where(
            cell_interior, full_variance[window], delta_variance[csl.y, csl.x] / norm**2
        )
        # w(q) = Σ_{p interior in cell} k(p − q): the correlation of the
        # interior indicator with k, on the grown box.
        indicator = np.zeros(grown.shape)
        indicator[
            cell.y.start - grown.y.start : cell.y.stop - grown.y.start,
            cell.x.start - grown.x.start : cell.x.stop - grown.x.start,
        ] = cell_interior
        kept[gsl.y, gsl.x] += _correlate_same(indicator, k, kernel_box)
        kept[csl.y, csl.x] += np.where(cell_interior, 0.0, 1.0 / norm)
    # FFT round-off leaves ~1e-17 everywhere; only the kernel's reach is real.
    out_image[~reach] = 0.0
    out_variance[~reach] = 0.0
    return KernelResponse(out_image, out_variance, kept, reach)


def _correlate_same(values: np.ndarray, k: np.ndarray, kernel_box: Box) -> np.ndarray:
    """``out(q) = Σ_p values(p)·k(p − q)`` on the grid of ``values``."""
    full = signal.oaconvolve(values, k[::-1, ::-1], mode="full")
    # Element (i, j) of the full correlation is q = (i, j) − (kernel_box.stop − 1).
    oy, ox = kernel_box.y.stop - 1, kernel_box.x.stop - 1
    return full[oy : oy + values.shape[0], ox : ox + values.shape[1]]


def _science_scratch(difference_image: VisitImage, psf: PointSpreadFunction) -> VisitImage:
    """A science-grid image for the visit engine: zero image and the
    difference's variance in float64 (ΔI_s and ΔV_s then read back without
    float32 rounding), its mask, calibration and sky projection, and the
    science PSF the transient's photons were spread by."""
    bbox = difference_image.bbox
    unit = difference_image.unit
    return VisitImage(
        Image(np.zeros(bbox.shape), bbox=bbox, unit=unit),
        mask=Mask(difference_image.mask.array.copy(), schema=difference_image.mask.schema, bbox=bbox),
        variance=Image(
            np.asarray(difference_image.variance.array, dtype=np.float64).copy(), bbox=bbox,
            unit=None if unit is None else unit**2,
        ),
        sky_projection=difference_image.sky_projection,
        obs_info=difference_image.obs_info,
        photometric_scaling=difference_image.photometric_scaling,
        psf=psf,
        detector=difference_image.detector,
        band=difference_image.band,
    )


def _check_scaling(difference_image: VisitImage, config: InjectionConfig) -> None:
    """A difference image's pixels do not follow V ∝ I (the template is
    subtracted), so c cannot be fitted from them: it must be given."""
    if config.scaling_source == "empirical" or (
        config.scaling_source == "visit_image"
        and difference_image.photometric_scaling is None
        and difference_image.unit != u.electron
    ):
        raise CalibrationError(
            "A difference image needs its photometric scaling c: it carries none (or "
            f"scaling_source={config.scaling_source!r}), and c cannot be fitted from difference pixels. "
            "Set config.scaling_source='constant' and config.photometric_scaling [nJy/e⁻] (the science "
            "visit's visit_summary zero point: (zeroPoint * astropy.units.ABmag).to_value('nJy'))."
        )


def inject_difference(
    difference_image: VisitImage,
    catalog: Table,
    *,
    flat: MaskedImage | Image,
    illumination: Image | MaskedImage | None,
    config: DifferenceInjectionConfig,
    rng: np.random.Generator,
    log: LsstLoggers = _LOG,
    visit_id: int = 0,
    in_place: bool = False,
    science_psf: PointSpreadFunction | None = None,
) -> InjectionResult:
    """Inject a composed catalog of transients into a difference image.

    Parameters
    ----------
    difference_image
        The difference image (not modified unless ``in_place``).
    catalog
        Output of `isrinject.engine.catalog.compose_catalog`.
    flat, illumination
        The science visit's flat and illumination correction (or `None`).
    config
        The task's configuration.
    rng
        Generator of the Poisson noise.
    log
        Where the kernel direction, warnings and the summary go.
    visit_id
        The visit, for messages and ``config.selection``.
    in_place
        Inject into ``difference_image`` itself.
    science_psf
        The science visit's PSF: required when the science image was
        convolved (the difference image then carries the template's PSF).

    Returns
    -------
    result
        The injected difference image (metadata ``INJECTION_CONVOLVED``: the
        image the kernel convolved) and catalog (``meta["convolved_image"]``,
        the same).  ``injection_science_flux`` is ΣΔI_s, what arrived in the
        science pixels; ``injection_flux`` what the difference image received:
        the same when the template was convolved, else ΣΔI_s times w at the
        source centre (`KernelResponse.kept`: exact for sources a kernel
        radius inside the image, where w = 1).

    Raises
    ------
    CalibrationError
        No usable photometric scaling, no science PSF where one is needed, or
        a kernel direction that cannot be read.
    """
    detector_id = difference_image.detector.id if difference_image.detector is not None else None
    where = f"difference image of visit {visit_id}, detector {detector_id}"
    try:
        _check_scaling(difference_image, config)
        direction = convolved_image(difference_image, config.convolved_image)
    except CalibrationError as err:
        raise CalibrationError(f"{where}: {err}") from err
    log.info("Matching kernel convolved the %s image (%s).", direction.convolved, direction.reason)
    if direction.convolved == "template":
        result = inject_sources(
            difference_image, catalog, flat=flat, illumination=illumination, config=config, rng=rng,
            log=log, visit_id=visit_id, in_place=in_place,
        )
        result.image.metadata["INJECTED"] = "difference_image"
        result.image.metadata["INJECTION_CONVOLVED"] = "template"
        result.catalog["injection_science_flux"] = result.catalog["injection_flux"].copy()
        result.catalog.meta["convolved_image"] = "template"
        return result
    if science_psf is None:
        raise CalibrationError(
            f"{where}: the science image was convolved ({direction.reason}): the difference image's PSF is the "
            "template's, and the transient's photons need the science PSF. Pass science_psf (the task: "
            "config.use_science_psf=True reads visit_image.psf)."
        )
    kernel = cast(DifferenceImage, difference_image).kernel
    scratch = _science_scratch(difference_image, science_psf)
    science = inject_sources(
        scratch, catalog, flat=flat, illumination=illumination, config=config, rng=rng, log=log,
        visit_id=visit_id, in_place=True,
    )
    # NO_DATA pixels (NaN variance) received nothing: 0, so no NaN is convolved into their neighbours.
    with np.errstate(invalid="ignore"):
        delta_variance = scratch.variance.array - np.asarray(difference_image.variance.array, dtype=np.float64)
    delta_variance[~np.isfinite(delta_variance)] = 0.0
    response = convolve_injection(
        scratch.image.array, delta_variance, kernel, difference_image.bbox, cell_size=config.kernel_cell_size
    )
    output = difference_image if in_place else difference_image.copy()
    saturated_before = _plane_or_none(difference_image, "SATURATED")
    output.image.array[...] += response.delta_image.astype(output.image.array.dtype)
    if config.inject_variance:
        output.variance.array[...] += response.delta_variance.astype(output.variance.array.dtype)
    _carry_masks(output, scratch, saturated_before, response, kernel.kernel_bbox.shape, config.mask_plane_name)
    out_catalog = science.catalog
    out_catalog["injection_science_flux"] = out_catalog["injection_flux"].copy()
    out_catalog["injection_flux"] = out_catalog["injection_science_flux"] * _kept_at_centres(
        response.kept, out_catalog, difference_image.bbox
    )
    out_catalog.meta["convolved_image"] = "science"
    output.metadata["INJECTED"] = "difference_image"
    output.metadata["INJECTION_CONVOLVED"] = "science"
    output.metadata["INJECTION_N_SOURCES"] = scratch.metadata["INJECTION_N_SOURCES"]
    return InjectionResult(image=output, catalog=out_catalog, planes=science.planes)


def _plane_or_none(image: VisitImage, name: str) -> np.ndarray:
    """The named mask plane, all False when the image has none."""
    if name in image.mask.schema.names:
        return image.mask.get(name).copy()
    return np.zeros(image.bbox.shape, dtype=bool)


def _kept_at_centres(kept: np.ndarray, catalog: Table, bbox: Box) -> np.ndarray:
    """w at each source's centre pixel (1 where the centre is off the image)."""
    x = np.nan_to_num(np.asarray(catalog["x"], dtype=float), nan=-1e9)
    y = np.nan_to_num(np.asarray(catalog["y"], dtype=float), nan=-1e9)
    ix, iy = np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64)
    inside = bbox.contains(x=ix, y=iy)
    values = np.ones(len(catalog))
    values[inside] = kept[iy[inside] - bbox.y.start, ix[inside] - bbox.x.start]
    return values


def _carry_masks(
    output: VisitImage, scratch: VisitImage, saturated_before: np.ndarray, response: KernelResponse,
    kernel_shape: tuple[int, int], plane: str,
) -> None:
    """The scratch's INJECTED pixels become the kernel's reach and its new
    SATURATED pixels are spread over the kernel box (afw ORs the mask bits
    under a convolution kernel); INJECTED_CORE stays at the source centres."""
    from .masks import add_mask_planes

    core = f"{plane}_CORE"
    add_mask_planes(output, [plane, core, "SATURATED"])
    output.mask.set(plane, output.mask.get(plane) | response.reach)
    output.mask.set(core, output.mask.get(core) | scratch.mask.get(core))
    new_saturated = scratch.mask.get("SATURATED") & ~saturated_before
    if new_saturated.any():
        spread = ndimage.binary_dilation(new_saturated, structure=np.ones(kernel_shape, dtype=bool))
        output.mask.set("SATURATED", output.mask.get("SATURATED") | spread)
