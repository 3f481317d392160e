"""The shipped pipelines and config overrides build the connections users need."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lsst.pipe.base import Pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def task_node(monkeypatch: pytest.MonkeyPatch):
    """``task_node(pipeline_file)``: the resolved ``inject_visit`` node of a shipped pipeline.
    ISRINJECT_DIR (used by the pipeline files) defaults to this checkout for this test only."""
    if "ISRINJECT_DIR" not in os.environ:
        monkeypatch.setenv("ISRINJECT_DIR", str(ROOT))

    def load(pipeline_file: str):
        from lsst.daf.butler import DimensionUniverse

        graph = Pipeline.from_uri(str(ROOT / "pipelines" / pipeline_file)).to_graph()
        graph.resolve(dimensions=DimensionUniverse())
        return graph.tasks["inject_visit"]

    return load


def test_default_pipeline_connections(task_node) -> None:
    node = task_node("inject.yaml")
    assert set(node.dimensions.required) == {"instrument", "visit", "detector"}
    flat = node.prerequisite_inputs["flat"]
    assert flat.dataset_type_name == "flat"
    assert flat.is_calibration
    assert set(node.get_connections().flat.dimensions) == {"instrument", "detector", "physical_filter"}
    assert node.get_connections().flat.storageClass == "MaskedImageV2"
    catalogs = node.prerequisite_inputs["injection_catalogs"]
    assert catalogs.dataset_type_name == "injection_catalog"
    assert "illumination_correction" not in node.prerequisite_inputs
    assert {"injected_visit_image", "injected_visit_image_catalog"} <= set(node.outputs)
    assert node.inputs["visit_image"].dataset_type_name == "visit_image"


def test_dp1_overrides(task_node) -> None:
    node = task_node("inject_dp1.yaml")
    connections = node.get_connections()
    assert connections.visit_image.storageClass == "ExposureF"
    assert connections.flat.storageClass == "ExposureF"
    illumination = node.prerequisite_inputs["illumination_correction"]
    assert illumination.dataset_type_name == "illuminationCorrection" and illumination.is_calibration
    assert node.config.do_illumination_correction


def test_electron_override_file() -> None:
    from isrinject import VisitInjectConfig

    config = VisitInjectConfig()
    config.load(str(ROOT / "config" / "electrons.py"))
    assert config.scaling_source == "constant" and config.photometric_scaling == pytest.approx(1.0)
