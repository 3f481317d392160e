"""The README / documentation figures, drawn from code.

``python -m isrinject.demo.figure [PATH [BRIGHT_PATH]]`` (run by ``make demo``
and ``make docs``; defaults `README_FIGURE` and `BRIGHT_STARS_FIGURE`) draws
both.  The forum's plot: it simulates one u-band visit image with the
ISR simulator (`isrinject.sim.simulate_exposure`: vignetted flat, ComCam
amplifiers, nJy units), injects one bright star where the flat is low with
isrinject's engine (`isrinject.engine.inject.inject_sources`, the same code
as the task) and the same noiseless model as the emulated
``lsst.source.injection`` would (`isrinject.diagnostics.upstream`), and draws
the 128×128 cutout around it with `isrinject.diagnostics.figures.plot_forum`.
The bright-star figure of the pixel-model page: a real (simulated) and an
injected saturated star side by side in u, r and y
(`isrinject.demo.bright_stars`).  Everything is seeded, so the PNGs are
reproducible; ``tests/test_readme_figure.py`` fails when a committed copy
differs from what this code draws.
"""

from __future__ import annotations

__all__ = [
    "BRIGHT_STARS_BANDS",
    "BRIGHT_STARS_FIGURE",
    "README_FIGURE",
    "forum_example",
    "main",
    "write_bright_stars_figure",
    "write_readme_figure",
]

import os
import sys
from pathlib import Path

import numpy as np
from astropy.table import Table
from lsst.images import XY, Box

from ..diagnostics.forum import FORUM_CUTOUT_SIZE
from ..diagnostics.results import ForumCutout
from ..diagnostics.upstream import fit_upstream_slopes, upstream_injection
from ..engine.catalog import compose_catalog
from ..engine.inject import inject_sources
from ..sim import amplifier_index_map, simulate_exposure
from ..tasks.visit import VisitInjectConfig
from .build import magnitude_range

#: The committed figure, relative to the source tree's root.
README_FIGURE = Path("doc") / "_static" / "forum_cutout_u.png"
#: The committed bright-star figure of the pixel-model page, relative to the source tree's root.
BRIGHT_STARS_FIGURE = Path("doc") / "_static" / "bright_stars.png"
#: Bands of the bright-star figure (the bluest, a middle and the reddest band).
BRIGHT_STARS_BANDS = ("u", "r", "y")
#: Seed of the simulation and of the noise.
SEED = 11
#: Detector side [pixels].
SIZE = 256


def forum_example() -> ForumCutout:
    """The cutout of the README figure (module docstring)."""
    shape = (SIZE, SIZE)
    sim = simulate_exposure(band="u", visit=1, detector=0, shape=shape, seed=SEED, units="nJy")
    vi = sim.visit_image
    flat = sim.flat.image.array.astype(np.float64)
    half = FORUM_CUTOUT_SIZE // 2
    # The star where the flat is lowest away from the edges (the forum's vignetted corner).
    inner = np.full(shape, np.inf)
    inner[half:-half, half:-half] = flat[half:-half, half:-half]
    iy, ix = np.unravel_index(int(np.argmin(inner)), shape)
    x, y = float(ix) + 0.3, float(iy) - 0.2
    bright, _ = magnitude_range("u")
    sky = vi.sky_projection.pixel_to_sky(XY(x=np.array([x]), y=np.array([y])))
    catalog = compose_catalog([Table({"injection_id": [1], "ra": sky.ra.deg, "dec": sky.dec.deg,
                                      "source_type": ["Star"], "mag": [bright + 0.3]})])

    def inject(noise: bool):
        config = VisitInjectConfig()
        config.add_noise = noise
        return inject_sources(vi, catalog, flat=sim.flat, illumination=None, config=config,
                              rng=np.random.default_rng(SEED)).image

    noisy, noiseless = inject(True), inject(False)
    i0, v0 = vi.image.array.astype(np.float64), vi.variance.array.astype(np.float64)
    model = noiseless.image.array.astype(np.float64) - i0
    bad = vi.mask.get("SATURATED") | vi.mask.get("NO_DATA") | vi.mask.get("BAD")
    amp = amplifier_index_map(shape, [a.bbox for a in vi.detector.amplifiers])
    slope = fit_upstream_slopes(i0, v0, bad=bad, amp_index=amp).on(amp)
    up_image, up_variance = upstream_injection(i0, v0, model, slope=slope, rng=np.random.default_rng(SEED))
    box = (slice(iy - half, iy + half), slice(ix - half, ix + half))
    good = ~bad & np.isfinite(i0) & np.isfinite(v0)
    injected = (model > np.sqrt(v0)) & good
    return ForumCutout(
        detector=0, bbox=Box.factory[iy - half : iy + half, ix - half : ix + half], star=(x, y), unit=str(vi.unit),
        original=(i0[box], v0[box]),
        isrinject=(noisy.image.array.astype(np.float64)[box], noisy.variance.array.astype(np.float64)[box]),
        upstream=(up_image[box], up_variance[box]), injected=injected[box], good=good[box],
        upstream_slope=float(slope[iy, ix]), model=model[box],
        gain=(flat / sim.scaling)[box],
    )


def write_readme_figure(path: str | os.PathLike[str]) -> Path:
    """Draw the README figure into ``path``."""
    from ..diagnostics.figures import plot_forum

    forum = forum_example()
    return plot_forum(forum, path, title="u band, 128×128 cutout around a bright injected star where the flat is "
                                         "low (simulated)")


def write_bright_stars_figure(path: str | os.PathLike[str]) -> Path:
    """Draw the bright-star figure (real and injected saturated stars) into ``path``."""
    from .bright_stars import compare_bright_stars, plot_bright_stars

    return plot_bright_stars([compare_bright_stars(band) for band in BRIGHT_STARS_BANDS], path)


def main(argv: list[str] | None = None) -> int:
    """``python -m isrinject.demo.figure [PATH [BRIGHT_PATH]]``."""
    args = sys.argv[1:] if argv is None else argv
    print(f"wrote {write_readme_figure(args[0] if args else README_FIGURE)}")
    print(f"wrote {write_bright_stars_figure(args[1] if len(args) > 1 else BRIGHT_STARS_FIGURE)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
