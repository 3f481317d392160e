"""The injection engine: catalog rows → stamps → pixel model → masks and catalog.

`inject_sources` is what `isrinject.tasks.visit.VisitInjectTask.run` runs, as a
plain function of in-memory objects (no butler), in five steps:

1. the catalog is standardised, selected, located on the image (ra/dec or
   x/y) and checked once (`isrinject.engine.catalog.check_catalog`): bad rows get
   ``injection_flag`` bits and are skipped;
2. magnitudes become fluxes in image units through the image's photometric
   scaling (`isrinject.engine.calibration`);
3. each row is drawn as a noiseless stamp with the image's PSF
   (`isrinject.engine.draw`);
4. stamps go through the pixel model in batches (`isrinject.engine.model.inject_pixels`,
   overlapping stamps summed per pixel first), which adds ΔI, ΔV and the
   SATURATED bit to the image; charge above the saturation level bleeds
   along the column and ISR's masks and interpolation follow
   (`isrinject.engine.saturation`);
5. the stamps are marked INJECTED where the model is above
   ``injected_noise_fraction`` × the local sky σ (`isrinject.engine.noise_level`;
   the whole stamp when that is ``<= 0``), a small box at the centre
   INJECTED_CORE, and the per-source results are added to the output catalog.

Automatic stamps end where the noise can no longer see the model
(`isrinject.engine.draw.extent`, ``stamp_noise_fraction``).
"""

from __future__ import annotations

__all__ = ["INJECTION_RESULT_COLUMNS", "InjectionConfig", "InjectionResult", "inject_sources"]

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol, cast

import astropy.units as u
import numpy as np
from astropy.table import Table
from lsst.images import XY, YX, Box, Image, MaskedImage, MaskPlaneBit, NoOverlapError, VisitImage
from lsst.images.psfs import PointSpreadFunction
from lsst.utils.logging import LsstLoggers

from .calibration import CalibrationConfig, CalibrationError, CalibrationPlanes, PixelCalibration, calibration_planes
from .catalog import check_catalog, standardize_columns
from .catalog.plausibility import implausible_magnitude_message, nothing_injected_message, off_image_message
from .draw import FitsAlignment, RenderSettings, SourceSpec, draw_source, local_jacobian, sky_to_pixel
from .draw.psf_cache import PsfCache
from .flags import FATAL_FLAGS, InjectionFlag, flag_descriptions
from .masks import add_mask_planes, any_bit, plane_bits
from .model import PixelInjection, PixelTerms, effective_gain, inject_pixels, reconstruct_pre_flat_electrons
from .noise_level import local_sky_sigma
from .saturation import BatchBleed, SaturationTreatment

_LOG = logging.getLogger(__name__)

#: Per-source result columns `inject_sources` adds to the catalog (besides
#: the pixel position ``x``, ``y``).
INJECTION_RESULT_COLUMNS: tuple[str, ...] = (
    "injection_flux",
    "injection_flux_electrons",
    "injection_model_flux",
    "injection_flat",
    "injection_effective_gain",
    "injection_lost_electrons",
    "injection_truncated_fraction",
)

#: Stamp pixels gathered before the pixel model runs on them in one pass
#: (bounds the batch's temporaries to ~100 MB).
_BATCH_PIXELS = 1_000_000
#: Stamps bigger than this run alone: batching saves per-call overhead,
#: which only small stamps notice, and costs a copy of every pixel.
_ALONE_PIXELS = 128 * 128
#: Cell side [pixels] of the local sky σ (`isrinject.engine.noise_level`).
_NOISE_CELL = 128


