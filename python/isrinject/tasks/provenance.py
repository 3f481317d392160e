"""Which flat ISR actually divided a visit image by.

The flat the graph builder finds by the visit's time is not necessarily the
one ISR used: calibration collections get re-certified and users chain other
collections.  Rubin records the one it used in two places:

- ISR writes ``LSST CALIB UUID FLAT`` and ``LSST CALIB RUN FLAT`` (the
  dataset ID and RUN of its ``flat`` input) into the image metadata, and the
  cards propagate to ``visit_image`` (DP1 headers carry them);
- the butler writes each output's quantum inputs into its file as
  ``LSST BUTLER INPUT n ID`` cards (`lsst.daf.butler.DatasetProvenance`), so
  the flat is an input of some quantum upstream of the image.

`find_isr_flat` reads the first, then walks the second; the task compares
the recorded flat with the one its graph resolved (`check_recorded_flat`).
"""

from __future__ import annotations

__all__ = [
    "FLAT_RUN_CARD",
    "FLAT_UUID_CARD",
    "FlatProvenanceError",
    "RecordedFlat",
    "check_recorded_flat",
    "find_isr_flat",
    "record_isr_flat",
    "recorded_flat",
]

import dataclasses
import logging
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

from astropy.io import fits
from lsst.daf.butler import Butler, DataId, DatasetProvenance, DatasetRef
from lsst.images import Box, GeneralizedImage

#: Metadata card holding the dataset ID of the flat ISR used (as ip_isr writes it).
FLAT_UUID_CARD = "LSST CALIB UUID FLAT"
#: Metadata card holding the RUN of that flat.
FLAT_RUN_CARD = "LSST CALIB RUN FLAT"

_LOG = logging.getLogger(__name__)


class FlatProvenanceError(LookupError):
    """The flat ISR used is not recorded, not in the repository, or differs
    from the one the injection would use."""


@dataclasses.dataclass(frozen=True)
class RecordedFlat:
    """The flat a visit image's metadata says ISR used."""

    id: uuid.UUID
    """Its dataset ID (``LSST CALIB UUID FLAT``)."""
    run: str | None
    """Its RUN (``LSST CALIB RUN FLAT``), if recorded."""


def recorded_flat(metadata: Mapping[str, Any] | Any) -> RecordedFlat | None:
    """The flat recorded in an image's metadata, or `None` if there is none.

    Parameters
    ----------
    metadata
        A `~lsst.images.VisitImage`'s ``metadata``, an afw ``PropertyList`` or a FITS
        header: anything with ``get``.

    Raises
    ------
    FlatProvenanceError
        If the card holds something that is not a UUID.
    """
    value = metadata.get(FLAT_UUID_CARD)
    if value is None or value == "":
        return None
    try:
        flat_id = uuid.UUID(str(value))
    except ValueError as err:
        raise FlatProvenanceError(f"Metadata card {FLAT_UUID_CARD!r} holds {value!r}, not a dataset UUID.") from err
    run = metadata.get(FLAT_RUN_CARD)
    return RecordedFlat(flat_id, None if run is None else str(run))


def record_isr_flat(metadata: MutableMapping[str, Any], flat_ref: DatasetRef) -> None:
    """Record ``flat_ref`` as the flat ISR used, as ip_isr does (for simulators).

    Parameters
    ----------
    metadata
        The image's metadata, modified in place.
    flat_ref
        The flat's dataset reference.
    """
    metadata[FLAT_UUID_CARD] = str(flat_ref.id)
    metadata[FLAT_RUN_CARD] = flat_ref.run


def check_recorded_flat(
    metadata: Mapping[str, Any] | Any,
    resolved: DatasetRef,
    *,
    strict: bool,
    where: str,
    log: logging.Logger | Any = _LOG,
) -> RecordedFlat | None:
    """Compare the flat recorded in a visit image with the one to be used.

    Parameters
    ----------
    metadata
        The visit image's metadata.
    resolved
        The flat the quantum graph resolved (``inputRefs.flat``).
    strict
        Raise on a mismatch (``config.check_flat_provenance``); else warn.
    where
        The quantum, for messages.
    log
        Logger for the warning.

    Returns
    -------
    recorded
        The recorded flat, or `None` if the image records none (nothing to
        check).

    Raises
    ------
    FlatProvenanceError
        If ``strict`` and the recorded flat is not ``resolved``; the message
        names both dataset IDs and RUNs.
    """
    recorded = recorded_flat(metadata)
    if recorded is None or recorded.id == resolved.id:
        return recorded
    message = (
        f"{where}: the visit image records flat {recorded.id} (run {recorded.run or 'not recorded'}) as the one "
        f"ISR divided it by ({FLAT_UUID_CARD!r}), but the quantum graph resolved flat {resolved.id} "
        f"(run {resolved.run}); injecting with it would give the injected pixels the wrong variance. "
        f"Put the recorded flat's RUN ({recorded.run or 'see its dataset ID'}) first in the input collections "
        "(or fix the calibration certification)"
    )
    if strict:
        raise FlatProvenanceError(message + ", or set check_flat_provenance=False to inject with the resolved flat.")
    log.warning("%s; check_flat_provenance=False, so injecting with the resolved flat.", message)
    return recorded


def _primary_header(butler: Butler, ref: DatasetRef) -> fits.Header | None:
    """The primary FITS header of a dataset's file (`None` if it is not FITS)."""
    uri = butler.getURI(ref)
    if not uri.getExtension().startswith(".fits"):
        return None
    with uri.as_local() as local:
        return fits.getheader(local.ospath)


