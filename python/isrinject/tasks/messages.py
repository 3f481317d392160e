"""Messages of `isrinject.tasks.visit.VisitInjectTask` that say what to do.

Kept apart from the task so that the task reads as glue and the wording is
tested on its own.
"""

from __future__ import annotations

__all__ = ["no_catalog_message", "task_import_message"]

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
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


def task_import_message(error: ImportError, pipelines: Sequence[str | os.PathLike[str] | None]) -> str:
    """One line for a pipeline task class that cannot be imported: the
    label and class, the import error, and the PYTHONPATH that fixes it.

    Parameters
    ----------
    error
        The `ImportError` (``ModuleNotFoundError``) raised while building the
        pipeline graph; lsst.utils' message quotes the class
        (``Unable to import 'module.Class' (...)``).
    pipelines
        The pipeline files involved (reference, injection, additional): the
        task's label is looked up in them, and a directory beside one that
        holds the module is the PYTHONPATH proposed.
    """
    text = str(error)
    match = re.search(r"Unable to import '([\w.]+)'", text)
    klass = match.group(1) if match else getattr(error, "name", None) or "?"
    module = klass.split(".")[0]
    label = None
    directory = None
    for pipeline in (p for p in pipelines if p):
        path = Path(pipeline)
        if directory is None and ((path.parent / f"{module}.py").is_file() or (path.parent / module).is_dir()):
            directory = path.parent
        if label is None and path.is_file():
            label = _label_of(path, klass)
    reason = match.string[match.end():].strip(" ()") if match else text
    task = f"task {label!r} ({klass})" if label else f"task class {klass!r}"
    fix = (f"PYTHONPATH={directory}{os.pathsep}$PYTHONPATH" if directory is not None
           else f"PYTHONPATH=<directory holding {module}>{os.pathsep}$PYTHONPATH")
    return f"cannot import {task}: {reason}; put its module on the Python path, e.g. {fix} isrinject ..."


def _label_of(path: Path, klass: str) -> str | None:
    """The label of the task of class ``klass`` in the pipeline file ``path``."""
    try:
        from lsst.pipe.base import Pipeline

        pipeline = Pipeline.from_uri(str(path))
        return next((label for label in pipeline.task_labels
                     if pipeline._pipelineIR.tasks[label].klass == klass), None)
    except Exception:  # the message is still useful without the label
        return None
