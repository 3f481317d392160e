"""Small PipelineTasks standing in for a processing pipeline (``tests/reference_pipeline.yaml``).

`make_injection_pipeline` is tested on a pipeline made of these tasks:

- `FlatStatisticsTask` (upstream of ``visit_image``: reads the flat,
  writes ``flat_statistics``);
- `MeasureVisitImageTask` (downstream: reads ``visit_image`` and
  ``flat_statistics``, writes ``visit_image_measurement``);
- `SummarizeVisitTask` (downstream through the measurement: one row per
  visit, ``visit_measurement_summary``);
- `MakeVisitImageTask` (produces ``visit_image`` from ``post_isr_image``; used
  to check that the injection task joins the producer's subsets);
- `DemoInstrument`, an instrument class for the demo repository's
  ``ISRSim`` (``make_injection_pipeline(instrument=...)``).

Importable by ``pipetask`` when ``tests/`` is on ``PYTHONPATH``.
"""

from __future__ import annotations

__all__ = [
    "DemoInstrument",
    "FlatStatisticsTask",
    "MakeVisitImageTask",
    "MeasureVisitImageTask",
    "SummarizeVisitTask",
    "measure_visit_image",
]

from collections.abc import Sequence

import numpy as np
from astropy.table import Table
from lsst.images import MaskedImage, VisitImage
from lsst.pipe.base import Instrument, PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

_VISIT_DETECTOR = ("instrument", "visit", "detector")


def measure_visit_image(visit_image: VisitImage) -> dict[str, float]:
    """The measurement `MeasureVisitImageTask` makes of one image.

    Returns
    -------
    measurement
        ``image_sum`` (sum of all pixels), ``injected_sum`` (sum over the
        pixels of the INJECTED mask plane; 0 without that plane) and
        ``injected_pixels`` (their number).
    """
    image = visit_image.image.array.astype(np.float64)
    if "INJECTED" in visit_image.mask.schema.names:
        injected = visit_image.mask.get("INJECTED")
    else:
        injected = np.zeros(image.shape, dtype=bool)
    return {
        "image_sum": float(np.sum(image)),
        "injected_sum": float(np.sum(image[injected])),
        "injected_pixels": float(np.sum(injected)),
    }


class FlatStatisticsConnections(PipelineTaskConnections, dimensions=_VISIT_DETECTOR):
    flat = cT.PrerequisiteInput(
        doc="Flat valid at the visit's time.",
        name="flat",
        storageClass="MaskedImageV2",
        dimensions=("instrument", "detector", "physical_filter"),
        isCalibration=True,
    )
    flat_statistics = cT.Output(
        doc="Mean of the flat.", name="flat_statistics", storageClass="ArrowAstropy", dimensions=_VISIT_DETECTOR
    )


class FlatStatisticsConfig(PipelineTaskConfig, pipelineConnections=FlatStatisticsConnections):
    pass


class FlatStatisticsTask(PipelineTask):
    """Mean of the flat of a visit/detector (independent of ``visit_image``)."""

    ConfigClass = FlatStatisticsConfig
    _DefaultName = "flatStatistics"

    def run(self, flat: MaskedImage) -> Struct:
        return Struct(flat_statistics=Table({"flat_mean": [float(np.mean(flat.image.array))]}))


class MeasureVisitImageConnections(PipelineTaskConnections, dimensions=_VISIT_DETECTOR):
    visit_image = cT.Input(
        doc="Image to measure.", name="visit_image", storageClass="VisitImage", dimensions=_VISIT_DETECTOR
    )
    flat_statistics = cT.Input(
        doc="Upstream flat statistics (passed through).",
        name="flat_statistics",
        storageClass="ArrowAstropy",
        dimensions=_VISIT_DETECTOR,
    )
    measurement = cT.Output(
        doc="One-row table of `measure_visit_image`.",
        name="visit_image_measurement",
        storageClass="ArrowAstropy",
        dimensions=_VISIT_DETECTOR,
    )


class MeasureVisitImageConfig(PipelineTaskConfig, pipelineConnections=MeasureVisitImageConnections):
    pass


class MeasureVisitImageTask(PipelineTask):
    """`measure_visit_image` of a visit image, with the flat mean appended."""

    ConfigClass = MeasureVisitImageConfig
    _DefaultName = "measureVisitImage"

    def run(self, visit_image: VisitImage, flat_statistics: Table) -> Struct:
        row = measure_visit_image(visit_image)
        row["flat_mean"] = float(flat_statistics["flat_mean"][0])
        return Struct(measurement=Table({key: [value] for key, value in row.items()}))


class SummarizeVisitConnections(PipelineTaskConnections, dimensions=("instrument", "visit")):
    measurements = cT.Input(
        doc="Per-detector measurements.",
        name="visit_image_measurement",
        storageClass="ArrowAstropy",
        dimensions=_VISIT_DETECTOR,
        multiple=True,
    )
    summary = cT.Output(
        doc="Sums over the detectors of the visit.",
        name="visit_measurement_summary",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit"),
    )


class SummarizeVisitConfig(PipelineTaskConfig, pipelineConnections=SummarizeVisitConnections):
    pass


class SummarizeVisitTask(PipelineTask):
    """Sum the per-detector measurements of a visit."""

    ConfigClass = SummarizeVisitConfig
    _DefaultName = "summarizeVisit"

    def run(self, measurements: Sequence[Table]) -> Struct:
        return Struct(
            summary=Table(
                {
                    "n_detectors": [len(measurements)],
                    "image_sum": [float(sum(m["image_sum"][0] for m in measurements))],
                    "injected_sum": [float(sum(m["injected_sum"][0] for m in measurements))],
                }
            )
        )


class MakeVisitImageConnections(PipelineTaskConnections, dimensions=_VISIT_DETECTOR):
    post_isr_image = cT.Input(
        doc="Image to copy.", name="post_isr_image", storageClass="VisitImage", dimensions=_VISIT_DETECTOR
    )
    visit_image = cT.Output(
        doc="The same image as visit_image.", name="visit_image", storageClass="VisitImage", dimensions=_VISIT_DETECTOR
    )


class MakeVisitImageConfig(PipelineTaskConfig, pipelineConnections=MakeVisitImageConnections):
    pass


class MakeVisitImageTask(PipelineTask):
    """Copy ``post_isr_image`` to ``visit_image`` (the stand-in for the task that makes it)."""

    ConfigClass = MakeVisitImageConfig
    _DefaultName = "makeVisitImage"

    def run(self, post_isr_image: VisitImage) -> Struct:
        return Struct(visit_image=post_isr_image)


class DemoInstrument(Instrument):
    """The demo repository's instrument (its records are inserted by `isrinject.demo.repo`)."""

    @classmethod
    def getName(cls) -> str:
        return "ISRSim"

    def register(self, registry: object, *, update: bool = False) -> None:
        raise NotImplementedError("The demo instrument is registered by isrinject.demo.repo.register_instrument.")

    def getRawFormatter(self, dataId: object) -> type:
        raise NotImplementedError("The demo repository has no raws.")
