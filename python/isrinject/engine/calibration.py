"""What ISR and calibration did to a visit image: f, V_f, R, c, σ_a, saturation.

The pixel model (`isrinject.engine.model`) needs, per pixel, the flat ``f`` and its
variance ``V_f`` (the ``flat`` calibration), the illumination correction
``R``, the photometric scaling ``c`` [image units per e⁻], the amplifier read
noise ``σ_a`` [e⁻] and the amplifier saturation level [pre-flat e⁻].
`calibration_planes` gathers all of them for one visit image.  ``c`` comes
from

- the VisitImage's ``photometric_scaling`` field [nJy / e⁻] and unit: an image
  in e⁻ has c = 1; an image in a flux density (nJy, µJy, ...) has
  c = photometric_scaling converted to image units per e⁻;
- an empirical per-amplifier fit when a flux-density image carries no usable
  scaling: real pixels obey (ISR, see doc/isrinject/design.md)::

      V·(f·R)² = c·(f·R·I) + c²·(σ_a² + K_a + f·B) [+ V_f term]

  with ``f·B ≈ f·R·sky`` (the background follows the illumination), so a
  linear fit of ``y = V·(f·R)²`` on ``x = f·R·I`` and ``f·R`` over good
  pixels has slope c (the noise of S enters x and y identically, so the fit
  has no errors-in-variables bias; the ``f·R`` regressor absorbs the
  flat-dependent background term, which otherwise biases c by ~10 % on a
  small, sky-dominated amplifier);
- or configured constants.

Read noise and saturation come from the detector's amplifiers
(``nominal_calibrations``: read noise in e⁻, saturation in ADU as in afw
cameraGeom, converted with the amplifier gain ``amp_gain`` [e⁻/ADU]) unless
configured.  Every pixel's amplifier is found by one lookup,
`AmplifierLayout`.
"""

from __future__ import annotations

__all__ = [
    "SCALING_SOURCES",
    "AmplifierLayout",
    "AmplifierTerms",
    "CalibrationConfig",
    "CalibrationError",
    "CalibrationPlanes",
    "PixelCalibration",
    "ScalingSource",
    "amplifier_index",
    "amplifier_terms",
    "build_calibration",
    "calibration_cutout",
    "calibration_planes",
    "fit_scaling_per_amplifier",
    "flat_planes",
    "image_units_per_njy",
]

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import astropy.units as u
import numpy as np
from lsst.images import Box, Image, MaskedImage, NoOverlapError, VisitImage
from lsst.images.cameras import Amplifier, Detector
from lsst.utils.logging import LsstLoggers
from numpy.typing import ArrayLike

from .masks import mask_bits

_LOG = logging.getLogger(__name__)

#: Where the photometric scaling c comes from (``VisitInjectConfig.scaling_source``).
type ScalingSource = Literal["visit_image", "empirical", "constant"]

#: Every `ScalingSource` and what it means (the config's choices).
SCALING_SOURCES: dict[ScalingSource, str] = {
    "visit_image": "The VisitImage's photometric_scaling; an nJy image without a usable one falls "
    "back to the empirical fit (logged).",
    "empirical": "A per-amplifier fit of V·(f·R)² against f·R·I over the real pixels.",
    "constant": "The constant photometric_scaling [nJy/e⁻] of the configuration (formerly 'config').",
}


class CalibrationError(ValueError):
    """The visit image lacks what the pixel model needs (and no fallback)."""


class CalibrationConfig(Protocol):
    """The configuration `calibration_planes` reads (`isrinject.tasks.visit.VisitInjectConfig`
    is one; read-only, so pex_config's field types satisfy it)."""

    @property
    def include_flat_variance(self) -> bool: ...
    @property
    def do_illumination_correction(self) -> bool: ...
    @property
    def scaling_source(self) -> str: ...  # a ScalingSource
    @property
    def photometric_scaling(self) -> float | None: ...
    @property
    def read_noise(self) -> float | None: ...
    @property
    def saturation(self) -> float | None: ...
    @property
    def bad_mask_names(self) -> Sequence[str]: ...


