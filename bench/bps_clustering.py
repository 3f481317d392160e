"""Quantum clustering benchmark (issue 17): quanta per CPU-hour of ``bps submit`` on the demo.

    .venv/bin/python bench/bps_clustering.py [--repeats 2] [--out bench/RESULTS.md]

Builds the demo repository (`build_demo_repo` defaults: 6 bands × 2 detectors
of 256² px, 12 quanta) and submits it with ``bps/local_threads.yaml`` (2
threads), alternating in one run between

- **clustered**: the shipped configuration (``bps/clustering.yaml``: one job
  per visit, here 6 jobs of 2 quanta), and
- **unclustered**: the same with ``clusterAlgorithm:
  single_quantum_clustering`` (12 jobs of 1 quantum),

``--repeats`` times each (clustered, unclustered, clustered, …), so that the
load other users put on the machine falls on both alike.  CPU time is the
user + system time of the whole ``bps submit`` process tree (quantum-graph
generation, pipetaskInit, the jobs' ``pipetask run-qbb`` processes, the final
``butler aggregate-graph``: all children that bps waits for), from
``getrusage(RUSAGE_CHILDREN)``; quanta per CPU-hour = 12 / (CPU s / 3600).
The fixed steps are the same in both variants, so the difference is the
jobs' start-up.

Writes the section between the ``bps-clustering`` markers of ``--out``.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START, END = "<!-- bps-clustering:start -->", "<!-- bps-clustering:end -->"
UNCLUSTERED = "clusterAlgorithm: lsst.ctrl.bps.quantum_clustering_funcs.single_quantum_clustering\n"


def _environment(cwd: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PWD"] = str(cwd)  # bps's submitPath is ${PWD}/submit/...
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bps"), str(ROOT / "python"),
                                                      env.get("PYTHONPATH", "")]))
    env["ISRINJECT_DIR"] = str(ROOT)
    env.setdefault("USER", "isrinject")
    return env


def submit(config: Path, repo: Path, output: str, cwd: Path) -> tuple[float, float, int]:
    """Run ``bps submit config``; return (wall s, CPU s of the process tree, jobs run)."""
    cwd.mkdir(parents=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    result = subprocess.run(
        [str(BIN / "bps"), "submit", str(config), "-b", str(repo), "-i", "ISRSim/defaults", "-o", output],
        capture_output=True, text=True, cwd=cwd, env=_environment(cwd), timeout=3600,
    )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0 or "'tasks_failed_count': 0" not in result.stderr:
        raise RuntimeError(f"bps submit {config} failed:\n{result.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    jobs = len(list(cwd.glob("submit/**/logs/*/*/*.stderr")))
    return wall, cpu, jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="submissions of each variant (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "python"))
    from isrinject.demo.build import build_demo_repo

    with tempfile.TemporaryDirectory(prefix="isrinject-bench-bps-") as work:
        return _run(Path(work), args, build_demo_repo)


def _run(work: Path, args: argparse.Namespace, build_demo_repo) -> int:
    start = time.monotonic()
    demo = build_demo_repo(work / "repo")
    n_quanta = len(demo.bands) * len(demo.detectors)
    print(f"demo repository: {n_quanta} quanta at {demo.shape[0]}x{demo.shape[1]} px, built in "
          f"{time.monotonic() - start:.1f} s")
    unclustered = work / "unclustered.yaml"
    unclustered.write_text(f"includeConfigs:\n  - {ROOT / 'bps' / 'local_threads.yaml'}\n{UNCLUSTERED}")
    variants = {"clustered": ROOT / "bps" / "local_threads.yaml", "unclustered": unclustered}
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
    load = [os.getloadavg()[0]]
    for k in range(args.repeats):
        for name, config in variants.items():
            wall, cpu, jobs = submit(config, demo.root, f"u/bench/{name}", work / f"{name}{k}")
            runs[name].append((wall, cpu, jobs))
            load.append(os.getloadavg()[0])
            print(f"{name:12s} #{k + 1}: {jobs:2d} jobs, wall {wall:6.1f} s, CPU {cpu:6.1f} s, "
                  f"{n_quanta / (cpu / 3600):7.0f} quanta per CPU-hour")

    def median(name: str, index: int) -> float:
        return statistics.median(run[index] for run in runs[name])

    rate = {name: n_quanta / (median(name, 1) / 3600) for name in variants}
    lines = [
        START,
        "## Quantum clustering (issue 17)",
        "",
        f"Reproduce: `.venv/bin/python bench/bps_clustering.py --repeats {args.repeats}` "
        f"({datetime.date.today().isoformat()}).",
        "",
        f"Machine: nproc {os.cpu_count()}, Python {platform.python_version()}; **shared with other engineers' "
        f"work**: 1-min load average {min(load):.1f}-{max(load):.1f} during the run (2 cores), so wall times "
        "are inflated and only the ratios of this one run mean anything.",
        "",
        f"`bps submit bps/local_threads.yaml` (2 threads) on the demo ({n_quanta} quanta of "
        f"{demo.shape[0]}x{demo.shape[1]} px), the variants alternated, {args.repeats} submissions each. "
        "CPU = user + system time of the whole `bps submit` process tree (graph generation, pipetaskInit, "
        "the jobs, the final job).",
        "",
        "| variant | jobs | wall s (each) | CPU s (each) | quanta per CPU-hour (median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in variants:
        walls = ", ".join(f"{w:.1f}" for w, _, _ in runs[name])
        cpus = ", ".join(f"{c:.1f}" for _, c, _ in runs[name])
        lines.append(f"| {name} | {runs[name][0][2]} | {walls} | {cpus} | {rate[name]:.0f} |")
    saved = median("unclustered", 1) - median("clustered", 1)
    jobs_saved = runs["unclustered"][0][2] - runs["clustered"][0][2]
    lines += [
        "",
        f"Clustering: **{rate['clustered'] / rate['unclustered']:.2f}x** the quanta per CPU-hour, "
        f"{median('unclustered', 0) / median('clustered', 0):.2f}x faster in wall time (medians); "
        f"{saved:.1f} CPU s saved for {jobs_saved} fewer jobs = {saved / max(jobs_saved, 1):.1f} CPU s per "
        "job not started (the `pipetask run-qbb` start-up: imports, butler and quantum-graph loading).",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    text = args.out.read_text() if args.out.exists() else ""
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
