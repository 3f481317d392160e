"""Issue 18 (1): ``make_injection_pipeline`` on a reference pipeline of test tasks.

The reference pipeline (``tests/reference_pipeline.yaml``, tasks in
``tests/reference_tasks.py``) has one task upstream of ``visit_image``
(``flat_statistics``) and two downstream (``measure`` reads ``visit_image``,
``summarize`` reads what ``measure`` writes).  The fast tests check the merged
pipeline's graph; the slow one builds it with ``isrinject
make-injection-pipeline``, then runs ``pipetask qgraph`` and ``pipetask run``
on the demo repository and checks that ``measure`` read the injected image.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lsst.daf.butler import Butler, DimensionUniverse
from lsst.pipe.base import Pipeline

from isrinject.tasks.pipeline_tools import make_injection_pipeline, parse_config_override
from reference_tasks import measure_visit_image

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
REFERENCE = TESTS / "reference_pipeline.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def isrinject_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped pipelines are found through ISRINJECT_DIR (this checkout, for these tests only)."""
    monkeypatch.setenv("ISRINJECT_DIR", str(ROOT))


def _connections(pipeline: Pipeline) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """label → ({input connection: dataset type}, {output connection: dataset type}) of the resolved graph."""
    graph = pipeline.to_graph()
    graph.resolve(dimensions=DimensionUniverse())
    return {
        label: (
            {name: edge.dataset_type_name for name, edge in node.inputs.items()},
            {name: edge.dataset_type_name for name, edge in node.outputs.items()},
        )
        for label, node in graph.tasks.items()
    }


def test_downstream_tasks_read_injected_data_and_upstream_is_untouched() -> None:
    import isrinject

    pipeline = isrinject.make_injection_pipeline("visit_image", str(REFERENCE))
    connections = _connections(pipeline)
    assert set(connections) == {"flat_statistics", "inject_visit", "measure", "summarize"}
    assert connections["inject_visit"] == (
        {"visit_image": "visit_image"},
        {
            "injected_visit_image": "injected_visit_image",
            "injected_visit_image_catalog": "injected_visit_image_catalog",
        },
    )
    assert connections["flat_statistics"] == ({}, {"flat_statistics": "flat_statistics"})
    # measure's upstream input keeps its name; its injected input and output are prefixed.
    assert connections["measure"] == (
        {"visit_image": "injected_visit_image", "flat_statistics": "flat_statistics"},
        {"measurement": "injected_visit_image_measurement"},
    )
    assert connections["summarize"] == (
        {"measurements": "injected_visit_image_measurement"},
        {"summary": "injected_visit_measurement_summary"},
    )
    subsets = {name: set(members) for name, members in pipeline.subsets.items()}
    # visit_image has no producer here, so the injection joins the subset of its reader.
    assert subsets == {
        "step1": {"flat_statistics", "measure", "inject_visit"},
        "step2": {"summarize"},
        "calibration_check": {"flat_statistics"},
        "injected_step1": {"inject_visit", "measure"},
        "injected_step2": {"summarize"},
    }
    # The contract holds after renaming both sides, so it is kept.
    assert "measure.connections.measurement == summarize.connections.measurements" in str(pipeline)


def test_injection_joins_the_subsets_of_the_producer(caplog: pytest.LogCaptureFixture) -> None:
    reference = Pipeline.from_uri(str(REFERENCE))
    reference.addTask("reference_tasks.MakeVisitImageTask", "make_visit_image")
    reference.addLabeledSubset("isr", "Makes visit_image.", {"make_visit_image"})
    reference.addLabelToSubset("step1", "make_visit_image")
    merged = make_injection_pipeline("visit_image", reference)
    connections = _connections(merged)
    assert connections["make_visit_image"] == ({"post_isr_image": "post_isr_image"}, {"visit_image": "visit_image"})
    assert connections["measure"][0]["visit_image"] == "injected_visit_image"
    subsets = {name: set(members) for name, members in merged.subsets.items()}
    assert subsets["isr"] == {"make_visit_image", "inject_visit"}
    assert subsets["step1"] == {"make_visit_image", "flat_statistics", "measure", "inject_visit"}
    assert subsets["injected_isr"] == {"inject_visit"}
    assert subsets["injected_step1"] == {"inject_visit", "measure"}
    # -e: the subsets are left as they were; the injected copies still exist.
    reference_again = Pipeline.from_uri(str(REFERENCE))
    reference_again.addTask("reference_tasks.MakeVisitImageTask", "make_visit_image")
    excluded = make_injection_pipeline("visit_image", reference_again, exclude_subsets=True)
    assert set(excluded.subsets["step1"]) == {"flat_statistics", "measure"}
    assert set(excluded.subsets["injected_step1"]) == {"measure"}