class InjectionConfig(CalibrationConfig, Protocol):
    """The configuration `inject_sources` reads (`isrinject.tasks.visit.VisitInjectConfig` is one)."""

    @property
    def trim_padding(self) -> int: ...
    @property
    def keep_off_image_rows(self) -> bool: ...
    @property
    def plausible_mag_range(self) -> Sequence[float]: ...
    @property
    def selection(self) -> str | None: ...
    @property
    def mask_plane_name(self) -> str: ...
    @property
    def injection_core_size(self) -> int: ...
    @property
    def calib_flux_radius(self) -> float | None: ...
    @property
    def fits_alignment(self) -> str: ...  # a FitsAlignment
    @property
    def stamp_prefix(self) -> str: ...
    @property
    def inject_variance(self) -> bool: ...
    @property
    def add_noise(self) -> bool: ...
    @property
    def do_saturation(self) -> bool: ...
    @property
    def do_bleed(self) -> bool: ...
    @property
    def do_saturation_interpolation(self) -> bool: ...
    @property
    def grow_saturation_footprint_size(self) -> int: ...
    @property
    def do_suspect(self) -> bool: ...
    @property
    def no_photon_mask_names(self) -> Sequence[str]: ...
    @property
    def max_draw_size(self) -> int: ...
    @property
    def psf_cache_spacing(self) -> float: ...
    @property
    def stamp_size_factor(self) -> float: ...
    @property
    def stamp_noise_fraction(self) -> float: ...
    @property
    def stamp_flux_error_fraction(self) -> float: ...
    @property
    def injected_noise_fraction(self) -> float: ...

    def column_names(self) -> Mapping[str, str]:
        """Standard column name → the catalog's column name."""
        ...