def image_units_per_njy(unit: u.UnitBase) -> float | None:
    """Return image units per nJy for a flux-density unit, `None` for e⁻.

    Raises
    ------
    CalibrationError
        If ``unit`` is neither electrons nor a spectral flux density.
    """
    if unit == u.electron:
        return None
    try:
        return float((1.0 * u.nJy).to_value(unit))
    except u.UnitConversionError:
        raise CalibrationError(
            f"Visit image unit {unit!s} is neither electrons nor a flux density (e.g. nJy); "
            "the pixel model cannot relate it to pre-flat electrons."
        ) from None


class AmplifierLayout:
    """Which amplifier box each pixel lies in: the one amplifier lookup.

    The boxes' edges cut the plane into cells that each lie in one box or
    none; ``table[searchsorted(y_edges, y, "right"), searchsorted(x_edges,
    x, "right")]`` is then the box of pixel (x, y).  Where boxes overlap the
    later one wins; outside every box the index is -1.

    Parameters
    ----------
    boxes
        Amplifier boxes in absolute pixel coordinates.
    """

    def __init__(self, boxes: Sequence[Box]) -> None:
        x_edges = np.unique([v for box in boxes for v in (box.x.start, box.x.stop)]).astype(np.int64)
        y_edges = np.unique([v for box in boxes for v in (box.y.start, box.y.stop)]).astype(np.int64)
        table = np.full((len(y_edges) + 1, len(x_edges) + 1), -1, dtype=np.int32)
        for i, box in enumerate(boxes):
            # Cells k cover [edges[k-1], edges[k]): those inside the box.
            rows = slice(np.searchsorted(y_edges, box.y.start) + 1, np.searchsorted(y_edges, box.y.stop) + 1)
            cols = slice(np.searchsorted(x_edges, box.x.start) + 1, np.searchsorted(x_edges, box.x.stop) + 1)
            table[rows, cols] = i
        self._x_edges, self._y_edges, self._table = x_edges, y_edges, table

    def index_at(self, ix: ArrayLike, iy: ArrayLike) -> np.ndarray:
        """Box index of the integer pixels (ix, iy); -1 outside every box."""
        return self._table[
            np.searchsorted(self._y_edges, iy, side="right"), np.searchsorted(self._x_edges, ix, side="right")
        ]

    def index_on(self, bbox: Box) -> np.ndarray:
        """Box index of every pixel of ``bbox`` (shape ``bbox.shape``)."""
        rows = np.searchsorted(self._y_edges, np.arange(bbox.y.start, bbox.y.stop), side="right")
        cols = np.searchsorted(self._x_edges, np.arange(bbox.x.start, bbox.x.stop), side="right")
        return self._table[rows[:, None], cols[None, :]]


def amplifier_index(boxes: Sequence[Box], bbox: Box) -> np.ndarray:
    """Index (into ``boxes``) of the amplifier of every pixel of ``bbox``
    (-1 outside every box; see `AmplifierLayout`)."""
    return AmplifierLayout(boxes).index_on(bbox)


@dataclasses.dataclass(frozen=True)
class AmplifierTerms:
    """Electronic terms of one amplifier in the assembled image."""

    name: str
    bbox: Box
    read_noise: float
    """σ_a [e⁻]."""
    saturation: float
    """Saturation level in pre-flat electrons (inf if unknown)."""
    scaling: float | None = None
    """Empirical c for this amplifier [image units per e⁻], if fitted."""
    suspect: float = np.inf
    """Suspect level in pre-flat electrons (ISR's SUSPECT: pixels at or above it; inf if unknown)."""