def test_prefix_overrides_instrument_and_excluded_tasks(caplog: pytest.LogCaptureFixture) -> None:
    merged = make_injection_pipeline(
        "visit_image", str(REFERENCE), prefix="fake_", instrument="reference_tasks.DemoInstrument",
        config=[
            "measure:connections.measurement=my_measurement", "summarize:connections.measurements=my_measurement",
            "inject_visit:noise_seed=5",
        ],
    )
    connections = _connections(merged)
    assert connections["inject_visit"][1] == {
        "injected_visit_image": "fake_visit_image", "injected_visit_image_catalog": "fake_visit_image_catalog"
    }
    # The reference task's override applies before the renaming, the injection task's after.
    assert connections["measure"] == (
        {"visit_image": "fake_visit_image", "flat_statistics": "flat_statistics"},
        {"measurement": "fake_my_measurement"},
    )
    assert connections["summarize"][0] == {"measurements": "fake_my_measurement"}
    graph = merged.to_graph()
    assert graph.tasks["inject_visit"].config.noise_seed == 5
    assert merged.getInstrument() == "reference_tasks.DemoInstrument"
    assert merged.get_data_id(DimensionUniverse())["instrument"] == "ISRSim"

    with caplog.at_level(logging.WARNING, logger="isrinject.tasks.pipeline_tools"):
        trimmed = make_injection_pipeline("visit_image", str(REFERENCE), excluded_tasks="summarize,no_such_task")
    assert "summarize" not in trimmed.task_labels
    assert "step2" not in trimmed.subsets and "injected_step2" not in trimmed.subsets
    assert "no_such_task" in caplog.text and "'step2'" in caplog.text


def test_additional_pipelines_are_added_unchanged_into_the_named_subsets() -> None:
    consolidate = ROOT / "pipelines" / "consolidate.yaml"
    merged = make_injection_pipeline(
        "visit_image", str(REFERENCE), additional_pipelines=[str(consolidate)],
        subset_names=["step2", "catalogs:Per-visit injected catalogs."],
        config=["consolidate_visit_catalogs:col_is_primary='primary'"],
    )
    connections = _connections(merged)
    assert connections["consolidate_visit_catalogs"] == (
        {"catalogs": "injected_visit_image_catalog", "image_bboxes": "injected_visit_image.bbox"},
        {"visit_catalog": "injected_visit_catalog"},
    )
    assert merged.to_graph().tasks["consolidate_visit_catalogs"].config.col_is_primary == "primary"
    assert set(merged.subsets["step2"]) == {"summarize", "consolidate_visit_catalogs"}
    assert set(merged.subsets["catalogs"]) == {"consolidate_visit_catalogs"}
    assert "Per-visit injected catalogs." in str(merged)
    # The injected copies are made before the additional tasks join (as source_injection does).
    assert set(merged.subsets["injected_step2"]) == {"summarize"}
    with pytest.raises(ValueError, match=r"Subsets \['step2'\] were given for additional tasks"):
        make_injection_pipeline("visit_image", str(REFERENCE), subset_names="step2")


