"""``isrinject make-injection-pipeline`` and ``isrinject consolidate-catalogs``.

The options of ``make-injection-pipeline`` and their meaning are those of
``lsst.source.injection``'s ``make_injection_pipeline`` script (``-t``,
``-r``, ``-i``, ``-e``, ``-x``, ``-f``, ``--overwrite``, ``--prefix``,
``--instrument``, ``-c``, ``-a``, ``-s``).  ``consolidate-catalogs`` writes a collection's
injected catalogs, consolidated per visit, to one Parquet file.  Only
``argparse`` is imported here, so ``isrinject --help`` stays fast.
"""

from __future__ import annotations

__all__ = ["add_parser", "consolidate_catalogs_main", "make_injection_pipeline_main"]

import argparse
import logging
import os
import sys
from typing import Any


def make_injection_pipeline_main(args: argparse.Namespace) -> int:
    """Run ``isrinject make-injection-pipeline``; return the exit code."""
    from ..tasks.pipeline_tools import make_injection_pipeline

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.filename and os.path.exists(args.filename) and not args.overwrite:
        print(f"isrinject: error: {args.filename} exists; use --overwrite to replace it.", file=sys.stderr)
        return 1
    try:
        pipeline = make_injection_pipeline(
            dataset_type_name=args.dataset_type_name,
            reference_pipeline=args.reference_pipeline,
            injection_pipeline=args.injection_pipeline,
            exclude_subsets=args.exclude_subsets,
            excluded_tasks=args.excluded_tasks,
            prefix=args.prefix,
            instrument=args.instrument,
            config=args.config,
            additional_pipelines=args.additional_pipelines or (),
            subset_names=args.additional_subset or (),
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"isrinject: error: {err}", file=sys.stderr)
        return 1
    except ImportError as err:  # a task class of a pipeline file is not importable
        from ..tasks.messages import task_import_message

        pipelines = [args.reference_pipeline, args.injection_pipeline, *(args.additional_pipelines or ())]
        print(f"isrinject: error: {task_import_message(err, pipelines)}", file=sys.stderr)
        return 1
    if args.filename:
        if os.path.exists(args.filename):
            os.remove(args.filename)  # write_to_uri does not replace files
        pipeline.write_to_uri(args.filename)
        logging.getLogger("isrinject.tasks.pipeline_tools").info("Wrote %s.", os.path.realpath(args.filename))
    else:
        print(pipeline)
    return 0


