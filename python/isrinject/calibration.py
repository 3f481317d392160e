"""Per-pixel calibration terms of a visit image: c, σ_a and saturation.

The pixel model (`isrinject.model`) needs, per pixel, the photometric scaling
``c`` [image units per e⁻], the amplifier read noise ``σ_a`` [e⁻] and the
amplifier saturation level [pre-flat e⁻].  They come from

- the VisitImage's ``photometric_scaling`` field [nJy / e⁻] and unit: an image
  in e⁻ has c = 1; an image in a flux density (nJy, µJy, ...) has
  c = photometric_scaling converted to image units per e⁻;
- an empirical per-amplifier fit when a flux-density image carries no usable
  scaling: real pixels obey (ISR, see DESIGN.md)::

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
cameraGeom, converted with the amplifier gain) unless configured.
"""

from __future__ import annotations

__all__ = [
    "AmplifierTerms",
    "CalibrationError",
    "PixelCalibration",
    "amplifier_index",
    "amplifier_terms",
    "fit_scaling_per_amplifier",
    "image_units_per_njy",
]

import dataclasses
import functools
import logging
from collections.abc import Sequence

import astropy.units as u
import numpy as np
from numpy.typing import ArrayLike
from lsst.images import Box, NoOverlapError

_LOG = logging.getLogger(__name__)


class CalibrationError(ValueError):
    """The visit image lacks what the pixel model needs (and no fallback)."""


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


def amplifier_index(boxes: Sequence[Box], bbox: Box) -> np.ndarray:
    """Index (into ``boxes``) of the amplifier of every pixel of ``bbox``.

    Pixels outside every amplifier box get -1.  All boxes are in absolute
    pixel coordinates.
    """
    index = np.full(bbox.shape, -1, dtype=np.int32)
    for i, box in enumerate(boxes):
        try:
            overlap = box.intersection(bbox)
        except NoOverlapError:
            continue
        sl = overlap.slice_within(bbox)
        index[sl.y, sl.x] = i
    return index


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


