r"""Bright injected stars against bright real ones: bleed trails and ISR's masks.

`compare_bright_stars` simulates one visit of a band twice with the same seed
(`isrinject.sim.simulate_exposure`): once with saturated stars put
*physically* into the pre-flat electrons (the simulator bleeds them along the
columns and its ISR emulation sets SATURATED, SUSPECT, grows SATURATED and
interpolates, as ``isrTaskLSST`` does: the *real* stars), once without them.
The same stars (same magnitudes, same positions) are then injected into the
second image with `isrinject.tasks.visit.VisitInjectTask` (default
configuration: bleed, SUSPECT, grow and interpolation on).  Both images are
otherwise identical pixel for pixel, so any difference is the injection's.

Per star it measures

- the **trail length**: rows of the SATURATED run through the star's centre
  pixel in its column (ISR's SAT, grown by one pixel at each end);
- per mask plane (SATURATED, INTERPOLATED, SUSPECT), the **pixel count** in
  the star's amplifier rows within ±``half_width`` columns of it (the
  "extent"), and which planes occur at all (the "kind").

A band passes (`BrightStarComparison.passed`) when, for every star, the
injected trail length is within ``tolerance`` (10 %) of the real one, the same
planes occur, and every plane's pixel count is within ``tolerance`` of the
real one.  `plot_bright_stars` shows a real and an injected star side by side
(image, asinh stretch, and masks).

The stars' magnitude gives a peak of ``peak_over_full_well`` × the full well
``L`` in the centre pixel of a Gaussian PSF of width σ [pixels]:
``F = k·L·2πσ²`` electrons, ``m = 31.4 − 2.5 log10(F·c0)`` with ``c0`` [nJy/e⁻]
the photometric scaling.  One of the two stars sits ten rows from its
amplifier's edge, so part of its trail leaves the amplifier (charge lost).
"""

from __future__ import annotations

__all__ = [
    "MASK_PLANES",
    "TABLE_HEADER",
    "BrightStar",
    "BrightStarComparison",
    "bright_star_report",
    "compare_bright_stars",
    "peak_magnitude",
    "plot_bright_stars",
]

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.table import Table
from lsst.images import XY, VisitImage

from ..sim import BAND_PARAMETERS, SimulatedExposure, photometric_scaling_njy_per_electron, simulate_exposure
from ..sim.camera import COMCAM_FULL_WELL_ELECTRONS, amplifier_boxes
from ..sim.isr import AB_MAG_OF_ONE_NJY
from ..tasks.visit import VisitInjectConfig, VisitInjectTask

#: Mask planes compared (lsst.images names of SAT, INTRP, SUSPECT).
MASK_PLANES: tuple[str, ...] = ("SATURATED", "INTERPOLATED", "SUSPECT")


def peak_magnitude(band: str, peak_over_full_well: float, *, pixel_scale_arcsec: float = 0.2) -> float:
    """AB magnitude of a star whose centre pixel gets ``peak_over_full_well``
    times the full well (module docstring; 30 s exposure)."""
    params = BAND_PARAMETERS[band]
    sigma = params.psf_fwhm_arcsec / (2 * math.sqrt(2 * math.log(2))) / pixel_scale_arcsec
    electrons = peak_over_full_well * COMCAM_FULL_WELL_ELECTRONS * 2 * math.pi * sigma**2
    return AB_MAG_OF_ONE_NJY - 2.5 * math.log10(electrons * photometric_scaling_njy_per_electron(band))


@dataclasses.dataclass(frozen=True)
class BrightStar:
    """What one saturated star did to the masks (`compare_bright_stars`)."""

    x: float
    y: float
    trail_length: int
    """Rows of the SATURATED run through the centre pixel."""
    mask_pixels: dict[str, int]
    """Pixels of each of `MASK_PLANES` near the star (its amplifier rows, ±half_width columns)."""

    @property
    def kinds(self) -> frozenset[str]:
        """The mask planes that occur near the star."""
        return frozenset(name for name, count in self.mask_pixels.items() if count > 0)


