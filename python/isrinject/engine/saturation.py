r"""Saturated pixels as a CCD and ISR leave them: bleed trails, SAT, SUSPECT, interpolation.

The physics (pure numpy/scipy; used by the injection engine and by the
simulator, `isrinject.sim.isr`, so real and injected bright stars go through
one implementation):

**Bleed** (`bleed_segment`, `bleed_image`).  In pre-flat electrons
:math:`T(p)` (the real signal plus injected electrons), a pixel holds at most
the saturation level :math:`L_a` of its amplifier :math:`a` (full well, in e⁻).
Charge above it spills along the column, half up and half down: each run of
pixels with :math:`T > L_a` is set to :math:`L_a`, its excess
:math:`E = \sum (T - L_a)` [e⁻] is split :math:`E/2` per direction, and each
half fills the next pixels of the column up to :math:`L_a` until it is used up
(the last pixel takes the rest).  Charge that reaches another over-full pixel
merges with it; charge that would cross the amplifier's edge is lost (it
leaves the amplifier's columns, as on a CCD) and is returned.  So after the
bleed every pixel holds :math:`T' \le L_a` and

.. math::  \sum_p T'(p) = \sum_p T(p) - \text{lost}.

**ISR's treatment** (``ip_isr`` ``isrTaskLSST``, read through its source,
not imported):

- ``maskSaturatedPixels`` sets SAT where the overscan-corrected pixel value is
  ``>=`` the amplifier's saturation level and SUSPECT where it is ``>=`` the
  amplifier's suspect level (``defaultSuspectSource``: camera model,
  PTC turn-off or none; a NaN level masks nothing), before the variance plane
  and the flat.  Here: SAT where :math:`T' \ge L_a` (the bled pixels, which
  hold exactly :math:`L_a`), SUSPECT where :math:`T' \ge` the suspect level
  (pre-flat e⁻, +inf or NaN: none).
- ``interpolateFromMask`` (``doInterpolate``) grows SAT by
  ``growSaturationFootprintSize`` pixels with a Manhattan stencil
  (``growMasks``: ``SpanSet.dilated(radius, Stencil.MANHATTAN)``, clipped to the
  image, not to the amplifier) — `grow_manhattan` — and interpolates over the
  union of ``maskListToInterpolate`` (SAT, BAD, UNMASKEDNAN) with the legacy
  ``meas_algorithms`` ``interpolateOverDefects`` (``useLegacyInterp``), which
  sets INTRP.  That interpolation works **along rows** (across a vertical
  trail), on each run of consecutive defect pixels of a row, from up to two
  good pixels on each side, and applies **the same interpolation to the
  variance plane** as to the image (the interpolated variance is the
  interpolation of the neighbours' variances; it is not set to infinity and
  not recomputed from the interpolated signal).

Pixels SATURATED in the input image (a real saturated star, already
interpolated over, whose variance plane no longer gives its signal) are taken
as full, at the level, while bleeding: charge injected onto them spills, and
the real star's pixels in a run with new SAT pixels are interpolated again.
ISR's one-pixel grown ring, below the level in truth, is treated as full too.

`interpolate_over` matches: rows, runs of the union of the defect planes that
contain a new SAT pixel, image and variance interpolated alike from the good
pixels next to the run, INTERPOLATED set on the run.  What it does not match:
the legacy code uses fixed linear-predictive coefficients (tuned for a
σ = 1 pixel Gaussian, two good pixels each side, flattening to the mean of the
four in wide runs) and, at the image edge, a fallback value (the image's
clipped mean, for the variance plane too) beyond six pixels; here the
interpolation is linear between the nearest good pixel on each side,
constant from the one side at an image edge, and the median of the good
pixels of the plane where a row has no good pixel.  The values inside a
saturated core therefore differ from ISR's by a fraction of the local sky
gradient; masks, their extent and the flux outside the core do not depend on
it.  ISR also interpolates the post-flat image in electrons before the
background is subtracted and the illumination correction and photometric
scaling applied; interpolating the calibrated image is the same up to the
variation of those smooth fields across a few pixels.  The ITL/e2v
edge-bleed and saturation-sag masks of ``isrTaskLSST`` are not modelled.

Units: electrons [e⁻] for :math:`T`, :math:`L_a` and the lost charge; the image
and variance planes in their own units.
"""