def amplifier_terms(
    detector: object | None,
    image_bbox: Box,
    *,
    read_noise: float | None = None,
    saturation: float | None = None,
) -> list[AmplifierTerms]:
    """Collect per-amplifier read noise and saturation.

    Parameters
    ----------
    detector
        The VisitImage's detector (`None`, or one without amplifiers, gives
        one pseudo-amplifier covering the image).
    image_bbox
        The image bounding box.
    read_noise
        Override for every amplifier [e⁻]; `None` to use the detector.
    saturation
        Override for every amplifier [pre-flat e⁻]; `None` to use the
        detector's ``saturation`` [ADU] × ``gain`` [e⁻/ADU].

    Raises
    ------
    CalibrationError
        If neither the detector nor the override gives a read noise.
    """
    amps = list(getattr(detector, "amplifiers", None) or [])
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
            amp_saturation = nominal.saturation * (nominal.gain if np.isfinite(nominal.gain) else 1.0)
        else:
            amp_saturation = np.inf
        terms.append(AmplifierTerms(amp.name, bbox, float(amp_read_noise), float(amp_saturation)))
    if not terms:
        if read_noise is None:
            raise CalibrationError(
                "The visit image's detector has no amplifiers overlapping the image; "
                "set config.read_noise (and config.saturation) to use constants."
            )
        terms.append(
            AmplifierTerms("ALL", image_bbox, float(read_noise), float(saturation if saturation else np.inf))
        )
    return terms


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
) -> list[AmplifierTerms]:
    """Fit c per amplifier from the real pixels (see the module docstring).

    Amplifiers whose fit fails (too few pixels, non-positive slope) take the
    median of the others; if none succeeds a `CalibrationError` is raised.
    """
    fitted: list[float | None] = []
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
            continue
        # Exclude the brightest 1 % (saturation, non-linearity, V_f term).
        keep = x <= np.percentile(x, 99.0)
        # The intercept c²·(σ_a² + K_a + f·R·B) varies with the flat: fit it as
        # a linear function of f·R so flat structure does not bias the slope.
        design = np.stack([x[keep], gain_like[ok][keep], np.ones(int(keep.sum()))], axis=1)
        slope = np.linalg.lstsq(design, y[keep], rcond=None)[0][0]
        fitted.append(float(slope) if np.isfinite(slope) and slope > 0 else None)
    usable = [value for value in fitted if value is not None]
    if not usable:
        raise CalibrationError("Empirical fit of V·(f·R)² against f·R·I failed on every amplifier.")
    fallback = float(np.median(usable))
    for amp, value in zip(amplifiers, fitted):
        if value is None:
            _LOG.warning("Scaling fit failed for amplifier %s; using the median %g.", amp.name, fallback)
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
    scaling_field
        A callable ``(x=, y=) → nJy/e⁻`` (the VisitImage's
        ``photometric_scaling``) or `None`.
    scaling_constant
        Constant photometric scaling [nJy/e⁻] when configured.
    image_per_njy
        Image units per nJy (`None` for an image in e⁻).
    scaling_source
        ``"visit_image"``, ``"empirical"`` or ``"config"``.
    """

    image_bbox: Box
    amplifiers: list[AmplifierTerms]
    scaling_field: object | None
    scaling_constant: float | None
    image_per_njy: float | None
    scaling_source: str

    def _amp_index(self, bbox: Box) -> np.ndarray:
        return amplifier_index([amp.bbox for amp in self.amplifiers], bbox)

    def _njy_per_electron(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.scaling_constant is not None:
            return np.full(np.broadcast(x, y).shape, self.scaling_constant)
        if self.scaling_field is None:
            raise CalibrationError("No photometric scaling (nJy per electron) available.")
        return np.asarray(self.scaling_field(x=x, y=y), dtype=np.float64)

    def _njy_per_electron_on(self, bbox: Box) -> np.ndarray:
        """nJy per e⁻ on every pixel of ``bbox``.

        lsst.images fields render a box separably (``render``: a Chebyshev
        field costs one small matrix product per row instead of a full 2-D
        evaluation per pixel, ~10× faster on stamps); other callables are
        evaluated on the pixel grid.
        """
        if self.scaling_constant is not None:
            return np.full(bbox.shape, self.scaling_constant)
        if hasattr(self.scaling_field, "render"):
            return np.asarray(self.scaling_field.render(bbox).array, dtype=np.float64)
        grid = bbox.meshgrid()
        return self._njy_per_electron(grid.x, grid.y)

    def scaling_in(self, bbox: Box) -> np.ndarray:
        """c [image units per e⁻] on ``bbox`` (a read-only view inside the image)."""
        if self.image_per_njy is None:
            return np.ones(bbox.shape)
        if self.scaling_source == "empirical":
            per_amp = np.array([amp.scaling for amp in self.amplifiers] + [np.nan], dtype=np.float64)
            return per_amp[self._amp_index(bbox)]
        if self.scaling_constant is None and self.image_bbox.contains(bbox):
            sl = bbox.slice_within(self.image_bbox)
            return self._scaling_image[sl.y, sl.x]
        return self._njy_per_electron_on(bbox) * self.image_per_njy

    @functools.cached_property
    def _scaling_image(self) -> np.ndarray:
        """c of the scaling field on the whole image, rendered once.

        Rendering per stamp costs ~0.3 ms of per-call overhead in the field,
        more than a star's whole pixel model; one render of the image costs
        about as much as 200 stamps.  Rendered in bands of rows so the
        temporaries stay small.  Kept in double precision: the values are
        those of a per-stamp render, so seeded noise draws do not change
        (single precision would halve the 8 bytes per pixel this costs).
        """
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

    def image_units_per_njy_at(self, x: ArrayLike, y: ArrayLike) -> np.ndarray | float:
        """Image units per nJy of source flux at (x, y) (scalars or arrays)."""
        if self.image_per_njy is not None:
            return self.image_per_njy
        with np.errstate(divide="ignore"):
            values = 1.0 / self._njy_per_electron(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        return float(values) if np.ndim(values) == 0 else values

    def _amp_index_at(self, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        """Amplifier index of integer pixels (ix, iy); -1 outside every amplifier."""
        x_edges, y_edges, table = self._amp_grid
        return table[np.searchsorted(y_edges, iy, side="right"), np.searchsorted(x_edges, ix, side="right")]

    @functools.cached_property
    def _amp_grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The amplifier boxes' edges cut the plane into cells that each lie in
        one amplifier or none: (x edges, y edges, amplifier of each cell).

        ``table[searchsorted(y_edges, y, "right"), searchsorted(x_edges, x,
        "right")]`` is then the amplifier of pixel (x, y) (later amplifiers win
        where boxes overlap, as in `amplifier_index`).
        """
        x_edges = np.unique([v for amp in self.amplifiers for v in (amp.bbox.x.start, amp.bbox.x.stop)])
        y_edges = np.unique([v for amp in self.amplifiers for v in (amp.bbox.y.start, amp.bbox.y.stop)])
        table = np.full((len(y_edges) + 1, len(x_edges) + 1), -1, dtype=np.int32)
        for i, amp in enumerate(self.amplifiers):
            # Cells k cover [edges[k-1], edges[k]): those inside the box.
            rows = slice(np.searchsorted(y_edges, amp.bbox.y.start) + 1, np.searchsorted(y_edges, amp.bbox.y.stop) + 1)
            cols = slice(np.searchsorted(x_edges, amp.bbox.x.start) + 1, np.searchsorted(x_edges, amp.bbox.x.stop) + 1)
            table[rows, cols] = i
        return x_edges.astype(np.int64), y_edges.astype(np.int64), table

    def amplifier_terms_at(self, ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """σ_a [e⁻] and saturation [pre-flat e⁻] at integer pixels (ix, iy).

        Outside every amplifier σ_a is NaN and the saturation level +inf.
        """
        index = self._amp_index_at(ix, iy)
        read_noise = np.array([amp.read_noise for amp in self.amplifiers] + [np.nan])
        saturation = np.array([amp.saturation for amp in self.amplifiers] + [np.inf])
        return read_noise[index], saturation[index]

    def scaling_at(self, x: ArrayLike, y: ArrayLike) -> np.ndarray | float:
        """c [image units per e⁻] at positions (x, y) (scalars or arrays)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.image_per_njy is None:
            values = np.ones(np.broadcast(x, y).shape)
        elif self.scaling_source == "empirical":
            per_amp = np.array([amp.scaling for amp in self.amplifiers] + [np.nan], dtype=np.float64)
            values = per_amp[self._amp_index_at(np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64))]
        else:
            values = self._njy_per_electron(x, y) * self.image_per_njy
        return float(values) if np.ndim(values) == 0 else values
