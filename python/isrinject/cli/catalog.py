"""``isrinject generate-catalog``, ``isrinject ingest-catalog`` and ``isrinject show-source-types``.

The options follow ``lsst.source.injection``'s ``generate_injection_catalog``
and ``ingest_injection_catalog`` scripts (``-a/--ra-lim``, ``-d/--dec-lim``,
``-m/--mag-lim``, ``-n/--number``, ``-s/--density``, ``-p/--parameter``,
``--seed``, ``-b/--butler-config``, ``-t/--dataset-type-name``, ``-i FILE
[BAND ...]``).  Differences: ``generate-catalog -o`` is the output *file*
(``-f/--filename`` also works); the output RUN collection is ``--run`` (or
``--output-collection``).
"""

from __future__ import annotations

__all__ = ["add_parser", "generate_main", "ingest_main", "show_source_types_main"]

import argparse
import logging
import sys
from typing import Any

_LOG = logging.getLogger("isrinject.engine.catalog")


def _column_map(items: list[str] | None) -> dict[str, str]:
    mapping = {}
    for item in items or []:
        standard, sep, configured = item.partition("=")
        if not sep or not standard or not configured:
            raise ValueError(f"--column takes STANDARD=NAME (e.g. ra=RA_DEG); got {item!r}.")
        mapping[standard] = configured
    return mapping


def _add_validation_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("validation")
    group.add_argument(
        "--stamp-prefix", default="", help="Prefix of Stamp file names (the task's stamp_prefix)."
    )
    group.add_argument("--no-check-stamps", action="store_true", help="Do not check that Stamp files exist.")
    group.add_argument("--max-draw-size", type=int, default=10000, help="Largest allowed draw_size (pixels).")
    group.add_argument(
        "--column",
        action="append",
        metavar="STANDARD=NAME",
        help="Catalog column NAME holds the standard column STANDARD (like the task's col_* fields).",
    )
    group.add_argument(
        "--pixel-scale", type=float, help="Pixel scale (arcsec/pixel) for pixel↔angle unit columns."
    )


def _validate(table: Any, args: argparse.Namespace) -> Any:
    from ..engine.catalog.plausibility import DEFAULT_PLAUSIBLE_MAG_RANGE, implausible_magnitude_message
    from ..engine.catalog.validate import validate_catalog

    validated = validate_catalog(
        table,
        column_names=_column_map(args.column),
        pixel_scale_arcsec=args.pixel_scale,
        max_draw_size=args.max_draw_size,
        stamp_prefix=args.stamp_prefix,
        check_stamps=not args.no_check_stamps,
        hint_style="cli",
    )
    # Legal but implausible magnitudes are ingested; say so now, not only when the task runs.
    if message := implausible_magnitude_message(validated, DEFAULT_PLAUSIBLE_MAG_RANGE):
        _LOG.warning("%s", message)
    return validated


def _error(message: str) -> int:
    print(f"isrinject: error: {message}", file=sys.stderr)
    return 1