from __future__ import annotations

__all__ = [
    "BatchBleed",
    "BleedResult",
    "SaturationTreatment",
    "bleed_image",
    "bleed_segment",
    "grow_manhattan",
    "interpolate_over",
]

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from lsst.images import MaskPlaneBit
from scipy import ndimage

from .calibration import PixelCalibration
from .model import PixelInjection, effective_gain, pixel_response, reconstruct_pre_flat_electrons


def _spill(values: np.ndarray, indices: np.ndarray, amount: float, level: float) -> float:
    """Fill ``values[indices]`` (in that order) up to ``level`` with ``amount``
    electrons; return what is left when the indices run out (lost)."""
    if amount <= 0 or len(indices) == 0:
        return max(float(amount), 0.0)
    capacity = np.cumsum(level - values[indices])
    reached = np.flatnonzero(capacity >= amount)
    if len(reached) == 0:
        values[indices] = level
        return float(amount - capacity[-1])
    k = int(reached[0])
    before = float(capacity[k - 1]) if k > 0 else 0.0
    values[indices[:k]] = level
    values[indices[k]] += amount - before
    return 0.0


def bleed_segment(charge: np.ndarray, level: float) -> tuple[np.ndarray, float, float]:
    """Bleed one column of one amplifier (see the module docstring).

    Parameters
    ----------
    charge
        Pre-flat electrons T along the column [e⁻] (1-D; index = row).
    level
        Saturation level L [e⁻]; +inf or NaN: nothing bleeds.

    Returns
    -------
    bled, lost_low, lost_high
        T' (a new array, every value ≤ L) and the electrons lost past the
        first and the last row.
    """
    values = np.array(charge, dtype=np.float64)
    lost_low = lost_high = 0.0
    if not np.isfinite(level):
        return values, 0.0, 0.0
    n = len(values)
    while True:
        over = np.flatnonzero(values > level)
        if len(over) == 0:
            return values, lost_low, lost_high
        # The first run of consecutive over-full pixels.
        breaks = np.flatnonzero(np.diff(over) > 1)
        start, stop = int(over[0]), int(over[breaks[0]] if len(breaks) else over[-1]) + 1
        excess = float(np.sum(values[start:stop] - level))
        values[start:stop] = level
        lost_high += _spill(values, np.arange(stop, n), excess / 2, level)
        lost_low += _spill(values, np.arange(start - 1, -1, -1), excess / 2, level)


@dataclasses.dataclass(frozen=True)
class BleedResult:
    """Output of `bleed_image`."""

    electrons: np.ndarray
    """T' [e⁻], every pixel at or below its amplifier's level."""
    at_level: np.ndarray
    """Pixels holding exactly their level after the bleed (ISR's SAT: T' ≥ L)."""
    lost: float
    """Electrons lost off the amplifiers' ends of the columns."""


def bleed_image(
    electrons: np.ndarray, level: np.ndarray, amplifier_slices: Sequence[tuple[slice, slice]]
) -> BleedResult:
    """Bleed every over-full column of every amplifier of an image.

    Parameters
    ----------
    electrons
        Pre-flat electrons T [e⁻] (2-D, rows × columns); not modified.
    level
        Saturation level per pixel [e⁻] (constant within an amplifier).
    amplifier_slices
        ``(rows, columns)`` slices of each amplifier in the array (disjoint).
    """
    bled = np.array(electrons, dtype=np.float64)
    lost = 0.0
    for rows, cols in amplifier_slices:
        block = bled[rows, cols]
        amp_level = level[rows, cols]
        for j in np.flatnonzero(np.any(block > amp_level, axis=0)):
            column_level = float(amp_level[0, j])
            block[:, j], low, high = bleed_segment(block[:, j], column_level)
            lost += low + high
        bled[rows, cols] = block
    return BleedResult(bled, bled >= level, lost)