def amplifier_terms(
    detector: Detector | None,
    image_bbox: Box,
    *,
    read_noise: float | None = None,
    saturation: float | None = None,
    suspect_level: float | None = None,
) -> list[AmplifierTerms]:
    """Collect per-amplifier read noise, saturation and suspect levels.

    Parameters
    ----------
    detector
        The VisitImage's detector.
    image_bbox
        The image bounding box.
    read_noise
        Override for every amplifier [e⁻]; `None` to use the detector.
    saturation
        Override for every amplifier [pre-flat e⁻]; `None` to use the
        detector's ``saturation`` [ADU] × amplifier gain ``amp_gain``
        [e⁻/ADU].
    suspect_level
        Override for every amplifier [pre-flat e⁻]; `None` to use the
        detector's ``suspect_level`` [ADU] × ``amp_gain`` (NaN: none, as
        ISR masks nothing for a NaN level).

    Returns
    -------
    amplifiers
        One entry per detector amplifier overlapping the image, when the
        amplifiers cover every pixel of ``image_bbox``.  Otherwise (no
        detector, no amplifiers, or amplifiers that leave pixels uncovered,
        as in cutouts of real visit images whose detector lists only some
        amplifiers) a single pseudo-amplifier ``"ALL"`` covering the image
        with the configured constants (saturation +inf when not configured,
        logged).

    Raises
    ------
    CalibrationError
        If an amplifier has no usable read noise and none is configured, or
        the amplifiers do not cover the image and ``read_noise`` is `None`
        (the message lists the amplifiers and their boxes).
    """
    amps = list(getattr(detector, "amplifiers", None) or [])
    n_covered = _covered_pixels([amp.bbox for amp in amps], image_bbox)
    if n_covered < image_bbox.area:
        return [_constant_terms(detector, amps, image_bbox, n_covered, read_noise, saturation, suspect_level)]
    terms = []
    for amp in amps:
        nominal = amp.nominal_calibrations
        try:
            bbox = amp.bbox.intersection(image_bbox)
        except NoOverlapError:
            continue
        amp_read_noise = read_noise if read_noise is not None else (nominal.read_noise if nominal else None)
        if amp_read_noise is None or not np.isfinite(amp_read_noise) or amp_read_noise < 0:
            raise CalibrationError(
                f"Amplifier {amp.name!r} has no usable read noise ({amp_read_noise!r}); "
                "set config.read_noise."
            )
        if saturation is not None:
            amp_saturation = saturation
        elif nominal is not None and np.isfinite(nominal.saturation) and nominal.saturation > 0:
            amp_gain = nominal.gain if np.isfinite(nominal.gain) else 1.0
            amp_saturation = nominal.saturation * amp_gain
        else:
            amp_saturation = np.inf
        terms.append(
            AmplifierTerms(
                amp.name, bbox, float(amp_read_noise), float(amp_saturation),
                suspect=_suspect_electrons(nominal, suspect_level),
            )
        )
    return terms


def _suspect_electrons(nominal: object, suspect_level: float | None) -> float:
    """The suspect level [pre-flat e⁻] of an amplifier (inf when unknown or NaN)."""
    if suspect_level is not None:
        return float(suspect_level) if np.isfinite(suspect_level) else np.inf
    level = getattr(nominal, "suspect_level", np.nan)
    gain = getattr(nominal, "gain", np.nan)
    if level is None or not np.isfinite(level) or level <= 0:
        return np.inf
    return float(level) * (float(gain) if gain is not None and np.isfinite(gain) else 1.0)


def _covered_pixels(boxes: Sequence[Box], bbox: Box) -> int:
    """Number of pixels of ``bbox`` inside at least one of ``boxes``.

    Amplifier boxes are disjoint, so the areas of their overlaps with
    ``bbox`` add up; only overlapping boxes need a per-pixel map.
    """
    parts = []
    for box in boxes:
        try:
            parts.append(box.intersection(bbox))
        except NoOverlapError:
            continue
    for i, first in enumerate(parts):
        for second in parts[i + 1 :]:
            try:
                first.intersection(second)
            except NoOverlapError:
                continue
            return int(np.count_nonzero(amplifier_index(parts, bbox) >= 0))
    return sum(part.area for part in parts)