def test_violated_contract_is_removed(caplog: pytest.LogCaptureFixture) -> None:
    reference = Pipeline.fromString(
        REFERENCE.read_text()
        + "  - contract: measure.connections.visit_image == 'visit_image'\n    msg: reads the plain image.\n"
    )
    with caplog.at_level(logging.WARNING, logger="isrinject.tasks.pipeline_tools"):
        merged = make_injection_pipeline("visit_image", reference)
    text = str(merged)
    assert "measure.connections.visit_image == 'visit_image'" not in text
    assert "measure.connections.measurement == summarize.connections.measurements" in text
    assert "measure.connections.visit_image == 'visit_image'" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset_type_name": "calexp"}, "'calexp' is not a connection of any task"),
        ({"dataset_type_name": "flat_statistics"}, "no injection pipeline for dataset type 'flat_statistics'"),
        ({"prefix": ""}, "prefix must not be empty"),
        ({"config": "measure.doFoo=1"}, "'measure.doFoo=1' is not of the form 'label:key=value'"),
        ({"config": "nosuchtask:x=1"}, "names task 'nosuchtask', which is not in the output pipeline"),
        ({"injection_pipeline": str(REFERENCE)}, "has 3 tasks"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs: dict, message: str) -> None:
    arguments = {"dataset_type_name": "visit_image", "reference_pipeline": str(REFERENCE), **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_injection_pipeline(**arguments)


def test_command_line_passes_every_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``isrinject make-injection-pipeline`` without -f prints the pipeline; each option reaches it."""
    from isrinject.cli import main

    consolidate = ROOT / "pipelines" / "consolidate.yaml"
    code = main([
        "make-injection-pipeline", "-t", "visit_image", "-r", str(REFERENCE),
        "-i", str(ROOT / "pipelines" / "inject.yaml"),
        "-e", "-x", "flat_statistics", "--prefix", "sim_", "--instrument", "reference_tasks.DemoInstrument",
        "-c", "inject_visit:noise_seed=9", "-a", str(consolidate), "-s", "catalogs:Catalogs.",
    ])
    assert code == 0
    printed = Pipeline.fromString(capsys.readouterr().out)
    assert set(printed.task_labels) == {"inject_visit", "measure", "summarize", "consolidate_visit_catalogs"}
    assert printed.getInstrument() == "reference_tasks.DemoInstrument"
    graph = printed.to_graph()
    assert graph.tasks["inject_visit"].config.noise_seed == 9
    assert graph.tasks["measure"].inputs["visit_image"].dataset_type_name == "sim_visit_image"
    # -e: step1 (now just measure) did not get the injection task.
    assert set(printed.subsets["step1"]) == {"measure"} and "calibration_check" not in printed.subsets
    assert set(printed.subsets["catalogs"]) == {"consolidate_visit_catalogs"}
    assert main(["make-injection-pipeline", "-t", "calexp", "-r", str(REFERENCE)]) == 1
    assert "'calexp' is not a connection of any task" in capsys.readouterr().err


def test_parse_config_override_keeps_equals_in_the_value() -> None:
    assert parse_config_override("inject_visit:selection=x == 1") == ("inject_visit", "selection", "x == 1")


def _env() -> dict[str, str]:
    """Subprocess environment: the test tasks importable, the venv's tools first on PATH."""
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=900, env=_env())


