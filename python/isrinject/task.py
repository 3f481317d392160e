"""`VisitInjectTask`: ISR-consistent source injection into ``visit_image``.

Connections, config and task read top to bottom; ``run()`` is glue over
`isrinject.catalog` (schema, validation), `isrinject.draw` (noiseless
stamps), `isrinject.calibration` (c, σ_a, saturation) and `isrinject.model`
(the pixel model).  Class names match ``lsst.source.injection`` so that
switching is an import change.
"""

from __future__ import annotations

__all__ = [
    "VisitInjectConfig",
    "VisitInjectConnections",
    "VisitInjectTask",
    "inject_sources",
    "read_flat",
]

import ctypes
import ctypes.util
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table
from lsst.daf.butler import DeferredDatasetHandle
from lsst.images import XY, Box, Image, MaskedImage, MaskPlane, MaskSchema, NoOverlapError, VisitImage
from lsst.images import get_legacy_optional_mask_planes, get_legacy_visit_image_mask_planes
from lsst.pex.config import ChoiceField, Field, ListField
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .calibration import (
    CalibrationError,
    PixelCalibration,
    amplifier_terms,
    fit_scaling_per_amplifier,
    image_units_per_njy,
)
from .catalog import check_catalog, compose_catalog, standardize_columns
from .catalog.schema import CONFIGURABLE_COLUMNS
from .draw import DrawnStamp, RenderSettings, draw_source, local_jacobian, sky_to_pixel
from .draw.psf_cache import DEFAULT_SPACING, PsfCache
from .flags import FATAL_FLAGS, InjectionFlag, flag_descriptions
from .model import draw_electrons, expected_electrons, pixel_response, reconstruct_pre_flat_electrons

_LOG = logging.getLogger(__name__)

#: lsst.images names of the legacy (afw) mask plane names users put in configs.
LEGACY_MASK_NAMES: dict[str, str] = {
    legacy: plane.name
    for legacy, plane in {**get_legacy_visit_image_mask_planes(), **get_legacy_optional_mask_planes()}.items()
    if plane is not None
}


class VisitInjectConnections(
    PipelineTaskConnections,
    dimensions=("instrument", "visit", "detector"),
    defaultTemplates={"injection_prefix": "injection_", "injected_prefix": "injected_"},
):
    """Connections of `VisitInjectTask`."""

    visit_image = cT.Input(
        doc="Calibrated single-visit image to inject sources into.",
        name="visit_image",
        storageClass="VisitImage",
        dimensions=("instrument", "visit", "detector"),
    )
    injection_catalogs = cT.PrerequisiteInput(
        doc="Catalogs of sources to inject (source_injection format), sharded by HTM7 trixel and band.",
        name="{injection_prefix}catalog",
        storageClass="ArrowAstropy",
        dimensions=("htm7", "band"),
        minimum=0,
        multiple=True,
    )
    flat = cT.PrerequisiteInput(
        doc="Flat field (image + variance) that ISR divided this visit by; the calibration valid "
        "at the visit's time is chosen by the graph builder.",
        name="flat",
        storageClass="MaskedImageV2",
        dimensions=("instrument", "detector", "physical_filter"),
        isCalibration=True,
        # Only the image and variance planes are read (`read_flat`).
        deferLoad=True,
    )
    illumination_correction = cT.PrerequisiteInput(
        doc="Illumination correction R the visit image was divided by after ISR.",
        name="illuminationCorrection",
        storageClass="ImageV2",
        dimensions=("instrument", "detector", "physical_filter"),
        isCalibration=True,
    )
    injected_visit_image = cT.Output(
        doc="The visit image with injected sources.",
        name="{injected_prefix}visit_image",
        storageClass="VisitImage",
        dimensions=("instrument", "visit", "detector"),
    )
    injected_visit_image_catalog = cT.Output(
        doc="The injection catalog of this visit/detector with positions, fluxes and flags.",
        name="{injected_prefix}visit_image_catalog",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )

    def __init__(self, *, config: VisitInjectConfig | None = None) -> None:
        super().__init__(config=config)
        if config is None:
            return
        # Real (DP1) repositories store ExposureF; the storage classes are
        # config so the graph builds against them.
        self.visit_image = dataclasses.replace(self.visit_image, storageClass=config.visit_image_storage_class)
        self.injected_visit_image = dataclasses.replace(
            self.injected_visit_image, storageClass=config.visit_image_storage_class
        )
        self.flat = dataclasses.replace(self.flat, storageClass=config.flat_storage_class)
        self.illumination_correction = dataclasses.replace(
            self.illumination_correction, storageClass=config.illumination_storage_class
        )
        if not config.do_illumination_correction:
            del self.illumination_correction


