"""Speed of transient injection into difference images (issue 27), per quantum.

    .venv/bin/python bench/difference_bench.py [--shape 2000 2000] [--out bench/RESULTS_difference.md]

One DMTN-319 detector's worth of fakes (50 hostless + 100 hosted point
sources, mag 20–25.5) on a simulated difference image, in FRESH PROCESSES
(first call included, `disable_implicit_threading` as pipetask does), each
phase timed as ``runQuantum`` does it: read the inputs, inject, write.

- ``direct-template`` / ``direct-science``: `DifferenceInjectTask` on the
  template-convolved / science-convolved difference image (read the
  DifferenceImage and the flat's planes, ``run(in_place=True)``, write).
- ``reference-template`` / ``reference-science``: what the peer route does
  at least: inject into the science visit (`VisitInjectTask`, read the visit
  image and flat, run) and subtract the template again with the known kernel
  (one FFT convolution of the template, or of the science image and its
  variance), then write the difference.  Re-running ip_diffim also fits the
  kernel, decorrelates and needs afw; this reference does none of that, so
  it is a lower bound on the peer's cost.

Not a test: ratios are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _catalog(difference, rng: np.random.Generator, n_hostless: int = 50, n_hosted: int = 100):
    """Point sources at random positions 40 px inside the image (ra/dec)."""
    from astropy.table import Table
    from lsst.images import XY

    n = n_hostless + n_hosted
    bbox = difference.bbox
    x = rng.uniform(bbox.x.start + 40, bbox.x.stop - 40, n)
    y = rng.uniform(bbox.y.start + 40, bbox.y.stop - 40, n)
    sky = difference.sky_projection.pixel_to_sky(XY(x=x, y=y))
    return Table({"injection_id": np.arange(n), "ra": sky.ra.deg, "dec": sky.dec.deg,
                  "source_type": ["Star"] * n, "mag": rng.uniform(20.0, 25.5, n)})


def setup(work: Path, shape: tuple[int, int]) -> None:
    """Simulate one science visit, its two differences and write every input."""
    from isrinject.sim import simulate_exposure
    from isrinject.sim.difference import difference_from_scene, gaussian_sigma

    options: dict = {"band": "r", "visit": 77, "detector": 0, "shape": shape, "seed": 5, "units": "nJy",
                     "psf_sigma_pixels": 2.2, "n_background_stars": 200, "n_background_galaxies": 100}
    science = simulate_exposure(**options)
    science.visit_image.write(str(work / "science.fits"))
    science.flat.write(str(work / "flat.fits"))
    meta = {"science_sigma": gaussian_sigma(science.visit_image)}
    for convolved, template_sigma in (("template", 1.6), ("science", 3.0)):
        scene = simulate_exposure(**{**options, "psf_sigma_pixels": template_sigma, "add_noise": False})
        pair = difference_from_scene(science, scene.source_model_njy, template_psf_sigma=template_sigma,
                                     convolved=convolved, seed=3)
        pair.difference_image.write(str(work / f"difference_{convolved}.fits"))
        np.save(work / f"template_{convolved}.npy", pair.template_image)
        np.save(work / f"template_variance_{convolved}.npy", pair.template_variance)
        meta[f"template_sigma_{convolved}"] = template_sigma
        if convolved == "template":
            _catalog(pair.difference_image, np.random.default_rng(1)).write(work / "catalog.ecsv")
    (work / "meta.json").write_text(json.dumps(meta))


def child(mode: str, work: Path) -> dict[str, float]:
    """One measurement in this fresh process."""
    from lsst.utils.threads import disable_implicit_threading

    disable_implicit_threading()
    from astropy.table import Table
    from lsst.images import DifferenceImage, MaskedImage, VisitImage

    from isrinject import DifferenceInjectConfig, DifferenceInjectTask, VisitInjectConfig, VisitInjectTask
    from isrinject.sim.difference import SimulatedDifference, gaussian_matching_kernel

    catalog = Table.read(work / "catalog.ecsv")
    convolved = mode.split("-")[1]
    out = work / f"out_{mode}.fits"
    if out.exists():
        out.unlink()
    times: dict[str, float] = {}
    start = time.perf_counter()
    if mode.startswith("direct"):
        difference = DifferenceImage.read(str(work / f"difference_{convolved}.fits"))
        times["read image"] = time.perf_counter() - start
        start = time.perf_counter()
        flat = MaskedImage.read(str(work / "flat.fits"))
        times["read flat"] = time.perf_counter() - start
        science_psf = VisitImage.read(str(work / "science.fits")).psf if convolved == "science" else None
        start = time.perf_counter()
        result = DifferenceInjectTask(config=DifferenceInjectConfig()).run(
            difference_image=difference, injection_catalogs=[catalog], flat=flat, science_psf=science_psf,
            in_place=True,
        )
        times["inject"] = time.perf_counter() - start
        image = result.injected_difference_image
    else:
        science = VisitImage.read(str(work / "science.fits"))
        times["read image"] = time.perf_counter() - start
        start = time.perf_counter()
        flat = MaskedImage.read(str(work / "flat.fits"))
        times["read flat"] = time.perf_counter() - start
        meta = json.loads((work / "meta.json").read_text())
        start = time.perf_counter()
        injected = VisitInjectTask(config=VisitInjectConfig()).run(
            visit_image=science, injection_catalogs=[catalog], flat=flat, in_place=True
        ).injected_visit_image
        times["inject"] = time.perf_counter() - start
        pair = SimulatedDifference(
            science=None,  # type: ignore[arg-type]  # subtract() needs only the template and kernel
            template_image=np.load(work / f"template_{convolved}.npy"),
            template_variance=np.load(work / f"template_variance_{convolved}.npy"),
            template_psf_sigma=meta[f"template_sigma_{convolved}"],
            kernel=gaussian_matching_kernel(
                float(np.sqrt(abs(meta["science_sigma"] ** 2 - meta[f"template_sigma_{convolved}"] ** 2))),
                science.bbox,
            ),
            convolved=convolved,  # type: ignore[arg-type]
            difference_image=None,  # type: ignore[arg-type]
        )
        start = time.perf_counter()
        image = pair.subtract(injected)
        times["subtract"] = time.perf_counter() - start
    start = time.perf_counter()
    image.write(str(out))
    times["write"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=2, default=(2000, 2000))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    lines = [f"machine: nproc {os.cpu_count()}, 1-minute load average {os.getloadavg()[0]:.1f} at the start"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        setup(work, tuple(args.shape))
        lines.append(f"setup: {args.shape[0]}x{args.shape[1]} science visit, two differences, 150 fakes: "
                     f"{time.perf_counter() - start:.1f} s")
        results = {}
        for mode in ("direct-template", "reference-template", "direct-science", "reference-science"):
            ran = subprocess.run([sys.executable, __file__, "--child", mode, str(work)], capture_output=True,
                                 text=True, check=True)
            results[mode] = json.loads(ran.stdout.strip().splitlines()[-1])
            phases = ", ".join(f"{k} {v:.2f} s" for k, v in results[mode].items())
            lines.append(f"{mode}: {phases}")
        for convolved in ("template", "science"):
            direct, reference = results[f"direct-{convolved}"], results[f"reference-{convolved}"]
            lines.append(
                f"{convolved}-convolved: per quantum direct {direct['total']:.2f} s vs inject + subtract "
                f"{reference['total']:.2f} s = {reference['total'] / direct['total']:.2f}x; compute only "
                f"{direct['inject']:.2f} s vs {reference['inject'] + reference['subtract']:.2f} s"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