def grow_manhattan(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` dilated by ``radius`` pixels with a Manhattan (diamond)
    stencil, clipped to the array (ip_isr ``growMasks``)."""
    if radius <= 0 or not mask.any():
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=ndimage.generate_binary_structure(2, 1), iterations=radius)


def _runs(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and stops (exclusive) of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], row, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return edges[0::2], edges[1::2]


def interpolate_over(
    image: np.ndarray,
    variance: np.ndarray,
    targets: np.ndarray,
    defects: np.ndarray,
) -> np.ndarray:
    """Interpolate image and variance in place along rows over the runs of
    ``defects | targets`` that contain a target pixel (see the module docstring).

    Parameters
    ----------
    image, variance
        The planes (2-D), modified in place.
    targets
        The new SAT pixels (grown) to interpolate over.
    defects
        Other pixels that are no good neighbours (SAT, BAD, UNMASKED_NAN
        planes, non-finite values); a run of them touching a target is
        interpolated with it, as ISR treats them as one defect.

    Returns
    -------
    interpolated
        The pixels whose values were replaced (INTERPOLATED).
    """
    bad = defects | targets | ~np.isfinite(image)
    interpolated = np.zeros(image.shape, dtype=bool)

    def fallback(plane: np.ndarray) -> float:
        """The plane's median over good pixels (a row without any; rare, so computed on demand)."""
        good = plane[~bad]
        return float(np.nanmedian(good)) if good.size else 0.0

    width = image.shape[1]
    for y in np.flatnonzero(targets.any(axis=1)):
        starts, stops = _runs(bad[y])
        for start, stop in zip(starts, stops):
            if not targets[y, start:stop].any():
                continue
            x = np.arange(start, stop)
            for plane in (image, variance):
                left = plane[y, start - 1] if start > 0 else None
                right = plane[y, stop] if stop < width else None
                if left is not None and right is not None:
                    weight = (x - (start - 1)) / (stop - start + 1)
                    plane[y, start:stop] = (1 - weight) * left + weight * right
                elif left is not None or right is not None:
                    plane[y, start:stop] = left if left is not None else right
                else:
                    plane[y, start:stop] = fallback(plane)
            interpolated[y, start:stop] = True
    return interpolated


@dataclasses.dataclass
class BatchBleed:
    """What `SaturationTreatment.bleed` did to one batch of the pixel model."""

    handled: np.ndarray
    """Per pixel of the batch: its ΔI, ΔV were written by the bleed (skip them)."""
    flux_change: np.ndarray
    """Per stamp: image units moved or lost by the bleed (add to its n/g sum)."""
    lost: np.ndarray
    """Per stamp: electrons lost off the amplifier."""
    bled: np.ndarray
    """Per stamp: some of its electrons were in an over-full pixel that bled."""


class SaturationTreatment:
    """Bleed, SAT, SUSPECT and interpolation of one injection, on the image planes.

    `bleed` runs on each batch of the pixel model (`isrinject.engine.inject`):
    each amplifier column holding a pixel with S + n above the level is bled
    whole (S reconstructed from the variance plane; pixels bled by an earlier
    batch hold exactly the level).  `finish` runs once after the last batch:
    SAT on the pixels at the level (grown and interpolated over when
    ``interpolate``).

    Parameters
    ----------
    image, variance, mask, flat, flat_variance, illumination
        The planes of the injected image (numpy arrays on its bbox).
    origin
        ``(y0, x0)``: absolute pixel of ``[0, 0]``.
    calibration
        Per-pixel c, σ_a, saturation and suspect levels, amplifier rows.
    bleed, interpolate, grow, suspect
        The configuration (``do_bleed``, ``do_saturation_interpolation``,
        ``grow_saturation_footprint_size``, ``do_suspect``).
    inject_variance
        Add ΔV to the variance plane.
    bits
        Mask bits ``SATURATED``, ``SUSPECT``, ``INTERPOLATED`` and the planes
        ISR interpolates over with them (``BAD``, ``UNMASKED_NAN``).
    """

    def __init__(
        self,
        *,
        image: np.ndarray,
        variance: np.ndarray,
        mask: np.ndarray,
        flat: np.ndarray,
        flat_variance: np.ndarray | None,
        illumination: np.ndarray | None,
        origin: tuple[int, int],
        calibration: PixelCalibration,
        bleed: bool,
        interpolate: bool,
        grow: int,
        suspect: bool,
        inject_variance: bool,
        saturated_bit: MaskPlaneBit,
        suspect_bit: MaskPlaneBit,
        interpolated_bit: MaskPlaneBit,
        defect_bits: Sequence[MaskPlaneBit],
    ) -> None:
        self.image, self.variance, self.mask = image, variance, mask
        self.flat, self.flat_variance, self.illumination = flat, flat_variance, illumination
        self.origin, self.calibration = origin, calibration
        self.do_bleed, self.do_interpolate, self.grow, self.do_suspect = bleed, interpolate, grow, suspect
        self.inject_variance = inject_variance
        self.saturated_bit, self.suspect_bit, self.interpolated_bit = saturated_bit, suspect_bit, interpolated_bit
        self.defect_bits = list(defect_bits)
        # Most detectors have no suspect level: skip the per-pixel lookup then.
        self.has_suspect = suspect and any(np.isfinite(amp.suspect) for amp in calibration.amplifiers)
        self.at_level: np.ndarray | None = None
        """New SAT pixels (at or above the level after the pixel model), allocated on first use."""

    def _mark_saturated(self, rows: np.ndarray, cols: np.ndarray) -> None:
        if self.at_level is None:
            self.at_level = np.zeros(self.image.shape, dtype=bool)
        self.at_level[rows, cols] = True

    def suspect(self, rows: np.ndarray, cols: np.ndarray, electrons: np.ndarray) -> None:
        """SUSPECT where the pre-flat electrons reach the amplifier's suspect level."""
        if not self.has_suspect or len(rows) == 0:
            return
        level = self.calibration.suspect_level_at(cols + self.origin[1], rows + self.origin[0])
        with np.errstate(invalid="ignore"):
            hit = electrons >= level
        bit = self.suspect_bit
        self.mask[rows[hit], cols[hit], bit.index] |= bit.mask

    def full_where_saturated(
        self, rows: np.ndarray, cols: np.ndarray, signal: np.ndarray, level: np.ndarray
    ) -> np.ndarray:
        """S, with the pixels SATURATED in the input taken as full (at the level) when bleeding.

        A real saturated star was interpolated over: its variance plane no
        longer tells its signal, but its pixels were at the level (or, in
        ISR's grown ring, close to it), so charge arriving there spills.
        """
        if not self.do_bleed:
            return signal
        bit = self.saturated_bit
        full = (self.mask[rows, cols, bit.index] & bit.mask) != 0
        if not full.any():
            return signal
        return np.where(full, level, signal)

    def after_pixel_model(
        self,
        result: PixelInjection,
        rows: np.ndarray,
        cols: np.ndarray,
        signal: np.ndarray,
        hit_stamp: np.ndarray,
        n_stamps: int,
    ) -> BatchBleed | None:
        """SUSPECT, and the bleed of the over-full columns, of one batch of the pixel model.

        Parameters
        ----------
        result
            The batch's `isrinject.engine.model.inject_pixels` result.
        rows, cols
            Array row and column of each of its pixels.
        signal
            S of each pixel [e⁻] (as the saturation test saw it).
        hit_stamp
            Per hit: its stamp (index in the batch).
        n_stamps
            Stamps in the batch.

        Returns
        -------
        bleed
            What the bleed did (`None` when nothing bled): the pixels it
            wrote must be skipped by the caller.
        """
        unbled = np.ones(len(rows), dtype=bool)
        bleed = None
        if result.saturated.any():
            if self.do_bleed:
                bleed = self.bleed(
                    rows, cols, result.electrons, result.saturated, result.hit_pixel, result.hit_electrons,
                    hit_stamp, n_stamps,
                )
                unbled = ~bleed.handled
            elif self.do_interpolate:
                self.record_saturated(rows[result.saturated], cols[result.saturated])
        self.suspect(rows[unbled], cols[unbled], signal[unbled] + result.electrons[unbled])
        return bleed

    def record_saturated(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Pixels above the level that were not bled (``do_bleed`` off)."""
        if len(rows):
            self._mark_saturated(rows, cols)

    def bleed(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        electrons: np.ndarray,
        saturated: np.ndarray,
        hit_pixel: np.ndarray,
        hit_electrons: np.ndarray,
        hit_stamp: np.ndarray,
        n_stamps: int,
    ) -> BatchBleed:
        """Bleed the amplifier columns of the batch's over-full pixels.

        Parameters
        ----------
        rows, cols, electrons, saturated
            Per pixel of the batch: array row and column, n [e⁻], S + n > L.
        hit_pixel, hit_electrons, hit_stamp
            Per hit: its pixel, its n and its stamp (index in the batch).
        n_stamps
            Stamps in the batch.
        """
        handled = np.zeros(len(rows), dtype=bool)
        flux_change = np.zeros(n_stamps)
        lost = np.zeros(n_stamps)
        bled = np.zeros(n_stamps, dtype=bool)
        y0, x0 = self.origin
        # One segment per (column, amplifier) of the over-full pixels.
        over_rows, over_cols = rows[saturated], cols[saturated]
        amp = self.calibration.layout.index_at(over_cols + x0, over_rows + y0)
        _, first = np.unique(np.stack([over_cols, amp]), axis=1, return_index=True)
        segments = []
        for k in first:
            start, stop = self.calibration.amplifier_rows_at(int(over_cols[k]) + x0, int(over_rows[k]) + y0)
            segments.append((int(over_cols[k]), start - y0, stop - y0))
        candidates = np.flatnonzero(np.isin(cols, over_cols))
        hits_of_pixel = np.argsort(hit_pixel, kind="stable")
        hit_bounds = np.searchsorted(hit_pixel[hits_of_pixel], np.arange(len(rows) + 1))
        for c, r0, r1 in segments:
            in_column = candidates[cols[candidates] == c]
            in_segment = in_column[(rows[in_column] >= r0) & (rows[in_column] < r1)]
            local = rows[in_segment] - r0
            signal, gain, response = self._segment_terms(c, r0, r1)
            level = self._level(c, r0, r1)
            # Pixels already at the level: bled by an earlier batch, or SATURATED in the input
            # (SAT bits are only set by `finish` while bleeding).
            full = (self.mask[r0:r1, c, self.saturated_bit.index] & self.saturated_bit.mask) != 0
            if self.at_level is not None:
                full |= self.at_level[r0:r1, c]
            signal = np.where(full, level, signal)
            added = np.zeros(r1 - r0)
            added[local] = electrons[in_segment]
            total = signal + added
            after, low, high = bleed_segment(total, level)
            change = after - signal
            touched = np.flatnonzero((change != 0) | (added > 0))
            delta_image, delta_variance = response(touched, change[touched], signal[touched])
            self.image[r0 + touched, c] += delta_image.astype(self.image.dtype)
            if self.inject_variance:
                self.variance[r0 + touched, c] += delta_variance.astype(self.variance.dtype)
            at = np.flatnonzero(after >= level)
            self._mark_saturated(r0 + at, np.full(len(at), c))
            self.suspect(r0 + touched, np.full(len(touched), c), after[touched])
            handled[in_segment] = True
            # Who bled: the hits in this column's over-full pixels, by their electrons.
            over = in_segment[total[local] > level]
            share = np.zeros(n_stamps)
            for pixel in over:
                hits = hits_of_pixel[hit_bounds[pixel] : hit_bounds[pixel + 1]]
                np.add.at(share, hit_stamp[hits], hit_electrons[hits])
            if share.sum() <= 0:
                continue
            share /= share.sum()
            with np.errstate(invalid="ignore", divide="ignore"):
                moved = np.nansum(change / gain) - np.nansum(added / gain)
            flux_change += share * moved
            lost += share * (low + high)
            bled |= share > 0
        return BatchBleed(handled, flux_change, lost, bled)

    def _level(self, c: int, r0: int, r1: int) -> float:
        y0, x0 = self.origin
        _, saturation = self.calibration.amplifier_terms_at(np.array([c + x0]), np.array([r0 + y0]))
        return float(saturation[0])

    def _segment_terms(
        self, c: int, r0: int, r1: int
    ) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]:
        """S along the column segment, g, and the pixel response of its pixels."""
        y0, x0 = self.origin
        flat = self.flat[r0:r1, c].astype(np.float64)
        illumination = None if self.illumination is None else self.illumination[r0:r1, c].astype(np.float64)
        flat_variance = None if self.flat_variance is None else self.flat_variance[r0:r1, c].astype(np.float64)
        scaling = self.calibration.image_per_electron_column(c + x0, r0 + y0, r1 + y0)
        read_noise, _ = self.calibration.amplifier_terms_at(np.full(r1 - r0, c + x0), np.arange(r0, r1) + y0)
        signal = reconstruct_pre_flat_electrons(
            self.variance[r0:r1, c], flat, scaling, np.nan_to_num(read_noise),
            flat_variance=flat_variance, illumination=illumination,
        )
        gain = effective_gain(flat, scaling, illumination)

        def response(index: np.ndarray, change: np.ndarray, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            delta_image, delta_variance, _, _ = pixel_response(
                change, flat=flat[index], scaling=scaling[index],
                illumination=None if illumination is None else illumination[index],
                flat_variance=None if flat_variance is None else flat_variance[index], pre_flat_electrons=pre,
            )
            # Pixels that cannot be read out as photons (f ≤ 0, NaN) still pass charge on.
            return np.nan_to_num(delta_image, nan=0.0), np.nan_to_num(delta_variance, nan=0.0)

        return signal, gain, response

    def finish(self) -> np.ndarray | None:
        """SAT (grown), INTERPOLATED and the interpolation, after the last batch.

        Returns
        -------
        interpolated
            The pixels interpolated over (`None` when nothing saturated or
            ``interpolate`` is off).
        """
        if self.at_level is None or not self.at_level.any():
            return None
        saturated = self.at_level
        sat = self.saturated_bit
        if not self.do_interpolate:
            self.mask[saturated, sat.index] |= sat.mask
            return None
        # Work on the rows and columns around the new SAT pixels only.
        ys, xs = np.nonzero(saturated)
        pad = max(self.grow, 0) + 1
        box = (
            slice(max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, saturated.shape[0])),
            slice(0, saturated.shape[1]),
        )
        grown = grow_manhattan(saturated[box], self.grow)
        mask = self.mask[box]
        mask[grown, sat.index] |= sat.mask
        defects = np.zeros(grown.shape, dtype=bool)
        for bit in [sat, *self.defect_bits]:
            defects |= (mask[..., bit.index] & bit.mask) != 0
        interpolated = interpolate_over(self.image[box], self.variance[box], grown, defects)
        bit = self.interpolated_bit
        mask[interpolated, bit.index] |= bit.mask
        result = np.zeros(saturated.shape, dtype=bool)
        result[box] = interpolated
        return result
