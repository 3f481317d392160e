"""isrinject scale and speed benchmark (issue 6): one command, one run.

    .venv/bin/python bench/run_bench.py [--shape 4000 4072] [--out bench/RESULTS.md]

Prints and writes the four ratios of the issue, all measured in this run:

(a) draw compute of 1,000 stars + 1,000 Sersic galaxies on a 4k × 4k visit
    image: isrinject (`draw_source` with its PSF cache) vs the per-source
    reference draw (`reference_draw.py`: what lsst.source.injection does);
    also the whole injection compute (`VisitInjectTask.run`, pixel model
    included) vs the reference draw alone.
(b) end to end per detector in a fresh process, as ``runQuantum`` does:
    read the VisitImage FITS, read the flat's image and variance planes,
    inject 2,000 sources in place, write the VisitImage FITS; vs reading and
    writing the VisitImage alone; reported with and without the flat read,
    each the median of three fresh processes.  Also the I/O floor: the same
    reads and the write of the injected image with no injection compute.
(c) `VisitInjectTask.run` with 10,000 vs 1,000 sources (fresh processes).
(d) peak RSS (``VmHWM``) of the fresh process of (b), i.e. one quantum.

Not a test: targets are reported, never asserted.  ``--child`` is the
entry point of the fresh processes.
"""

from __future__ import annotations

import argparse
import json
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

N_VALUES = np.round(np.arange(0.5, 4.01, 0.25), 2)  # a discrete set of Sersic indices (see RESULTS.md)


