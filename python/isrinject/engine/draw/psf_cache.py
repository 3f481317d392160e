"""Per-region cache of the image PSF, its spectra and the local Jacobian.

Evaluating the visit image's PSF (``compute_kernel_image``; milliseconds for
a Piff model), its aperture fraction, GalSim's stepk of it (for stamp sizes)
and the local Jacobian of the sky projection cost more than drawing a star.
`PsfCache` does each once per cell of a square grid of ``spacing`` pixels and
reuses the result for every source in the cell: the PSF and the Jacobian are
evaluated at the cell centre (clipped to the image), the Jacobians of all
cells in one vectorised sky transform (`PsfCache.prepare`).  The kernel's
DFT on each FFT grid size (`isrinject.engine.draw.fast.kernel_spectrum`) is cached
too, within a memory budget.

Accuracy: the kernel is always normalised to unit sum and centred, so fluxes
and centroids do not depend on ``spacing``; only the PSF *shape* and the
local pixel scale are those of a point at most ``spacing/√2`` pixels away
(for extended sources: a star is the PSF's stellar image at its exact
position, `isrinject.engine.draw.stellar`, and takes only its aperture
fraction, Jacobian and stamp size from the cell).
Rubin PSF models (Piff) and sky projections vary on scales of hundreds to
thousands of pixels, so the default 128 px (≤ 91 px away) changes nothing
measurable; ``spacing <= 0`` evaluates both exactly at every source (no reuse).
"""

from __future__ import annotations

__all__ = ["DEFAULT_SPACING", "PsfCache", "PsfEntry"]

import dataclasses
import functools
import math
from collections import OrderedDict

import galsim
import numpy as np
from lsst.images import SkyProjection
from lsst.images.psfs import PointSpreadFunction

from .fast import kernel_spectrum
from .geometry import aperture_fraction, local_jacobians

DEFAULT_SPACING: float = 128.0
"""Default grid spacing [pixels] of `PsfCache`."""


@dataclasses.dataclass(frozen=True)
class PsfEntry:
    """The PSF and local Jacobian at one cell centre."""

    x: float
    y: float
    kernel: np.ndarray
    """Unit-sum kernel image (odd sides, centred)."""
    fraction: float
    """Fraction of the kernel inside ``calib_flux_radius``."""
    kernel_size: int
    jacobian: galsim.JacobianWCS
    interpolated: galsim.InterpolatedImage
    """The kernel as a unit-flux profile in sky coordinates (for stamp sizes: its stepk)."""

    @functools.cached_property
    def good_size(self) -> int:
        """GalSim's good image size [pixels] of the kernel profile (a star's stamp)."""
        return self.interpolated.getGoodImageSize(self.jacobian.minLinearScale())


