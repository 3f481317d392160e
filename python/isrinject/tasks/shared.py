"""The connections and configuration every injection task shares.

`VisitInjectTask` (`isrinject.tasks.visit`) and `DifferenceInjectTask`
(`isrinject.tasks.difference`) inject into images on a science visit's pixel
grid through the same pixel model, so they read the same injection catalogs,
flat and illumination correction and are configured by the same fields; each
adds only its own image connections (and storage-class field).
"""

from __future__ import annotations

__all__ = ["InjectionConfigBase", "InjectionInputConnections", "check_catalog_rows", "quantum_rng"]

import dataclasses
from typing import Any

import numpy as np
from lsst.pex.config import ChoiceField, Config, Field, FieldValidationError, ListField
from lsst.pipe.base import NoWorkFound, PipelineTaskConnections
from lsst.pipe.base import connectionTypes as cT

from ..engine.calibration import SCALING_SOURCES
from ..engine.catalog.plausibility import DEFAULT_PLAUSIBLE_MAG_RANGE
from ..engine.catalog.schema import CONFIGURABLE_COLUMNS
from ..engine.draw import FITS_ALIGNMENTS
from ..engine.draw.extent import (
    DEFAULT_INJECTED_NOISE_FRACTION,
    DEFAULT_STAMP_FLUX_ERROR_FRACTION,
    DEFAULT_STAMP_NOISE_FRACTION,
)
from ..engine.draw.psf_cache import DEFAULT_SPACING
from .config_errors import one_line_error, renamed_choice


class InjectionInputConnections(
    PipelineTaskConnections,
    dimensions=("instrument", "visit", "detector"),
    defaultTemplates={"injection_prefix": "injection_", "injected_prefix": "injected_"},
):
    """The inputs every injection task reads besides its image: the
    catalogs, the science visit's flat and its illumination correction."""

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

    def __init__(self, *, config: Any = None) -> None:
        super().__init__(config=config)
        if config is None:
            return
        # Real (DP1) repositories store ExposureF; the storage classes are
        # config so the graph builds against them.
        self.flat = dataclasses.replace(self.flat, storageClass=config.flat_storage_class)
        self.illumination_correction = dataclasses.replace(
            self.illumination_correction, storageClass=config.illumination_storage_class
        )
        if not config.do_illumination_correction:
            del self.illumination_correction


