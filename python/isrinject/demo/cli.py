"""``isrinject demo``: build a simulated repo, run pipetask, plot and check every band."""

from __future__ import annotations

__all__ = ["add_parser", "catalog_table", "discrimination_table", "main", "summary_table"]

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

# verdict is plain Python; numpy, results, stats and upstream import numpy,
# lsst.daf.butler, lsst.images and scipy (≈2 s), which ``isrinject --help``
# must not pay: they are imported where they are used.
from ..diagnostics import verdict as rule

if TYPE_CHECKING:
    from ..diagnostics.results import Completeness, VisitDiagnosis
    from ..diagnostics.stats import InjectionStatistics
    from ..diagnostics.verdict import Verdict

_DESCRIPTION = """\
Build a local butler repository of simulated Rubin visit images (one visit per
band, flats with two validity ranges, real stars in the observed scene, an
injection catalog of stars and Sersic galaxies reaching past the detection
limit), run `pipetask run ... -p pipelines/inject.yaml` on it as a user
would, and check every band:

  slope real / injected   slope of V·g² against I·g (g = f·R/c, per pixel) of
                          real source pixels and of injected pixels; ISR gives 1
  noise ratio             var(ΔI − M) / E[ΔV] of injected pixels (M: noiseless
                          model from a noise-free re-run)
  KS p                    two-sample KS test of the per-pixel slope residuals,
                          real vs injected (same flux range)
  relation rms            RMS of (V − V₀)/ΔV_ISR − 1 of injected pixels: each
                          against the ISR relation of its own pixel

The verdict is `isrinject.diagnostics.verdict` (the same as `isrinject
diagnose`): a band PASSes when every check passes (thresholds below the
table); the exit code is 0 only if every band passes.  The same checks of
what lsst.source.injection HEAD does with the same sources (emulated: one
variance-vs-image slope s per amplifier, variance s·M, noise Poisson(s·M)/s,
so the realized noise is off by 1/s²) must FAIL.  At catalog level it prints
the forced-PSF-photometry pulls and the detected fraction of the isolated
injected stars in the isrinject run, in the simulator's physical injection
of the same catalog (the truth) and in the upstream emulation; and the
classifier two-sample test (real stars of the image vs injected stars of
matched flux: ROC AUC, 0.5 = indistinguishable).  The diagnose PNGs (forum
cutout and flux–variance, maps, completeness, pulls, ROC) and JSON of every
band are written to the output directory.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="Run the embedded end-to-end demo (simulated repo → pipetask → checks and plots).",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repo", type=Path, default=None,
                        help="Butler repository directory (default: a temporary one; an existing demo repo "
                             "is reused).")
    parser.add_argument("--output", type=Path, default=Path("demo_output"),
                        help="Directory for PNGs and the summary (default: %(default)s).")
    parser.add_argument("--bands", nargs="+", default=["u", "g", "r", "i", "z", "y"], metavar="BAND",
                        help="Bands, one visit each (default: %(default)s).")
    parser.add_argument("--detectors", nargs="+", type=int, default=[0, 1], metavar="ID",
                        help="Detector IDs (default: %(default)s).")
    parser.add_argument("--size", type=int, default=768, help="Detector side [pixels] (default: %(default)s).")
    parser.add_argument("--units", choices=["nJy", "electron"], default="nJy",
                        help="Visit image units (default: %(default)s).")
    parser.add_argument("--illumination", action=argparse.BooleanOptionalAction, default=False,
                        help="Simulate and correct an illumination correction R (default: off).")
    parser.add_argument("--n-sources", type=int, default=450,
                        help="Injected sources per detector and band, on a grid of 24-pixel spacing "
                             "(default: %(default)s).")
    parser.add_argument("--source-types", nargs="+", default=["Star", "Star", "Sersic"], metavar="TYPE",
                        help="Source types, cycled (default: %(default)s).")
    parser.add_argument("--n-real-stars", type=int, default=300,
                        help="Real stars in the observed scene per detector, on the free grid slots, for the "
                             "classifier test (default: %(default)s).")
    parser.add_argument("--discriminate", action=argparse.BooleanOptionalAction, default=True,
                        help="Run the classifier two-sample test, real vs injected stars (default: on).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the simulation (default: %(default)s).")
    parser.add_argument("--faint-snr", type=float, default=1.5,
                        help="S/N of the faintest injected sources; below ≈ 5 the completeness curve drops "
                             "(default: %(default)s).")
    parser.add_argument("--keep", action="store_true",
                        help="Keep the temporary repository instead of deleting it (the demo ends by printing "
                             "where it is and the commands to use it; --repo DIR is always kept).")
    parser.set_defaults(func=main)
    return parser


def summary_table(results: dict[str, tuple[InjectionStatistics, Verdict]],
                  slopes: dict[str, float] | None = None) -> str:
    """Fixed-width per-band table of the statistics and the verdict (with ``slopes``: the upstream s)."""
    extra = f"{'s':>9}{'1/s²':>8}" if slopes else ""
    header = (f"{'band':<5}{'slope real':>11}{'slope inj':>11}{'Δslope':>9}{'noise ratio':>16}{'KS p':>10}"
              f"{'relation':>10}{'pixels r/i':>13}{extra}  result")
    lines = [header, "-" * len(header)]
    for band, (s, result) in results.items():
        cols = f"{slopes[band]:>9.4g}{slopes[band] ** -2:>8.3g}" if slopes else ""
        failed = [c.name for c in result.checks if c.passed is False]
        lines.append(
            f"{band:<5}{s.slope_real:>11.5f}{s.slope_injected:>11.5f}{100 * (s.slope_ratio - 1):>8.2f}%"
            f"{s.noise_ratio:>9.3f}±{s.noise_ratio_error:<6.3f}{s.ks_pvalue:>10.3g}{s.relation_rms:>10.2g}"
            f"{f'{s.n_real}/{s.n_injected}':>13}{cols}  {result.status}"
            + (f" ({', '.join(failed)})" if failed else "")
        )
    return "\n".join(lines)


def catalog_table(visits: dict[str, VisitDiagnosis]) -> str:
    """Per band and method: forced-photometry pulls of the isolated injected stars and their detection."""
    header = (f"{'band':<5}{'method':<11}{'stars':>6}{'pull mean':>15}{'pull std':>14}{'detected':>10}"
              f"{'50 % at mag':>13}")
    lines = [header, "-" * len(header)]
    for band, visit in visits.items():
        for k, label in enumerate(("isrinject", "truth", "upstream")):
            c = visit.catalog_checks.get(label)
            if c is None:
                continue
            p, comp = c.pulls, c.completeness
            lines.append(
                f"{band if k == 0 else '':<5}{label:<11}{p.n:>6}{p.mean:>+9.3f}±{p.mean_error:<5.3f}"
                f"{p.std:>8.3f}±{p.std_error:<5.3f}{f'{int(comp.n_detected.sum())}/{int(comp.n_injected.sum())}':>10}"
                f"{_half_completeness(comp):>13.2f}"
            )
    return "\n".join(lines)


def _half_completeness(comp: Completeness) -> float:
    """Magnitude where the completeness curve first falls through 50 % (linear between bin centres; NaN if never)."""
    import numpy as np

    frac, centres = comp.fraction, comp.centres
    ok = np.isfinite(frac)
    frac, centres = frac[ok], centres[ok]
    for k in range(1, len(frac)):
        if frac[k - 1] >= 0.5 > frac[k]:
            return float(centres[k - 1] + (frac[k - 1] - 0.5) / (frac[k - 1] - frac[k]) * (centres[k] - centres[k - 1]))
    return math.nan


def discrimination_table(visits: dict[str, VisitDiagnosis]) -> str:
    """Per band and arm: the classifier's ROC AUC (95 % bootstrap interval, real/injected stars)."""
    header = f"{'band':<5}{'arm':<11}{'AUC all matched stars':>36}{'AUC peak S/N ≥ 50':>36}"
    lines = [header, "-" * len(header)]
    for band, visit in visits.items():
        for k, label in enumerate(("isrinject", "truth", "upstream")):
            d = visit.discrimination.get(label)
            if d is None:
                continue
            everything = f"{d.auc:.3f} [{d.auc_interval[0]:.3f}, {d.auc_interval[1]:.3f}] ({d.n_real}/{d.n_injected})"
            high = (f"{d.auc_high_snr:.3f} [{d.auc_high_snr_interval[0]:.3f}, {d.auc_high_snr_interval[1]:.3f}] "
                    f"({d.n_real_high_snr}/{d.n_injected_high_snr})")
            lines.append(f"{band if k == 0 else '':<5}{label:<11}{everything:>36}{high:>36}")
    return "\n".join(lines)


