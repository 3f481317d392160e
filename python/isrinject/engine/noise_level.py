"""Local per-pixel sky noise σ of a visit image, from its variance plane.

The noise-aware stamp extent (`isrinject.engine.draw.extent`) and the
``INJECTED`` mask threshold compare the noiseless model with the noise a
pixel near the source has *before* injection.  That noise is read from the
input variance plane V (image units², i.e. after the flat, as ISR and
calibration left it):

    σ(source) = √ median{ V_p : p in the source's cell, V_p finite and > 0 }

over the square cell of ``cell`` pixels (the grid of the PSF cache) that
holds the source's centre, every second pixel along each axis.  A median
over a cell rather than the source's own pixel is the sky's noise: a real
star or a defect under the source does not shrink its stamp.  A cell with no
usable variance gives NaN (the stamp is then drawn on its upper bound and
``INJECTED`` covers it whole).
"""

from __future__ import annotations

__all__ = ["local_sky_sigma"]

import numpy as np


def local_sky_sigma(
    variance: np.ndarray, x: np.ndarray, y: np.ndarray, *, x0: int = 0, y0: int = 0, cell: int = 128
) -> np.ndarray:
    """σ [image units] at each absolute position (x, y) (see the module docstring).

    Parameters
    ----------
    variance
        The input variance plane [image units²], shape (ny, nx).
    x, y
        Absolute pixel positions; NaN or off the image gives NaN.
    x0, y0
        Absolute coordinates of ``variance[0, 0]``.
    cell
        Cell side [pixels].
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ny, nx = variance.shape
    sigma = np.full(x.shape, np.nan)
    with np.errstate(invalid="ignore"):
        col = np.floor(x - x0 + 0.5)
        row = np.floor(y - y0 + 0.5)
        inside = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
    if not np.any(inside):
        return sigma
    per_row = (nx + cell - 1) // cell
    keys, which = np.unique(
        (row[inside] // cell).astype(np.int64) * per_row + (col[inside] // cell).astype(np.int64), return_inverse=True
    )
    cell_sigma = np.full(len(keys), np.nan)
    for k, key in enumerate(keys):
        cy, cx = divmod(int(key), per_row)
        block = variance[cy * cell : (cy + 1) * cell : 2, cx * cell : (cx + 1) * cell : 2]
        usable = block[np.isfinite(block) & (block > 0)]
        if usable.size:
            cell_sigma[k] = np.sqrt(float(np.median(usable)))
    values = cell_sigma[which]
    sigma[inside] = values
    return sigma