@dataclasses.dataclass
class InjectionResult:
    """Output of `inject_sources`."""

    image: VisitImage
    """The injected visit image."""
    catalog: Table
    """The injection catalog with positions, fluxes and flags."""
    planes: CalibrationPlanes
    """The flat, illumination and calibration the injection used."""


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
    present), evaluated once for the image instead of per stamp."""
    saturated_bit: MaskPlaneBit


def _no_photons(image: VisitImage, names: Sequence[str]) -> np.ndarray | None:
    """Where any of the named mask planes is set (`None` if none is present)."""
    bits = plane_bits(image, names)
    return any_bit(image.mask.array, bits) if bits else None


def inject_sources(
    visit_image: VisitImage,
    catalog: Table,
    *,
    flat: MaskedImage | Image,
    illumination: Image | MaskedImage | None,
    config: InjectionConfig,
    rng: np.random.Generator,
    log: LsstLoggers = _LOG,
    visit_id: int = 0,
    in_place: bool = False,
    off_image_level: int = logging.WARNING,
) -> InjectionResult:
    """Inject a composed catalog into a copy of ``visit_image`` (or into
    ``visit_image`` itself when ``in_place``).

    Parameters
    ----------
    visit_image
        The calibrated visit image (not modified unless ``in_place``).
    catalog
        Output of `isrinject.engine.catalog.compose_catalog`.
    flat, illumination
        The flat (f and V_f) and illumination correction R (or `None`) the
        image was divided by.
    config
        The task's configuration.
    rng
        Generator of the Poisson noise.
    log
        Where warnings about bad rows and the summary go.
    visit_id
        The visit, for messages and the ``{visit}`` of ``config.selection``.
    in_place
        Inject into ``visit_image`` itself.
    off_image_level
        Log level of the message about rows centred off the image when some
        rows are on it (`logging.INFO` for the htm7 shards of a quantum, which
        cover the neighbouring detectors too); always a warning when no row is.

    Raises
    ------
    CalibrationError
        The image has no sky projection, or lacks what the pixel model needs.
    """
    detector_id = visit_image.detector.id if visit_image.detector is not None else None
    where = f"visit {visit_id}, detector {detector_id}"
    if visit_image.sky_projection is None:
        raise CalibrationError(f"The visit image of {where} has no sky projection (WCS): sources cannot be placed.")
    calibration_used = calibration_planes(visit_image, flat, illumination, config, log, where)
    psf = _usable_psf(visit_image, log, where)
    catalog, flags, sources = _located_catalog(catalog, visit_image, config, log, where, visit_id, off_image_level)

    output = visit_image if in_place else visit_image.copy()
    core_name = f"{config.mask_plane_name}_CORE"
    add_mask_planes(output, [config.mask_plane_name, core_name, "SATURATED"])
    planes = _Planes(
        bbox=visit_image.bbox, image=output.image.array, variance=output.variance.array, mask=output.mask.array,
        flat=calibration_used.flat, flat_variance=calibration_used.flat_variance,
        illumination=calibration_used.illumination, no_photons=_no_photons(output, config.no_photon_mask_names),
        saturated_bit=output.mask.schema.bit("SATURATED"),
    )
    columns = {name: np.full(len(catalog), np.nan) for name in INJECTION_RESULT_COLUMNS}
    x = np.asarray(catalog["x"], dtype=float)
    y = np.asarray(catalog["y"], dtype=float)
    _centre_values(columns, x, y, planes, calibration_used.calibration)
    # Rows kept off the padded image are not drawn: their c is read at the
    # image centre, not extrapolated far outside the field's domain.
    off = (flags & InjectionFlag.NO_OVERLAP) != 0
    flux = _fluxes_in_image_units(
        catalog, calibration_used.calibration, np.where(off, visit_image.bbox.x.center, x),
        np.where(off, visit_image.bbox.y.center, y), flags, log,
    )
    draw_sizes = np.asarray(catalog["injection_draw_size"], dtype=np.int64).copy()
    batch = _StampBatch(planes, calibration_used.calibration, config, rng, columns, flags)
    batch.saturation = _saturation_treatment(output, planes, calibration_used, config)
    # The input's sky noise, before any source adds to the variance plane.
    sky_sigma = local_sky_sigma(
        planes.variance, x, y, x0=planes.bbox.x.start, y0=planes.bbox.y.start, cell=_NOISE_CELL
    )
    stamp_boxes = _draw_sources(sources, x, y, flux, psf, visit_image, config, batch, draw_sizes, sky_sigma)
    if batch.saturation is not None:
        _flag_interpolated(batch.saturation.finish(), stamp_boxes, planes.bbox, flags)
    _mark_stamps(
        planes, stamp_boxes, x, y, config.injection_core_size,
        output.mask.schema.bit(config.mask_plane_name), output.mask.schema.bit(core_name),
    )
    catalog = _output_catalog(catalog, flags, draw_sizes, columns, visit_image.unit, calibration_used.calibration)
    n_injected = int(np.sum((flags & int(FATAL_FLAGS)) == 0))
    counts = {name: int(np.sum((flags & flag.value) != 0)) for name, flag in InjectionFlag.__members__.items()}
    log.info(
        "Injected %d of %d sources (c from %s); flags: %s",
        n_injected, len(catalog), calibration_used.calibration.scaling_source,
        ", ".join(f"{k}({v})" for k, v in counts.items() if v) or "none",
    )
    if n_injected == 0 and len(catalog):
        log.warning("%s", nothing_injected_message(counts, len(catalog), where))
    output.metadata["INJECTED"] = "visit_image"
    output.metadata["INJECTION_N_SOURCES"] = n_injected
    return InjectionResult(image=output, catalog=catalog, planes=calibration_used)


def _saturation_treatment(
    output: VisitImage, planes: _Planes, calibration_used: CalibrationPlanes, config: InjectionConfig
) -> SaturationTreatment | None:
    """Bleed, SAT, SUSPECT and interpolation of this injection (`None` without ``do_saturation``)."""
    if not config.do_saturation:
        return None
    add_mask_planes(output, ["SUSPECT", "INTERPOLATED"])
    planes.mask = output.mask.array
    schema = output.mask.schema
    return SaturationTreatment(
        image=planes.image, variance=planes.variance, mask=planes.mask, flat=planes.flat,
        flat_variance=planes.flat_variance, illumination=planes.illumination,
        origin=(planes.bbox.y.start, planes.bbox.x.start), calibration=calibration_used.calibration,
        bleed=config.do_bleed, interpolate=config.do_saturation_interpolation,
        grow=config.grow_saturation_footprint_size, suspect=config.do_suspect,
        inject_variance=config.inject_variance, saturated_bit=schema.bit("SATURATED"),
        suspect_bit=schema.bit("SUSPECT"), interpolated_bit=schema.bit("INTERPOLATED"),
        defect_bits=plane_bits(output, ["BAD", "UNMASKEDNAN"]),
    )


def _flag_interpolated(
    interpolated: np.ndarray | None,
    stamp_boxes: Mapping[int, tuple[Box, np.ndarray]],
    bbox: Box,
    flags: np.ndarray,
) -> None:
    """INTERPOLATED for every source whose stamp holds an interpolated pixel."""
    if interpolated is None or not interpolated.any():
        return
    for i, (stamp_bbox, _) in stamp_boxes.items():
        sl = stamp_bbox.slice_within(bbox)
        if interpolated[sl.y, sl.x].any():
            flags[i] |= InjectionFlag.INTERPOLATED


def _usable_psf(visit_image: VisitImage, log: LsstLoggers, where: str) -> PointSpreadFunction | None:
    """The image's PSF, or `None` (logged) when it cannot be read."""
    try:
        return visit_image.psf
    except Exception as err:  # an unreadable PSF is an ArchiveReadError stored in the image
        log.warning("The PSF of %s is unusable (%s); every source is flagged PSF_COMPUTE_ERROR.", where, err)
        return None