def consolidate_catalogs_main(args: argparse.Namespace) -> int:
    """Run ``isrinject consolidate-catalogs``; return the exit code."""
    import numpy as np
    from lsst.daf.butler import Butler

    from ..engine.catalog.schema import write_catalog
    from ..engine.flags import FATAL_FLAGS
    from ..tasks.consolidate import collect_injected_catalogs

    if os.path.exists(args.output) and not args.overwrite:
        print(f"isrinject: error: {args.output} exists; use --overwrite to replace it.", file=sys.stderr)
        return 1
    butler = Butler.from_config(args.butler_config)
    collections = [c for item in args.collections for c in item.split(",") if c]
    try:
        catalog = collect_injected_catalogs(butler, collections, where=args.where or "", prefix=args.prefix)
    except LookupError as err:
        print(f"isrinject: error: {err}", file=sys.stderr)
        return 1
    write_catalog(catalog, args.output, format="parquet", overwrite=args.overwrite)
    injected = (np.asarray(catalog["injection_flag"]) & int(FATAL_FLAGS)) == 0
    primary = np.asarray(catalog["injected_isPrimary"])
    print(f"{'band':>4} {'visit':>8} {'detectors':>9} {'rows':>6} {'injected':>8} {'primary':>7}")
    for band in sorted(set(catalog["band"])):
        for visit in sorted(set(catalog["visit"][catalog["band"] == band])):
            rows = (np.asarray(catalog["band"]) == band) & (np.asarray(catalog["visit"]) == visit)
            n_detectors = len(set(catalog["detector"][rows]))
            print(f"{band:>4} {visit:>8} {n_detectors:>9} {int(rows.sum()):>6} {int((rows & injected).sum()):>8} "
                  f"{int((rows & primary).sum()):>7}")
    print(f"Wrote {len(catalog)} rows to {os.path.realpath(args.output)}.")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``make-injection-pipeline`` and ``consolidate-catalogs``."""
    from ..tasks.pipeline_tools import DEFAULT_EXCLUDED_TASKS

    parser = subparsers.add_parser(
        "make-injection-pipeline",
        help="Merge the injection task into a processing pipeline (source_injection compatible).",
        description=(
            "Merge the injection task into a reference pipeline: every task downstream of the dataset type "
            "injected into reads the injected datasets and writes its outputs under the prefix; upstream "
            "tasks are unchanged. The injection task joins the subsets of the task producing the dataset "
            "type, or of the tasks reading it when the pipeline does not make it (unless -e); each subset "
            "with a task injection touches gets an 'injected_<subset>' copy holding only those tasks. "
            "Writes the pipeline YAML (-f) or prints it."
        ),
    )
    parser.add_argument(
        "-t", "--dataset-type-name", required=True, metavar="TEXT", help="Dataset type to inject into (visit_image)."
    )
    parser.add_argument(
        "-r", "--reference-pipeline", required=True, metavar="FILE", help="Reference pipeline YAML file or URI."
    )
    parser.add_argument(
        "-i", "--injection-pipeline", metavar="FILE",
        help="One-task injection pipeline; default inferred from -t (pipelines/inject.yaml for visit_image).",
    )
    parser.add_argument(
        "-e", "--exclude-subsets", action="store_true",
        help="Do not add the injection task to the subsets of the task producing (or reading) the dataset type.",
    )
    parser.add_argument(
        "-x", "--excluded-tasks", metavar="TASKS", default=",".join(sorted(DEFAULT_EXCLUDED_TASKS)),
        help="Comma-separated task labels removed from the pipeline (default: %(default)s).",
    )
    parser.add_argument("-f", "--filename", metavar="FILE", help="Write the pipeline YAML here (else print it).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing -f file.")
    parser.add_argument(
        "--prefix", default="injected_", help="Prefix of the dataset types made downstream of the injection."
    )
    parser.add_argument("--instrument", metavar="CLASS", help="Fully qualified instrument class to add.")
    parser.add_argument(
        "-c", "--config", action="append", metavar="LABEL:KEY=VALUE",
        help="Config override of a task (the injection task included); repeatable.",
    )
    parser.add_argument(
        "-a", "--additional-pipelines", nargs="+", metavar="FILE",
        help="Pipelines whose tasks are added unchanged (e.g. pipelines/consolidate.yaml).",
    )
    parser.add_argument(
        "-s", "--additional-subset", action="append", metavar="NAME[:DESCRIPTION]",
        help="Subset receiving the tasks of -a (created if missing); repeatable.",
    )
    parser.set_defaults(func=make_injection_pipeline_main)

    consolidate = subparsers.add_parser(
        "consolidate-catalogs",
        help="Write a collection's injected catalogs, consolidated per visit, to one Parquet file.",
        description=(
            "Gather every injected_visit_image_catalog of the collections into one Parquet table (rows of "
            "every band and visit), consolidated per visit as pipelines/consolidate.yaml does: visit, "
            "detector and band columns, one row per detector a source was considered on, injected_isPrimary "
            "True on the row of the detector whose image holds the source centre; the flags' bits and "
            "meanings are in the table metadata."
        ),
    )
    consolidate.add_argument("-b", "--butler-config", required=True, metavar="REPO", help="Butler repository.")
    consolidate.add_argument(
        "-i", "--collections", required=True, action="append", metavar="COLL",
        help="Collections holding the injected outputs (comma-separated or repeated; find-first).",
    )
    consolidate.add_argument("-o", "--output", required=True, metavar="FILE", help="Parquet file to write.")
    consolidate.add_argument("--overwrite", action="store_true", help="Replace an existing output file.")
    consolidate.add_argument(
        "-d", "--where", metavar="QUERY", help="Data ID expression restricting the catalogs (e.g. \"band='r'\")."
    )
    consolidate.add_argument("--prefix", default="injected_", help="Prefix of the injected dataset types.")
    consolidate.set_defaults(func=consolidate_catalogs_main)