@pytest.mark.slow
def test_merged_pipeline_builds_and_runs_on_the_demo_repo(demo_repo, tmp_path: Path) -> None:
    demo = demo_repo
    merged = tmp_path / "merged.yaml"
    made = _run([str(BIN / "isrinject"), "make-injection-pipeline", "-t", "visit_image", "-r", str(REFERENCE),
                 "-f", str(merged)])
    assert made.returncode == 0, made.stderr[-3000:]
    again = _run([str(BIN / "isrinject"), "make-injection-pipeline", "-t", "visit_image", "-r", str(REFERENCE),
                  "-f", str(merged)])
    assert again.returncode == 1 and "--overwrite" in again.stderr

    # pipetask qgraph: one quantum per visit/detector for the detector tasks, one per visit for summarize,
    # and measure's quanta read the injected image.
    n_images = len(demo.bands) * len(demo.detectors)
    graph_file = tmp_path / "merged.qg"
    built = _run([str(BIN / "pipetask"), "qgraph", "-b", str(demo.root), "-i", demo.layout.inputs,
                  "-o", "u/test/merged_qgraph", "-p", str(merged), "-q", str(graph_file)])
    assert built.returncode == 0, built.stderr[-3000:]
    from lsst.pipe.base.quantum_graph import PredictedQuantumGraph

    qgraph = PredictedQuantumGraph.read_execution_quanta(graph_file)
    assert {label: len(quanta) for label, quanta in qgraph.quanta_by_task.items()} == {
        "flat_statistics": n_images, "inject_visit": n_images, "measure": n_images, "summarize": len(demo.bands)
    }
    assert "visit_image_measurement" not in qgraph.datasets_by_type
    measure_inputs = [
        {dataset_type.name for dataset_type in quantum.inputs}
        for quantum in qgraph.build_execution_quanta().values()
        if quantum.taskName == "reference_tasks.MeasureVisitImageTask"
    ]
    assert measure_inputs == [{"injected_visit_image", "flat_statistics"}] * n_images

    output = "u/test/merged"
    ran = _run([str(BIN / "pipetask"), "run", "-b", str(demo.root), "-i", demo.layout.inputs, "-o", output,
                "-p", str(merged), "--register-dataset-types"])
    assert ran.returncode == 0, ran.stderr[-3000:]
    butler = Butler.from_config(str(demo.root), collections=output)
    registered = {dataset_type.name for dataset_type in butler.registry.queryDatasetTypes()}
    assert {"injected_visit_image_measurement", "injected_visit_measurement_summary", "flat_statistics"} <= registered
    assert not {"visit_image_measurement", "visit_measurement_summary", "injected_flat_statistics"} & registered
    for band in demo.bands:
        visit = demo.visits[band]
        summed = 0.0
        for detector in demo.detectors:
            data_id = {"instrument": demo.layout.instrument, "visit": visit, "detector": detector}
            measured = butler.get("injected_visit_image_measurement", data_id)
            injected = butler.get("injected_visit_image", data_id)
            plain = butler.get("visit_image", data_id)
            catalog = butler.get("injected_visit_image_catalog", data_id)
            expected = measure_visit_image(injected)
            # measure read the injected image: the same numbers, bit for bit...
            for key, value in expected.items():
                assert measured[key][0] == value, key
            assert expected["injected_pixels"] > 0
            # ...and not the plain one, which differs by exactly the injected flux.
            injected_flux = np.nansum(catalog["injection_flux"])
            assert injected_flux > 0
            plain_sum = measure_visit_image(plain)["image_sum"]
            assert measured["image_sum"][0] - plain_sum == pytest.approx(injected_flux, rel=1e-4)
            # The upstream input is the uninjected flat statistics of this visit/detector.
            assert measured["flat_mean"][0] == butler.get("flat_statistics", data_id)["flat_mean"][0]
            summed += measured["image_sum"][0]
        summary = butler.get("injected_visit_measurement_summary", instrument=demo.layout.instrument, visit=visit)
        assert summary["n_detectors"][0] == len(demo.detectors)
        assert summary["image_sum"][0] == pytest.approx(summed, rel=1e-12)


def _documented_command() -> str:
    """The make-injection-pipeline example of doc/isrinject/coming-from-source-injection.rst."""
    text = (ROOT / "doc" / "isrinject" / "coming-from-source-injection.rst").read_text()
    [line] = [line.strip() for line in text.splitlines() if "-r tests/reference_pipeline.yaml" in line]
    return line


@pytest.mark.slow
def test_documented_example_runs_as_written() -> None:
    """B80 (issue 26): the docs' example, run from the source tree as written, prints the merged pipeline."""
    result = subprocess.run(
        ["bash", "-c", _documented_command()], cwd=ROOT, check=False, capture_output=True, text=True,
        timeout=300, env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "inject_visit:" in result.stdout and "injected_visit_image" in result.stdout


_IMPORT_MESSAGE = (
    "cannot import task 'flat_statistics' (reference_tasks.FlatStatisticsTask): No module named "
    f"'reference_tasks'; put its module on the Python path, e.g. PYTHONPATH={TESTS}{os.pathsep}$PYTHONPATH "
    "isrinject ..."
)


def test_unimportable_task_message_names_it_and_the_fix() -> None:
    """B80: the message for a task class that cannot be imported names the task, the class and the
    PYTHONPATH that fixes it."""
    from isrinject.tasks.messages import task_import_message

    error = ModuleNotFoundError("Unable to import 'reference_tasks.FlatStatisticsTask' "
                                "(No module named 'reference_tasks')")
    assert task_import_message(error, [str(REFERENCE), None]) == _IMPORT_MESSAGE


@pytest.mark.slow
def test_unimportable_task_is_one_line() -> None:
    """B80: through the command, in a process where the tests directory is not importable, that
    message is the only line (it used to be a 24-line traceback)."""
    message = _IMPORT_MESSAGE
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT / "python")
    result = subprocess.run(
        [str(BIN / "isrinject"), "make-injection-pipeline", "-t", "visit_image", "-r", str(REFERENCE)],
        cwd=ROOT / "python", check=False, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"isrinject: error: {message}"], result.stderr