class PsfCache:
    """PSF kernels, InterpolatedImages and Jacobians on a grid of cells.

    Parameters
    ----------
    psf
        The visit image's PSF (``compute_kernel_image(x=, y=)``).
    sky_projection
        The visit image's sky projection.
    spacing
        Cell side [pixels]; ``<= 0`` evaluates at each exact position.
    calib_flux_radius
        Aperture radius for `PsfEntry.fraction` (`None`: total flux).
    bounds
        ``(x_min, x_max, y_min, y_max)`` inclusive pixel bounds cell centres
        are clipped to (the image), or `None`.
    max_entries
        Most cells kept (least recently used dropped first).
    max_spectra_bytes
        Memory budget of the cached kernel spectra (least recently used
        dropped first): a 1000-px grid's spectrum alone is 8 MB.
    """

    def __init__(
        self,
        psf: PointSpreadFunction,
        sky_projection: SkyProjection,
        *,
        spacing: float = DEFAULT_SPACING,
        calib_flux_radius: float | None = None,
        bounds: tuple[float, float, float, float] | None = None,
        max_entries: int = 20000,
        max_spectra_bytes: int = 64 * 1024**2,
    ) -> None:
        self.psf = psf
        self.sky_projection = sky_projection
        self.spacing = float(spacing) if spacing and spacing > 0 else 0.0
        self.calib_flux_radius = calib_flux_radius
        self.bounds = bounds
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[float, float], PsfEntry] = OrderedDict()
        self._failures: dict[tuple[float, float], Exception] = {}
        self._spectra: OrderedDict[tuple[float, float, int], np.ndarray] = OrderedDict()
        self._spectra_bytes = 0
        self.max_spectra_bytes = max_spectra_bytes
        self.evaluations = 0
        """Number of PSF evaluations so far (a cache miss each)."""

    def centre(self, x: float, y: float) -> tuple[float, float]:
        """The point the PSF is evaluated at for a source at (x, y)."""
        if self.spacing <= 0:
            return float(x), float(y)
        cx = (math.floor(x / self.spacing) + 0.5) * self.spacing
        cy = (math.floor(y / self.spacing) + 0.5) * self.spacing
        if self.bounds is not None:
            x0, x1, y0, y1 = self.bounds
            cx = min(max(cx, x0), x1)
            cy = min(max(cy, y0), y1)
        return cx, cy

    def get(self, x: float, y: float) -> PsfEntry:
        """The cached entry for a source at (x, y) (evaluated on a miss).

        Raises
        ------
        ValueError
            The PSF kernel has a non-positive or non-finite sum.
        """
        key = self.centre(x, y)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        self._evaluate_cells([key])
        entry = self._entries.get(key)
        if entry is None:
            raise self._failures.pop(key)
        return entry

    def spectrum(self, entry: PsfEntry, n: int) -> np.ndarray:
        """The entry's kernel DFT on an N × N grid (`isrinject.engine.draw.fast.kernel_spectrum`), cached."""
        key = (entry.x, entry.y, n)
        spectrum = self._spectra.get(key)
        if spectrum is not None:
            self._spectra.move_to_end(key)
            return spectrum
        spectrum = kernel_spectrum(entry.kernel, n)
        self._spectra[key] = spectrum
        self._spectra_bytes += spectrum.nbytes
        while self._spectra_bytes > self.max_spectra_bytes and len(self._spectra) > 1:
            self._spectra_bytes -= self._spectra.popitem(last=False)[1].nbytes
        return spectrum

    def prepare(self, x: np.ndarray, y: np.ndarray) -> None:
        """Evaluate every cell the sources at (x, y) fall in that is not cached yet.

        The local Jacobians of all new cells come from one vectorised sky
        transform (`isrinject.engine.draw.geometry.local_jacobians`), the dominant cost of a
        cell after the PSF itself.  A cell whose PSF cannot be evaluated is
        remembered and raises from `get`.
        """
        finite = np.isfinite(x) & np.isfinite(y)
        self._evaluate_cells(list(dict.fromkeys(self.centre(float(a), float(b)) for a, b in zip(x[finite], y[finite]))))

    def _evaluate_cells(self, keys: list[tuple[float, float]]) -> None:
        keys = [key for key in keys if key not in self._entries]
        if not keys:
            return
        try:
            jacobians: list[galsim.JacobianWCS | None] = local_jacobians(
                self.sky_projection, np.array([k[0] for k in keys]), np.array([k[1] for k in keys])
            )
        except Exception:  # one bad position must not cost the others their cell
            jacobians = [None] * len(keys)
        for key, jacobian in zip(keys, jacobians):
            try:
                if jacobian is None:
                    jacobian = local_jacobians(self.sky_projection, np.array([key[0]]), np.array([key[1]]))[0]
                if not np.all(np.isfinite(jacobian.getMatrix())):
                    raise ValueError(f"The sky projection has no finite local Jacobian at x={key[0]}, y={key[1]}.")
                self._entries[key] = self._evaluate(*key, jacobian)
            except Exception as err:  # reported per source by draw_source
                self._failures[key] = err
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _evaluate(self, x: float, y: float, jacobian: galsim.JacobianWCS) -> PsfEntry:
        self.evaluations += 1
        kernel = np.array(self.psf.compute_kernel_image(x=x, y=y).array, dtype=np.float64)
        total = kernel.sum()
        if not np.isfinite(total) or total <= 0:
            raise ValueError(f"PSF kernel at x={x:.1f}, y={y:.1f} has non-positive or non-finite sum {total!r}.")
        kernel /= total
        # Only stepk (for stamp sizes) is used: skip GalSim's maxk search.
        interpolated = galsim.InterpolatedImage(galsim.Image(kernel, wcs=jacobian), calculate_maxk=False)
        return PsfEntry(
            x, y, kernel, aperture_fraction(kernel, self.calib_flux_radius), max(kernel.shape), jacobian,
            interpolated,
        )