def _located_catalog(
    catalog: Table,
    visit_image: VisitImage,
    config: InjectionConfig,
    log: LsstLoggers,
    where: str,
    visit_id: int,
    off_image_level: int = logging.WARNING,
) -> tuple[Table, np.ndarray, list[SourceSpec | None]]:
    """Standardise, select, locate and check the catalog rows: the rows kept
    (with absolute ``x``, ``y``), their flags (POSITION_BAD, and NO_OVERLAP
    for rows centred off the padded image, included) and their checked
    sources (`None` for flagged rows)."""
    bbox = visit_image.bbox
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
    x = np.asarray(catalog["x"], dtype=float)
    y = np.asarray(catalog["y"], dtype=float)
    located = np.isfinite(x) & np.isfinite(y)
    inside = bbox.dilated_by(config.trim_padding).contains(
        x=np.nan_to_num(x, nan=-1e30, posinf=-1e30, neginf=-1e30),
        y=np.nan_to_num(y, nan=-1e30, posinf=-1e30, neginf=-1e30),
    )
    dropped = located & ~inside
    if np.any(dropped):
        level = logging.WARNING if np.all(dropped[located]) else off_image_level
        log.log(level, "%s", off_image_message(
            catalog, dropped, visit_image, config.trim_padding, kept=config.keep_off_image_rows, where=where
        ))
    # Rows without a usable position are kept (flagged POSITION_BAD); rows
    # off the image are checked only if they could be drawn (a quantum's
    # htm7 shards hold the neighbouring detectors' rows too).
    on_image = catalog[~dropped]
    report = check_catalog(on_image, max_draw_size=config.max_draw_size, stamp_prefix=config.stamp_prefix)
    for problem in report.problems:
        log.warning("Injection catalog: %s", problem)
    if message := implausible_magnitude_message(on_image, config.plausible_mag_range):
        log.warning("Injection catalog for %s: %s", where, message)
    flags = np.asarray(catalog["injection_flag"], dtype=np.int64)
    flags[~dropped] |= np.asarray(report.flags, dtype=np.int64)
    flags[~located] |= InjectionFlag.POSITION_BAD
    flags[dropped] |= InjectionFlag.NO_OVERLAP
    sources: list[SourceSpec | None] = [None] * len(catalog)
    for row, source in zip(np.flatnonzero(~dropped), report.sources):
        sources[row] = source
    if config.keep_off_image_rows:
        return catalog, flags, sources
    return catalog[~dropped], flags[~dropped], [s for s, off in zip(sources, dropped) if not off]


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