@dataclasses.dataclass
class BrightStarComparison:
    """Real and injected saturated stars of one band (`compare_bright_stars`)."""

    band: str
    mag: float
    real: list[BrightStar]
    injected: list[BrightStar]
    lost_electrons: list[float]
    """Per injected star: electrons lost off its amplifier (catalog)."""
    flags: list[int]
    """Per injected star: its ``injection_flag``."""
    tolerance: float
    real_image: VisitImage
    injected_image: VisitImage

    def trail_ratio(self, i: int) -> float:
        """Injected / real trail length of star ``i``."""
        return self.injected[i].trail_length / max(self.real[i].trail_length, 1)

    def extent_ratio(self, i: int, plane: str) -> float:
        """Injected / real pixel count of ``plane`` near star ``i`` (1 when both are 0)."""
        real, injected = self.real[i].mask_pixels[plane], self.injected[i].mask_pixels[plane]
        return 1.0 if real == injected == 0 else injected / max(real, 1)

    @property
    def passed(self) -> bool:
        """Trail lengths and mask extents within the tolerance, same mask kinds, for every star."""
        for i, (real, injected) in enumerate(zip(self.real, self.injected)):
            if real.trail_length == 0 or abs(self.trail_ratio(i) - 1) > self.tolerance:
                return False
            if real.kinds != injected.kinds:
                return False
            if any(abs(self.extent_ratio(i, plane) - 1) > self.tolerance for plane in MASK_PLANES):
                return False
        return True

    def table(self) -> str:
        """One line per star: trail lengths and mask pixels, real / injected."""
        lines = []
        for i, (real, injected) in enumerate(zip(self.real, self.injected)):
            masks = "  ".join(
                f"{plane[:4]} {real.mask_pixels[plane]}/{injected.mask_pixels[plane]}" for plane in MASK_PLANES
            )
            lines.append(
                f"{self.band:<5}{self.mag:>6.2f}{i:>5}{real.trail_length:>7}/{injected.trail_length:<5}"
                f"{100 * (self.trail_ratio(i) - 1):>+7.1f}%  {masks}  lost {self.lost_electrons[i]:.3g} e⁻"
            )
        return "\n".join(lines)


def _star_masks(image: VisitImage, x: float, y: float, rows: tuple[int, int], half_width: int) -> BrightStar:
    """Trail length and mask pixel counts of the star at (x, y)."""
    ix, iy = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
    column = slice(max(ix - half_width, 0), ix + half_width + 1)
    region = slice(rows[0], rows[1])
    counts = {name: int(image.mask.get(name)[region, column].sum()) for name in MASK_PLANES}
    saturated = image.mask.get("SATURATED")[:, ix]
    length = 0
    if saturated[iy]:
        top = iy
        while top + 1 < len(saturated) and saturated[top + 1]:
            top += 1
        bottom = iy
        while bottom - 1 >= 0 and saturated[bottom - 1]:
            bottom -= 1
        length = top - bottom + 1
    return BrightStar(x, y, length, counts)


def compare_bright_stars(
    band: str,
    *,
    peak_over_full_well: float = 10.0,
    shape: tuple[int, int] = (400, 128),
    seed: int = 0,
    tolerance: float = 0.10,
    half_width: int = 12,
    suspect_fraction: float = 0.9,
    config: VisitInjectConfig | None = None,
) -> BrightStarComparison:
    """Real against injected saturated stars of one band (module docstring).

    Parameters
    ----------
    band
        Simulated band.
    peak_over_full_well
        Centre-pixel electrons over the full well (`peak_magnitude`).
    shape
        ``(ny, nx)`` of the simulated detector (2 × 8 amplifiers).
    seed
        Seed of both simulations and of the injection noise.
    tolerance
        Relative tolerance on trail lengths and mask extents.
    half_width
        Columns either side of a star counted in its mask extents.
    suspect_fraction
        The amplifiers' suspect level as a fraction of the full well (so
        SUSPECT occurs and is compared).
    config
        Injection configuration (default `VisitInjectConfig`).
    """
    mag = peak_magnitude(band, peak_over_full_well)
    boxes = amplifier_boxes(shape)
    # Star 0 in the middle of a top amplifier, star 1 ten rows below the top
    # edge of a bottom one (its trail runs into the amplifier boundary).
    placements = [(boxes[10], 0.5), (boxes[5], 0.95)]
    x = np.array([box.x.start + box.x.size / 2 - 0.3 for box, _ in placements])
    y = np.array([box.y.start + fraction * box.y.size + 0.2 for box, fraction in placements])
    stars = Table({"x": x, "y": y, "source_type": ["Star"] * len(x), "mag": [mag] * len(x)})
    def simulate(sources: Table | None) -> SimulatedExposure:
        return simulate_exposure(
            band=band, visit=1, detector=0, shape=shape, seed=seed, n_background_stars=0, n_background_galaxies=8,
            suspect_electrons=suspect_fraction * COMCAM_FULL_WELL_ELECTRONS, sources=sources,
        )

    real, base = simulate(stars), simulate(None)
    config = config or VisitInjectConfig()
    config.noise_seed = seed
    sky = base.visit_image.sky_projection.pixel_to_sky(XY(x=x, y=y))
    catalog = Table(
        {"injection_id": np.arange(len(x)), "ra": sky.ra.deg, "dec": sky.dec.deg, "source_type": ["Star"] * len(x),
         "mag": [mag] * len(x)}
    )
    result = VisitInjectTask(config=config).run(
        visit_image=base.visit_image, injection_catalogs=[catalog], flat=base.flat
    )
    injected_image = result.injected_visit_image
    injected_catalog = result.injected_visit_image_catalog
    rows = [(box.y.start, box.y.stop) for box, _ in placements]
    return BrightStarComparison(
        band=band,
        mag=mag,
        real=[_star_masks(real.visit_image, xi, yi, r, half_width) for xi, yi, r in zip(x, y, rows)],
        injected=[_star_masks(injected_image, xi, yi, r, half_width) for xi, yi, r in zip(x, y, rows)],
        lost_electrons=[float(v) for v in injected_catalog["injection_lost_electrons"]],
        flags=[int(v) for v in injected_catalog["injection_flag"]],
        tolerance=tolerance,
        real_image=real.visit_image,
        injected_image=injected_image,
    )


