"""``isrinject inject``: inject a catalog into visit image files, no butler needed.

The front end of `isrinject.tasks.files.inject_files`.  Only ``argparse`` is
imported at module level, so ``isrinject --help`` stays fast.
"""

from __future__ import annotations

__all__ = ["add_parser", "main"]

import argparse
import logging
import sys

_DESCRIPTION = """\
Inject the sources of a catalog file into a visit image file, with the flat
(and illumination correction) ISR divided it by, and write the injected image
and its catalog to new files.  Inputs: lsst.images FITS files; flats and
illumination corrections also as afw-written FITS (DP1 ExposureF: the IMAGE
and VARIANCE HDUs are read without afw); afw-written visit images only where
lsst.afw is importable (else convert them: python -m lsst.images convert IN
OUT.fits).  When the visit image records its flat (LSST CALIB UUID FLAT) and
the flat file its dataset ID (LSST BUTLER ID), they must match (-c
check_flat_provenance=False only warns).  An existing output is never
overwritten; inputs are never modified.
"""


def _overrides(items: list[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"-c/--config takes NAME=VALUE (e.g. noise_seed=3); got {item!r}.")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _config(args: argparse.Namespace) -> object:
    """The task configuration: defaults, then -C files, then -c overrides, in
    order and parsed as ``pipetask`` does (pipe_base's ``ConfigOverrides``)."""
    from lsst.pipe.base.configOverrides import ConfigOverrides

    from ..tasks.visit import VisitInjectConfig

    config = VisitInjectConfig()
    overrides = ConfigOverrides()
    for path in args.config_file or []:
        overrides.addFileOverride(path)
    for name, value in _overrides(args.config):
        if name not in VisitInjectConfig._fields:
            raise ValueError(f"-c {name}={value}: VisitInjectConfig has no field {name!r}.")
        overrides.addValueOverride(name, value)
    overrides.applyTo(config)
    return config


def main(args: argparse.Namespace) -> int:
    """Run ``isrinject inject``; return the exit code."""
    from lsst.pipe.base import NoWorkFound

    from ..tasks.files import FileModeError, inject_files
    from ..tasks.provenance import FlatProvenanceError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = _config(args)
        written = inject_files(
            visit_image=args.visit_image, flat=args.flat, illumination=args.illumination, catalog=args.catalog,
            output=args.output, output_catalog=args.output_catalog, config=config,
        )
    except (FileModeError, FlatProvenanceError, NoWorkFound, ValueError, TypeError) as err:
        print(f"isrinject inject: error: {err}", file=sys.stderr)
        return 1
    catalog = written.result.injected_visit_image_catalog
    print(f"wrote {written.image_path} and {written.catalog_path} ({len(catalog)} sources)")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``inject`` sub-command."""
    parser = subparsers.add_parser(
        "inject",
        help="Inject a catalog into a visit image file (no butler): lsst.images or afw-written FITS.",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--visit-image", required=True, metavar="FILE", help="The visit image (FITS).")
    parser.add_argument("--flat", required=True, metavar="FILE", help="The flat ISR divided the image by (FITS).")
    parser.add_argument(
        "--illumination", metavar="FILE",
        help="The illumination correction the image was divided by after ISR (turns on "
        "do_illumination_correction).",
    )
    parser.add_argument(
        "--catalog", required=True, metavar="FILE",
        help="Injection catalog (Parquet, ECSV, FITS table; source_injection columns). With a 'band' column "
        "only the image's band is used.",
    )
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="Injected visit image to write (.fits).")
    parser.add_argument(
        "--output-catalog", metavar="FILE",
        help="Output catalog to write (format from the extension); default <output stem>_catalog.parquet.",
    )
    parser.add_argument(
        "-c", "--config", action="append", metavar="NAME=VALUE",
        help="VisitInjectConfig override, parsed as pipetask -c does, e.g. -c noise_seed=3 "
        "-c \"scaling_source='constant'\" (strings need their own quotes).",
    )
    parser.add_argument(
        "-C", "--config-file", action="append", metavar="FILE", help="pex_config override file (as pipetask -C)."
    )
    parser.set_defaults(func=main)
    return parser