def _constant_terms(
    detector: Detector | None,
    amps: Sequence[Amplifier],
    image_bbox: Box,
    n_covered: int,
    read_noise: float | None,
    saturation: float | None,
    suspect_level: float | None = None,
) -> AmplifierTerms:
    """The pseudo-amplifier ``"ALL"`` of an image its amplifiers do not cover
    (see `amplifier_terms`)."""
    name = getattr(detector, "name", None)
    listed = ", ".join(f"{amp.name} {amp.bbox}" for amp in amps) or "none"
    what = (
        f"the amplifiers of detector {name!r} ({listed}) cover {n_covered} of the "
        f"{image_bbox.area} pixels of the image {image_bbox}"
    )
    if read_noise is None:
        raise CalibrationError(
            f"No amplifier read noise or saturation for these pixels: {what}. Set config.read_noise "
            "[e⁻] and config.saturation [pre-flat e⁻] to use constants for the whole image."
        )
    if saturation is None:
        _LOG.warning(
            "No saturation level: %s and config.saturation is None; SATURATED is never set.", what
        )
    return AmplifierTerms(
        "ALL", image_bbox, float(read_noise), float(saturation) if saturation else np.inf,
        suspect=_suspect_electrons(None, suspect_level),
    )


def fit_scaling_per_amplifier(
    image: np.ndarray,
    variance: np.ndarray,
    good: np.ndarray,
    flat: np.ndarray,
    amplifiers: Sequence[AmplifierTerms],
    image_bbox: Box,
    *,
    illumination: np.ndarray | None = None,
    min_pixels: int = 100,
    log: LsstLoggers = _LOG,
) -> list[AmplifierTerms]:
    """Fit c per amplifier from the real pixels (see the module docstring).

    Amplifiers whose fit fails (fewer than ``min_pixels`` good pixels, or a
    non-positive slope) take the median of the others; if none succeeds a
    `CalibrationError` says why per amplifier and how to give c instead.
    """
    fitted: list[float | None] = []
    failures: list[str] = []
    for amp in amplifiers:
        sl = amp.bbox.slice_within(image_bbox)
        flat_amp = flat[sl.y, sl.x]
        illum_amp = 1.0 if illumination is None else illumination[sl.y, sl.x]
        gain_like = flat_amp * illum_amp
        ok = good[sl.y, sl.x] & np.isfinite(gain_like) & (gain_like > 0)
        x = (gain_like * image[sl.y, sl.x])[ok]
        y = (variance[sl.y, sl.x] * gain_like**2)[ok]
        if x.size < min_pixels:
            fitted.append(None)
            failures.append(f"{amp.name}: {x.size} good pixels (needs {min_pixels})")
            continue
        # Exclude the brightest 1 % (saturation, non-linearity, V_f term).
        keep = x <= np.percentile(x, 99.0)
        # The intercept c²·(σ_a² + K_a + f·R·B) varies with the flat: fit it as
        # a linear function of f·R so flat structure does not bias the slope.
        design = np.stack([x[keep], gain_like[ok][keep], np.ones(int(keep.sum()))], axis=1)
        slope = np.linalg.lstsq(design, y[keep], rcond=None)[0][0]
        usable_slope = np.isfinite(slope) and slope > 0
        fitted.append(float(slope) if usable_slope else None)
        if not usable_slope:
            failures.append(f"{amp.name}: slope {slope:.4g} on {x.size} good pixels")
    usable = [value for value in fitted if value is not None]
    if not usable:
        raise CalibrationError(
            "Empirical fit of V·(f·R)² against f·R·I failed on every amplifier ("
            + "; ".join(failures)
            + "). Give c instead: config.scaling_source='constant' and config.photometric_scaling "
            "[nJy/e⁻] (from visit_summary: the flux of a source of magnitude zeroPoint, "
            "(zeroPoint * astropy.units.ABmag).to_value('nJy'))."
        )
    fallback = float(np.median(usable))
    for amp, value in zip(amplifiers, fitted):
        if value is None:
            log.warning("Scaling fit failed for amplifier %s; using the median %g.", amp.name, fallback)
    return [
        dataclasses.replace(amp, scaling=value if value is not None else fallback)
        for amp, value in zip(amplifiers, fitted)
    ]


