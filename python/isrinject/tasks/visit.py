"""`VisitInjectTask`: ISR-consistent source injection into ``visit_image``.

Connections, config and task read top to bottom; ``run()`` is glue over the
engine, `isrinject.engine.inject.inject_sources` (catalog rows → stamps → pixel
model → masks and output catalog).  Class names match
``lsst.source.injection`` so that switching is an import change.
"""

from __future__ import annotations

__all__ = [
    "VisitInjectConfig",
    "VisitInjectConnections",
    "VisitInjectTask",
]

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.images import Image, MaskedImage, VisitImage
from lsst.pex.config import ChoiceField, Field, ListField
from lsst.pipe.base import (
    InputQuantizedConnection,
    NoWorkFound,
    OutputQuantizedConnection,
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    QuantumContext,
    Struct,
)
from lsst.pipe.base import connectionTypes as cT

from ..engine.calibration import SCALING_SOURCES
from ..engine.catalog import compose_catalog
from ..engine.catalog.schema import CONFIGURABLE_COLUMNS
from ..engine.draw import FITS_ALIGNMENTS
from ..engine.draw.extent import (
    DEFAULT_INJECTED_NOISE_FRACTION,
    DEFAULT_STAMP_FLUX_ERROR_FRACTION,
    DEFAULT_STAMP_NOISE_FRACTION,
)
from ..engine.draw.psf_cache import DEFAULT_SPACING
from ..engine.inject import inject_sources
from ..engine.memory import release_freed_memory
from .call import run_inputs
from .inputs import read_flat
from .provenance import check_recorded_flat


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
    mask_plane_name = Field[str](
        doc="Mask plane set where an injected source's model is at least injected_noise_fraction of the local "
        "sky sigma (over every stamp when that is <= 0).",
        default="INJECTED",
    )
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
        doc="How Stamp sources (FITS images) are aligned.", allowed=FITS_ALIGNMENTS, default="pixel"
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
        allowed=dict(SCALING_SOURCES),
        default="visit_image",
    )
    photometric_scaling = Field[float](
        doc="Photometric scaling [nJy per electron] used when scaling_source='config', or for an "
        "image in electrons that carries none.  From a visit_summary row: the flux of a source of "
        "magnitude zeroPoint, (zeroPoint * astropy.units.ABmag).to_value('nJy').",
        default=None,
        optional=True,
        check=lambda value: value is None or (np.isfinite(value) and value > 0),
    )
    read_noise = Field[float](
        doc="Read noise [e⁻] for every amplifier; None uses the detector's amplifiers (required when "
        "they do not cover the image, as in cutouts whose detector lists only some amplifiers).",
        default=None,
        optional=True,
    )
    saturation = Field[float](
        doc="Saturation level [pre-flat e⁻] for every amplifier; None uses the detector's amplifiers "
        "(saturation [ADU] × amplifier gain [e⁻/ADU]).",
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
        doc="Largest automatic stamp side as a multiple of GalSim's getGoodImageSize (the side itself when "
        "stamp_noise_fraction <= 0).",
        default=1.5,
    )
    stamp_noise_fraction = Field[float](
        doc="Noise-aware stamp extent: an automatic stamp ends where the PSF-convolved model falls below this "
        "fraction of the local per-pixel sky sigma (from the input variance plane), between the PSF kernel's "
        "side and stamp_size_factor x GalSim's good size; the default keeps the flux left outside within "
        "0.1 sigma of each source's own flux error (isrinject.engine.draw.extent). <= 0 draws every automatic "
        "stamp on its upper bound.",
        default=DEFAULT_STAMP_NOISE_FRACTION,
    )
    stamp_flux_error_fraction = Field[float](
        doc="Noise-aware stamp extent: an automatic stamp also holds all of the model's flux but at most this "
        "fraction of the source's own flux error sigma_F (optimal model-weighted measurement, sky plus the "
        "source's Poisson noise; isrinject.engine.draw.extent); <= 0 drops this condition.",
        default=DEFAULT_STAMP_FLUX_ERROR_FRACTION,
    )
    injected_noise_fraction = Field[float](
        doc="<mask_plane_name> is set where a source's noiseless model is at least this fraction of the local "
        "per-pixel sky sigma (isrinject.engine.noise_level); <= 0 sets it over the whole stamp, as "
        "lsst.source.injection does.",
        default=DEFAULT_INJECTED_NOISE_FRACTION,
    )

    check_flat_provenance = Field[bool](
        doc="Fail the quantum when the visit image records the flat ISR used ('LSST CALIB UUID FLAT') and "
        "the graph resolved a different one; False only warns.",
        default=True,
    )

    # --- storage classes (DP1 repositories store ExposureF) ------------------
    visit_image_storage_class = Field[str](doc="Storage class of visit_image.", default="VisitImage")
    flat_storage_class = Field[str](doc="Storage class of flat.", default="MaskedImageV2")
    illumination_storage_class = Field[str](doc="Storage class of illuminationCorrection.", default="ImageV2")

    def column_names(self) -> dict[str, str]:
        """Standard column name → configured column name (``col_<name>``)."""
        return {name: getattr(self, f"col_{name}") for name in CONFIGURABLE_COLUMNS}