class VisitInjectConfig(PipelineTaskConfig, pipelineConnections=VisitInjectConnections):
    """Configuration of `VisitInjectTask`.

    Field names follow ``lsst.source.injection`` where the meaning is the
    same; the rest describe the ISR pixel model.
    """

    # --- source_injection-compatible fields --------------------------------
    process_all_data_ids = Field[bool](
        doc="Write an output even when no source lands on this visit/detector (a copy of the input "
        "with the INJECTED planes); otherwise such quanta end with NoWorkFound.",
        default=False,
    )
    trim_padding = Field[int](
        doc="Sources whose centre falls outside the image bbox grown by this many pixels are dropped.",
        default=100,
    )
    selection = Field[str](
        doc="Boolean expression selecting catalog rows, evaluated with ``injection_catalog`` (the "
        "table) and ``np``; ``{visit}`` is replaced by the visit ID, e.g. "
        "\"(injection_catalog['mag'] > 20) & (injection_catalog['mag'] < 25)\".",
        default=None,
        optional=True,
    )
    mask_plane_name = Field[str](doc="Mask plane set over every injected stamp.", default="INJECTED")
    injection_core_size = Field[int](
        doc="Side [pixels, odd] of the box at each source centre given the <mask_plane_name>_CORE plane.",
        default=3,
        check=lambda value: value >= 1 and value % 2 == 1,
    )
    calib_flux_radius = Field[float](
        doc="Aperture radius [pixels] that defines the photometric calibration (slot_CalibFlux); the "
        "catalog flux is the flux within it for a point source. None for total flux.",
        default=12.0,
        optional=True,
    )
    fits_alignment = ChoiceField[str](
        doc="How Stamp sources (FITS images) are aligned.",
        allowed={"pixel": "Stamp pixels map onto image pixels.", "wcs": "Honour the stamp's FITS WCS."},
        default="pixel",
    )
    stamp_prefix = Field[str](doc="Prefix (e.g. a directory) for the stamp column.", default="")
    inject_variance = Field[bool](doc="Add the injected variance ΔV to the variance plane.", default=True)
    add_noise = Field[bool](
        doc="Draw the injected pre-flat electrons from a Poisson distribution (else n = λ).", default=True
    )
    noise_seed = Field[int](
        doc="Seed of the noise; combined with the visit and detector IDs so every quantum has "
        "independent, reproducible noise.",
        default=0,
    )
    bad_mask_names = ListField[str](
        doc="Mask planes excluded from the empirical flux-variance fit (legacy or lsst.images names).",
        default=["BAD", "CR", "CROSSTALK", "INTRP", "NO_DATA", "SAT", "SUSPECT", "UNMASKEDNAN"],
    )
    no_photon_mask_names = ListField[str](
        doc="Mask planes of pixels that cannot receive photons (besides flat <= 0 or non-finite).",
        default=["NO_DATA"],
    )
    col_ra = Field[str](doc="Column of right ascension [deg].", default="ra")
    col_dec = Field[str](doc="Column of declination [deg].", default="dec")
    col_source_type = Field[str](doc="Column of the source type (GalSim profile name).", default="source_type")
    col_mag = Field[str](doc="Column of the AB magnitude.", default="mag")
    col_stamp = Field[str](doc="Column of Stamp FITS file names.", default="stamp")
    col_draw_size = Field[str](doc="Column of stamp sizes [pixels].", default="draw_size")
    col_trail_length = Field[str](doc="Column of trail lengths [pixels].", default="trail_length")

    # --- ISR pixel model -----------------------------------------------------
    include_flat_variance = Field[bool](
        doc="Propagate the flat's variance plane into ΔV (the (c/R)²·V_f/f⁴·(2Sn + n²) term).",
        default=True,
    )
    do_saturation = Field[bool](
        doc="Set SATURATED where pre-flat electrons S + n pass the amplifier saturation level.", default=True
    )
    do_illumination_correction = Field[bool](
        doc="The visit image was divided by an illumination correction R (adds the prerequisite input).",
        default=False,
    )
    scaling_source = ChoiceField[str](
        doc="Where the photometric scaling c (image units per electron) comes from.",
        allowed={
            "visit_image": "The VisitImage's photometric_scaling; an nJy image without a usable one falls "
            "back to the empirical fit (logged).",
            "empirical": "A per-amplifier fit of V·(f·R)² against f·R·I over the real pixels.",
            "config": "The constant photometric_scaling below.",
        },
        default="visit_image",
    )
    photometric_scaling = Field[float](
        doc="Photometric scaling [nJy per electron] used when scaling_source='config', or for an "
        "image in electrons that carries none.",
        default=None,
        optional=True,
        check=lambda value: value is None or (np.isfinite(value) and value > 0),
    )
    read_noise = Field[float](
        doc="Read noise [e⁻] for every amplifier; None uses the detector's amplifiers.",
        default=None,
        optional=True,
    )
    saturation = Field[float](
        doc="Saturation level [pre-flat e⁻] for every amplifier; None uses the detector's amplifiers "
        "(saturation [ADU] × gain).",
        default=None,
        optional=True,
    )
    max_draw_size = Field[int](doc="Largest stamp side [pixels].", default=1001)
    psf_cache_spacing = Field[float](
        doc="PSF kernel and local WCS are evaluated once per cell of this size [pixels] and reused for "
        "the sources inside it; <= 0 evaluates them at every source position.",
        default=DEFAULT_SPACING,
    )
    stamp_size_factor = Field[float](
        doc="Automatic stamp side as a multiple of GalSim's getGoodImageSize.", default=1.5
    )

    # --- storage classes (DP1 repositories store ExposureF) ------------------
    visit_image_storage_class = Field[str](doc="Storage class of visit_image.", default="VisitImage")
    flat_storage_class = Field[str](doc="Storage class of flat.", default="MaskedImageV2")
    illumination_storage_class = Field[str](
        doc="Storage class of illuminationCorrection.", default="ImageV2"
    )

    def column_names(self) -> dict[str, str]:
        """Standard column name → configured column name (``col_<name>``)."""
        return {name: getattr(self, f"col_{name}") for name in CONFIGURABLE_COLUMNS}