def generate_main(args: argparse.Namespace) -> int:
    """Run ``isrinject generate-catalog``; return the exit code."""
    from ..engine.catalog.generate import generate_injection_catalog, visit_regions
    from ..engine.catalog.ingest import ingest_injection_catalog
    from ..engine.catalog.schema import write_catalog

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        parameters: dict[str, Any] = {}  # column → values, passed by name
        for item in args.parameter or []:
            if len(item) < 2:
                raise ValueError(f"-p/--parameter needs a column name and at least one value; got {item!r}.")
            # As source_injection: all numbers → floats, otherwise all strings.
            try:
                parameters[item[0]] = [float(v) for v in item[1:]]
            except ValueError:
                parameters[item[0]] = list(item[1:])
        ranges = {}
        for name, low, high in args.parameter_range or []:
            ranges[name] = (float(low), float(high))
        wants_footprint = bool(args.visits or args.where)
        if (args.ra_lim is None or args.dec_lim is None) and not wants_footprint:
            raise ValueError("Give -a/--ra-lim and -d/--dec-lim, or visits (--visits/--where with -b REPO).")
        if (wants_footprint or args.band) and not args.butler_config:
            raise ValueError("--visits/--where and --band need a repository: -b/--butler-config REPO.")
        if args.band and not args.run:
            raise ValueError("Ingesting into a repository needs --run COLLECTION as well as --band.")
        if args.run and not args.band:
            raise ValueError("Ingesting into --run needs at least one --band.")
        butler = None
        regions = None
        if args.butler_config:
            from lsst.daf.butler import Butler

            butler = Butler.from_config(args.butler_config, writeable=bool(args.band))
            if wants_footprint:
                regions = visit_regions(
                    butler,
                    visits=args.visits,
                    where=args.where or "",
                    instrument=args.instrument,
                    collections=args.collections,
                    dataset_type=args.dataset_type,
                    detectors=args.detectors or args.transients,
                )
        if args.transients:
            table = _transients(args, regions)
        else:
            table = generate_injection_catalog(
                ra_lim=args.ra_lim,
                dec_lim=args.dec_lim,
                mag_lim=args.mag_lim,
                number=args.number,
                density=args.density,
                seed=args.seed,
                placement=args.placement,
                min_separation=args.min_separation,
                regions=regions,
                parameter_ranges=ranges,
                **parameters,
            )
        if args.output:
            write_catalog(table, args.output, format=args.format, overwrite=args.overwrite)
            _LOG.info("Wrote %d sources to %s.", len(table), args.output)
        if butler is not None and args.band:  # --band without -b was refused above
            from ..engine.catalog.validate import check_catalog

            check_catalog(table, check_stamps=False).raise_if_problems()
            for band in args.band:
                ingest_injection_catalog(
                    butler, table, band, args.run, dataset_type_name=args.dataset_type_name
                )
        if not args.output and not args.band:
            table.pprint(max_lines=-1 if len(table) <= 50 else 50, max_width=-1)
    except (ValueError, LookupError, OSError) as err:
        return _error(str(err))
    return 0


def ingest_main(args: argparse.Namespace) -> int:
    """Run ``isrinject ingest-catalog``; return the exit code."""
    from lsst.daf.butler import Butler

    from ..engine.catalog.ingest import ingest_injection_catalog
    from ..engine.catalog.schema import read_catalog
    from ..engine.catalog.validate import CatalogValidationError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        # (file, band) pairs from "-i FILE [BAND ...]" and "--band".
        by_band: dict[str, list[str]] = {}
        for item in args.injection_catalog:
            path, bands = item[0], item[1:] or list(args.band or [])
            if not bands:
                raise ValueError(f"No band for {path!r}: give -i FILE BAND [BAND ...] or --band BAND.")
            for band in bands:
                by_band.setdefault(band, []).append(path)
        tables: dict[str, Any] = {}
        failures = []
        for path in dict.fromkeys(p for paths in by_band.values() for p in paths):
            try:
                tables[path] = _validate(read_catalog(path, args.format), args)
            except (CatalogValidationError, ValueError) as err:
                failures.append(f"{path}: {err}")
        if failures:
            return _error("invalid injection catalog(s), nothing ingested:\n" + "\n".join(failures))
        butler = Butler.from_config(args.butler_config, writeable=True)
        for band, paths in by_band.items():
            # Several files: ingest_injection_catalog stacks the list (same vstack).
            table = tables[paths[0]] if len(paths) == 1 else [tables[p] for p in paths]
            ingest_injection_catalog(
                butler, table, band, args.output_collection, dataset_type_name=args.dataset_type_name
            )
    except (ValueError, LookupError, OSError) as err:
        return _error(str(err))
    return 0


