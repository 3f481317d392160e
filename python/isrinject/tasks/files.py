"""Injection into files outside a butler (``isrinject inject``, file paths to `VisitInjectTask.run`).

A user who retrieved a visit image and its flat (``butler retrieve-artifacts``)
holds FITS files of two kinds:

- **lsst.images files** (``DATAMODL`` card in the primary header: DP2's
  ``visit_image``, anything `lsst.images` wrote) are read with lsst.images;
- **legacy afw files** (PRIMARY, IMAGE, MASK, VARIANCE HDUs and afw's archive
  tables: DP1's ``visit_image``, ``flat`` and ``illuminationCorrection``,
  all ``ExposureF``).  Their pixel planes are plain FITS images that
  lsst.images reads without afw (`MaskedImage.read_legacy`,
  `Image.read_legacy`), which is all a flat or an illumination correction
  needs.  A visit image also needs its PSF, WCS and detector, stored in afw's
  archive: `VisitImage.read_legacy` reads them only where afw is importable;
  elsewhere the file must first be converted (``python -m lsst.images
  convert``, where afw is installed).

The flat check of the butler path (`isrinject.tasks.provenance`) works on the
files too: the visit image records the flat ISR used (``LSST CALIB UUID
FLAT``) and a butler-written flat file carries its own dataset ID
(``LSST BUTLER ID``, written by the butler's formatters).

Inputs are only read.  Outputs are written to a temporary file beside the
target and linked into place, so an existing file is never replaced and a
failed write leaves nothing behind.
"""

from __future__ import annotations

__all__ = [
    "BUTLER_ID_CARD",
    "CONVERT_HELP",
    "FileModeError",
    "InjectedFiles",
    "afw_available",
    "check_flat_file",
    "default_catalog_path",
    "file_dataset_id",
    "inject_files",
    "is_lsst_images_file",
    "read_catalog_file",
    "read_flat_file",
    "read_illumination_file",
    "read_visit_image_file",
    "resolve_file_arguments",
]

import dataclasses
import importlib.util
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from astropy.io import fits
from astropy.table import Table
from lsst.images import Image, MaskedImage, MaskSchema, VisitImage

from .provenance import FLAT_UUID_CARD, FlatProvenanceError, RecordedFlat, recorded_flat

_LOG = logging.getLogger(__name__)

#: Primary-header card of a butler-written file holding the dataset's own ID.
BUTLER_ID_CARD = "LSST BUTLER ID"
#: HDU names of afw's (Masked)Image/Exposure FITS layout, by index.
_LEGACY_HDUS = {1: "IMAGE", 2: "MASK", 3: "VARIANCE"}
#: How to convert an afw-written visit image (quoted by the error).
CONVERT_HELP = "python -m lsst.images convert {path} <new file>.fits"


class FileModeError(ValueError):
    """An input file cannot be used, or an output cannot be written; the
    message names the file and what to do."""