class VisitInjectTask(PipelineTask):
    """Inject synthetic sources into a ``visit_image`` as if their photons
    had arrived before ISR (see `isrinject.model`)."""

    ConfigClass = VisitInjectConfig
    _DefaultName = "visitInject"
    config: VisitInjectConfig

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        # The butler hands this quantum its own in-memory copy of visit_image
        # (the stored dataset is never touched), so inject into it in place
        # instead of holding a second full copy, and drop the inputs (the
        # flat is as big as the image) before the output is written.
        inputs = butlerQC.get(inputRefs)
        inputs["flat"] = read_flat(inputs["flat"], with_variance=self.config.include_flat_variance)
        outputs = self.run(**inputs, in_place=True)
        del inputs
        _release_freed_memory()
        butlerQC.put(outputs, outputRefs)

    def run(
        self,
        *,
        visit_image: VisitImage,
        injection_catalogs: Sequence[Table],
        flat: MaskedImage | Image,
        illumination_correction: Image | MaskedImage | None = None,
        in_place: bool = False,
    ) -> Struct:
        """Inject the catalog sources into a copy of ``visit_image``.

        Parameters
        ----------
        visit_image
            The calibrated visit image (not modified unless ``in_place``).
        injection_catalogs
            Injection catalogs overlapping the image (source_injection
            format); may be empty.
        flat
            The flat (image f and variance V_f) ISR divided this image by;
            an `Image` has no V_f.  Its mask is not used.
        illumination_correction
            The illumination correction R, required when
            ``config.do_illumination_correction``.

        in_place
            Inject into ``visit_image`` itself (it becomes the output) instead
            of a copy; `runQuantum` does, as the butler's object is the
            quantum's own.

        Returns
        -------
        result
            ``injected_visit_image`` (`VisitImage`) and
            ``injected_visit_image_catalog`` (`astropy.table.Table`).
        """
        visit_image = _as_visit_image(visit_image)
        visit_id, detector_id = _data_id_of(visit_image)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.config.noise_seed, visit_id, detector_id])))
        catalog = compose_catalog(list(injection_catalogs))
        if len(catalog) == 0 and not self.config.process_all_data_ids:
            raise NoWorkFound(
                f"No injection catalog rows for visit {visit_id}, detector {detector_id}; "
                "set process_all_data_ids=True to write the image anyway."
            )
        result = inject_sources(
            visit_image,
            catalog,
            flat=flat,
            illumination=illumination_correction if self.config.do_illumination_correction else None,
            config=self.config,
            rng=rng,
            log=self.log,
            visit_id=visit_id,
            in_place=in_place,
        )
        # Rows that all failed still produce the visit: the flagged catalog is
        # the record of what went wrong, and downstream quanta keep running.
        return Struct(injected_visit_image=result.image, injected_visit_image_catalog=result.catalog)


def read_flat(handle: DeferredDatasetHandle, *, with_variance: bool) -> MaskedImage | Image | Any:
    """Read the planes of the flat that the pixel model uses.

    The flat's mask is never used, and reading a 4k × 4k mask plane costs as
    much as an image plane plus its conversion (≈ 0.6 s), so storage classes
    that declare lsst.images' ``components`` read (``MaskedImageV2``) give
    the image and, if ``with_variance``, the variance plane only; any other
    storage class (``ExposureF``) is read whole.

    Parameters
    ----------
    handle
        The quantum's deferred handle of the flat.
    with_variance
        Whether to read the variance plane V_f (``include_flat_variance``).

    Returns
    -------
    flat
        A `MaskedImage` with an empty mask when the variance is read, else
        the image plane as an `Image`; the whole dataset for storage classes
        without component reads.
    """
    wanted = ["image", "variance"] if with_variance else ["image"]
    components = handle.ref.datasetType.storageClass.allComponents()
    if "components" not in components or any(name not in components for name in wanted):
        return handle.get()
    planes = handle.get(component="components", parameters={"components": wanted})
    if not with_variance:
        return planes["image"]
    return MaskedImage(planes["image"], variance=planes["variance"], mask_schema=MaskSchema([]))


def _release_freed_memory() -> None:
    """Return freed heap memory to the operating system (glibc only; else a no-op).

    The per-stamp numpy temporaries are freed into glibc's heap, which keeps
    them mapped (≈ 0.15 GB after a 4k × 4k quantum); the output write that
    follows is the quantum's memory peak, so hand them back first.
    """
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclasses.dataclass
class CalibrationPlanes:
    """What ISR and calibration did to a visit image, on its bbox (views in
    the calibrations' own dtypes)."""

    flat: np.ndarray
    """The flat f."""
    flat_variance: np.ndarray | None
    """Its variance V_f, when usable and configured (`flat_planes`)."""
    illumination: np.ndarray | None
    """The illumination correction R, when configured."""
    calibration: PixelCalibration
    """c, σ_a and saturation per pixel (`build_calibration`)."""


@dataclasses.dataclass
class InjectionResult:
    """Output of `inject_sources`."""

    image: VisitImage
    catalog: Table
    planes: CalibrationPlanes
    """The flat, illumination and calibration the injection used."""


__all__ += [
    "INJECTION_RESULT_COLUMNS", "CalibrationPlanes", "InjectionResult", "LEGACY_MASK_NAMES", "build_calibration",
    "calibration_cutout", "calibration_planes", "flat_planes", "mask_bits",
]


def _as_visit_image(obj: Any) -> VisitImage:
    """Accept an lsst.images VisitImage or (with afw present) a legacy Exposure."""
    if isinstance(obj, VisitImage):
        return obj
    if hasattr(obj, "getMaskedImage"):
        return VisitImage.from_legacy(obj, exposure_record=None)
    raise TypeError(f"visit_image must be an lsst.images.VisitImage; got {type(obj).__name__}.")


def _as_masked_image(obj: Any, what: str) -> tuple[Box, np.ndarray, np.ndarray | None]:
    """Return (bbox, image array, variance array or None) of a calibration."""
    if isinstance(obj, MaskedImage):
        return obj.bbox, obj.image.array, obj.variance.array
    if isinstance(obj, Image):
        return obj.bbox, obj.array, None
    if hasattr(obj, "getMaskedImage"):
        return _as_masked_image(MaskedImage.from_legacy(obj.getMaskedImage()), what)
    raise TypeError(f"{what} must be an lsst.images MaskedImage or Image; got {type(obj).__name__}.")


