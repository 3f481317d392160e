"""isrinject scale and speed benchmark (issue 6): one process, one run.

    .venv/bin/python bench/run_bench.py [--shape 4000 4072] [--out bench/RESULTS.md]

Prints and writes (a) draw compute for 1,000 stars + 1,000 Sersic galaxies,
isrinject vs the per-source reference draw (`reference_draw.py`, what
lsst.source.injection does); (b) end to end per detector (read VisitImage
FITS, inject, write) vs read + write alone; (c) 10,000 vs 1,000 sources;
(d) peak RSS.  Not a test: targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_draw import reference_draw  # noqa: E402

from isrinject.draw import RenderSettings, draw_source  # noqa: E402
from isrinject.sim import simulate_exposure  # noqa: E402
from isrinject.task import VisitInjectConfig, VisitInjectTask  # noqa: E402

N_VALUES = np.round(np.arange(0.5, 4.01, 0.25), 2)  # a discrete set of Sersic indices (see RESULTS.md)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def machine() -> str:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem_kb = 0
    return f"nproc {os.cpu_count()}, CPU {cpu}, memory {mem_kb / 1024**2:.1f} GiB, Python {platform.python_version()}"


def catalog(vi, n: int, rng: np.random.Generator, margin: int = 60) -> Table:
    """n/2 stars and n/2 Sersic galaxies at random positions (ra/dec)."""
    from lsst.images import XY

    bbox = vi.bbox
    x = rng.uniform(bbox.x.start + margin, bbox.x.stop - margin, n)
    y = rng.uniform(bbox.y.start + margin, bbox.y.stop - margin, n)
    sky = vi.sky_projection.pixel_to_sky(XY(x=x, y=y))
    n_star = n // 2
    galaxy = np.arange(n) >= n_star
    return Table({
        "injection_id": np.arange(n),
        "ra": sky.ra.deg, "dec": sky.dec.deg,
        "source_type": np.where(galaxy, "Sersic", "Star"),
        "mag": rng.uniform(18.0, 24.0, n),
        "n": np.where(galaxy, rng.choice(N_VALUES, n), 1.0),
        "half_light_radius": np.where(galaxy, rng.uniform(0.3, 1.5, n), 0.0),
        "q": np.where(galaxy, rng.uniform(0.3, 1.0, n), 1.0),
        "beta": rng.uniform(0.0, 180.0, n),
        "x_pix": x, "y_pix": y,
    })


def rows_of(table: Table) -> list[dict]:
    out = []
    for row in table:
        values = {"source_type": str(row["source_type"])}
        if values["source_type"] == "Sersic":
            values.update(n=float(row["n"]), half_light_radius=float(row["half_light_radius"]),
                          q=float(row["q"]), beta=float(row["beta"]))
        out.append(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=2, default=(4000, 4072), metavar=("NY", "NX"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "RESULTS.md"))
    args = parser.parse_args()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    rng = np.random.default_rng(6)
    t0 = time.perf_counter()
    sim = simulate_exposure(band="r", visit=1, detector=0, shape=tuple(args.shape), seed=6,
                            n_background_stars=20, n_background_galaxies=10)
    vi = sim.visit_image
    say(f"setup: simulated {args.shape[0]}x{args.shape[1]} visit image in {time.perf_counter() - t0:.1f} s; "
        f"peak RSS {peak_rss_gb():.2f} GB")
    settings = RenderSettings()
    flux = 1e4

    # --- (a) draw compute, 1,000 stars + 1,000 Sersic ----------------------
    table = catalog(vi, 2000, rng)
    rows = rows_of(table)
    xs, ys = np.asarray(table["x_pix"]), np.asarray(table["y_pix"])
    # GalSim builds (and caches) one Hankel table per Sersic index, whoever draws
    # first pays for it: warm every index up before timing either side.
    for n in N_VALUES:
        reference_draw({"source_type": "Sersic", "n": float(n), "half_light_radius": 1.0}, x=100.0, y=100.0,
                       flux=flux, psf=vi.psf, sky_projection=vi.sky_projection, settings=settings)
    timings = {}
    for name, draw in (
        ("reference", lambda r, x, y: reference_draw(r, x=x, y=y, flux=flux, psf=vi.psf,
                                                     sky_projection=vi.sky_projection, settings=settings)),
        ("isrinject", lambda r, x, y: draw_source(r, x=x, y=y, flux=flux, psf=vi.psf,
                                                  sky_projection=vi.sky_projection, image_bbox=vi.bbox,
                                                  settings=settings)),
    ):
        for kind, sl in (("stars", slice(0, 1000)), ("galaxies", slice(1000, 2000))):
            start = time.perf_counter()
            for r, x, y in zip(rows[sl], xs[sl], ys[sl]):
                draw(r, x, y)
            timings[name, kind] = time.perf_counter() - start
    ref_total = timings["reference", "stars"] + timings["reference", "galaxies"]
    new_total = timings["isrinject", "stars"] + timings["isrinject", "galaxies"]
    say("(a) draw compute, 1,000 stars + 1,000 Sersic (s): "
        f"reference {ref_total:.2f} (stars {timings['reference', 'stars']:.2f}, galaxies "
        f"{timings['reference', 'galaxies']:.2f}); isrinject {new_total:.2f} (stars "
        f"{timings['isrinject', 'stars']:.2f}, galaxies {timings['isrinject', 'galaxies']:.2f})")
    say(f"(a) speed-up: total {ref_total / new_total:.1f}x, stars "
        f"{timings['reference', 'stars'] / timings['isrinject', 'stars']:.1f}x, galaxies "
        f"{timings['reference', 'galaxies'] / timings['isrinject', 'galaxies']:.1f}x  (target >= 10x)")

    # --- (c) full injection (task.run: draw + pixel model), 1,000 vs 10,000 --
    config = VisitInjectConfig()
    config.add_noise = True
    task = VisitInjectTask(config=config)
    run_times = {}
    for n in (1000, 10000):
        cat = catalog(vi, n, rng)
        start = time.perf_counter()
        result = task.run(visit_image=vi, injection_catalogs=[cat], flat=sim.flat)
        run_times[n] = time.perf_counter() - start
        ok = int(np.sum(result.injected_visit_image_catalog["injection_flag"] == 0))
        say(f"(c) task.run with {n} sources: {run_times[n]:.2f} s ({ok} unflagged); peak RSS {peak_rss_gb():.2f} GB")
        del result
    say(f"(c) 10,000 / 1,000 sources: {run_times[10000] / run_times[1000]:.2f}x  (target <= 10x)")

    # --- (b) end to end per detector ----------------------------------------
    from lsst.images import VisitImage

    cat = catalog(vi, 2000, rng)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "visit_image.fits")
        vi.write(src)
        start = time.perf_counter()
        image = VisitImage.read(src)
        image.write(os.path.join(tmp, "copy.fits"))
        io_only = time.perf_counter() - start
        del image
        start = time.perf_counter()
        image = VisitImage.read(src)
        result = task.run(visit_image=image, injection_catalogs=[cat], flat=sim.flat)
        result.injected_visit_image.write(os.path.join(tmp, "injected.fits"))
        end_to_end = time.perf_counter() - start
        del result, image
    say(f"(b) per detector, 2,000 sources: read+inject+write {end_to_end:.2f} s, read+write {io_only:.2f} s: "
        f"{end_to_end / io_only:.2f}x  (target <= 1.25x)")
    say(f"(d) peak RSS of the whole run: {peak_rss_gb():.2f} GB  (target <= 1.0 GB)")

    command = "cd /work/main && .venv/bin/python bench/run_bench.py" + (
        "" if tuple(args.shape) == (4000, 4072) else f" --shape {args.shape[0]} {args.shape[1]}")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = "?"
    header = [
        "# Benchmark results (issue 6)", "",
        f"Reproduce: `{command}` (commit {commit}, {time.strftime('%Y-%m-%d')}).", "",
        f"Machine: {machine()}.", "",
        "```",
    ]
    Path(args.out).write_text("\n".join(header + lines + ["```", ""]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