class VisitInjectTask(PipelineTask):
    """Inject synthetic sources into a ``visit_image`` as if their photons
    had arrived before ISR (see `isrinject.engine.model`)."""

    ConfigClass = VisitInjectConfig
    _DefaultName = "visitInject"
    config: VisitInjectConfig

    def runQuantum(
        self,
        butlerQC: QuantumContext,
        inputRefs: InputQuantizedConnection,
        outputRefs: OutputQuantizedConnection,
    ) -> None:
        # The butler hands this quantum its own in-memory copy of visit_image
        # (the stored dataset is never touched), so inject into it in place
        # instead of holding a second full copy, and drop the inputs (the
        # flat is as big as the image) before the output is written.
        inputs = butlerQC.get(inputRefs)
        check_recorded_flat(
            inputs["visit_image"].metadata, inputRefs.flat, strict=self.config.check_flat_provenance,
            where=f"Quantum {dict(inputRefs.visit_image.dataId.required)}", log=self.log,
        )
        inputs["flat"] = read_flat(inputs["flat"], with_variance=self.config.include_flat_variance)
        outputs = self.run(**inputs, in_place=True)
        del inputs
        release_freed_memory()
        butlerQC.put(outputs, outputRefs)

    def run(
        self,
        *,
        visit_image: VisitImage | None = None,
        injection_catalogs: Table | Sequence[Table],
        flat: MaskedImage | Image | None = None,
        illumination_correction: Image | MaskedImage | None = None,
        in_place: bool = False,
        input_exposure: VisitImage | None = None,
        psf: Any = None,
        photo_calib: Any = None,
        wcs: Any = None,
    ) -> Struct:
        """Inject the catalog sources into a copy of ``visit_image``.

        Also accepts ``lsst.source.injection``'s call (``input_exposure``,
        ``psf``, ``photo_calib``, ``wcs``; see `isrinject.tasks.call.run_inputs`),
        plus the required ``flat``.

        Parameters
        ----------
        visit_image
            The calibrated visit image (not modified unless ``in_place``);
            ``input_exposure`` is the same under source_injection's name.
        injection_catalogs
            Injection catalogs overlapping the image (source_injection
            format), one Table or a sequence; may be empty.  Extra columns
            pass through to the output catalog.
        flat
            The flat (image f and variance V_f) ISR divided this image by;
            an `Image` has no V_f.  Its mask is not used.  Required: see
            `isrinject.find_isr_flat`.
        psf, photo_calib, wcs
            Overrides of the image's PSF, photometric scaling (a field or a
            float in nJy/e⁻) and sky projection.
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
            ``injected_visit_image_catalog`` (`astropy.table.Table`), also as
            source_injection's ``output_exposure`` and ``output_catalog``
            (the same objects).
        """
        inputs = run_inputs(
            visit_image=visit_image, input_exposure=input_exposure, injection_catalogs=injection_catalogs,
            psf=psf, photo_calib=photo_calib, wcs=wcs, flat=flat, scaling_source=self.config.scaling_source,
        )
        visit_id, detector_id = inputs.data_id
        seed = np.random.SeedSequence([self.config.noise_seed, visit_id, detector_id])
        rng = np.random.Generator(np.random.PCG64(seed))
        catalog = compose_catalog(inputs.catalogs)
        if len(catalog) == 0 and not self.config.process_all_data_ids:
            raise NoWorkFound(
                f"No injection catalog rows for visit {visit_id}, detector {detector_id}; "
                "set process_all_data_ids=True to write the image anyway."
            )
        illumination = illumination_correction if self.config.do_illumination_correction else None
        result = inject_sources(
            inputs.visit_image, catalog, flat=inputs.flat, illumination=illumination, config=self.config,
            rng=rng, log=self.log, visit_id=visit_id, in_place=in_place,
        )
        # Rows that all failed still produce the visit: the flagged catalog is
        # the record of what went wrong, and downstream quanta keep running.
        return Struct(
            injected_visit_image=result.image, injected_visit_image_catalog=result.catalog,
            output_exposure=result.image, output_catalog=result.catalog,
        )