def _upstream_slope(visit: VisitDiagnosis) -> float:
    """The median of the upstream arm's per-amplifier slopes s over the visit's detectors."""
    import numpy as np

    slopes = [s for values in visit.summary.get("upstream", {}).get("slopes", {}).values() for s in values]
    return float(np.median(slopes)) if slopes else math.nan


def _tables(visits: dict[str, VisitDiagnosis]) -> tuple[str, str, str, str]:
    isr = summary_table({band: (v.statistics, v.verdict) for band, v in visits.items()})
    upstream = {band: (v.upstream, v.upstream_verdict) for band, v in visits.items()
                if v.upstream is not None and v.upstream_verdict is not None}
    up = summary_table(upstream, {band: _upstream_slope(visits[band]) for band in upstream})
    return isr, up, catalog_table(visits), discrimination_table(visits)


def main(args: argparse.Namespace) -> int:
    """Run the demo; return 0 if every band passes."""
    from ..diagnostics.upstream import UPSTREAM_REFERENCE
    from .build import build_demo_repo, load_demo_repo
    from .notes import repository_note
    from .run import diagnose_demo, run_pipetask

    start = time.monotonic()
    temporary = args.repo is None
    root = Path(tempfile.mkdtemp(prefix="isrinject-demo-")) if temporary else args.repo
    pipetask_command: list[str] | None = None  # for the closing note, once pipetask has run
    try:
        if (root / "demo.json").exists():
            demo = load_demo_repo(root)
            print(f"Reusing the demo repository {root} (bands {' '.join(demo.bands)}, detectors "
                  f"{' '.join(map(str, demo.detectors))}); delete it to rebuild with other options.")
        else:
            print(f"Building the demo repository in {root} ...", flush=True)
            demo = build_demo_repo(
                root, bands=args.bands, detectors=args.detectors, shape=(args.size, args.size), units=args.units,
                do_illumination_correction=args.illumination, n_sources=args.n_sources,
                source_types=args.source_types, seed=args.seed, faint_snr=args.faint_snr,
                n_real_stars=args.n_real_stars,
            )
            print(f"  built in {time.monotonic() - start:.1f} s", flush=True)
        print("Running pipetask ...", flush=True)
        result = run_pipetask(demo.root, demo.layout.inputs,
                              do_illumination_correction=demo.do_illumination_correction)
        pipetask_command = result.command
        print("  " + " ".join(result.command))
        if result.returncode != 0:
            print(result.stderr[-5000:], file=sys.stderr)
            print(f"pipetask failed with exit code {result.returncode}.", file=sys.stderr)
            return 1
        print(f"  {result.wall_time:.1f} s; output RUN {result.output_run}", flush=True)
        args.output.mkdir(parents=True, exist_ok=True)
        diagnosis = diagnose_demo(demo, result.output_run, output_dir=args.output, discriminate=args.discriminate)
        visits = {band: diagnosis.by_band()[band] for band in demo.bands}
        for path in diagnosis.paths:
            if path.suffix == ".png":
                print(f"  wrote {path}")
        table, upstream_table, stars_table, auc_table = _tables(visits)
        (args.output / "summary.txt").write_text(
            f"isrinject\n{table}\n\n{UPSTREAM_REFERENCE}, emulated, on the same sources\n{upstream_table}\n\n"
            f"{rule.criteria_text()}\n"
            f"\nforced PSF photometry and detection of the isolated injected stars\n{stars_table}\n"
            f"\nclassifier two-sample test, real vs injected stars of matched flux\n{auc_table}\n"
        )
        print()
        print(table)
        print(f"\nFor comparison, {UPSTREAM_REFERENCE}, emulated on the same sources (must FAIL; s: its "
              "variance-vs-image slope, median over amplifiers; its realized noise / recorded variance is 1/s²):")
        print(upstream_table)
        print("\nCatalog level: forced PSF photometry (pull = (F_PSF − F_catalog)/σ_F) and detection of the "
              "isolated injected stars, in the isrinject run, in the simulator's physical injection of the same "
              "catalog (truth: what a correct injection must match) and in the upstream emulation:")
        print(stars_table)
        if auc_table.count("\n") > 1:
            print("\nCan a classifier tell real stars of the image from injected stars of matched flux? ROC AUC "
                  "(0.5: no), 95 % bootstrap interval, (real/injected stars):")
            print(auc_table)
        from .bright_stars import bright_star_report

        bright_table, bright_passed, bright_png = bright_star_report(demo.bands, args.output, seed=demo.seed)
        print("\nSaturated stars (issue 23): real stars of the simulator against the same stars injected at the "
              f"same places (trail lengths and mask extents within 10 %); figure {bright_png}:")
        print(bright_table)
        n_pass = sum(v.passed for v in visits.values())
        n_up_fail = sum(v.upstream_verdict is not None and not v.upstream_verdict.passed for v in visits.values())
        print(f"\n{rule.criteria_text()}.")
        print(f"isrinject: {n_pass}/{len(visits)} bands pass; upstream: {n_up_fail}/{len(visits)} bands fail; "
              f"total {time.monotonic() - start:.1f} s.")
        return 0 if n_pass == len(visits) and n_up_fail == len(visits) and bright_passed else 1
    finally:
        kept = not temporary or args.keep
        if not kept:
            shutil.rmtree(root, ignore_errors=True)
        print(repository_note(root, kept=kept, pipetask_command=pipetask_command))