def _exists(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileModeError(f"{what} {str(path)!r} does not exist or is not a file.")
    return path


def _primary_header(path: Path, what: str) -> fits.Header:
    try:
        return fits.getheader(_exists(path, what), 0)
    except OSError as err:
        raise FileModeError(f"{what} {str(path)!r} is not a FITS file ({err}).") from err


def is_lsst_images_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` was written by lsst.images (its primary header has a
    ``DATAMODL`` schema URL) rather than by afw."""
    return bool(_primary_header(Path(path), "File").get("DATAMODL"))


def _schema(header: fits.Header) -> str:
    """lsst.images schema name of a file (``visit_image``, ``masked_image``, ``image``…)."""
    url = str(header.get("DATAMODL", ""))
    return url.rstrip("/").rsplit("/", 1)[-1].rsplit("-", 1)[0]


def _check_legacy_layout(path: Path, what: str, indices: tuple[int, ...]) -> None:
    """Raise unless the HDUs at ``indices`` carry afw's EXTNAMEs (IMAGE, MASK,
    VARIANCE): lsst.images' legacy readers take the planes by position."""
    with fits.open(path) as hdus:
        for index in indices:
            found = hdus[index].header.get("EXTNAME") if index < len(hdus) else None
            if found != _LEGACY_HDUS[index]:
                raise FileModeError(
                    f"{what} {str(path)!r} is neither an lsst.images file (no DATAMODL card) nor in afw's "
                    f"layout: HDU {index} is {found!r}, expected EXTNAME {_LEGACY_HDUS[index]!r}."
                )


def afw_available() -> bool:
    """Whether lsst.afw is importable here (never imported by isrinject itself)."""
    return importlib.util.find_spec("lsst.afw") is not None


def read_visit_image_file(path: str | os.PathLike[str]) -> VisitImage:
    """Read a visit image file: lsst.images' `VisitImage.read`, or for an
    afw-written file `VisitImage.read_legacy` where afw is importable.

    Raises
    ------
    FileModeError
        For a missing or non-FITS file, an lsst.images file of another type,
        or an afw-written file without afw (the message says how to convert it).
    """
    path = Path(path)
    header = _primary_header(path, "Visit image")
    if header.get("DATAMODL"):
        if _schema(header) not in ("visit_image", "difference_image"):
            raise FileModeError(
                f"Visit image {str(path)!r} holds an lsst.images {_schema(header)!r}, not a visit_image."
            )
        return VisitImage.read(str(path))
    _check_legacy_layout(path, "Visit image", (1, 2, 3))
    if not afw_available():
        raise FileModeError(
            f"Visit image {str(path)!r} was written by afw (a legacy ExposureF) and reading its PSF, WCS and "
            f"detector needs lsst.afw, which is not importable here: convert it where afw is installed, "
            f"`{CONVERT_HELP.format(path=path)}`, and pass the new file."
        )
    # No exposure record outside a butler: the file's own OBS_INFO cards (or
    # lsst.images' degraded ObservationInfo, with a warning) describe the visit.
    return VisitImage.read_legacy(str(path), exposure_record=None)


def read_flat_file(path: str | os.PathLike[str], *, with_variance: bool = True) -> MaskedImage | Image:
    """Read the planes of a flat file the pixel model uses (image f, variance V_f).

    lsst.images files (``masked_image`` or ``visit_image`` schema) and
    afw-written files (``ExposureF`` or ``MaskedImageF``: the IMAGE and
    VARIANCE HDUs, read by `MaskedImage.read_legacy` without afw) are
    accepted.  The mask is never used and not read from legacy files.

    Returns
    -------
    flat
        A `MaskedImage` with an empty mask when ``with_variance``, else the
        image plane as an `Image`.
    """
    return _read_flat(Path(path), with_variance=with_variance)[0]


def _read_flat(path: Path, *, with_variance: bool) -> tuple[MaskedImage | Image, uuid.UUID | None]:
    """The flat's planes and the dataset ID the file records for itself
    (`file_dataset_id`), reading the file once."""
    header = _primary_header(path, "Flat")
    if header.get("DATAMODL"):
        if _schema(header) == "image":
            if with_variance:
                raise FileModeError(
                    f"Flat {str(path)!r} is an lsst.images image without a variance plane; pass a masked image "
                    "or set include_flat_variance=False."
                )
            image = Image.read(str(path))
            return image, _butler_id(image, header)
        masked = MaskedImage.read(str(path))
        image, flat_id = masked.image, _butler_id(masked, header)
        variance: Image | None = masked.variance
    else:
        _check_legacy_layout(path, "Flat", (1, 3) if with_variance else (1,))
        image = MaskedImage.read_legacy(str(path), component="image")
        variance = MaskedImage.read_legacy(str(path), component="variance") if with_variance else None
        flat_id = _butler_id(None, header)
    if not with_variance:
        return image, flat_id
    return MaskedImage(image, variance=variance, mask_schema=MaskSchema([])), flat_id


def _butler_id(image: Any, header: fits.Header) -> uuid.UUID | None:
    """The dataset ID in an lsst.images file's butler information, else in its
    ``LSST BUTLER ID`` card (what the butler's formatters write into afw files
    and into the files of pipetask outputs)."""
    dataset = getattr(image, "butler_dataset", None)
    if dataset is not None and getattr(dataset, "id", None) is not None:
        return uuid.UUID(str(dataset.id))
    value = header.get(BUTLER_ID_CARD)
    try:
        return None if value in (None, "") else uuid.UUID(str(value))
    except ValueError:
        return None


def read_illumination_file(path: str | os.PathLike[str]) -> Image:
    """Read an illumination correction R: an lsst.images file (image, masked
    image or visit image schema: its image plane) or an afw-written file
    (its IMAGE HDU, `Image.read_legacy`, no afw needed)."""
    path = Path(path)
    header = _primary_header(path, "Illumination correction")
    if header.get("DATAMODL"):
        if _schema(header) == "image":
            return Image.read(str(path))
        return MaskedImage.read(str(path)).image
    _check_legacy_layout(path, "Illumination correction", (1,))
    return Image.read_legacy(str(path), ext=1)


def read_catalog_file(path: str | os.PathLike[str], *, band: str | None = None) -> Table:
    """Read an injection catalog file (any format astropy reads: Parquet,
    ECSV, FITS table…); with a ``band`` column, only the rows of ``band``."""
    path = _exists(Path(path), "Catalog")
    try:
        catalog = Table.read(str(path))
    except Exception as err:
        raise FileModeError(f"Catalog {str(path)!r} cannot be read as a table: {err}") from err
    if band is not None and "band" in catalog.colnames:
        keep = np.asarray(catalog["band"]).astype(str) == band
        _LOG.info("Catalog %s: %d of %d rows are in band %r.", path, int(keep.sum()), len(catalog), band)
        catalog = catalog[keep]
    return catalog


def file_dataset_id(path: str | os.PathLike[str]) -> uuid.UUID | None:
    """The butler dataset ID a flat file records for itself, or `None`: the
    butler information of an lsst.images file (written by ``butler.put``), or
    the ``LSST BUTLER ID`` primary-header card (butler-written afw files)."""
    return _read_flat(Path(path), with_variance=False)[1]


def check_flat_file(
    visit_image: VisitImage,
    flat_path: str | os.PathLike[str],
    *,
    flat_id: uuid.UUID | None,
    strict: bool,
    visit_image_path: str | os.PathLike[str] | None = None,
    log: logging.Logger | Any = _LOG,
) -> RecordedFlat | None:
    """Check that a flat file is the flat ISR divided the visit image by.

    The visit image's metadata (or, for a legacy file, its primary header)
    records the flat in ``LSST CALIB UUID FLAT``; the flat file records its own
    dataset ID (``flat_id``, from `file_dataset_id`).

    Returns
    -------
    recorded
        The recorded flat, `None` if the image records none (a warning says
        the flat cannot be checked).

    Raises
    ------
    FlatProvenanceError
        If ``strict`` and the IDs differ (a flat without an ID card only
        warns: it cannot be checked).
    """
    recorded = recorded_flat(visit_image.metadata)
    if recorded is None and visit_image_path is not None and not is_lsst_images_file(visit_image_path):
        recorded = recorded_flat(_primary_header(Path(visit_image_path), "Visit image"))
    where = f"Visit image {str(visit_image_path)!r}" if visit_image_path is not None else "The visit image"
    if recorded is None:
        log.warning("%s records no flat (%r): cannot check that %s is the flat ISR used.", where,
                    FLAT_UUID_CARD, flat_path)
        return None
    if flat_id is None:
        log.warning("Flat %s records no dataset ID (no butler information, no %r card): cannot check that it "
                    "is flat %s (run %s), which the visit image records.",
                    flat_path, BUTLER_ID_CARD, recorded.id, recorded.run or "not recorded")
        return recorded
    if flat_id == recorded.id:
        return recorded
    message = (
        f"{where} records flat {recorded.id} (run {recorded.run or 'not recorded'}) as the one ISR "
        f"divided it by ({FLAT_UUID_CARD!r}), but flat {str(flat_path)!r} is dataset {flat_id}; injecting with "
        "it would give the injected pixels the wrong variance. Retrieve "
        f"flat {recorded.id}"
    )
    if strict:
        raise FlatProvenanceError(message + ", or set check_flat_provenance=False to inject with this flat.")
    log.warning("%s; check_flat_provenance=False, so injecting with this flat.", message)
    return recorded


def default_catalog_path(output: str | os.PathLike[str]) -> Path:
    """Where the output catalog goes when not given: ``<output stem>_catalog.parquet``."""
    output = Path(output)
    return output.with_name(f"{output.stem}_catalog.parquet")


@contextmanager
def _new_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it is linked
    to ``path`` (which must not exist: never replaced), and always removed."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    temporary.unlink(missing_ok=True)
    try:
        yield temporary
        try:
            os.link(temporary, path)
        except FileExistsError as err:
            raise FileModeError(f"Output {str(path)!r} appeared while writing; it was left untouched.") from err
    finally:
        temporary.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class InjectedFiles:
    """What `inject_files` wrote."""

    image_path: Path
    """The injected visit image (lsst.images FITS)."""
    catalog_path: Path
    """The output catalog (the task's ``injected_visit_image_catalog``)."""
    result: Any
    """The task's `~lsst.pipe.base.Struct` (image and catalog in memory)."""


def _check_outputs(inputs: list[Path], outputs: list[Path]) -> None:
    if outputs[0].suffix != ".fits":
        raise FileModeError(f"Output {str(outputs[0])!r} must end in .fits (lsst.images writes FITS).")
    resolved_inputs = {p.resolve() for p in inputs}
    for output in outputs:
        if output.resolve() in resolved_inputs:
            raise FileModeError(f"Output {str(output)!r} is also an input; inputs are never modified.")
        if output.exists():
            raise FileModeError(f"Output {str(output)!r} exists; isrinject never overwrites a file.")
        if not output.parent.is_dir():
            raise FileModeError(f"The directory of output {str(output)!r} does not exist.")
    if outputs[0].resolve() == outputs[1].resolve():
        raise FileModeError(f"The output image and catalog are the same file, {str(outputs[0])!r}.")


def inject_files(
    *,
    visit_image: str | os.PathLike[str],
    flat: str | os.PathLike[str],
    catalog: str | os.PathLike[str],
    output: str | os.PathLike[str],
    illumination: str | os.PathLike[str] | None = None,
    output_catalog: str | os.PathLike[str] | None = None,
    config: Any = None,
) -> InjectedFiles:
    """Inject the sources of a catalog file into a visit image file and write
    the injected image and its catalog to new files.

    Parameters
    ----------
    visit_image, flat, illumination
        Input files (see the module docstring for the kinds accepted); an
        ``illumination`` file turns on ``do_illumination_correction``.
    catalog
        The injection catalog file; with a ``band`` column only the rows of
        the image's band are used.
    output
        The injected visit image to write (``.fits``, must not exist).
    output_catalog
        The output catalog to write (must not exist; the format follows the
        extension); default `default_catalog_path`.
    config
        A `~isrinject.tasks.visit.VisitInjectConfig` (default: the defaults);
        not modified (a copy is used).

    Returns
    -------
    written
        `InjectedFiles`.

    Raises
    ------
    FileModeError
        For unusable inputs or outputs, before anything is written.
    FlatProvenanceError
        If the flat is not the one the image records and
        ``config.check_flat_provenance``.
    """
    from .visit import VisitInjectConfig, VisitInjectTask

    if config is None:
        config = VisitInjectConfig()
    else:  # a copy: the caller's configuration is not changed below
        copied = type(config)()
        copied.loadFromString(config.saveToString())
        config = copied
    if illumination is not None:
        config.do_illumination_correction = True
    elif config.do_illumination_correction:
        raise FileModeError(
            "config.do_illumination_correction is True but no illumination correction file was given."
        )
    output_path = Path(output)
    catalog_path = Path(output_catalog) if output_catalog is not None else default_catalog_path(output_path)
    inputs = [Path(p) for p in (visit_image, flat, catalog, illumination) if p is not None]
    _check_outputs(inputs, [output_path, catalog_path])

    image = read_visit_image_file(visit_image)
    flat_planes, flat_id = _read_flat(Path(flat), with_variance=config.include_flat_variance)
    check_flat_file(image, flat, flat_id=flat_id, strict=config.check_flat_provenance, visit_image_path=visit_image)
    illumination_plane = read_illumination_file(illumination) if illumination is not None else None
    table = read_catalog_file(catalog, band=image.band)
    task = VisitInjectTask(config=config)
    # The image just read is this call's own object: inject into it in place.
    result = task.run(
        visit_image=image, injection_catalogs=[table], flat=flat_planes,
        illumination_correction=illumination_plane, in_place=True,
    )
    with _new_file(output_path) as temporary:
        result.injected_visit_image.write(str(temporary))
        with _new_file(catalog_path) as temporary_catalog:
            result.injected_visit_image_catalog.write(str(temporary_catalog))
    return InjectedFiles(output_path, catalog_path, result)


def _is_path(value: Any) -> TypeGuard[str | os.PathLike[str]]:
    return isinstance(value, str | os.PathLike)


def resolve_file_arguments(
    arguments: dict[str, Any], *, config: Any, log: logging.Logger | Any = _LOG
) -> dict[str, Any]:
    """`VisitInjectTask.run`'s keyword arguments with file paths read.

    ``visit_image`` (or ``input_exposure``), ``flat``,
    ``illumination_correction`` and ``injection_catalogs`` (one path or a
    sequence of paths) may be file names; they are read as `inject_files`
    reads them, and a flat file is checked against the flat the visit image
    records (``config.check_flat_provenance``).  An image read here is the
    call's own, so it is injected in place.  Other arguments pass unchanged.
    """
    arguments = dict(arguments)
    image_key = "visit_image" if arguments.get("visit_image") is not None else "input_exposure"
    image_path = arguments.get(image_key)
    if _is_path(image_path):
        arguments[image_key] = read_visit_image_file(image_path)
        arguments["in_place"] = True
    flat = arguments.get("flat")
    if _is_path(flat):
        arguments["flat"], flat_id = _read_flat(Path(flat), with_variance=config.include_flat_variance)
        image = arguments.get(image_key)
        if isinstance(image, VisitImage):
            check_flat_file(
                image, flat, flat_id=flat_id, strict=config.check_flat_provenance,
                visit_image_path=image_path if _is_path(image_path) else None, log=log,
            )
    if _is_path(arguments.get("illumination_correction")):
        arguments["illumination_correction"] = read_illumination_file(arguments["illumination_correction"])
    catalogs = arguments.get("injection_catalogs")
    band = arguments[image_key].band if isinstance(arguments.get(image_key), VisitImage) else None
    if _is_path(catalogs):
        arguments["injection_catalogs"] = [read_catalog_file(catalogs, band=band)]
    elif isinstance(catalogs, list | tuple) and any(_is_path(c) for c in catalogs):
        arguments["injection_catalogs"] = [read_catalog_file(c, band=band) if _is_path(c) else c for c in catalogs]
    return arguments