class InjectionConfigBase(Config):
    """Fields every injection task shares.

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
        doc="Sources whose centre falls outside the image bbox grown by this many pixels are not drawn "
        "(see keep_off_image_rows).",
        default=100,
    )
    keep_off_image_rows = Field[bool](
        doc="Keep the rows centred outside the image padded by trim_padding in the output catalog, "
        "flagged NO_OVERLAP; False leaves them out (as lsst.source.injection does).",
        default=True,
    )
    plausible_mag_range = ListField[float](
        doc="Magnitudes [AB] outside [low, high] are injected with a warning (a mag -3 star is a legal "
        "number but almost certainly a mistake); values outside -10 < mag < 40 are MAG_BAD.",
        default=list(DEFAULT_PLAUSIBLE_MAG_RANGE),
        length=2,
        itemCheck=np.isfinite,
        listCheck=lambda values: values[0] < values[1],
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
        doc="How Stamp sources (FITS images) are aligned.", allowed=FITS_ALIGNMENTS, default="pixel",
        optional=False,
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
    do_bleed = Field[bool](
        doc="Spill pre-flat electrons above the amplifier saturation level up and down the column until "
        "every pixel is at the level, conserving charge (charge leaving the amplifier is lost and recorded "
        "in injection_lost_electrons); False leaves S + n above the level (the behaviour before bleeding).",
        default=True,
    )
    do_saturation_interpolation = Field[bool](
        doc="As ISR (doInterpolate): grow the new SATURATED pixels by grow_saturation_footprint_size and "
        "interpolate image and variance over them along rows, setting INTERPOLATED; False sets SATURATED "
        "on the pixels at or above the level only.",
        default=True,
    )
    grow_saturation_footprint_size = Field[int](
        doc="Pixels by which SATURATED is grown (Manhattan) before the interpolation (ISR's "
        "growSaturationFootprintSize).",
        default=1,
        check=lambda value: value >= 0,
    )
    do_suspect = Field[bool](
        doc="Set SUSPECT where the pre-flat electrons of injected or bled pixels reach the amplifier's "
        "suspect level (as ISR's doSuspect).",
        default=True,
    )
    suspect_level = Field[float](
        doc="Suspect level [pre-flat e⁻] for every amplifier; None uses the detector's amplifiers "
        "(suspect_level [ADU] × amplifier gain; NaN there: no SUSPECT).",
        default=None,
        optional=True,
    )
    do_illumination_correction = Field[bool](
        doc="The visit image was divided by an illumination correction R (adds the prerequisite input).",
        default=False,
    )
    scaling_source = ChoiceField[str](
        doc="Where the photometric scaling c (image units per electron) comes from ('config', its "
        "former name for 'constant', still works with a deprecation warning).",
        allowed=dict(SCALING_SOURCES),
        default="visit_image",
        optional=False,
    )
    photometric_scaling = Field[float](
        doc="Photometric scaling [nJy per electron] used when scaling_source='constant', or for an "
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

    flat_storage_class = Field[str](doc="Storage class of flat.", default="MaskedImageV2")
    illumination_storage_class = Field[str](doc="Storage class of illuminationCorrection.", default="ImageV2")

    def __setattr__(self, attr: str, value: Any, at: Any = None, label: str = "assignment") -> None:
        # Refused values fail in one line naming the field, the value and the
        # allowed values (pex_config prints a Config value as its whole dict).
        value = renamed_choice(attr, value)
        try:
            super().__setattr__(attr, value, at=at, label=label)
        except FieldValidationError:
            if attr not in self._fields:
                raise
            raise one_line_error(self, attr, value) from None

    def validate(self) -> None:
        # The same one-line errors for what only validate() checks (a list's
        # listCheck, a required value left None).
        try:
            super().validate()
        except FieldValidationError as err:
            value = getattr(self, err.fieldName, None) if err.fieldName in self._fields else None
            if err.fieldName not in self._fields or isinstance(value, Config):
                raise
            raise one_line_error(self, err.fieldName, value) from None

    def column_names(self) -> dict[str, str]:
        """Standard column name → configured column name (``col_<name>``)."""
        return {name: getattr(self, f"col_{name}") for name in CONFIGURABLE_COLUMNS}


def quantum_rng(noise_seed: int, visit_id: int, detector_id: int) -> np.random.Generator:
    """The noise generator of one (visit, detector): seeded from ``noise_seed``
    and the data ID, so every quantum has independent, reproducible noise."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([noise_seed, visit_id, detector_id])))


def check_catalog_rows(
    catalog: Any,
    catalogs: Any,
    visit_id: int,
    detector_id: int,
    *,
    config: Any,
    log: Any,
    catalogs_are_shards: bool = False,
) -> None:
    """Say so when a quantum or call has no catalog rows to inject.

    With no rows, a WARNING names the visit, the detector and how many catalogs
    were given, then either ``lsst.pipe.base.NoWorkFound`` is raised or, with
    ``config.process_all_data_ids``, the output is a copy of the input.
    ``catalogs_are_shards`` (``runQuantum``, which has already warned when it
    received no catalog at all) leaves out the warning for no catalog.
    """
    if len(catalog):
        return
    given = f"{len(catalogs)} catalog(s) given, all empty" if catalogs else "no catalog given"
    message = f"No injection catalog rows for visit {visit_id}, detector {detector_id} ({given})"
    # NoWorkFound is logged at INFO by pipetask: say it louder.
    loud = not (catalogs_are_shards and not catalogs)
    if not config.process_all_data_ids:
        if loud:
            log.warning("%s: nothing injected, no output written (process_all_data_ids=True "
                        "writes a copy of the image).", message)
        raise NoWorkFound(f"{message}; set process_all_data_ids=True to write the image anyway.")
    if loud:
        log.warning("%s: the output is a copy of the input image.", message)