def _image_metadata(butler: Butler, ref: DatasetRef) -> Any | None:
    """The native metadata of an lsst.images dataset, read from a one-pixel
    cutout (lsst.images keeps it in the file's JSON tree, not the header)."""
    storage_class = ref.datasetType.storageClass
    try:
        is_image = issubclass(storage_class.pytype, GeneralizedImage)
    except ImportError:  # e.g. ExposureF without afw: its cards are in the FITS header
        return None
    if not is_image or "bbox" not in storage_class.parameters:
        return None
    bbox = butler.get(ref.makeComponentRef("bbox"))
    corner = Box.factory[bbox.y.start : bbox.y.start + 1, bbox.x.start : bbox.x.start + 1]
    return butler.get(ref, parameters={"bbox": corner}).metadata


def _recorded_in(butler: Butler, ref: DatasetRef, header: fits.Header | None) -> RecordedFlat | None:
    for metadata in (header, _image_metadata(butler, ref)):
        if metadata is not None and (found := recorded_flat(metadata)) is not None:
            return found
    return None


def _flat_from_provenance(
    butler: Butler, ref: DatasetRef, header: fits.Header | None, flat_dataset_type: str, max_depth: int
) -> DatasetRef | None:
    """Walk the butler provenance upstream of ``ref`` (breadth first) to the
    first quantum that read a ``flat_dataset_type`` dataset."""
    frontier: list[tuple[DatasetRef, fits.Header | None]] = [(ref, header)]
    seen = {ref.id}
    for _ in range(max_depth):
        upstream: list[tuple[DatasetRef, fits.Header | None]] = []
        for node, node_header in frontier:
            if node_header is None:
                continue
            try:
                provenance, _ = DatasetProvenance.from_flat_dict(dict(node_header), butler)
            except ValueError:  # no provenance cards, or inputs this repository does not hold
                continue
            flats = {
                r.id for r in provenance.inputs if r.datasetType is not None and r.datasetType.name == flat_dataset_type
            }
            if len(flats) > 1:
                raise FlatProvenanceError(
                    f"The quantum that wrote {node.datasetType.name} {node.id} read {len(flats)} flats: "
                    f"{sorted(map(str, flats))}."
                )
            if flats:
                found = butler.get_dataset(next(iter(flats)))
                if found is not None:
                    return found
            for simple in provenance.inputs:
                if simple.id in seen:
                    continue
                seen.add(simple.id)
                parent = butler.get_dataset(simple.id)
                if parent is not None and not parent.datasetType.isCalibration():
                    upstream.append((parent, _primary_header(butler, parent)))
        frontier = upstream
    return None


def find_isr_flat(
    butler: Butler,
    visit_image: DatasetRef | DataId,
    *,
    dataset_type: str = "visit_image",
    collections: Any = None,
    flat_dataset_type: str = "flat",
    max_depth: int = 4,
) -> DatasetRef:
    """The flat that ISR divided a visit image by, as the repository records it.

    Looks, in order, at the image's ``LSST CALIB UUID FLAT`` metadata card
    (written by ISR, carried by DP1 visit images; an afw FITS header or an
    lsst.images image) and at the butler provenance of the image and the
    datasets upstream of it (up to ``max_depth`` quanta back).

    Parameters
    ----------
    butler
        The repository.
    visit_image
        The image's `DatasetRef`, or its data ID (found as ``dataset_type``
        in ``collections``, default the butler's).
    dataset_type
        Dataset type of the image when a data ID is given.
    collections
        Collections to find the image in when a data ID is given.
    flat_dataset_type
        Dataset type name of flats in the provenance.
    max_depth
        How many quanta upstream the provenance walk goes.

    Returns
    -------
    flat_ref
        The flat's `DatasetRef` (``butler.get(flat_ref)`` reads it).

    Raises
    ------
    FlatProvenanceError
        If the image is not found, records no flat and has no provenance
        leading to one, or records a flat the repository does not hold.
    """
    if isinstance(visit_image, DatasetRef):
        ref = visit_image
    else:
        found = butler.find_dataset(dataset_type, visit_image, collections=collections)
        if found is None:
            raise FlatProvenanceError(
                f"No {dataset_type!r} with data ID {visit_image} in collections "
                f"{collections if collections is not None else list(butler.collections.defaults)}."
            )
        ref = found
    header = _primary_header(butler, ref)
    recorded = _recorded_in(butler, ref, header)
    if recorded is not None:
        flat_ref = butler.get_dataset(recorded.id)
        if flat_ref is None:
            raise FlatProvenanceError(
                f"{ref.datasetType.name} {ref.id} records flat {recorded.id} (run {recorded.run or 'not recorded'}) "
                f"in {FLAT_UUID_CARD!r}, but this repository does not hold that dataset."
            )
        return flat_ref
    flat_ref = _flat_from_provenance(butler, ref, header, flat_dataset_type, max_depth)
    if flat_ref is None:
        raise FlatProvenanceError(
            f"{ref.datasetType.name} {ref.id} ({ref.dataId}, run {ref.run}) records no flat: no {FLAT_UUID_CARD!r} "
            f"card and no {flat_dataset_type!r} input in its butler provenance up to {max_depth} quanta back. "
            "Pick the flat certified at the visit's time with butler.find_dataset('flat', data_id, "
            "collections=<calibration collection>, timespan=<visit timespan>) and check it is the one ISR used."
        )
    return flat_ref
