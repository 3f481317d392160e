"""Messages of `isrinject.tasks.visit.VisitInjectTask` that say what to do.

Kept apart from the task so that the task reads as glue and the wording is
tested on its own.
"""

from __future__ import annotations

__all__ = ["no_catalog_message"]

from collections.abc import Mapping
from typing import Any


def no_catalog_message(dataset_type: str, data_id: Mapping[str, Any], process_all_data_ids: bool) -> str:
    """Why a quantum received no injection catalog, and the fix.

    A quantum gets every ``dataset_type`` dataset (dimensions ``htm7, band``)
    of its input collections whose trixel overlaps the detector; none at all
    almost always means the catalog's RUN collection is not among the
    inputs (pipetask then ends with ``NoWorkFound``, which it logs at INFO
    only, and leaves an empty output RUN behind).

    Parameters
    ----------
    dataset_type
        The catalog's dataset type name (``injection_catalog`` by default).
    data_id
        The quantum's data ID (instrument, visit, detector).
    process_all_data_ids
        The task's ``process_all_data_ids``.
    """
    where = ", ".join(f"{key}: {value}" for key, value in data_id.items())
    consequence = (
        "the output is a copy of the input image" if process_all_data_ids else "nothing is injected and no output "
        "is written for it"
    )
    return (
        f"No {dataset_type!r} dataset (dimensions htm7, band) was found for {{{where}}}: {consequence}. "
        f"Is the catalog's collection in the inputs? Add it to -i (e.g. -i INPUTS,u/you/catalogs); "
        f"'butler query-datasets REPO {dataset_type}' lists the collections that hold it. Otherwise the "
        "catalog does not cover this detector or band."
    )