def show_source_types_main(args: argparse.Namespace) -> int:
    """Run ``isrinject show-source-types``; return the exit code."""
    import shutil

    from ..engine.catalog.source_types import SOURCE_TYPE_PARAMETERS, describe_common_columns, source_type_parameters

    width = int(args.wrap_width) if args.wrap_width else shutil.get_terminal_size().columns
    try:
        chosen = [source_type_parameters(name) for name in args.source_types] or list(SOURCE_TYPE_PARAMETERS.values())
    except ValueError as err:
        return _error(str(err))
    blocks = [describe_common_columns(width)] if not args.source_types else []
    blocks += [parameters.describe(width) for parameters in chosen]
    print("\n".join(blocks))
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``generate-catalog``, ``ingest-catalog`` and ``show-source-types``."""
    _add_generate_parser(subparsers)
    _add_ingest_parser(subparsers)
    _add_show_source_types_parser(subparsers)


def _transients(args: argparse.Namespace, regions: list[Any] | None) -> Any:
    """``--transients``: hostless and hosted transients per detector (DMTN-319 proportions)."""
    from ..engine.catalog.schema import read_catalog
    from ..engine.catalog.transients import transient_catalog

    if args.limiting_mag is None:
        raise ValueError("--transients needs --limiting-mag M (the 5σ depth; transients go to M + 1).")
    if args.parameter or args.parameter_range or args.mag_lim:
        raise ValueError(
            "--transients makes its own rows: drop -p/--parameter, -r/--parameter-range and -m/--mag-lim."
        )
    if regions is None:
        from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

        (ra0, ra1), (dec0, dec1) = args.ra_lim, args.dec_lim
        corners = [(ra0, dec0), (ra1, dec0), (ra1, dec1), (ra0, dec1)]
        regions = [ConvexPolygon([UnitVector3d(LonLat.fromDegrees(ra, dec)) for ra, dec in corners])]
    hosts = read_catalog(args.hosts) if args.hosts else None
    return transient_catalog(
        regions, limiting_mag=args.limiting_mag, n_hostless=args.hostless, hosts=hosts,
        max_offset_arcsec=args.max_host_offset, seed=args.seed if args.seed is not None else 0,
    )


def _add_generate_parser(subparsers: Any) -> None:
    gen = subparsers.add_parser(
        "generate-catalog",
        help="Generate a synthetic injection catalog (source_injection compatible).",
        description=(
            "Generate an injection catalog: every combination of the -p values, repeated -n times (or to reach "
            "--density per deg²), at quasi-random (Halton) or grid positions inside RA/Dec limits or the "
            "footprint of butler visits. Writes a file (-o), ingests into a repository (-b --run --band) "
            "or prints the table."
        ),
    )
    gen.add_argument("-a", "--ra-lim", type=float, nargs=2, metavar="DEG", help="RA limits (degrees).")
    gen.add_argument("-d", "--dec-lim", type=float, nargs=2, metavar="DEG", help="Dec limits (degrees).")
    gen.add_argument(
        "-m", "--mag-lim", type=float, nargs=2, metavar="MAG", help="Magnitude range (quasi-random)."
    )
    gen.add_argument("-n", "--number", type=int, default=1, help="Repeats of each parameter combination.")
    gen.add_argument("-s", "--density", type=float, help="Sources per square degree (overrides --number).")
    gen.add_argument(
        "-p",
        "--parameter",
        nargs="+",
        action="append",
        metavar=("COLUMN VALUE", "VALUE"),
        help="Column and its values; all combinations of all -p values are generated.",
    )
    gen.add_argument(
        "-r",
        "--parameter-range",
        nargs=3,
        action="append",
        metavar=("COLUMN", "MIN", "MAX"),
        help="Column drawn quasi-randomly between MIN and MAX for every row.",
    )
    gen.add_argument("--seed", help="Seed (any string or integer); default derived from the limits.")
    gen.add_argument(
        "--placement", choices=("halton", "grid"), default="halton", help="How to place sources."
    )
    gen.add_argument(
        "--min-separation", type=float, metavar="ARCSEC", help="Minimum source separation (arcsec)."
    )
    transients = gen.add_argument_group(
        "transients (DMTN-319: per detector, hostless from mag 20 to M + 1, hosted on up to min(100, 5 %) "
        "of the sources; with --visits the regions are the detectors')"
    )
    transients.add_argument("--transients", action="store_true", help="Generate a transient catalog.")
    transients.add_argument("--limiting-mag", type=float, metavar="M", help="5σ point-source depth m_lim.")
    transients.add_argument("--hostless", type=int, default=50, metavar="N", help="Hostless transients per detector.")
    transients.add_argument(
        "--hosts", metavar="FILE",
        help="Reference catalog or detected sources (ra, dec [deg]; optional id, half_light_radius [arcsec], "
        "extendedness) to put hosted transients on.",
    )
    transients.add_argument(
        "--max-host-offset", type=float, default=1.0, metavar="ARCSEC",
        help="Offset radius for hosts without a half_light_radius.",
    )
    repo = gen.add_argument_group("repository")
    repo.add_argument("-b", "--butler-config", "--repo", dest="butler_config", help="Butler repository.")
    repo.add_argument("--visits", type=int, nargs="+", help="Visits whose footprint to fill.")
    repo.add_argument("--where", help="Butler query expression selecting visits.")
    repo.add_argument("--instrument", help="Instrument of the visits.")
    repo.add_argument("-c", "--collections", nargs="+", help="Collections holding --dataset-type datasets.")
    repo.add_argument("--dataset-type", help="Use only visit+detectors with this dataset in --collections.")
    repo.add_argument(
        "--detectors", action="store_true", help="Use detector regions instead of visit regions."
    )
    repo.add_argument(
        "--band",
        "-i",
        "--injection-band",
        dest="band",
        nargs="+",
        action="extend",
        help="Band(s) to ingest for.",
    )
    repo.add_argument("--run", "--output-collection", dest="run", help="RUN collection to ingest into.")
    repo.add_argument(
        "-t", "--dataset-type-name", default="injection_catalog", help="Catalog dataset type name."
    )
    out = gen.add_argument_group("file output")
    out.add_argument(
        "-o", "--output", "-f", "--filename", dest="output", help="Output file (.ecsv, .fits, .parquet)."
    )
    out.add_argument("--format", help="Astropy table format, overriding the extension.")
    out.add_argument("--overwrite", action="store_true", help="Overwrite an existing output file.")
    gen.set_defaults(func=generate_main)


def _add_ingest_parser(subparsers: Any) -> None:
    ing = subparsers.add_parser(
        "ingest-catalog",
        help="Validate an injection catalog and ingest it into a butler repository.",
        description=(
            "Validate injection catalogs (all problems reported at once; nothing ingested if any) and put them, "
            "standardized and sharded by HTM7 trixel, as injection_catalog datasets (htm7, band)."
        ),
    )
    ing.add_argument(
        "-b", "--butler-config", "--repo", dest="butler_config", required=True, help="Butler repository."
    )
    ing.add_argument(
        "-i",
        "--injection-catalog",
        nargs="+",
        action="append",
        required=True,
        metavar=("FILE", "BAND"),
        help="Catalog file, optionally followed by its bands (else --band).",
    )
    ing.add_argument("--band", nargs="+", action="extend", help="Band(s) for catalogs given without bands.")
    ing.add_argument(
        "-o", "--output-collection", "--run", dest="output_collection", required=True, help="RUN collection."
    )
    ing.add_argument(
        "-t", "--dataset-type-name", default="injection_catalog", help="Catalog dataset type name."
    )
    ing.add_argument("--format", help="Astropy table format of the input(s), overriding the extension.")
    _add_validation_options(ing)
    ing.set_defaults(func=ingest_main)


def _add_show_source_types_parser(subparsers: Any) -> None:
    show = subparsers.add_parser(
        "show-source-types",
        help="List the catalog source types with their columns and units.",
        description=(
            "List the source types an injection catalog accepts (GalSim profiles, Star, Stamp, Trail) with "
            "their required, one-of, optional and shear columns and units: the table validation uses."
        ),
    )
    show.add_argument("source_types", nargs="*", metavar="SOURCE_TYPE", help="Only these types (default: all).")
    show.add_argument("-w", "--wrap-width", type=int, metavar="N", help="Wrap width (default: the terminal's).")
    show.set_defaults(func=show_source_types_main)