@dataclasses.dataclass
class PixelCalibration:
    """Per-pixel c, σ_a and saturation for one visit image.

    Attributes
    ----------
    image_bbox
        The image bounding box.
    amplifiers
        Per-amplifier terms (and fitted c when ``scaling_source`` is
        ``"empirical"``).
    njy_per_electron_field
        A callable ``(x=, y=) → nJy/e⁻`` (the VisitImage's
        ``photometric_scaling``) or `None`.
    njy_per_electron
        Constant photometric scaling [nJy/e⁻] when configured.
    image_per_njy
        Image units per nJy (`None` for an image in e⁻).
    scaling_source
        Where c comes from.
    """

    image_bbox: Box
    amplifiers: list[AmplifierTerms]
    njy_per_electron_field: Callable[..., ArrayLike] | None
    njy_per_electron: float | None
    image_per_njy: float | None
    scaling_source: ScalingSource

    @functools.cached_property
    def layout(self) -> AmplifierLayout:
        """The amplifier of each pixel."""
        return AmplifierLayout([amp.bbox for amp in self.amplifiers])

    def _per_amplifier(self, name: str, outside: float) -> np.ndarray:
        """One attribute of every amplifier, then ``outside`` (index -1)."""
        return np.array([getattr(amp, name) for amp in self.amplifiers] + [outside], dtype=np.float64)

    def _njy_per_electron_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.njy_per_electron is not None:
            return np.full(np.broadcast(x, y).shape, self.njy_per_electron)
        if self.njy_per_electron_field is None:
            raise CalibrationError("No photometric scaling (nJy per electron) available.")
        return np.asarray(self.njy_per_electron_field(x=x, y=y), dtype=np.float64)

    def _njy_per_electron_on(self, bbox: Box) -> np.ndarray:
        """nJy per e⁻ on every pixel of ``bbox``.

        lsst.images fields render a box separably (``render``: a Chebyshev
        field costs one small matrix product per row instead of a full 2-D
        evaluation per pixel, ~10× faster on stamps); other callables are
        evaluated on the pixel grid.
        """
        if self.njy_per_electron is not None:
            return np.full(bbox.shape, self.njy_per_electron)
        render = getattr(self.njy_per_electron_field, "render", None)
        if render is not None:
            return np.asarray(render(bbox).array, dtype=np.float64)
        grid = bbox.meshgrid()
        return self._njy_per_electron_at(grid.x, grid.y)

    def image_per_electron_on(self, bbox: Box) -> np.ndarray:
        """c [image units per e⁻] on ``bbox`` (cf. ``njy_per_electron``, nJy per e⁻);
        inside the image, a read-only view of `_image_per_electron`."""
        if self.image_per_njy is None:
            return np.ones(bbox.shape)
        if self.scaling_source == "empirical":
            return self._per_amplifier("scaling", np.nan)[self.layout.index_on(bbox)]
        if self.njy_per_electron is None and self.image_bbox.contains(bbox):
            sl = bbox.slice_within(self.image_bbox)
            return self._image_per_electron[sl.y, sl.x]
        return self._njy_per_electron_on(bbox) * self.image_per_njy

    @functools.cached_property
    def _image_per_electron(self) -> np.ndarray:
        """c of the scaling field on the whole image, rendered once.

        Rendering per stamp costs ~0.3 ms of per-call overhead in the field,
        more than a star's whole pixel model; one render of the image costs
        about as much as 200 stamps.  Rendered in bands of rows so the
        temporaries stay small.  Kept in double precision: the values are
        those of a per-stamp render, so seeded noise draws do not change.
        """
        assert self.image_per_njy is not None  # image_per_electron_on returns ones otherwise
        bbox = self.image_bbox
        scaling = np.empty(bbox.shape, dtype=np.float64)
        band = 256
        for y0 in range(bbox.y.start, bbox.y.stop, band):
            rows = Box.factory[y0 : min(y0 + band, bbox.y.stop), bbox.x.start : bbox.x.stop]
            scaling[y0 - bbox.y.start : y0 - bbox.y.start + rows.y.size] = (
                self._njy_per_electron_on(rows) * self.image_per_njy
            )
        scaling.setflags(write=False)
        return scaling

    def image_per_electron_at(self, x: ArrayLike, y: ArrayLike) -> np.ndarray | float:
        """c [image units per e⁻] at positions (x, y) (scalars or arrays)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.image_per_njy is None:
            values = np.ones(np.broadcast(x, y).shape)
        elif self.scaling_source == "empirical":
            index = self.layout.index_at(np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64))
            values = self._per_amplifier("scaling", np.nan)[index]
        else:
            values = self._njy_per_electron_at(x, y) * self.image_per_njy
        return float(values) if np.ndim(values) == 0 else values

    def image_units_per_njy_at(self, x: ArrayLike, y: ArrayLike) -> np.ndarray | float:
        """Image units per nJy of source flux at (x, y) (scalars or arrays)."""
        if self.image_per_njy is not None:
            return self.image_per_njy
        with np.errstate(divide="ignore"):
            values = 1.0 / self._njy_per_electron_at(
                np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
            )
        return float(values) if np.ndim(values) == 0 else values

    def amplifier_terms_at(self, ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """σ_a [e⁻] and saturation [pre-flat e⁻] at integer pixels (ix, iy).

        Outside every amplifier σ_a is NaN and the saturation level +inf.
        """
        index = self.layout.index_at(ix, iy)
        return self._per_amplifier("read_noise", np.nan)[index], self._per_amplifier("saturation", np.inf)[index]

    def suspect_level_at(self, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        """Suspect level [pre-flat e⁻] at integer pixels (ix, iy) (+inf where none)."""
        return self._per_amplifier("suspect", np.inf)[self.layout.index_at(ix, iy)]

    def amplifier_rows_at(self, ix: int, iy: int) -> tuple[int, int]:
        """First and last + 1 absolute row of the amplifier of pixel (ix, iy) in
        the image: the column segment charge can bleed along."""
        index = int(self.layout.index_at(np.array([ix]), np.array([iy]))[0])
        bbox = self.image_bbox if index < 0 else self.amplifiers[index].bbox
        return bbox.y.start, bbox.y.stop

    def image_per_electron_column(self, x: int, y0: int, y1: int) -> np.ndarray:
        """c [image units per e⁻] along column ``x``, rows ``y0`` to ``y1`` − 1."""
        return np.ravel(self.image_per_electron_on(Box.factory[y0:y1, x : x + 1]))


def _visit_image_scaling(
    visit_image: VisitImage, log: LsstLoggers
) -> Callable[..., ArrayLike] | None:
    """The VisitImage's ``photometric_scaling`` in nJy per e⁻, or `None` if unusable."""
    field = visit_image.photometric_scaling
    if field is None:
        return None
    try:
        centre = visit_image.bbox
        value = float(field(x=centre.x.center, y=centre.y.center))
        if not (np.isfinite(value) and value > 0):
            return None
        if field.unit is not None:
            factor = float((1.0 * field.unit).to_value(u.nJy / u.electron))
            if factor != 1.0:
                field = field * factor
    except (u.UnitConversionError, TypeError, ValueError) as err:
        log.warning("Visit image photometric_scaling is unusable (%s).", err)
        return None
    return field