def _data_id_of(visit_image: VisitImage) -> tuple[int, int]:
    obs_info = visit_image.obs_info
    visit_id = obs_info.visit_id if obs_info.visit_id is not None else (obs_info.exposure_id or 0)
    return int(visit_id), int(visit_image.detector.id)


def calibration_cutout(
    obj: Any, image_bbox: Box, what: str, log: logging.Logger | Any, where: str = ""
) -> tuple[np.ndarray, np.ndarray | None]:
    """The calibration's planes on the image bbox (error if it does not cover it)."""
    bbox, image, variance = _as_masked_image(obj, what)
    if not bbox.contains(image_bbox):
        raise ValueError(
            f"The {what} bounding box {bbox} does not cover the visit image bounding box {image_bbox}"
            f"{' of ' + where if where else ''}."
        )
    # Views in the calibration's own dtype: a float64 copy of a 4k × 4k flat
    # would cost 128 MB per plane; stamps are converted as they are used.
    sl = image_bbox.slice_within(bbox)
    image = image[sl.y, sl.x]
    if variance is not None:
        variance = variance[sl.y, sl.x]
    return image, variance


def flat_planes(
    flat: Any, image_bbox: Box, config: VisitInjectConfig, log: logging.Logger | Any, where: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The flat f and, when usable and configured, its variance V_f on the image bbox.

    A variance plane that is absent, all non-finite or all exactly 1.0 (what
    lsst.images fills in for a missing plane) gives `None` with a warning.
    """
    flat_image, flat_variance = calibration_cutout(flat, image_bbox, "flat", log, where)
    if flat_variance is not None and (
        not np.any(np.isfinite(flat_variance)) or np.all(flat_variance == 1.0)
    ):
        flat_variance = None
    if flat_variance is None and config.include_flat_variance:
        log.warning("The flat of %s has no variance plane; the flat-variance term of ΔV is skipped.", where)
    if not config.include_flat_variance:
        flat_variance = None
    return flat_image, flat_variance


def calibration_planes(
    visit_image: VisitImage,
    flat: Any,
    illumination: Any | None,
    config: VisitInjectConfig,
    log: logging.Logger | Any,
    where: str,
) -> CalibrationPlanes:
    """The flat, illumination correction and calibration of ``visit_image``.

    Shared by `inject_sources` and ``isrinject diagnose``, so both see the
    same planes and the same c.
    """
    bbox = visit_image.bbox
    flat_image, flat_variance = flat_planes(flat, bbox, config, log, where)
    illum_image = None
    if illumination is not None:
        illum_image, _ = calibration_cutout(illumination, bbox, "illumination correction", log, where)
    elif config.do_illumination_correction:
        raise ValueError(f"do_illumination_correction=True but no illumination correction was given for {where}.")
    try:
        calibration = build_calibration(visit_image, config, flat_image, illum_image, log)
    except CalibrationError as err:
        raise CalibrationError(f"{where}: {err}") from err
    return CalibrationPlanes(flat_image, flat_variance, illum_image, calibration)


def mask_bits(visit_image: VisitImage, names: Sequence[str]) -> np.ndarray:
    """OR of the named mask planes present in the image (legacy names accepted)."""
    hit = _any_bit(visit_image.mask.array, _plane_bits(visit_image, names))
    return np.zeros(visit_image.bbox.shape, dtype=bool) if hit is None else hit


def build_calibration(
    visit_image: VisitImage,
    config: VisitInjectConfig,
    flat: np.ndarray,
    illumination: np.ndarray | None,
    log: logging.Logger | Any,
) -> PixelCalibration:
    """Per-pixel c, read noise and saturation of ``visit_image`` as configured
    (the calibration of `calibration_planes`)."""
    image_per_njy = image_units_per_njy(visit_image.unit)
    amps = amplifier_terms(
        visit_image.detector, visit_image.bbox, read_noise=config.read_noise, saturation=config.saturation
    )
    field = visit_image.photometric_scaling
    source = config.scaling_source
    if source == "config":
        if config.photometric_scaling is None:
            raise CalibrationError("scaling_source='config' needs config.photometric_scaling [nJy/e⁻].")
        return PixelCalibration(visit_image.bbox, amps, None, config.photometric_scaling, image_per_njy, "config")
    if source == "visit_image":
        usable = False
        if field is not None:
            try:
                centre = visit_image.bbox
                value = float(field(x=centre.x.center, y=centre.y.center))
                usable = np.isfinite(value) and value > 0
                if usable and field.unit is not None:
                    # Normalise to nJy per electron.
                    factor = float((1.0 * field.unit).to_value(u.nJy / u.electron))
                    if factor != 1.0:
                        field = field * factor
            except (u.UnitConversionError, TypeError, ValueError) as err:
                log.warning("Visit image photometric_scaling is unusable (%s).", err)
                usable = False
        if usable:
            return PixelCalibration(visit_image.bbox, amps, field, None, image_per_njy, "visit_image")
        if image_per_njy is None:
            # An image in electrons: c = 1, but magnitudes still need nJy/e⁻.
            if config.photometric_scaling is None:
                raise CalibrationError(
                    "The visit image is in electrons and has no usable photometric_scaling; set "
                    "config.photometric_scaling [nJy/e⁻] to convert magnitudes."
                )
            return PixelCalibration(
                visit_image.bbox, amps, None, config.photometric_scaling, None, "config"
            )
        log.warning(
            "Visit image in %s has no usable photometric_scaling; fitting c per amplifier from V·(f·R)² "
            "against f·R·I instead.",
            visit_image.unit,
        )
    if image_per_njy is None:
        raise CalibrationError("scaling_source='empirical' applies to flux-density images, not electrons.")
    good = ~mask_bits(visit_image, config.bad_mask_names)
    good &= np.isfinite(visit_image.image.array) & np.isfinite(visit_image.variance.array)
    amps = fit_scaling_per_amplifier(
        visit_image.image.array,
        visit_image.variance.array,
        good,
        flat,
        amps,
        visit_image.bbox,
        illumination=illumination,
    )
    log.info("Empirical c per amplifier: %s", ", ".join(f"{a.name}={a.scaling:.4g}" for a in amps))
    return PixelCalibration(visit_image.bbox, amps, None, None, image_per_njy, "empirical")


def _with_planes(visit_image: VisitImage, names: Sequence[str]) -> None:
    """Add missing mask planes (INJECTED, INJECTED_CORE, SATURATED) in place."""
    known = {**get_legacy_visit_image_mask_planes(), **get_legacy_optional_mask_planes()}
    by_name = {plane.name: plane for plane in known.values() if plane is not None}
    present = set(visit_image.mask.schema.names)
    missing = [
        by_name.get(name, MaskPlane(name, f"Pixel affected by isrinject ({name})."))
        for name in names
        if name not in present
    ]
    if missing:
        visit_image.mask = visit_image.mask.add_planes(missing)


def _records(catalog: Table) -> list[dict[str, Any]]:
    """Every row as a dict of plain Python values, masked values left out.

    Column-wise conversion: reading an astropy Table row by row costs more
    than drawing a star.
    """
    columns: list[tuple[str, list[Any], np.ndarray | None]] = []
    for name in catalog.colnames:
        column = catalog[name]
        data = np.ma.getdata(column)
        values = data.tolist() if data.ndim == 1 else list(data)
        if data.dtype.kind == "S":
            values = [value.decode() for value in values]
        mask = np.ma.getmaskarray(column) if getattr(column, "mask", None) is not None else None
        columns.append((name, values, mask if mask is not None and mask.any() else None))
    return [
        {name: values[i] for name, values, mask in columns if mask is None or not mask[i]}
        for i in range(len(catalog))
    ]


def _fluxes_in_image_units(
    catalog: Table,
    calibration: PixelCalibration,
    x: np.ndarray,
    y: np.ndarray,
    flags: np.ndarray,
    log: logging.Logger | Any,
) -> np.ndarray:
    """Catalog ``mag`` (AB) → flux in image units at (x, y); MAG_BAD where impossible."""
    n_rows = len(catalog)
    if "mag" in catalog.colnames:
        mags = np.full(n_rows, np.nan)
        for i, value in enumerate(np.ma.filled(np.ma.asarray(catalog["mag"], dtype=object), np.nan)):
            try:
                mags[i] = float(value)
            except (TypeError, ValueError):
                pass
    else:
        mags = np.full(n_rows, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        flux = (mags * u.ABmag).to_value(u.nJy)
    try:
        per_njy = calibration.image_units_per_njy_at(x, y)
    except CalibrationError as err:
        log.warning("Cannot convert magnitudes to image units (%s).", err)
        per_njy = np.nan
    with np.errstate(invalid="ignore", over="ignore"):
        flux = flux * per_njy
        bad = ~(np.isfinite(flux) & (flux > 0))
    todo = (flags & int(FATAL_FLAGS)) == 0
    for i in np.flatnonzero(bad & todo & np.isfinite(x) & np.isfinite(y)):
        log.warning("Source %s: cannot convert mag %r to image units (flux %r).",
                    catalog["injection_id"][i], catalog["mag"][i] if "mag" in catalog.colnames else None, flux[i])
    flags[bad & np.isfinite(x) & np.isfinite(y)] |= InjectionFlag.MAG_BAD
    return flux


def _plane_bits(image: VisitImage, names: Sequence[str]) -> list[Any]:
    """Mask-schema bits of the named planes present in the image (legacy names accepted)."""
    present = set(image.mask.schema.names)
    names = [LEGACY_MASK_NAMES.get(name, name) for name in names]
    return [image.mask.schema.bit(name) for name in dict.fromkeys(names) if name in present]


def _any_bit(mask_array: np.ndarray, bits: Sequence[Any]) -> np.ndarray | None:
    """Where any of ``bits`` is set in a (ny, nx, n_bytes) mask array, or `None` without bits."""
    result = None
    for bit in bits:
        hit = (mask_array[..., bit.index] & bit.mask) != 0
        result = hit if result is None else result | hit
    return result


#: Per-source result columns `inject_sources` adds to the catalog (besides
#: the pixel position ``x``, ``y``).
INJECTION_RESULT_COLUMNS: tuple[str, ...] = (
    "injection_flux",
    "injection_flux_electrons",
    "injection_model_flux",
    "injection_flat",
    "injection_effective_gain",
)

#: Stamp pixels gathered before the pixel model runs on them in one pass
#: (bounds the batch's temporaries to ~100 MB).
_BATCH_PIXELS = 1_000_000
#: Stamps bigger than this run alone: batching saves per-call overhead,
#: which only small stamps notice, and costs a copy of every pixel.
_ALONE_PIXELS = 128 * 128


@dataclasses.dataclass
class _Planes:
    """The arrays the pixel model reads and writes, on the image bbox."""

    bbox: Box
    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    flat: np.ndarray
    flat_variance: np.ndarray | None
    illumination: np.ndarray | None
    no_photons: np.ndarray | None
    """Where the input mask has a ``no_photon_mask_names`` plane (`None`: none
    configured), evaluated once for the image instead of per stamp."""
    saturated_bit: Any


def _joined(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The arrays flattened one after the other; a lone array is returned as it
    is (a big stamp is not worth a copy: its flat index is the same)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate([a.ravel() for a in arrays])


def _any_overlap(regions: Sequence[Any]) -> bool:
    """Whether any two of the (y, x) slice pairs overlap."""
    if len(regions) < 2:
        return False
    y0, y1, x0, x1 = (np.array([getattr(getattr(r, axis), end) for r in regions]) for axis, end in
                      (("y", "start"), ("y", "stop"), ("x", "start"), ("x", "stop")))
    overlap = (
        (y0[:, None] < y1[None, :]) & (y0[None, :] < y1[:, None])
        & (x0[:, None] < x1[None, :]) & (x0[None, :] < x1[:, None])
    )
    np.fill_diagonal(overlap, False)
    return bool(overlap.any())


def _inject_batch(
    batch: Sequence[tuple[int, DrawnStamp]],
    planes: _Planes,
    calibration: PixelCalibration,
    config: VisitInjectConfig,
    rng: np.random.Generator,
    columns: dict[str, np.ndarray],
    flags: np.ndarray,
) -> None:
    """Run the pixel model (`isrinject.model`) on a batch of stamps at once.

    The stamps' pixels are concatenated; λ and the Poisson draw run over
    all of them in one pass, then ΔI, ΔV and saturation only on the pixels
    that received electrons.  Where stamps of the batch overlap, a pixel's
    electrons are summed before ΔV and saturation are evaluated, so the
    result is the same as injecting the stamps one after the other (ΔV's
    flat term is quadratic in n).  Fills the per-source columns and flags.
    """
    if not batch:
        return
    bbox = planes.bbox
    regions = [stamp.bbox.slice_within(bbox) for _, stamp in batch]
    sizes = np.array([stamp.model.size for _, stamp in batch])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    model = _joined([stamp.model for _, stamp in batch])
    flat = _joined([planes.flat[r.y, r.x] for r in regions])
    illumination = (
        None if planes.illumination is None else _joined([planes.illumination[r.y, r.x] for r in regions])
    )
    scaling = _joined([np.broadcast_to(calibration.scaling_in(stamp.bbox), stamp.model.shape) for _, stamp in batch])
    excluded = None if planes.no_photons is None else _joined([planes.no_photons[r.y, r.x] for r in regions])
    expected, usable = expected_electrons(model, flat=flat, scaling=scaling, illumination=illumination, excluded=excluded)
    blocked = np.logical_or.reduceat((~usable & (model > 0)).ravel(), starts[:-1])
    hit, electrons = draw_electrons(expected, rng, config.add_noise)

    # Hits → stamp, then absolute array position; sum electrons per pixel.
    stamp_of = np.searchsorted(starts, hit, side="right") - 1
    widths = np.array([stamp.model.shape[1] for _, stamp in batch])
    rows, cols = np.divmod(hit - starts[stamp_of], widths[stamp_of])
    rows += np.array([r.y.start for r in regions])[stamp_of]
    cols += np.array([r.x.start for r in regions])[stamp_of]
    if _any_overlap(regions):
        pixel, first, inverse = np.unique(rows * bbox.x.size + cols, return_index=True, return_inverse=True)
        total = np.bincount(inverse, weights=electrons, minlength=len(pixel))
        rows, cols = np.divmod(pixel, bbox.x.size)
    else:  # every hit is its own pixel: skip the sort
        first = inverse = np.arange(len(hit))
        total = electrons
    flat_at = planes.flat[rows, cols]
    illumination_at = None if planes.illumination is None else planes.illumination[rows, cols]
    flat_variance_at = None if planes.flat_variance is None else planes.flat_variance[rows, cols]
    scaling_at = scaling.ravel()[hit[first]]
    read_noise_at, saturation_at = calibration.amplifier_terms_at(cols + bbox.x.start, rows + bbox.y.start)
    signal = reconstruct_pre_flat_electrons(
        planes.variance[rows, cols], flat_at, scaling_at, np.nan_to_num(read_noise_at),
        flat_variance=flat_variance_at, illumination=illumination_at,
    )
    delta_image, delta_variance, saturated = pixel_response(
        total, flat=flat_at, scaling=scaling_at, illumination=illumination_at, flat_variance=flat_variance_at,
        pre_flat_electrons=signal, saturation=saturation_at if config.do_saturation else None,
    )
    planes.image[rows, cols] += delta_image.astype(planes.image.dtype)
    if config.inject_variance:
        planes.variance[rows, cols] += delta_variance.astype(planes.variance.dtype)
    bit = planes.saturated_bit
    planes.mask[rows[saturated], cols[saturated], bit.index] |= bit.mask

    # Per source: ΔI is linear in n, so each source's share is exact.
    n_stamps = len(batch)
    image_per_electron = scaling_at / (flat_at if illumination_at is None else flat_at * illumination_at)
    flux = np.bincount(stamp_of, weights=electrons * image_per_electron[inverse], minlength=n_stamps)
    flux_electrons = np.bincount(stamp_of, weights=electrons, minlength=n_stamps)
    saturated_stamp = np.bincount(stamp_of, weights=saturated[inverse], minlength=n_stamps) > 0
    index = np.array([i for i, _ in batch])
    columns["injection_flux"][index] = flux
    columns["injection_flux_electrons"][index] = flux_electrons
    flags[index[blocked]] |= InjectionFlag.NO_PHOTONS
    flags[index[saturated_stamp]] |= InjectionFlag.SATURATED


def inject_sources(
    visit_image: VisitImage,
    catalog: Table,
    *,
    flat: Any,
    illumination: Any | None,
    config: VisitInjectConfig,
    rng: np.random.Generator,
    log: logging.Logger | Any = _LOG,
    visit_id: int = 0,
    in_place: bool = False,
) -> InjectionResult:
    """Inject a composed catalog into a copy of ``visit_image`` (or into
    ``visit_image`` itself when ``in_place``).

    The plain function behind `VisitInjectTask.run` (testable without a
    butler).  ``catalog`` is the output of `isrinject.catalog.compose_catalog`.
    """
    bbox = visit_image.bbox
    detector_id = visit_image.detector.id if visit_image.detector is not None else None
    where = f"visit {visit_id}, detector {detector_id}"
    if visit_image.sky_projection is None:
        raise CalibrationError(f"The visit image of {where} has no sky projection (WCS): sources cannot be placed.")
    calibration_used = calibration_planes(visit_image, flat, illumination, config, log, where)
    flat_image, flat_variance = calibration_used.flat, calibration_used.flat_variance
    illum_image, calibration = calibration_used.illumination, calibration_used.calibration
    try:
        psf = visit_image.psf
    except Exception as err:  # noqa: BLE001  (an unreadable PSF is an ArchiveReadError stored in the image)
        log.warning("The PSF of %s is unusable (%s); every source is flagged PSF_COMPUTE_ERROR.", where, err)
        psf = None

    # --- catalog: standardise, select, locate, check ------------------------
    centre_wcs = local_jacobian(visit_image.sky_projection, bbox.x.center, bbox.y.center)
    pixel_scale = float(np.sqrt(abs(centre_wcs.pixelArea())))  # arcsec per pixel
    catalog = standardize_columns(catalog, config.column_names(), pixel_scale)
    if config.selection:
        namespace = {"injection_catalog": catalog, "np": np}
        selected = np.asarray(eval(config.selection.format(visit=visit_id), {"__builtins__": {}}, namespace))
        log.info("Selection kept %d of %d sources.", int(np.sum(selected)), len(catalog))
        catalog = catalog[selected.astype(bool)]
    if not ({"ra", "dec"} <= set(catalog.colnames) or {"x", "y"} <= set(catalog.colnames)):
        log.warning(
            "The injection catalog for %s has no position columns (need 'ra' and 'dec' or 'x' and 'y'); "
            "every source is flagged POSITION_BAD.", where,
        )
    catalog = _add_pixel_positions(catalog, visit_image)
    x_all = np.asarray(catalog["x"], dtype=float)
    y_all = np.asarray(catalog["y"], dtype=float)
    located = np.isfinite(x_all) & np.isfinite(y_all)
    inside = bbox.dilated_by(config.trim_padding).contains(
        x=np.nan_to_num(x_all, nan=-1e30, posinf=-1e30, neginf=-1e30),
        y=np.nan_to_num(y_all, nan=-1e30, posinf=-1e30, neginf=-1e30),
    )
    dropped = located & ~inside
    if np.any(dropped):
        log.info("Dropping %d sources centred outside the image padded by %d px.", int(np.sum(dropped)), config.trim_padding)
    # Rows without a usable position are kept (flagged POSITION_BAD by check_catalog).
    catalog = catalog[~dropped]
    report = check_catalog(catalog, max_draw_size=config.max_draw_size, stamp_prefix=config.stamp_prefix)
    for problem in report.problems:
        log.warning("Injection catalog: %s", problem)
    flags = np.asarray(catalog["injection_flag"], dtype=np.int64) | np.asarray(report.flags, dtype=np.int64)

    # --- output image and new columns --------------------------------------
    output = visit_image if in_place else visit_image.copy()
    core_name = f"{config.mask_plane_name}_CORE"
    sat_name = "SATURATED"
    _with_planes(output, [config.mask_plane_name, core_name, sat_name])
    mask_array = output.mask.array
    injected_bit, core_bit, sat_bit = (output.mask.schema.bit(name) for name in (config.mask_plane_name, core_name, sat_name))
    no_photon_bits = _plane_bits(output, config.no_photon_mask_names)
    n_rows = len(catalog)
    new_columns = {name: np.full(n_rows, np.nan) for name in INJECTION_RESULT_COLUMNS}
    draw_sizes = np.asarray(catalog["injection_draw_size"], dtype=np.int64).copy()
    settings = RenderSettings(
        calib_flux_radius=config.calib_flux_radius,
        max_draw_size=config.max_draw_size,
        stamp_size_factor=config.stamp_size_factor,
        psf_cache_spacing=config.psf_cache_spacing,
        stamp_prefix=config.stamp_prefix,
        fits_alignment=config.fits_alignment,
    )
    image_array = output.image.array
    variance_array = output.variance.array
    half_core = config.injection_core_size // 2
    x_all = np.asarray(catalog["x"], dtype=float)
    y_all = np.asarray(catalog["y"], dtype=float)
    located = np.isfinite(x_all) & np.isfinite(y_all)
    flags[~located] |= InjectionFlag.POSITION_BAD

    # Per-source values at the centre pixel, for all sources at once.
    ix_all = np.floor(np.nan_to_num(x_all, nan=-1e9) + 0.5).astype(np.int64)
    iy_all = np.floor(np.nan_to_num(y_all, nan=-1e9) + 0.5).astype(np.int64)
    centred = located & bbox.contains(x=ix_all, y=iy_all)
    local_y, local_x = iy_all[centred] - bbox.y.start, ix_all[centred] - bbox.x.start
    centre_flat = flat_image[local_y, local_x].astype(np.float64)
    centre_illum = 1.0 if illum_image is None else illum_image[local_y, local_x]
    new_columns["injection_flat"][centred] = centre_flat
    new_columns["injection_effective_gain"][centred] = (
        centre_flat * centre_illum / calibration.scaling_at(x_all[centred], y_all[centred])
    )
    flux_image = _fluxes_in_image_units(catalog, calibration, x_all, y_all, flags, log)

    psf_cache = None
    if psf is not None:
        psf_cache = PsfCache(
            psf, visit_image.sky_projection, spacing=config.psf_cache_spacing,
            calib_flux_radius=config.calib_flux_radius,
            bounds=(bbox.x.min, bbox.x.max, bbox.y.min, bbox.y.max),
        )
        todo = (flags & int(FATAL_FLAGS)) == 0
        psf_cache.prepare(x_all[todo], y_all[todo])
    planes = _Planes(
        bbox=bbox, image=image_array, variance=variance_array, mask=mask_array, flat=flat_image,
        flat_variance=flat_variance, illumination=illum_image, no_photons=_any_bit(mask_array, no_photon_bits),
        saturated_bit=sat_bit,
    )
    # Stamps wait in `pending` and go through the pixel model together
    # (`_inject_batch`); big stamps go alone.
    pending: list[tuple[int, DrawnStamp]] = []
    pending_pixels = 0
    stamp_boxes: dict[int, Box] = {}

    def flush() -> None:
        nonlocal pending, pending_pixels
        _inject_batch(pending, planes, calibration, config, rng, new_columns, flags)
        pending, pending_pixels = [], 0

    records = _records(catalog)
    for i, values in enumerate(records):
        if flags[i] & int(FATAL_FLAGS):
            continue
        if psf_cache is None:
            flags[i] |= InjectionFlag.PSF_COMPUTE_ERROR
            continue
        x, y = float(x_all[i]), float(y_all[i])
        stamp = draw_source(
            values, x=x, y=y, flux=float(flux_image[i]), psf=psf,
            sky_projection=visit_image.sky_projection, image_bbox=bbox, settings=settings, psf_cache=psf_cache,
        )
        flags[i] |= int(stamp.flags)
        draw_sizes[i] = stamp.draw_size
        new_columns["injection_model_flux"][i] = stamp.total_flux
        if stamp.model is None or stamp.bbox is None:
            continue
        stamp_boxes[i] = stamp.bbox
        alone = stamp.model.size > _ALONE_PIXELS
        if pending and (alone or pending_pixels + stamp.model.size > _BATCH_PIXELS):
            flush()
        pending.append((i, stamp))
        pending_pixels += stamp.model.size
        if alone:
            flush()
    flush()

    # Masks: the whole stamp as INJECTED, a small core box as INJECTED_CORE.
    for i, stamp_bbox in stamp_boxes.items():
        sl = stamp_bbox.slice_within(bbox)
        mask_array[sl.y, sl.x, injected_bit.index] |= injected_bit.mask
        ix, iy = int(ix_all[i]), int(iy_all[i])
        core = Box.factory[iy - half_core : iy + half_core + 1, ix - half_core : ix + half_core + 1]
        try:
            csl = core.intersection(bbox).slice_within(bbox)
        except NoOverlapError:
            continue
        mask_array[csl.y, csl.x, core_bit.index] |= core_bit.mask

    catalog = Table(catalog, copy=True)
    catalog["injection_flag"] = flags
    catalog["injection_draw_size"] = draw_sizes
    for name, values in new_columns.items():
        catalog[name] = values
    catalog["injection_flux"].unit = visit_image.unit
    catalog["injection_model_flux"].unit = visit_image.unit
    catalog["injection_flux_electrons"].unit = u.electron
    catalog["injection_effective_gain"].unit = u.electron / visit_image.unit
    for name, bit in flag_descriptions().items():
        catalog.meta[name] = bit
    catalog.meta["injection_flag_doc"] = "bit index of each flag; see isrinject.flags.InjectionFlag"
    catalog.meta["scaling_source"] = calibration.scaling_source
    n_injected = int(np.sum((flags & int(FATAL_FLAGS)) == 0))
    counts = {name: int(np.sum((flags & flag.value) != 0)) for name, flag in InjectionFlag.__members__.items()}
    log.info(
        "Injected %d of %d sources (c from %s); flags: %s",
        n_injected, n_rows, calibration.scaling_source,
        ", ".join(f"{k}({v})" for k, v in counts.items() if v) or "none",
    )
    output.metadata["INJECTED"] = "visit_image"
    output.metadata["INJECTION_N_SOURCES"] = n_injected
    return InjectionResult(image=output, catalog=catalog, planes=calibration_used)


def _add_pixel_positions(catalog: Table, visit_image: VisitImage) -> Table:
    """Add absolute pixel ``x``/``y`` (from ra/dec, or x/y relative to the
    image origin as in source_injection) and ``ra``/``dec`` if missing."""
    catalog = Table(catalog, copy=False)
    n_rows = len(catalog)
    has_sky = {"ra", "dec"} <= set(catalog.colnames)
    has_pixel = {"x", "y"} <= set(catalog.colnames)
    if has_sky:
        ra = np.ma.filled(np.ma.asarray(catalog["ra"], dtype=float), np.nan)
        dec = np.ma.filled(np.ma.asarray(catalog["dec"], dtype=float), np.nan)
        x = np.full(n_rows, np.nan)
        y = np.full(n_rows, np.nan)
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)
        if np.any(finite):
            x[finite], y[finite] = sky_to_pixel(visit_image.sky_projection, ra[finite], dec[finite])
        catalog["x"] = x
        catalog["y"] = y
    elif has_pixel:
        x = np.ma.filled(np.ma.asarray(catalog["x"], dtype=float), np.nan) + visit_image.bbox.x.start
        y = np.ma.filled(np.ma.asarray(catalog["y"], dtype=float), np.nan) + visit_image.bbox.y.start
        catalog["x"], catalog["y"] = x, y
        finite = np.isfinite(x) & np.isfinite(y)
        ra = np.full(n_rows, np.nan)
        dec = np.full(n_rows, np.nan)
        if np.any(finite):
            sky = visit_image.sky_projection.pixel_to_sky(XY(x=x[finite], y=y[finite]))
            ra[finite], dec[finite] = sky.ra.deg, sky.dec.deg
        catalog["ra"], catalog["dec"] = ra, dec
    else:
        catalog["x"] = np.full(n_rows, np.nan)
        catalog["y"] = np.full(n_rows, np.nan)
    return catalog
