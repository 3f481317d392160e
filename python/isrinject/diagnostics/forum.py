"""The forum's view: variance against image of a 128×128 cutout around a bright injected star.

The plot a Rubin user made when injected stars could be picked out "just by
looking at flux/variance ratios": every pixel of a cutout, variance ``V``
against image ``I`` on linear axes, before and after injecting a bright star.
Real pixels follow ISR's ``V ≈ I·c/f + const`` of their own pixel; an
injection must put its pixels on the same line.  `forum_cutout` picks the
star and cuts the arrays; `isrinject.diagnostics.figures.plot_forum` draws
it with the straight-line fit ``V = a·I + b`` (``numpy.polyfit``, as the peer
package fits its slope) of every population in the legend:

- real: the pixels of real sources in the cutout (above 5σ before
  injection), or, with fewer than 20 of them, the star's own pixels before
  injection (their sky noise follows ISR's ``dV/dI ≈ c/f`` too, up to the
  scatter of the per-pixel offsets);
- isrinject: the injected star's pixels (noiseless model above the original
  1σ noise) after isrinject's injection, with ISR's line for them (slope the
  median ``1/g = c/f`` of those pixels);
- upstream: the same pixels after the emulated ``lsst.source.injection``
  injection of the same model (`isrinject.diagnostics.upstream`).

The star is the one, among the brightest quarter of the isolated injected
point sources whose cutout has no bad pixel at its centre, where the upstream
slope ``s`` departs most from the pixel's own ``c/f`` (``|s·g − 1|`` largest,
``g = f·R/c``): where the peer package's one slope per amplifier is most wrong,
as in the forum's vignetted corner.
"""

from __future__ import annotations

__all__ = ["FORUM_CUTOUT_SIZE", "forum_cutout", "line_fit"]

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from lsst.images import Box

from .results import ForumCutout, RegionData

#: Side of the cutout [pixels].
FORUM_CUTOUT_SIZE = 128


def line_fit(image: npt.ArrayLike, variance: npt.ArrayLike) -> tuple[float, float]:
    """``(a, b)`` of the unweighted least-squares line ``V = a·I + b`` (NaN with < 2 points)."""
    image = np.asarray(image, np.float64).ravel()
    variance = np.asarray(variance, np.float64).ravel()
    ok = np.isfinite(image) & np.isfinite(variance)
    if ok.sum() < 2 or np.ptp(image[ok]) == 0:
        return np.nan, np.nan
    a, b = np.polyfit(image[ok], variance[ok], 1)
    return float(a), float(b)


def _window(centre: float, size: int, start: int, stop: int) -> tuple[int, int]:
    """``[lo, lo + size)`` around ``centre`` shifted inside ``[start, stop)`` (shrunk if it cannot fit)."""
    size = min(size, stop - start)
    lo = int(round(centre)) - size // 2
    lo = max(start, min(lo, stop - size))
    return lo, lo + size


def forum_cutout(regions: Sequence[RegionData], size: int = FORUM_CUTOUT_SIZE) -> ForumCutout | None:
    """The forum cutout of one band (module docstring); `None` without an upstream arm or a bright star."""
    best: tuple[float, RegionData, float, float] | None = None
    for region in regions:
        if region.upstream_pixels is None or region.pixels.model is None:
            continue
        src = region.sources
        box = region.bbox
        x, y = np.asarray(src["x"], np.float64), np.asarray(src["y"], np.float64)
        point = np.isin(np.asarray(src["source_type"]).astype(str), ("Star", "DeltaFunction"))
        inside = (x >= box.x.start + 2) & (x < box.x.stop - 3) & (y >= box.y.start + 2) & (y < box.y.stop - 3)
        pick = np.flatnonzero(np.asarray(src["injected"], bool) & point & inside)
        if not len(pick):
            continue
        mags = np.asarray(src["mag"], np.float64)[pick]
        bright = pick[mags <= np.nanpercentile(mags, 25)]
        gain = region.pixels.gain
        bad = np.zeros(gain.shape, bool) if region.pixels.bad is None else np.asarray(region.pixels.bad, bool)
        for k in bright:
            ix, iy = round(x[k]) - box.x.start, round(y[k]) - box.y.start
            if bad[max(iy - 3, 0) : iy + 4, max(ix - 3, 0) : ix + 4].any():
                continue
            error = abs(float(region.upstream_slope[iy, ix] * gain[iy, ix]) - 1.0)
            if np.isfinite(error) and (best is None or error > best[0]):
                best = (error, region, float(x[k]), float(y[k]))
    if best is None:
        return None
    _, region, xs, ys = best
    box = region.bbox
    x0, x1 = _window(xs, size, box.x.start, box.x.stop)
    y0, y1 = _window(ys, size, box.y.start, box.y.stop)
    local = (slice(y0 - box.y.start, y1 - box.y.start), slice(x0 - box.x.start, x1 - box.x.start))
    p, up = region.pixels, region.upstream_pixels
    assert up is not None and p.model is not None
    good = np.ones(p.flat.shape, bool) if p.bad is None else ~np.asarray(p.bad, bool)
    for a in (p.original_image, p.original_variance, p.image, p.variance, up.image, up.variance):
        good &= np.isfinite(a)
    with np.errstate(invalid="ignore"):
        injected = np.nan_to_num(p.model) > np.sqrt(p.original_variance)
    ix, iy = round(xs) - box.x.start, round(ys) - box.y.start
    return ForumCutout(
        detector=region.detector, bbox=Box.factory[y0:y1, x0:x1], star=(xs, ys), unit=region.unit,
        original=(p.original_image[local].copy(), p.original_variance[local].copy()),
        isrinject=(p.image[local].copy(), p.variance[local].copy()),
        upstream=(up.image[local].copy(), up.variance[local].copy()),
        injected=(injected & good)[local].copy(), good=good[local].copy(),
        upstream_slope=float(region.upstream_slope[iy, ix]),
        model=np.asarray(p.model)[local].copy(), gain=np.asarray(p.gain)[local].copy(),
    )
