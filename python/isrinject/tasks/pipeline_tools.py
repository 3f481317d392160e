"""Merge isrinject into a processing pipeline (``isrinject make-injection-pipeline``).

`make_injection_pipeline` has the options and meaning of
``lsst.source.injection``'s function of the same name: it takes a reference
pipeline (e.g. ``DRP.yaml``) and the name of the dataset type to inject into,
merges the injection task, and points every task downstream of that dataset
type at the injected datasets:

- the injection task reads ``<dataset type>`` and writes
  ``<prefix><dataset type>`` and ``<prefix><dataset type>_catalog``;
- every task that consumes the dataset type, directly or through other
  downstream tasks (``PipelineGraph.select_tasks(">D:<dataset type>")``),
  reads the ``<prefix>`` version of each input made downstream of the
  injection and writes every output under ``<prefix>``;
- upstream and unrelated tasks are left alone, so their outputs are shared
  with the uninjected processing;
- unless ``exclude_subsets``, the injection task joins every subset holding
  the task that produces the dataset type (or, when the reference pipeline
  only reads it, the tasks reading it directly);
- each subset with a task injection touches gets an ``injected_<subset>``
  copy holding only those tasks (to run on a repository that already holds
  the dataset type).

Tasks of ``additional_pipelines`` (e.g. ``pipelines/consolidate.yaml``) are
added unchanged, into the subsets ``subset_names``.  Contracts the renaming
breaks are removed with a warning, as ``lsst.source.injection`` does.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_EXCLUDED_TASKS",
    "INJECTED_SUBSET_PREFIX",
    "INJECTION_PIPELINES",
    "find_pipeline",
    "make_injection_pipeline",
    "parse_config_override",
]

import itertools
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsst.pipe.base import Pipeline
    from lsst.pipe.base.pipeline_graph import PipelineGraph

_LOG = logging.getLogger(__name__)

#: Tasks excluded by default: global calibration fits that must not be re-run
#: on injected data (``lsst.source.injection``'s default list).
DEFAULT_EXCLUDED_TASKS: frozenset[str] = frozenset(
    {"jointcal", "gbdesAstrometricFit", "fgcmBuildFromIsolatedStars", "fgcmFitCycle", "fgcmOutputProducts"}
)

#: Dataset type injected into → the shipped injection pipeline (``pipelines/``).
INJECTION_PIPELINES: dict[str, str] = {"visit_image": "inject.yaml"}

#: Prefix of the subsets holding only the tasks injection touches.
INJECTED_SUBSET_PREFIX = "injected_"

#: Connections of the injection task that `make_injection_pipeline` points at
#: the injected dataset type: connection → dataset type name template.
_INJECTION_CONNECTIONS: dict[str, str] = {
    "visit_image": "{name}",
    "injected_visit_image": "{prefix}{name}",
    "injected_visit_image_catalog": "{prefix}{name}_catalog",
}


def find_pipeline(name: str = "inject.yaml") -> Path:
    """Locate ``pipelines/<name>``: ``$ISRINJECT_DIR`` first, then the source tree.

    Raises
    ------
    FileNotFoundError
        If neither has it.
    """
    candidates = []
    if os.environ.get("ISRINJECT_DIR"):
        candidates.append(Path(os.environ["ISRINJECT_DIR"]) / "pipelines" / name)
    candidates.append(Path(__file__).resolve().parents[3] / "pipelines" / name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"Cannot find pipelines/{name} in {[str(c) for c in candidates]}; set ISRINJECT_DIR.")


def parse_config_override(override: str) -> tuple[str, str, str]:
    """Split a ``label:key=value`` config override (the ``pipetask -c`` syntax).

    Returns
    -------
    label, key, value
        Task label, config field (dotted) and value text.

    Raises
    ------
    ValueError
        If ``override`` is not of the form ``label:key=value``.
    """
    label, colon, assignment = override.partition(":")
    key, equals, value = assignment.partition("=")
    if not (colon and equals and label.strip() and key.strip()):
        raise ValueError(f"Config override {override!r} is not of the form 'label:key=value'.")
    return label.strip(), key.strip(), value


def _load(pipeline: Pipeline | str | os.PathLike[str]) -> Pipeline:
    from lsst.pipe.base import Pipeline

    return pipeline if isinstance(pipeline, Pipeline) else Pipeline.from_uri(str(pipeline))


def _as_set(labels: Iterable[str] | str) -> set[str]:
    if isinstance(labels, str):
        return {label.strip() for label in labels.split(",") if label.strip()}
    return set(labels)


def _infer_injection_pipeline(dataset_type_name: str) -> Path:
    try:
        name = INJECTION_PIPELINES[dataset_type_name]
    except KeyError:
        raise ValueError(
            f"isrinject has no injection pipeline for dataset type {dataset_type_name!r} (it injects into "
            f"{', '.join(sorted(INJECTION_PIPELINES))}); pass one with -i/--injection-pipeline."
        ) from None
    return find_pipeline(name)


def _remove_violated_contracts(pipeline: Pipeline) -> None:
    """Drop the contracts the renamed connections violate, each with a warning.

    Pipelines expose no public contract API; ``lsst.source.injection`` edits
    the same private list.
    """
    from lsst.pipe.base.pipelineIR import ContractError

    try:
        pipeline.to_graph()
        return
    except ContractError:
        pass
    contracts = list(pipeline._pipelineIR.contracts)
    kept, removed = [], []
    for contract in contracts:
        pipeline._pipelineIR.contracts = [contract]
        try:
            pipeline.to_graph()
        except ContractError:
            removed.append(contract)
        else:
            kept.append(contract)
    pipeline._pipelineIR.contracts = kept
    for contract in removed:
        _LOG.warning("Removed the contract %r: the injected dataset type names violate it.", contract.contract)


def make_injection_pipeline(
    dataset_type_name: str,
    reference_pipeline: Pipeline | str | os.PathLike[str],
    injection_pipeline: Pipeline | str | os.PathLike[str] | None = None,
    exclude_subsets: bool = False,
    excluded_tasks: Iterable[str] | str = DEFAULT_EXCLUDED_TASKS,
    prefix: str = "injected_",
    instrument: str | None = None,
    config: str | Sequence[str] | None = None,
    additional_pipelines: Sequence[Pipeline | str | os.PathLike[str]] = (),
    subset_names: str | Sequence[str] = (),
    subset_description: str = "",
) -> Pipeline:
    """Merge the injection task into a reference pipeline and point the tasks
    downstream of ``dataset_type_name`` at the injected datasets.

    Parameters
    ----------
    dataset_type_name
        Dataset type to inject into (e.g. ``visit_image``).  It must be a
        connection of some task of the reference pipeline.
    reference_pipeline
        The processing pipeline (a `~lsst.pipe.base.Pipeline`, or a YAML file
        or URI, ``#label`` subsetting allowed); its subsets are kept.
    injection_pipeline
        A one-task pipeline whose task has ``visit_image``,
        ``injected_visit_image`` and ``injected_visit_image_catalog``
        connections (`isrinject.VisitInjectTask`).  Default: the shipped
        pipeline for ``dataset_type_name`` (`INJECTION_PIPELINES`).
    exclude_subsets
        Do not add the injection task to the subsets holding the task that
        produces ``dataset_type_name``.
    excluded_tasks
        Task labels to remove from the pipeline (a set or a comma-separated
        string); labels the pipeline lacks are reported with a warning.
    prefix
        Prefix of every dataset type made downstream of the injection.
    instrument
        Fully qualified instrument class name to add to the pipeline.
    config
        Config overrides ``label:key=value`` (one or a list); they may name
        any task of the output pipeline, the injection task and the additional
        tasks included, and are applied after the renaming (so they win over
        it).
    additional_pipelines
        Pipelines whose tasks are added as they are (no renaming), e.g.
        ``pipelines/consolidate.yaml``.
    subset_names
        Subsets (a list or a comma-separated string) that receive every task
        of ``additional_pipelines``; a missing subset is created.  An entry
        may be ``name:description``.
    subset_description
        Description of created subsets whose entry has none.

    Returns
    -------
    pipeline
        The merged pipeline (``write_to_uri`` writes it as YAML).

    Raises
    ------
    ValueError
        If ``dataset_type_name`` is not in the reference pipeline, no
        injection pipeline is known for it, the injection pipeline has other
        than one task or lacks the injection connections, a task label or an
        ``injected_`` subset exists in both pipelines, or an override is
        malformed or names an unknown task.
    """
    if not prefix:
        raise ValueError("prefix must not be empty: the injected datasets would overwrite the originals.")
    pipeline = _load(reference_pipeline)
    overrides = [parse_config_override(c) for c in ([config] if isinstance(config, str) else config or [])]
    if instrument:
        pipeline.addInstrument(instrument)
    pipeline = _exclude_tasks(pipeline, _as_set(excluded_tasks))

    # Overrides of reference tasks take effect before the graph is read, so a
    # renamed connection is prefixed under its configured name.
    for label, key, value in overrides:
        if label in pipeline.task_labels:
            pipeline.addConfigOverride(label, key, value)

    graph = pipeline.to_graph()
    if dataset_type_name not in graph.dataset_types:
        raise ValueError(
            f"Dataset type {dataset_type_name!r} is not a connection of any task in the reference pipeline; "
            "nothing would read the injected data."
        )
    downstream = _rename_downstream(pipeline, graph, dataset_type_name, prefix)
    injection_label = _merge_injection_task(pipeline, injection_pipeline, dataset_type_name, prefix)
    if not exclude_subsets:
        _add_to_neighbour_subsets(pipeline, graph, dataset_type_name, injection_label)
    _add_injected_subsets(pipeline, downstream | {injection_label})
    additional_tasks = _merge_additional_pipelines(pipeline, additional_pipelines, subset_names, subset_description)

    # The remaining overrides name the injection task, an added task, or nothing.
    for label, key, value in overrides:
        if label == injection_label or label in additional_tasks:
            pipeline.addConfigOverride(label, key, value)
        elif label not in pipeline.task_labels:
            raise ValueError(
                f"Config override {label}:{key}={value} names task {label!r}, which is not in the output "
                f"pipeline (tasks: {', '.join(sorted(pipeline.task_labels))})."
            )

    _remove_violated_contracts(pipeline)
    _LOG.info(
        "Injection pipeline: %d tasks, %d downstream of %r read injected data.",
        len(pipeline.task_labels), len(downstream), dataset_type_name,
    )
    return pipeline


def _exclude_tasks(pipeline: Pipeline, excluded: set[str]) -> Pipeline:
    """Remove the ``excluded`` tasks (EDIT keeps their subsets, without them) and the subsets left empty."""
    # pipe_base is imported here, not at module level, so that the command
    # line's --help (which reads DEFAULT_EXCLUDED_TASKS) stays fast.
    from lsst.pipe.base import LabelSpecifier, Pipeline

    labels = set(pipeline.task_labels)
    # Most pipelines lack some of the default exclusions: only report the others.
    if missing := sorted(excluded - labels - DEFAULT_EXCLUDED_TASKS):
        _LOG.warning("Tasks marked for exclusion are not in the reference pipeline: %s.", ", ".join(missing))
    pipeline = pipeline.subsetFromLabels(LabelSpecifier(labels=labels - excluded), Pipeline.PipelineSubsetCtrl.EDIT)
    for subset, members in list(pipeline.subsets.items()):
        if not members:
            _LOG.warning("Removed the subset %r: all its tasks were excluded.", subset)
            pipeline.removeLabeledSubset(subset)
    return pipeline


def _rename_downstream(pipeline: Pipeline, graph: PipelineGraph, dataset_type_name: str, prefix: str) -> set[str]:
    """Point every task downstream of ``dataset_type_name`` at ``prefix`` + the
    names of it and of everything made from it; return those tasks' labels."""
    downstream = graph.select_tasks(f">D:{dataset_type_name}")
    injected_types = {dataset_type_name}
    for label in downstream:
        node = graph.tasks[label]
        outputs = itertools.chain(node.outputs.values(), node.init.outputs.values())
        injected_types |= {edge.parent_dataset_type_name for edge in outputs}
    for label in sorted(downstream):
        node = graph.tasks[label]
        configurable = set(node.config.connections.keys())
        for edge in itertools.chain(
            node.inputs.values(), node.init.inputs.values(), node.outputs.values(), node.init.outputs.values()
        ):
            if edge.parent_dataset_type_name not in injected_types:
                continue
            if edge.connection_name not in configurable:
                _LOG.warning(
                    "Connection %r of task %r is made at run time and cannot be renamed; it keeps reading or "
                    "writing %r.", edge.connection_name, label, edge.dataset_type_name,
                )
                continue
            pipeline.addConfigOverride(label, f"connections.{edge.connection_name}", prefix + edge.dataset_type_name)
    return downstream


def _merge_injection_task(
    pipeline: Pipeline,
    injection_pipeline: Pipeline | str | os.PathLike[str] | None,
    dataset_type_name: str,
    prefix: str,
) -> str:
    """Merge the one-task injection pipeline, its connections pointed at
    ``dataset_type_name`` and the prefixed outputs; return its label."""
    if injection_pipeline is None:
        injection_pipeline = _infer_injection_pipeline(dataset_type_name)
        _LOG.info("Injection pipeline for %r: %s", dataset_type_name, injection_pipeline)
    injection = _load(injection_pipeline)
    if len(injection.task_labels) != 1:
        raise ValueError(
            f"The injection pipeline {injection_pipeline} has {len(injection.task_labels)} tasks "
            f"({', '.join(sorted(injection.task_labels))}); it must have exactly one."
        )
    (injection_label,) = injection.task_labels
    if injection_label in pipeline.task_labels:
        raise ValueError(
            f"Task label {injection_label!r} of the injection pipeline is also in the reference pipeline."
        )
    injection_node = injection.to_graph().tasks[injection_label]
    if missing := sorted(set(_INJECTION_CONNECTIONS) - set(injection_node.config.connections.keys())):
        raise ValueError(
            f"Task {injection_label!r} ({injection_node.task_class_name}) of the injection pipeline has no "
            f"connection(s) {missing}; it must be an isrinject.VisitInjectTask-like task."
        )
    pipeline.mergePipeline(injection)
    for connection, template in _INJECTION_CONNECTIONS.items():
        pipeline.addConfigOverride(
            injection_label, f"connections.{connection}", template.format(name=dataset_type_name, prefix=prefix)
        )
    return injection_label


def _add_to_neighbour_subsets(
    pipeline: Pipeline, graph: PipelineGraph, dataset_type_name: str, injection_label: str
) -> None:
    """Add the injection task to the subsets of the task making the dataset
    type or, when the reference pipeline only reads it, of the tasks reading it."""
    producer = graph.producer_of(dataset_type_name)
    if producer is not None:
        neighbours = [producer.label]
    else:
        neighbours = [node.label for node in graph.consumers_of(dataset_type_name)]
    for subset in set().union(*(pipeline.findSubsetsWithLabel(label) for label in neighbours)):
        pipeline.addLabelToSubset(subset, injection_label)


def _add_injected_subsets(pipeline: Pipeline, touched: set[str]) -> None:
    """Add ``injected_<subset>`` with the ``touched`` tasks of every subset holding some."""
    for subset, members in list(pipeline.subsets.items()):
        injected_members = set(members) & touched
        if not injected_members:
            continue
        name = INJECTED_SUBSET_PREFIX + subset
        if name in pipeline.subsets:
            raise ValueError(f"The reference pipeline already has a subset {name!r}; was it merged before?")
        pipeline.addLabeledSubset(
            name, f"The tasks of subset {subset!r} that source injection touches.", injected_members
        )


def _merge_additional_pipelines(
    pipeline: Pipeline,
    additional_pipelines: Sequence[Pipeline | str | os.PathLike[str]],
    subset_names: str | Sequence[str],
    subset_description: str,
) -> set[str]:
    """Merge the ``additional_pipelines`` as they are and add their tasks to
    ``subset_names`` (created when missing); return their labels."""
    additional_tasks: set[str] = set()
    for additional in additional_pipelines:
        extra = _load(additional)
        if clash := sorted(set(extra.task_labels) & set(pipeline.task_labels)):
            raise ValueError(
                f"Task label(s) {clash} of the additional pipeline {additional} are already in the pipeline."
            )
        additional_tasks |= set(extra.task_labels)
        pipeline.mergePipeline(extra)
    names = [n.strip() for n in (subset_names.split(",") if isinstance(subset_names, str) else subset_names)]
    if any(names) and not additional_tasks:
        raise ValueError(
            f"Subsets {[n for n in names if n]} were given for additional tasks, but no additional pipeline."
        )
    for entry in filter(None, names):
        name, _, description = entry.partition(":")
        if name in pipeline.subsets:
            for label in sorted(additional_tasks):
                pipeline.addLabelToSubset(name, label)
        else:
            pipeline.addLabeledSubset(name, description or subset_description, additional_tasks)
    return additional_tasks