def build_calibration(
    visit_image: VisitImage,
    config: CalibrationConfig,
    flat: np.ndarray,
    illumination: np.ndarray | None,
    log: LsstLoggers = _LOG,
) -> PixelCalibration:
    """Per-pixel c, read noise and saturation of ``visit_image`` as configured
    (the calibration of `calibration_planes`)."""
    image_per_njy = image_units_per_njy(visit_image.unit)
    amps = amplifier_terms(
        visit_image.detector, visit_image.bbox, read_noise=config.read_noise, saturation=config.saturation,
        suspect_level=getattr(config, "suspect_level", None),
    )
    source = config.scaling_source
    if source == "constant":
        if config.photometric_scaling is None:
            raise CalibrationError("scaling_source='constant' needs config.photometric_scaling [nJy/e⁻].")
        return PixelCalibration(visit_image.bbox, amps, None, config.photometric_scaling, image_per_njy, "constant")
    if source == "visit_image":
        field = _visit_image_scaling(visit_image, log)
        if field is not None:
            return PixelCalibration(visit_image.bbox, amps, field, None, image_per_njy, "visit_image")
        if image_per_njy is None:
            # An image in electrons: c = 1, but magnitudes still need nJy/e⁻.
            if config.photometric_scaling is None:
                raise CalibrationError(
                    "The visit image is in electrons and has no usable photometric_scaling; set "
                    "config.photometric_scaling [nJy/e⁻] to convert magnitudes."
                )
            return PixelCalibration(visit_image.bbox, amps, None, config.photometric_scaling, None, "constant")
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
        log=log,
    )
    log.info("Empirical c per amplifier: %s", ", ".join(f"{a.name}={a.scaling:.4g}" for a in amps))
    return PixelCalibration(visit_image.bbox, amps, None, None, image_per_njy, "empirical")