def peak_rss_gb() -> float:
    """Peak resident memory of this process [GB].

    ``VmHWM`` of /proc/self/status: unlike ``ru_maxrss``, which Linux carries
    over from the parent through fork + exec, it belongs to this process's
    own address space.
    """
    for line in _proc_lines("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _proc_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in _proc_lines("/proc/cpuinfo")
                if line.startswith("model name")), "unknown")
    mem_kb = next((int(line.split()[1]) for line in _proc_lines("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return f"nproc {os.cpu_count()}, CPU {cpu}, memory {mem_kb / 1024**2:.1f} GiB, Python {platform.python_version()}"


def catalog(
    vi, n: int, rng: np.random.Generator, margin: int = 60, mag: tuple[float, float] = (18.0, 24.0),
    half_light_radius: tuple[float, float] = (0.3, 1.5),
) -> Table:
    """n/2 stars and n/2 Sersic galaxies at random positions (ra/dec).

    Galaxies: n from `N_VALUES`, half-light radius uniform in
    ``half_light_radius`` [arcsec] (0.3–1.5″), q 0.3–1; magnitudes uniform in
    ``mag`` (18–24) for every source.
    """
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
        "mag": rng.uniform(*mag, n),
        "n": np.where(galaxy, rng.choice(N_VALUES, n), 1.0),
        "half_light_radius": np.where(galaxy, rng.uniform(*half_light_radius, n), 0.0),
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


# --- fresh-process measurements ------------------------------------------------

def read_flat_planes(path: str):
    """The flat's image and variance planes, as `isrinject.inputs.read_flat`
    reads them through the butler's lsst.images formatter (no mask)."""
    from lsst.images import MaskedImage, MaskSchema, serialization

    with serialization.open_archive(path, cls=MaskedImage, partial=True) as reader:
        reader.get_tree()
        image, variance = (reader.get_component(name) for name in ("image", "variance"))
    return MaskedImage(image, variance=variance, mask_schema=MaskSchema([]))


def child(args: argparse.Namespace) -> None:
    """Run one measurement in this (fresh) process and print JSON.

    ``io``: read + write the VisitImage.  ``inject``: read it and the flat,
    inject, write, as ``VisitInjectTask.runQuantum`` does.  ``floor``: the
    same reads and write with no injection compute: the injected output of
    an ``inject`` run (``--injected``, read outside the timed phases) is
    written, so the write costs what the injected image's does.
    """
    from lsst.images import VisitImage

    from isrinject.memory import release_freed_memory
    from isrinject.task import VisitInjectConfig, VisitInjectTask

    result: dict[str, float] = {}
    if os.path.exists(args.output):
        os.remove(args.output)
    start = time.perf_counter()
    image = VisitImage.read(args.visit_image)
    result["read_seconds"] = time.perf_counter() - start
    if args.child == "io":
        write_start = time.perf_counter()
        image.write(args.output)
    elif args.child == "floor":
        flat_start = time.perf_counter()
        flat = read_flat_planes(args.flat)
        result["read_flat_seconds"] = time.perf_counter() - flat_start
        del image, flat
        # Injection taking no time: the injected output (read outside the
        # timed phases) is what gets written.
        untimed_start = time.perf_counter()
        injected = VisitImage.read(args.injected)
        start += time.perf_counter() - untimed_start
        write_start = time.perf_counter()
        injected.write(args.output)
    else:
        flat_start = time.perf_counter()
        flat = read_flat_planes(args.flat)
        result["read_flat_seconds"] = time.perf_counter() - flat_start
        cat = Table.read(args.catalog)
        config = VisitInjectConfig()
        task = VisitInjectTask(config=config)
        # As VisitInjectTask.runQuantum: inject into the quantum's own copy,
        # release the inputs and the freed heap, then write.
        run_start = time.perf_counter()
        out = task.run(visit_image=image, injection_catalogs=[cat], flat=flat, in_place=True)
        result["run_seconds"] = time.perf_counter() - run_start
        result["unflagged"] = int(np.sum(out.injected_visit_image_catalog["injection_flag"] == 0))
        del image, flat
        release_freed_memory()
        write_start = time.perf_counter()
        out.injected_visit_image.write(args.output)
    result["write_seconds"] = time.perf_counter() - write_start
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_gb"] = peak_rss_gb()
    print(json.dumps(result))


def run_median(repeats: int, *arguments: str) -> dict[str, float]:
    """The run of median total time among ``repeats`` fresh processes (single
    runs of the I/O on this machine vary by ±10 %)."""
    runs = sorted((run_child(*arguments) for _ in range(repeats)), key=lambda run: run["seconds"])
    return runs[len(runs) // 2]


def run_child(*arguments: str) -> dict[str, float]:
    completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *arguments],
                               capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark child {arguments[0]} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=2, default=(4000, 4072), metavar=("NY", "NX"))
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--child", choices=("io", "inject", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--injected", help=argparse.SUPPRESS)
    parser.add_argument("--visit-image", help=argparse.SUPPRESS)
    parser.add_argument("--flat", help=argparse.SUPPRESS)
    parser.add_argument("--catalog", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import galsim

    from isrinject.catalog import source_spec
    from isrinject.draw import RenderSettings, draw_source
    from isrinject.draw.psf_cache import PsfCache
    from isrinject.sim import simulate_exposure
    from isrinject.task import VisitInjectConfig, VisitInjectTask
    from reference_draw import reference_draw

    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    rng = np.random.default_rng(6)
    t0 = time.perf_counter()
    sim = simulate_exposure(band="r", visit=1, detector=0, shape=tuple(args.shape), seed=6,
                            n_background_stars=20, n_background_galaxies=10)
    vi = sim.visit_image
    say(f"setup: simulated {args.shape[0]}x{args.shape[1]} visit image in {time.perf_counter() - t0:.1f} s")
    settings = RenderSettings()
    config = VisitInjectConfig()
    flux = 1e4

    # --- (a) draw compute, 1,000 stars + 1,000 Sersic ----------------------
    table = catalog(vi, 2000, rng)
    rows = [source_spec(row) for row in rows_of(table)]
    xs, ys = np.asarray(table["x_pix"]), np.asarray(table["y_pix"])
    # GalSim builds (and caches) one Hankel table per Sersic index: whoever
    # draws first pays for it, so warm every index up before timing either side.
    for n in N_VALUES:
        galsim.Sersic(float(n), half_light_radius=1.0).drawKImage(nx=8, ny=8, scale=0.1)
    sizes = []
    timings = {}
    stars, galaxies = slice(0, 1000), slice(1000, 2000)
    for kind, sl in (("stars", stars), ("galaxies", galaxies)):
        start = time.perf_counter()
        for r, x, y in zip(rows[sl], xs[sl], ys[sl]):
            reference_draw(r, x=x, y=y, flux=flux, psf=vi.psf, sky_projection=vi.sky_projection, settings=settings)
        timings["reference", kind] = time.perf_counter() - start
    for kind, sl in (("stars", stars), ("galaxies", galaxies)):
        start = time.perf_counter()
        cache = PsfCache(vi.psf, vi.sky_projection, spacing=settings.psf_cache_spacing,
                         calib_flux_radius=settings.calib_flux_radius,
                         bounds=(vi.bbox.x.min, vi.bbox.x.max, vi.bbox.y.min, vi.bbox.y.max))
        cache.prepare(xs[sl], ys[sl])
        for r, x, y in zip(rows[sl], xs[sl], ys[sl]):
            sizes.append(draw_source(r, x=x, y=y, flux=flux, psf=vi.psf, sky_projection=vi.sky_projection,
                                     image_bbox=vi.bbox, settings=settings, psf_cache=cache).draw_size)
        timings["isrinject", kind] = time.perf_counter() - start
    ref_total = timings["reference", "stars"] + timings["reference", "galaxies"]
    new_total = timings["isrinject", "stars"] + timings["isrinject", "galaxies"]
    galaxy_sizes = np.array(sizes[1000:])
    say(f"(a) stamp sides: stars {sizes[0]} px; galaxies median {np.median(galaxy_sizes):.0f}, "
        f"90th percentile {np.percentile(galaxy_sizes, 90):.0f}, max {galaxy_sizes.max()} px "
        f"({np.sum(galaxy_sizes.astype(float) ** 2) / 1e6:.0f} Mpx in all)")
    say("(a) draw compute, 1,000 stars + 1,000 Sersic (s): "
        f"reference {ref_total:.2f} (stars {timings['reference', 'stars']:.2f}, galaxies "
        f"{timings['reference', 'galaxies']:.2f}); isrinject {new_total:.2f} (stars "
        f"{timings['isrinject', 'stars']:.2f}, galaxies {timings['isrinject', 'galaxies']:.2f})")
    say(f"(a) speed-up: total {ref_total / new_total:.1f}x, stars "
        f"{timings['reference', 'stars'] / timings['isrinject', 'stars']:.1f}x, galaxies "
        f"{timings['reference', 'galaxies'] / timings['isrinject', 'galaxies']:.1f}x  (target >= 10x)")
    task = VisitInjectTask(config=config)
    start = time.perf_counter()
    task.run(visit_image=vi, injection_catalogs=[table], flat=sim.flat)
    run_2000 = time.perf_counter() - start
    say(f"(a) whole injection compute (task.run, pixel model and noise included) for the same 2,000 sources: "
        f"{run_2000:.2f} s = {ref_total / run_2000:.1f}x faster than the reference draw alone")

    # Its own generator, so the catalogs of (b)-(d) stay those of earlier runs.
    typical = catalog(vi, 10000, np.random.default_rng(7), mag=(20.0, 26.0), half_light_radius=(0.1, 0.8))
    start = time.perf_counter()
    task.run(visit_image=vi, injection_catalogs=[typical], flat=sim.flat)
    run_typical = time.perf_counter() - start
    say(f"(a) a typical completeness catalog (10,000 sources, half Sersic, mag 20-26, half-light radius "
        f"0.1-0.8 arcsec): task.run {run_typical:.2f} s = {1e3 * run_typical / len(typical):.2f} ms per source")

    # --- (b), (c), (d): fresh processes on FITS files ------------------------
    with tempfile.TemporaryDirectory() as tmp:
        visit_path, flat_path = os.path.join(tmp, "visit_image.fits"), os.path.join(tmp, "flat.fits")
        vi.write(visit_path)
        sim.flat.write(flat_path)
        catalogs = {}
        for n in (1000, 2000, 10000):
            catalogs[n] = os.path.join(tmp, f"catalog_{n}.ecsv")
            (table if n == 2000 else catalog(vi, n, rng)).write(catalogs[n])
        del sim, vi
        common = ("--visit-image", visit_path)
        output = os.path.join(tmp, "out.fits")
        io_only = run_median(3, "io", *common, "--output", output)
        injected_path = os.path.join(tmp, "injected_2000.fits")
        inject = {2000: run_median(3, "inject", *common, "--output", injected_path, "--flat", flat_path,
                                   "--catalog", catalogs[2000])}
        floor = run_median(3, "floor", *common, "--output", output, "--flat", flat_path, "--injected", injected_path)
        for n in (1000, 10000):
            inject[n] = run_child("inject", *common, "--output", output, "--flat", flat_path, "--catalog", catalogs[n])
    quantum = inject[2000]
    say(f"(b) per detector, fresh process, 2,000 sources: read VisitImage {quantum['read_seconds']:.2f} s + read flat "
        f"{quantum['read_flat_seconds']:.2f} s + task.run {quantum['run_seconds']:.2f} s + write "
        f"{quantum['write_seconds']:.2f} s = {quantum['seconds']:.2f} s; read + write alone "
        f"{io_only['read_seconds']:.2f} + {io_only['write_seconds']:.2f} = {io_only['seconds']:.2f} s")
    without_flat = quantum["seconds"] - quantum["read_flat_seconds"]
    say(f"(b) read+inject+write / read+write: {quantum['seconds'] / io_only['seconds']:.2f}x with the flat read, "
        f"{without_flat / io_only['seconds']:.2f}x without it  (target <= 1.25x)")
    floor_without_flat = floor["seconds"] - floor["read_flat_seconds"]
    say(f"(b) I/O floor, same quantum with no injection compute: read VisitImage {floor['read_seconds']:.2f} s + read "
        f"flat {floor['read_flat_seconds']:.2f} s + write the injected image {floor['write_seconds']:.2f} s = "
        f"{floor['seconds'] / io_only['seconds']:.2f}x of read + write ({floor_without_flat / io_only['seconds']:.2f}x "
        "without the flat read)")
    for n in (1000, 10000):
        say(f"(c) task.run with {n} sources: {inject[n]['run_seconds']:.2f} s ({inject[n]['unflagged']} unflagged)")
    say(f"(c) 10,000 / 1,000 sources: {inject[10000]['run_seconds'] / inject[1000]['run_seconds']:.2f}x  "
        "(target <= 10x)")
    say(f"(d) peak RSS of one quantum (fresh process of (b), 2,000 sources): {inject[2000]['peak_rss_gb']:.2f} GB; "
        f"10,000 sources {inject[10000]['peak_rss_gb']:.2f} GB; read + write alone {io_only['peak_rss_gb']:.2f} GB  "
        "(target <= 1.0 GB)")

    command = ".venv/bin/python bench/run_bench.py" + (
        "" if tuple(args.shape) == (4000, 4072) else f" --shape {args.shape[0]} {args.shape[1]}")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=HERE, check=False).stdout.strip() or "?"
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
