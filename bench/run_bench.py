"""isrinject speed benchmark on realistic catalogs (issues 14, 22): one command, one run.

    .venv/bin/python bench/run_bench.py [--out bench/RESULTS.md]

Every measurement runs in a FRESH PROCESS (one subprocess each, as every
BPS job is one), with nothing warmed up: the first Sérsic of a process pays
what a first Sérsic costs (GalSim's Hankel table for the reference, loading
the shipped table for isrinject).  Each child calls
`lsst.utils.threads.disable_implicit_threading`, as ``pipetask`` and BPS
jobs do.  Inputs are written to FITS/ECSV by the parent and read by the
children outside the timed region.  Catalogs have continuous Sérsic
indices.

(a) Two catalogs on a 2k × 2k nJy visit image with a flat of ones:
    "bright": 1,000 stars + 1,000 Sérsic galaxies, n uniform in [0.8, 4],
    half-light radius 0.3–1.5″, q 0.3–1, random beta, mag 18–24;
    "faint": 1,000 stars + 2,000 Sérsic, log-normal n (median 1.5, σ_ln 0.5,
    clipped to 0.5–6) and half-light radius (median 0.4″, σ_ln 0.5, clipped
    to 0.1–2″), mag 20–26.  Whole `VisitInjectTask.run` (pixel model,
    noise and variance included) vs the reference per-source draw alone
    (`reference_draw.py`: kernel → InterpolatedImage → Convolve →
    drawImage ``no_pixel``, as lsst.source.injection does), on
    source_injection's own stamp (GalSim's good size × 1) and, for
    continuity with the earlier results, on 1.5 × the good size.
(b) A 10k completeness catalog on a 4k × 4k image: half Sérsic (n uniform
    in [0.5, 6]), half-light radius 0.1–0.8″, mag 20–26: ms per source in
    ``task.run`` and in the source_injection-style reference (× 1), the
    latter on the catalog's first 1,000 rows (same mix).
(c) Per quantum, 4k × 4k, 2,000 sources of catalog (a)'s kind: read the
    VisitImage, read the flat's planes, inject in place, write, as
    ``runQuantum`` does; vs the injection's own I/O floor (the same reads
    and the write of the injected image with no injection compute) and vs
    reading and writing the VisitImage alone; medians of three processes.
    Also what the flat read and the INJECTED mask plane cost in the write.
(d) ``task.run`` with 10,000 vs 1,000 sources of catalog (a)'s kind, 4k × 4k.
(e) Peak RSS (``VmHWM``) of the quantum process of (c).

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
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"nproc {os.cpu_count()}, CPU {cpu}, memory {mem_kb / 1024**2:.1f} GiB, "
            f"Python {platform.python_version()}, 1-minute load average {load:.1f} at the start")


def catalog(
    vi, n: int, rng: np.random.Generator, *, mag: tuple[float, float] = (18.0, 24.0),
    half_light_radius: tuple[float, float] = (0.3, 1.5), sersic_n: tuple[float, float] = (0.8, 4.0),
    margin: int = 60, n_galaxies: int | None = None, log_normal: bool = False,
) -> Table:
    """n/2 stars then n/2 Sérsic galaxies at random positions (ra/dec).

    Galaxies: index uniform in ``sersic_n`` (continuous), half-light radius
    uniform in ``half_light_radius`` [arcsec], q uniform in 0.3–1, beta
    uniform in 0–180°; magnitudes uniform in ``mag`` for every source.
    ``n_galaxies`` (default n/2) of the rows are galaxies.  ``log_normal``:
    index and radius log-normal instead (medians 1.5 and 0.4″, σ_ln 0.5),
    clipped to ``sersic_n`` and ``half_light_radius``.
    """
    from lsst.images import XY

    bbox = vi.bbox
    x = rng.uniform(bbox.x.start + margin, bbox.x.stop - margin, n)
    y = rng.uniform(bbox.y.start + margin, bbox.y.stop - margin, n)
    sky = vi.sky_projection.pixel_to_sky(XY(x=x, y=y))
    galaxy = np.arange(n) >= n - (n // 2 if n_galaxies is None else n_galaxies)
    if log_normal:
        sersic = np.clip(rng.lognormal(np.log(1.5), 0.5, n), *sersic_n)
        radius = np.clip(rng.lognormal(np.log(0.4), 0.5, n), *half_light_radius)
    else:
        sersic = rng.uniform(*sersic_n, n)
        radius = rng.uniform(*half_light_radius, n)
    return Table({
        "injection_id": np.arange(n),
        "ra": sky.ra.deg, "dec": sky.dec.deg,
        "source_type": np.where(galaxy, "Sersic", "Star"),
        "mag": rng.uniform(*mag, n),
        "n": np.where(galaxy, sersic, 1.0),
        "half_light_radius": np.where(galaxy, radius, 0.0),
        "q": np.where(galaxy, rng.uniform(0.3, 1.0, n), 1.0),
        "beta": rng.uniform(0.0, 180.0, n),
    })


# --- fresh-process measurements ------------------------------------------------

def read_flat_planes(path: str):
    """The flat's image and variance planes, as `isrinject.tasks.inputs.read_flat`
    reads them through the butler's lsst.images formatter (no mask)."""
    from lsst.images import MaskedImage, MaskSchema, serialization

    with serialization.open_archive(path, cls=MaskedImage, partial=True) as reader:
        reader.get_tree()
        image, variance = (reader.get_component(name) for name in ("image", "variance"))
    return MaskedImage(image, variance=variance, mask_schema=MaskSchema([]))