def _centre_pixels(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer pixel of each position (far off the image where not finite or huge)."""
    return (
        np.floor(np.clip(np.nan_to_num(x, nan=-1e9), -1e9, 1e9) + 0.5).astype(np.int64),
        np.floor(np.clip(np.nan_to_num(y, nan=-1e9), -1e9, 1e9) + 0.5).astype(np.int64),
    )


def _centre_values(
    columns: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, planes: _Planes, calibration: PixelCalibration
) -> None:
    """Fill ``injection_flat`` and ``injection_effective_gain`` (g = f·R/c)
    at each source's centre pixel, for all sources at once."""
    ix, iy = _centre_pixels(x, y)
    centred = np.isfinite(x) & np.isfinite(y) & planes.bbox.contains(x=ix, y=iy)
    local_y, local_x = iy[centred] - planes.bbox.y.start, ix[centred] - planes.bbox.x.start
    flat = planes.flat[local_y, local_x].astype(np.float64)
    illumination = None if planes.illumination is None else planes.illumination[local_y, local_x]
    columns["injection_flat"][centred] = flat
    columns["injection_effective_gain"][centred] = effective_gain(
        flat, calibration.image_per_electron_at(x[centred], y[centred]), illumination
    )


def _fluxes_in_image_units(
    catalog: Table,
    calibration: PixelCalibration,
    x: np.ndarray,
    y: np.ndarray,
    flags: np.ndarray,
    log: LsstLoggers,
) -> np.ndarray:
    """Catalog ``mag`` (AB) → flux in image units at (x, y); MAG_BAD where impossible."""
    n_rows = len(catalog)
    mags = np.full(n_rows, np.nan)
    if "mag" in catalog.colnames:
        for i, value in enumerate(np.ma.filled(np.ma.asarray(catalog["mag"], dtype=object), np.nan)):
            try:
                mags[i] = float(value)
            except (TypeError, ValueError):
                pass
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
    located = np.isfinite(x) & np.isfinite(y)
    todo = (flags & int(FATAL_FLAGS)) == 0
    for row in np.flatnonzero(bad & todo & located):
        log.warning(
            "Source %s: cannot convert mag %r to image units (flux %r).",
            catalog["injection_id"][row], catalog["mag"][row] if "mag" in catalog.colnames else None, flux[row],
        )
    flags[bad & located] |= InjectionFlag.MAG_BAD
    return flux


def _draw_sources(
    sources: Sequence[SourceSpec | None],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    psf: PointSpreadFunction | None,
    visit_image: VisitImage,
    config: InjectionConfig,
    batch: _StampBatch,
    draw_sizes: np.ndarray,
    sky_sigma: np.ndarray,
) -> dict[int, tuple[Box, np.ndarray]]:
    """Draw every unflagged source and hand its stamp to the pixel model.

    Fills ``draw_sizes``, the model flux and truncated-fraction columns and
    the flags; returns the box of every stamp drawn with its INJECTED
    footprint (model ≥ ``injected_noise_fraction`` × ``sky_sigma``, or the
    whole stamp where that level is not positive and finite).
    """
    flags = batch.flags
    bbox = visit_image.bbox
    settings = RenderSettings(
        calib_flux_radius=config.calib_flux_radius,
        max_draw_size=config.max_draw_size,
        stamp_size_factor=config.stamp_size_factor,
        stamp_noise_fraction=config.stamp_noise_fraction,
        stamp_flux_error_fraction=config.stamp_flux_error_fraction,
        psf_cache_spacing=config.psf_cache_spacing,
        # pex_config's ChoiceField has checked the value against FITS_ALIGNMENTS.
        fits_alignment=cast(FitsAlignment, config.fits_alignment),
    )
    if psf is None:
        flags[(flags & int(FATAL_FLAGS)) == 0] |= InjectionFlag.PSF_COMPUTE_ERROR
        return {}
    psf_cache = PsfCache(
        psf, visit_image.sky_projection, spacing=config.psf_cache_spacing,
        calib_flux_radius=config.calib_flux_radius, bounds=(bbox.x.min, bbox.x.max, bbox.y.min, bbox.y.max),
    )
    todo = (flags & int(FATAL_FLAGS)) == 0
    psf_cache.prepare(x[todo], y[todo])
    stamp_boxes: dict[int, tuple[Box, np.ndarray]] = {}
    for i, source in enumerate(sources):
        if source is None or flags[i] & int(FATAL_FLAGS):
            continue
        stamp = draw_source(
            source, x=float(x[i]), y=float(y[i]), flux=float(flux[i]), psf=psf,
            sky_projection=visit_image.sky_projection, image_bbox=bbox, settings=settings, psf_cache=psf_cache,
            noise_sigma=float(sky_sigma[i]), gain=float(batch.columns["injection_effective_gain"][i]),
        )
        flags[i] |= int(stamp.flags)
        draw_sizes[i] = stamp.draw_size
        batch.columns["injection_model_flux"][i] = stamp.total_flux
        if stamp.model is None or stamp.bbox is None:
            continue
        batch.columns["injection_truncated_fraction"][i] = stamp.truncated_fraction
        level = config.injected_noise_fraction * sky_sigma[i]
        footprint = stamp.model >= level if np.isfinite(level) and level > 0 else np.ones(stamp.model.shape, bool)
        stamp_boxes[i] = (stamp.bbox, footprint)
        batch.add(i, stamp.bbox, stamp.model)
    batch.flush()
    return stamp_boxes


class _Stamp(NamedTuple):
    """A drawn stamp waiting for the pixel model."""

    row: int
    """Its catalog row."""
    bbox: Box
    model: np.ndarray
    """M [image units] on ``bbox``."""


class _StampBatch:
    """Stamps waiting to go through the pixel model together (big stamps go
    alone); fills the per-source columns and flags as it flushes."""

    def __init__(
        self,
        planes: _Planes,
        calibration: PixelCalibration,
        config: InjectionConfig,
        rng: np.random.Generator,
        columns: dict[str, np.ndarray],
        flags: np.ndarray,
    ) -> None:
        self.planes = planes
        self.calibration = calibration
        self.config = config
        self.rng = rng
        self.columns = columns
        self.flags = flags
        self.pending: list[_Stamp] = []
        self.pending_pixels = 0
        self.saturation: SaturationTreatment | None = None
        """Bleed and ISR's saturation treatment (`None`: ``do_saturation`` off)."""

    def add(self, row: int, bbox: Box, model: np.ndarray) -> None:
        """Queue the stamp (``model`` on ``bbox``) of catalog row ``row``; run
        the pixel model when the batch is full."""
        alone = model.size > _ALONE_PIXELS
        if self.pending and (alone or self.pending_pixels + model.size > _BATCH_PIXELS):
            self.flush()
        self.pending.append(_Stamp(row, bbox, model))
        self.pending_pixels += model.size
        if alone:
            self.flush()

    def flush(self) -> None:
        """Run the pixel model on the queued stamps."""
        if self.pending:
            self._inject(self.pending)
        self.pending, self.pending_pixels = [], 0

    def _inject(self, batch: Sequence[_Stamp]) -> None:
        """Inject a batch through `isrinject.engine.model.inject_pixels`.

        The stamps' pixels are concatenated; where stamps of the batch
        overlap, a pixel's electrons are summed before ΔV and saturation are
        evaluated, so the result is the same as injecting the stamps one after
        the other (ΔV's flat term is quadratic in n).
        """
        planes, calibration, config = self.planes, self.calibration, self.config
        regions = [stamp.bbox.slice_within(planes.bbox) for stamp in batch]
        models = [stamp.model for stamp in batch]
        starts = np.concatenate([[0], np.cumsum([model.size for model in models])])
        widths = np.array([model.shape[1] for model in models])
        row0 = np.array([r.y.start for r in regions])
        col0 = np.array([r.x.start for r in regions])
        model = _joined(models)
        scaling = _joined(
            [np.broadcast_to(calibration.image_per_electron_on(stamp.bbox), stamp.model.shape) for stamp in batch]
        )

        def position(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Array row and column of model values (flat batch indices)."""
            stamp_of = np.searchsorted(starts, index, side="right") - 1
            rows, cols = np.divmod(index - starts[stamp_of], widths[stamp_of])
            return rows + row0[stamp_of], cols + col0[stamp_of]

        computed: dict[str, np.ndarray] = {}

        def terms(index: np.ndarray) -> PixelTerms:
            """S, V_f and saturation of the pixels that received electrons."""
            rows, cols = position(index)
            read_noise, saturation = calibration.amplifier_terms_at(
                cols + planes.bbox.x.start, rows + planes.bbox.y.start
            )
            flat_variance = None if planes.flat_variance is None else planes.flat_variance[rows, cols]
            signal = reconstruct_pre_flat_electrons(
                planes.variance[rows, cols], planes.flat[rows, cols], np.ravel(scaling)[index],
                np.nan_to_num(read_noise), flat_variance=flat_variance,
                illumination=None if planes.illumination is None else planes.illumination[rows, cols],
            )
            if self.saturation is not None:
                signal = self.saturation.full_where_saturated(rows, cols, signal, saturation)
            computed["signal"] = signal
            return PixelTerms(signal, flat_variance, saturation if config.do_saturation else None)

        pixel = None
        if _any_overlap(regions):
            width = planes.bbox.x.size
            pixel = _joined([
                np.arange(r.y.start, r.y.stop)[:, None] * width + np.arange(r.x.start, r.x.stop)[None, :]
                for r in regions
            ])
        result = inject_pixels(
            model,
            flat=_joined([planes.flat[r.y, r.x] for r in regions]),
            scaling=scaling,
            rng=self.rng,
            illumination=(
                None if planes.illumination is None
                else _joined([planes.illumination[r.y, r.x] for r in regions])
            ),
            excluded=(
                None if planes.no_photons is None else _joined([planes.no_photons[r.y, r.x] for r in regions])
            ),
            add_noise=config.add_noise,
            pixel=pixel,
            terms=terms,
        )
        rows, cols = position(result.index)
        bleed = None
        if self.saturation is not None and "signal" in computed:
            stamp_of = np.searchsorted(starts, result.hit_index, side="right") - 1
            bleed = self.saturation.after_pixel_model(result, rows, cols, computed["signal"], stamp_of, len(batch))
        if bleed is not None:
            rows, cols = rows[~bleed.handled], cols[~bleed.handled]
            kept = ~bleed.handled
            delta_image, delta_variance = result.delta_image[kept], result.delta_variance[kept]
        else:
            delta_image, delta_variance = result.delta_image, result.delta_variance
        planes.image[rows, cols] += delta_image.astype(planes.image.dtype)
        if config.inject_variance:
            planes.variance[rows, cols] += delta_variance.astype(planes.variance.dtype)
        # Bled pixels get SATURATED when the treatment finishes (grown when interpolating).
        saturated = result.saturated if bleed is None else result.saturated[~bleed.handled]
        bit = planes.saturated_bit
        planes.mask[rows[saturated], cols[saturated], bit.index] |= bit.mask
        self._record(batch, starts, model, result, bleed)

    def _record(
        self,
        batch: Sequence[_Stamp],
        starts: np.ndarray,
        model: np.ndarray,
        result: PixelInjection,
        bleed: BatchBleed | None = None,
    ) -> None:
        """Per source: ΔI is linear in n, so each source's share n/g is exact."""
        n_stamps = len(batch)
        stamp_of = np.searchsorted(starts, result.hit_index, side="right") - 1
        flux = np.bincount(
            stamp_of, weights=result.hit_electrons / result.effective_gain[result.hit_pixel], minlength=n_stamps
        )
        electrons = np.bincount(stamp_of, weights=result.hit_electrons, minlength=n_stamps)
        saturated = np.bincount(stamp_of, weights=result.saturated[result.hit_pixel], minlength=n_stamps) > 0
        blocked = np.logical_or.reduceat((result.no_photons & (np.ravel(model) > 0)), starts[:-1])
        rows = np.array([stamp.row for stamp in batch])
        lost = np.zeros(n_stamps)
        if bleed is not None:
            # Bled charge moved to other pixels (other g) or left the amplifier.
            flux = flux + bleed.flux_change
            lost = bleed.lost
            self.flags[rows[bleed.bled]] |= InjectionFlag.BLED
        self.columns["injection_flux"][rows] = flux
        self.columns["injection_flux_electrons"][rows] = electrons
        self.columns["injection_lost_electrons"][rows] = lost
        self.flags[rows[blocked]] |= InjectionFlag.NO_PHOTONS
        self.flags[rows[saturated]] |= InjectionFlag.SATURATED


def _joined(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The arrays flattened one after the other; a lone array is returned as it
    is (a big stamp is not worth a copy: its flat index is the same)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate([a.ravel() for a in arrays])


def _any_overlap(regions: Sequence[YX[slice]]) -> bool:
    """Whether any two of the (y, x) slice pairs overlap."""
    if len(regions) < 2:
        return False
    y0, y1, x0, x1 = (
        np.array([getattr(getattr(r, axis), end) for r in regions])
        for axis, end in (("y", "start"), ("y", "stop"), ("x", "start"), ("x", "stop"))
    )
    overlap = (
        (y0[:, None] < y1[None, :]) & (y0[None, :] < y1[:, None])
        & (x0[:, None] < x1[None, :]) & (x0[None, :] < x1[:, None])
    )
    np.fill_diagonal(overlap, False)
    return bool(overlap.any())


def _mark_stamps(
    planes: _Planes,
    stamp_boxes: Mapping[int, tuple[Box, np.ndarray]],
    x: np.ndarray,
    y: np.ndarray,
    core_size: int,
    injected_bit: MaskPlaneBit,
    core_bit: MaskPlaneBit,
) -> None:
    """Masks: each stamp's footprint (`_draw_sources`) as INJECTED, a
    ``core_size`` box at the centre as INJECTED_CORE."""
    bbox = planes.bbox
    half_core = core_size // 2
    ix_all, iy_all = _centre_pixels(x, y)
    for i, (stamp_bbox, footprint) in stamp_boxes.items():
        sl = stamp_bbox.slice_within(bbox)
        planes.mask[sl.y, sl.x, injected_bit.index] |= np.where(footprint, injected_bit.mask, 0).astype(
            planes.mask.dtype
        )
        ix, iy = int(ix_all[i]), int(iy_all[i])
        core = Box.factory[iy - half_core : iy + half_core + 1, ix - half_core : ix + half_core + 1]
        try:
            csl = core.intersection(bbox).slice_within(bbox)
        except NoOverlapError:
            continue
        planes.mask[csl.y, csl.x, core_bit.index] |= core_bit.mask


def _output_catalog(
    catalog: Table,
    flags: np.ndarray,
    draw_sizes: np.ndarray,
    columns: Mapping[str, np.ndarray],
    unit: u.UnitBase,
    calibration: PixelCalibration,
) -> Table:
    """The injection catalog with flags, draw sizes, result columns (with
    units) and the flag bits in its metadata (as source_injection)."""
    catalog = Table(catalog, copy=True)
    catalog["injection_flag"] = flags
    catalog["injection_draw_size"] = draw_sizes
    for name, values in columns.items():
        catalog[name] = values
    catalog["injection_flux"].unit = unit
    catalog["injection_model_flux"].unit = unit
    catalog["injection_flux_electrons"].unit = u.electron
    catalog["injection_lost_electrons"].unit = u.electron
    catalog["injection_effective_gain"].unit = u.electron / unit
    for name, bit in flag_descriptions().items():
        catalog.meta[name] = bit
    catalog.meta["injection_flag_doc"] = "bit index of each flag; see isrinject.engine.flags.InjectionFlag"
    catalog.meta["scaling_source"] = calibration.scaling_source
    return catalog
