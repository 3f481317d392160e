"""``isrinject diagnose``: command-line front end of `isrinject.diagnostics.diagnose`."""

from __future__ import annotations

__all__ = ["add_parser", "run"]

import argparse
import sys

from .verdict import MIN_REAL_PIXELS, criteria_text

#: Side of the ``--around`` cutouts [pixels]: the 128×128 view of one injected star.
DEFAULT_CUTOUT_SIZE = 128


def _split(values: list[str] | None) -> list[str]:
    """Items of space- or comma-separated arguments (empty when none were given)."""
    return [item for value in values or [] for item in value.split(",") if item]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``diagnose`` sub-command."""
    parser = subparsers.add_parser(
        "diagnose",
        help="Check injected visit images against the ISR flux–variance relation (PNGs + JSON).",
        description=(
            "Read injected_visit_image, injected_visit_image_catalog, visit_image, the flat valid at each "
            "visit's time (and illuminationCorrection when the run used one) and the run's task config; "
            "write per visit a flux–variance PNG, per detector a flat/effective-gain/footprint PNG and a JSON "
            "file of statistics (per-pixel relation residual, realized-noise ratio, slopes and KS test of "
            "real vs injected pixels, flux recovery), and the catalog-level checks of the injected stars "
            "(forced PSF photometry pulls, detection completeness; JSON and completeness/pull PNGs). With fewer than "
            f"{MIN_REAL_PIXELS} real pixels above 5σ (a sparse field) the real-vs-injected comparisons are "
            "reported as not available and the verdict uses the checks that ran. " + criteria_text() + ". "
            "Exit code 0: every visit passed; 1: some visit failed; 2: a dataset is missing or bad input; "
            "3: nothing was injected (every catalog row flagged), so nothing was checked."
        ),
    )
    parser.add_argument("-b", "--butler", "--repo", dest="repo", required=True, help="Butler repository.")
    parser.add_argument("--collections", nargs="+", required=True,
                        help="Collections with the run's outputs (e.g. the pipetask -o chain).")
    parser.add_argument("--input-collections", nargs="+", default=None,
                        help="Collections with visit_image and the flat (default: --collections).")
    parser.add_argument("--visit", nargs="+", default=None, help="Visit ID(s) (default: all with outputs).")
    parser.add_argument("--detector", nargs="+", default=None, help="Detector ID(s) (default: all with outputs).")
    parser.add_argument("--band", nargs="+", default=None, help="Only visits in these band(s).")
    parser.add_argument("--instrument", default=None, help="Instrument (needed only if the repo has several).")
    parser.add_argument("--cutout", nargs=4, type=int, metavar=("X0", "Y0", "W", "H"), action="append", default=None,
                        help="Diagnose only this region of every detector [absolute pixels]; repeat for several "
                             "(pooled). Statistics and maps use the cutouts.")
    parser.add_argument("--around", nargs=2, type=float, metavar=("X", "Y"), action="append", default=None,
                        help="Diagnose a --cutout-size square cutout centred on this pixel position; repeatable.")
    parser.add_argument("--cutout-size", type=int, default=DEFAULT_CUTOUT_SIZE,
                        help="Side of the --around cutouts [pixels] (default: %(default)s).")
    parser.add_argument("--output", "-o", default="isrinject_diagnose", help="Output directory.")
    parser.add_argument("--compare-upstream", action="store_true",
                        help="Also evaluate what lsst.source.injection HEAD makes of the same model on the same "
                             "image (emulated: one variance-vs-image slope s per amplifier, variance s·M, noise "
                             "Poisson(s·M)/s).")
    parser.add_argument("--discriminate", action="store_true",
                        help="Classifier two-sample test: real stars of the image vs injected stars of matched "
                             "flux (cross-validated gradient boosting; ROC AUC with bootstrap interval, ROC PNG).")
    parser.add_argument("--config-dataset", default="inject_visit_config",
                        help="Dataset holding the run's task config (<label>_config).")
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of the KS subsample, the upstream arm's noise and the classifier.")
    parser.add_argument("--no-figures", action="store_true", help="Write only the JSON files.")
    parser.add_argument("--no-catalog-checks", action="store_true",
                        help="Skip the forced PSF photometry and detection completeness of the injected stars.")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the diagnosis; return the exit code."""
    from lsst.daf.butler import Butler

    from .diagnose import MissingDatasetError, boxes_around, diagnose

    try:
        visits = [int(v) for v in _split(args.visit)] or None
        detectors = [int(d) for d in _split(args.detector)] or None
    except ValueError as err:
        print(f"isrinject diagnose: error: visit and detector IDs must be integers ({err}).", file=sys.stderr)
        return 2
    try:
        cutouts = [tuple(box) for box in args.cutout or []]
        cutouts += boxes_around([tuple(xy) for xy in args.around or []], args.cutout_size)
    except ValueError as err:
        print(f"isrinject diagnose: error: {err}", file=sys.stderr)
        return 2
    try:
        butler = Butler.from_config(args.repo)
    except Exception as err:
        print(f"isrinject diagnose: error: cannot open butler repository {args.repo!r}: {err}", file=sys.stderr)
        return 2
    try:
        result = diagnose(
            butler, visit=visits, detector=detectors, collections=_split(args.collections),
            input_collections=_split(args.input_collections) or None, cutout=cutouts or None,
            output_dir=args.output, compare_upstream=args.compare_upstream, instrument=args.instrument,
            discriminate=args.discriminate,
            bands=_split(args.band) or None, config_dataset=args.config_dataset, seed=args.seed,
            figures=not args.no_figures, catalog_checks=not args.no_catalog_checks,
            progress=lambda line: print(line, flush=True),
        )
    except MissingDatasetError as err:
        print(f"isrinject diagnose: error: {err}", file=sys.stderr)
        return 2
    except (LookupError, ValueError) as err:
        print(f"isrinject diagnose: error: {err}", file=sys.stderr)
        return 2
    empty = [v.visit for v in result.visits if v.nothing_injected]
    if result.nothing_injected:
        print(f"Wrote {len(result.paths)} files to {args.output}; nothing injected — nothing to check (visits "
              f"{empty}: every catalog row is flagged; the pipetask log and injection_flag say why).")
        return 3
    note = f" (nothing injected in visits {empty})" if empty else ""
    print(f"Wrote {len(result.paths)} files to {args.output}; "
          f"{'all visits with injected sources passed' if result.passed else 'SOME VISITS FAILED'}{note}.")
    return 0 if result.passed else 1