def _mask_rgb(image: VisitImage, rows: slice, cols: slice) -> np.ndarray:
    """SATURATED red, INTERPOLATED green, SUSPECT blue."""
    return np.stack(
        [image.mask.get(name)[rows, cols].astype(float) for name in ("SATURATED", "INTERPOLATED", "SUSPECT")],
        axis=-1,
    )


def plot_bright_stars(
    comparisons: Sequence[BrightStarComparison], path: str | os.PathLike[str], *, star: int = 0, half_size: int = 40
) -> Path:
    """A real and an injected saturated star side by side (image and masks), one row per band.

    Columns: real image, injected image (same asinh stretch), real masks,
    injected masks (SATURATED red, INTERPOLATED green, SUSPECT blue; overlaps
    mix).  Returns the PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(comparisons)
    figure, axes = plt.subplots(n, 4, figsize=(10, 3.2 * n), squeeze=False)
    for row, comparison in zip(axes, comparisons):
        s = comparison.real[star]
        ix, iy = int(round(s.x)), int(round(s.y))
        ny, nx = comparison.real_image.image.array.shape
        rows = slice(max(iy - half_size, 0), min(iy + half_size + 1, ny))
        cols = slice(max(ix - half_size // 3, 0), min(ix + half_size // 3 + 1, nx))
        real = comparison.real_image.image.array[rows, cols]
        injected = comparison.injected_image.image.array[rows, cols]
        scale = float(np.nanpercentile(np.abs(real), 50)) or 1.0
        top = float(np.arcsinh(np.nanmax(real) / scale))
        for ax, data, title in ((row[0], real, "real"), (row[1], injected, "injected")):
            ax.imshow(np.arcsinh(data / scale), origin="lower", cmap="gray", vmin=0, vmax=top)
            ax.set_title(f"{comparison.band}: {title} star, m = {comparison.mag:.2f}", fontsize=9)
        for ax, image, title, star_masks in (
            (row[2], comparison.real_image, "real masks", comparison.real[star]),
            (row[3], comparison.injected_image, "injected masks", comparison.injected[star]),
        ):
            ax.imshow(_mask_rgb(image, rows, cols), origin="lower")
            ax.set_title(f"{title}: trail {star_masks.trail_length} px", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    figure.suptitle("masks: SATURATED red, INTERPOLATED green, SUSPECT blue (overlaps mix)", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    path = Path(path)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


#: Header of `BrightStarComparison.table` lines.
TABLE_HEADER = f"{'band':<5}{'mag':>6}{'star':>5}{'trail real/inj':>15}{'Δ':>7}  mask pixels real/injected"


def bright_star_report(
    bands: Sequence[str], output_dir: str | os.PathLike[str], *, seed: int = 0
) -> tuple[str, bool, Path]:
    """`compare_bright_stars` for every band, its table and `plot_bright_stars`.

    Returns
    -------
    table, passed, figure
        The per-star table, whether every band passed and the PNG
        (``bright_stars.png`` in ``output_dir``).
    """
    comparisons = [compare_bright_stars(band, seed=seed) for band in bands]
    lines = [TABLE_HEADER, "-" * len(TABLE_HEADER)]
    lines += [c.table() + f"  {'PASS' if c.passed else 'FAIL'}" for c in comparisons]
    figure = plot_bright_stars(comparisons, Path(output_dir) / "bright_stars.png")
    return "\n".join(lines), all(c.passed for c in comparisons), figure