def _planes_of(obj: MaskedImage | Image, what: str) -> tuple[Box, np.ndarray, np.ndarray | None]:
    """Return (bbox, image array, variance array or None) of a calibration."""
    if isinstance(obj, MaskedImage):
        return obj.bbox, obj.image.array, obj.variance.array
    if isinstance(obj, Image):
        return obj.bbox, obj.array, None
    if hasattr(obj, "getMaskedImage"):  # a legacy (afw) Exposure
        return _planes_of(MaskedImage.from_legacy(obj.getMaskedImage()), what)
    raise TypeError(f"{what} must be an lsst.images MaskedImage or Image; got {type(obj).__name__}.")


def calibration_cutout(
    obj: MaskedImage | Image, image_bbox: Box, what: str, where: str = ""
) -> tuple[np.ndarray, np.ndarray | None]:
    """The calibration's planes on the image bbox (error if it does not cover it)."""
    bbox, image, variance = _planes_of(obj, what)
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
    flat: MaskedImage | Image, image_bbox: Box, config: CalibrationConfig, log: LsstLoggers, where: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The flat f and, when usable and configured, its variance V_f on the image bbox.

    A variance plane that is absent, all non-finite or all exactly 1.0 (what
    lsst.images fills in for a missing plane) gives `None` with a warning.
    """
    flat_image, flat_variance = calibration_cutout(flat, image_bbox, "flat", where)
    if flat_variance is not None and (not np.any(np.isfinite(flat_variance)) or np.all(flat_variance == 1.0)):
        flat_variance = None
    if flat_variance is None and config.include_flat_variance:
        log.warning("The flat of %s has no variance plane; the flat-variance term of ΔV is skipped.", where)
    if not config.include_flat_variance:
        flat_variance = None
    return flat_image, flat_variance


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


def calibration_planes(
    visit_image: VisitImage,
    flat: MaskedImage | Image,
    illumination: Image | MaskedImage | None,
    config: CalibrationConfig,
    log: LsstLoggers,
    where: str,
) -> CalibrationPlanes:
    """The flat, illumination correction and calibration of ``visit_image``.

    Shared by `isrinject.engine.inject.inject_sources` and ``isrinject diagnose``,
    so both see the same planes and the same c.
    """
    bbox = visit_image.bbox
    flat_image, flat_variance = flat_planes(flat, bbox, config, log, where)
    illum_image = None
    if illumination is not None:
        illum_image, _ = calibration_cutout(illumination, bbox, "illumination correction", where)
    elif config.do_illumination_correction:
        raise ValueError(f"do_illumination_correction=True but no illumination correction was given for {where}.")
    try:
        calibration = build_calibration(visit_image, config, flat_image, illum_image, log)
    except CalibrationError as err:
        raise CalibrationError(f"{where}: {err}") from err
    return CalibrationPlanes(flat_image, flat_variance, illum_image, calibration)