def child(args: argparse.Namespace) -> None:
    """Run one measurement in this (fresh) process and print JSON.

    ``reference``: the per-source reference draw of every catalog row.
    ``run``: `VisitInjectTask.run` alone (inputs read untimed).  ``io``: read
    + write the VisitImage.  ``inject``: read it and the flat, inject,
    write, as ``VisitInjectTask.runQuantum`` does.  ``floor``: the same reads
    and write with no injection compute: the injected output of an
    ``inject`` run (``--injected``, read outside the timed phases) is
    written, so the write costs what the injected image's does.
    ``floor-no-injected``: as ``floor`` with the INJECTED planes cleared
    before the write (what the INJECTED footprint costs the writer).
    """
    from lsst.utils.threads import disable_implicit_threading

    disable_implicit_threading()  # as pipetask and BPS jobs do
    from lsst.images import VisitImage

    from isrinject.engine.memory import release_freed_memory
    from isrinject.tasks.visit import VisitInjectConfig, VisitInjectTask

    result: dict[str, float] = {"load_start": os.getloadavg()[0]}
    if args.output and os.path.exists(args.output):
        os.remove(args.output)
    if args.child in ("reference", "run"):
        image = VisitImage.read(args.visit_image)
        cat = Table.read(args.catalog)
        if args.child == "reference":
            import astropy.units as u

            from isrinject.engine.catalog import source_spec
            from isrinject.engine.draw import RenderSettings, sky_to_pixel
            from reference_draw import reference_draw

            settings = RenderSettings()
            if args.limit:
                cat = cat[:: max(1, len(cat) // args.limit)]
            xs, ys = sky_to_pixel(image.sky_projection, np.asarray(cat["ra"]), np.asarray(cat["dec"]))
            fluxes = (np.asarray(cat["mag"]) * u.ABmag).to_value(u.nJy)  # the image is in nJy
            rows = [source_spec({"source_type": str(row["source_type"]), **(
                {key: float(row[key]) for key in ("n", "half_light_radius", "q", "beta")}
                if row["source_type"] == "Sersic" else {})}) for row in cat]
            start = time.perf_counter()
            for values, x, y, flux in zip(rows, xs, ys, fluxes):
                reference_draw(values, x=x, y=y, flux=flux, psf=image.psf, sky_projection=image.sky_projection,
                               settings=settings, size_factor=args.size_factor)
            result["seconds"] = time.perf_counter() - start
            result["rows"] = len(cat)
        else:
            flat = read_flat_planes(args.flat)
            task = VisitInjectTask(config=VisitInjectConfig())
            start = time.perf_counter()
            out = task.run(visit_image=image, injection_catalogs=[cat], flat=flat, in_place=True)
            result["seconds"] = time.perf_counter() - start
            result["unflagged"] = int(np.sum(out.injected_visit_image_catalog["injection_flag"] == 0))
            sizes = np.asarray(out.injected_visit_image_catalog["injection_draw_size"], dtype=float)
            result["stamp_mpx"] = float(np.sum(sizes**2) / 1e6)
            result["rows"] = len(cat)
        result["peak_rss_gb"] = peak_rss_gb()
        result["load_end"] = os.getloadavg()[0]
        print(json.dumps(result))
        return
    start = time.perf_counter()
    image = VisitImage.read(args.visit_image)
    result["read_seconds"] = time.perf_counter() - start
    if args.child == "io":
        write_start = time.perf_counter()
        image.write(args.output)
    elif args.child.startswith("floor"):
        flat_start = time.perf_counter()
        flat = read_flat_planes(args.flat)
        result["read_flat_seconds"] = time.perf_counter() - flat_start
        del image, flat
        # Injection taking no time: the injected output (read outside the
        # timed phases) is what gets written.
        untimed_start = time.perf_counter()
        injected = VisitImage.read(args.injected)
        if args.child == "floor-no-injected":
            for name in ("INJECTED", "INJECTED_CORE"):
                bit = injected.mask.schema.bit(name)
                injected.mask.array[..., bit.index] &= ~np.asarray(bit.mask, dtype=injected.mask.array.dtype)
        start += time.perf_counter() - untimed_start
        write_start = time.perf_counter()
        injected.write(args.output)
    else:
        flat_start = time.perf_counter()
        flat = read_flat_planes(args.flat)
        result["read_flat_seconds"] = time.perf_counter() - flat_start
        cat = Table.read(args.catalog)
        task = VisitInjectTask(config=VisitInjectConfig())
        # As VisitInjectTask.runQuantum: inject into the quantum's own copy,
        # release the inputs and the freed heap, then write.
        run_start = time.perf_counter()
        out = task.run(visit_image=image, injection_catalogs=[cat], flat=flat, in_place=True)
        result["run_seconds"] = time.perf_counter() - run_start
        result["unflagged"] = int(np.sum(out.injected_visit_image_catalog["injection_flag"] == 0))
        injected_plane = out.injected_visit_image.mask.get("INJECTED")
        result["injected_fraction"] = float(np.mean(injected_plane))
        del image, flat, injected_plane
        release_freed_memory()
        write_start = time.perf_counter()
        out.injected_visit_image.write(args.output)
    result["write_seconds"] = time.perf_counter() - write_start
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_gb"] = peak_rss_gb()
    result["load_end"] = os.getloadavg()[0]
    print(json.dumps(result))


def run_median(repeats: int, *arguments: str) -> dict[str, float]:
    """The run of median total time among ``repeats`` fresh processes."""
    runs = sorted((run_child(*arguments) for _ in range(repeats)), key=lambda run: run["seconds"])
    return runs[len(runs) // 2]


def run_child(*arguments: str) -> dict[str, float]:
    completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *arguments],
                               capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark child {arguments[0]} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def simulated(shape: tuple[int, int], seed: int):
    """A simulated nJy visit image with a flat of ones (variance 0)."""
    from isrinject.sim import simulate_exposure

    flat = (np.ones(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32))
    return simulate_exposure(band="r", visit=1, detector=0, shape=shape, seed=seed, n_background_stars=20,
                             n_background_galaxies=10, flat=flat)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--small", type=int, nargs=2, default=(2000, 2000), metavar=("NY", "NX"),
                        help="shape of the image of (a)")
    parser.add_argument("--large", type=int, nargs=2, default=(4000, 4072), metavar=("NY", "NX"),
                        help="shape of the image of (b)-(e)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per median in (c)")
    parser.add_argument("--child", choices=("reference", "run", "io", "inject", "floor", "floor-no-injected"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--injected", help=argparse.SUPPRESS)
    parser.add_argument("--visit-image", help=argparse.SUPPRESS)
    parser.add_argument("--flat", help=argparse.SUPPRESS)
    parser.add_argument("--catalog", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--size-factor", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


def _write_inputs(tmp: str, small: tuple[int, int], large: tuple[int, int]) -> dict[str, str]:
    """Simulate the two visit images, write them, their flats and the catalogs into ``tmp``; return the paths."""
    paths: dict[str, str] = {}
    for name, shape, seed in (("small", small, 14), ("large", large, 6)):
        sim = simulated(shape, seed)
        paths[name] = os.path.join(tmp, f"visit_{name}.fits")
        paths[name + "_flat"] = os.path.join(tmp, f"flat_{name}.fits")
        sim.visit_image.write(paths[name])
        sim.flat.write(paths[name + "_flat"])
        if name == "small":
            cats = {
                "issue": catalog(sim.visit_image, 2000, np.random.default_rng(14)),
                "faint": catalog(sim.visit_image, 3000, np.random.default_rng(15), mag=(20.0, 26.0),
                                 half_light_radius=(0.1, 2.0), sersic_n=(0.5, 6.0), n_galaxies=2000,
                                 log_normal=True),
            }
        else:
            rng = np.random.default_rng(6)
            cats.update({
                "completeness": catalog(sim.visit_image, 10000, np.random.default_rng(7), mag=(20.0, 26.0),
                                        half_light_radius=(0.1, 0.8), sersic_n=(0.5, 6.0)),
                "quantum": catalog(sim.visit_image, 2000, rng),
                "1k": catalog(sim.visit_image, 1000, rng),
                "10k": catalog(sim.visit_image, 10000, rng),
            })
        del sim
    for name, table in cats.items():
        paths[name] = os.path.join(tmp, f"catalog_{name}.ecsv")
        table.write(paths[name])
    return paths


def main() -> None:
    args = _arguments()
    if args.child:
        child(args)
        return

    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    header_machine = machine()
    load_start = Path("/proc/loadavg").read_text().strip()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = _write_inputs(tmp, (args.small[0], args.small[1]), (args.large[0], args.large[1]))
        say(f"setup: simulated {args.small[0]}x{args.small[1]} and {args.large[0]}x{args.large[1]} nJy visit images "
            f"(flat of ones) and wrote the inputs in {time.perf_counter() - t0:.1f} s")

        # --- (a) ---------------------------------------------------------------
        small = ("--visit-image", paths["small"], "--flat", paths["small_flat"])
        labels = {
            "issue": "1,000 stars + 1,000 Sersic (continuous n 0.8-4, hlr 0.3-1.5 arcsec, mag 18-24)",
            "faint": "1,000 stars + 2,000 Sersic (log-normal n 0.5-6 and hlr 0.1-2 arcsec, mag 20-26)",
        }
        for name, label in labels.items():
            reference = run_child("reference", *small, "--catalog", paths[name], "--size-factor", "1.0")
            reference_old = run_child("reference", *small, "--catalog", paths[name], "--size-factor", "1.5")
            run = run_child("run", *small, "--catalog", paths[name])
            say(f"(a) {label} on {args.small[0]}x{args.small[1]}, fresh processes: isrinject task.run "
                f"{run['seconds']:.2f} s ({run['unflagged']} unflagged, {run['stamp_mpx']:.1f} Mpx of stamps, load "
                f"{run['load_start']:.1f})")
            say(f"(a)   vs source_injection's draw (good size x 1): {reference['seconds']:.2f} s (load "
                f"{reference['load_start']:.1f}) = {reference['seconds'] / run['seconds']:.1f}x faster  "
                "(target >= 20x)")
            say(f"(a)   vs the old reference (good size x 1.5): {reference_old['seconds']:.2f} s (load "
                f"{reference_old['load_start']:.1f}) = {reference_old['seconds'] / run['seconds']:.1f}x faster")

        # --- (b) ---------------------------------------------------------------
        large = ("--visit-image", paths["large"], "--flat", paths["large_flat"])
        completeness = run_child("run", *large, "--catalog", paths["completeness"])
        reference = run_child("reference", *large, "--catalog", paths["completeness"], "--size-factor", "1.0",
                              "--limit", "1000")
        per_run = 1e3 * completeness["seconds"] / completeness["rows"]
        per_reference = 1e3 * reference["seconds"] / reference["rows"]
        say(f"(b) 10,000-source completeness catalog (half Sersic, continuous n 0.5-6, hlr 0.1-0.8 arcsec, mag 20-26) "
            f"on {args.large[0]}x{args.large[1]}: task.run {completeness['seconds']:.2f} s = {per_run:.3f} ms per "
            f"source ({completeness['stamp_mpx']:.1f} Mpx of stamps, load {completeness['load_start']:.1f}); "
            f"source_injection-style reference (x 1) on every 10th row: {per_reference:.1f} ms per source "
            f"(load {reference['load_start']:.1f}), {per_reference / per_run:.0f}x  (target <= 0.5 ms per source)")

        # --- (c), (d), (e) -----------------------------------------------------
        output = os.path.join(tmp, "out.fits")
        injected_path = os.path.join(tmp, "injected_2000.fits")
        io_only = run_median(args.repeats, "io", "--visit-image", paths["large"], "--output", output)
        quantum = run_median(args.repeats, "inject", *large, "--output", injected_path, "--catalog", paths["quantum"])
        floor = run_median(args.repeats, "floor", *large, "--output", output, "--injected", injected_path)
        floor_clear = run_median(args.repeats, "floor-no-injected", *large, "--output", output,
                                 "--injected", injected_path)
        scaling = {n: run_child("run", *large, "--catalog", paths[n]) for n in ("1k", "10k")}
    say(f"(c) per 4k x 4k quantum, 2,000 sources, fresh processes (median of {args.repeats}): read VisitImage "
        f"{quantum['read_seconds']:.2f} s + read flat {quantum['read_flat_seconds']:.2f} s + task.run "
        f"{quantum['run_seconds']:.2f} s + write {quantum['write_seconds']:.2f} s = {quantum['seconds']:.2f} s "
        f"(INJECTED covers {100 * quantum['injected_fraction']:.0f} % of the image)")
    say(f"(c) I/O floor (same reads, write of the injected image, no compute): {floor['read_seconds']:.2f} + "
        f"{floor['read_flat_seconds']:.2f} + {floor['write_seconds']:.2f} = {floor['seconds']:.2f} s; "
        f"read + write of the VisitImage alone {io_only['read_seconds']:.2f} + {io_only['write_seconds']:.2f} = "
        f"{io_only['seconds']:.2f} s")
    say(f"(c) read+inject+write / read+write of the unmodified VisitImage: "
        f"{quantum['seconds'] / io_only['seconds']:.2f}x  (target <= 1.10x); / I/O floor: "
        f"{quantum['seconds'] / floor['seconds']:.2f}x")
    say("(c) the write of the injected image with INJECTED/INJECTED_CORE cleared: "
        f"{floor_clear['write_seconds']:.2f} s "
        f"(with them {floor['write_seconds']:.2f} s; the unmodified image {io_only['write_seconds']:.2f} s)")
    for n in ("1k", "10k"):
        say(f"(d) task.run with {n} sources of (a)'s kind on {args.large[0]}x{args.large[1]}: "
            f"{scaling[n]['seconds']:.2f} s ({scaling[n]['unflagged']} unflagged)")
    say(f"(d) 10,000 / 1,000 sources: {scaling['10k']['seconds'] / scaling['1k']['seconds']:.2f}x  (target <= 10x)")
    say(f"(e) peak RSS of the quantum process of (c): {quantum['peak_rss_gb']:.2f} GB; task.run with 10,000 sources "
        f"{scaling['10k']['peak_rss_gb']:.2f} GB; read + write alone {io_only['peak_rss_gb']:.2f} GB  "
        "(target <= 1.0 GB)")
    say(f"load: /proc/loadavg at the start {load_start}; at the end {Path('/proc/loadavg').read_text().strip()}")

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=HERE, check=False).stdout.strip() or "?"
    except OSError:
        commit = "?"
    header = [
        "# Benchmark results (issues 14 and 22: realistic catalogs, fresh processes)", "",
        f"Reproduce: `.venv/bin/python bench/run_bench.py` (commit {commit}, {time.strftime('%Y-%m-%d %H:%M')}).", "",
        f"Machine: {header_machine}.", "",
        "```",
    ]
    Path(args.out).write_text("\n".join(header + lines + ["```", ""]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
