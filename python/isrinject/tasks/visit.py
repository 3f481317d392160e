"""`VisitInjectTask`: ISR-consistent source injection into ``visit_image``.

Connections, config and task read top to bottom; ``run()`` is glue over the
engine, `isrinject.engine.inject.inject_sources` (catalog rows → stamps → pixel
model → masks and output catalog).  Class names match
``lsst.source.injection`` so that switching is an import change.
"""

from __future__ import annotations

__all__ = [
    "VisitInjectConfig",
    "VisitInjectConnections",
    "VisitInjectTask",
]

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any, cast

from astropy.table import Table
from lsst.images import Image, MaskedImage, VisitImage
from lsst.pex.config import Field
from lsst.pipe.base import (
    InputQuantizedConnection,
    OutputQuantizedConnection,
    PipelineTask,
    PipelineTaskConfig,
    QuantumContext,
    Struct,
)
from lsst.pipe.base import connectionTypes as cT

from ..engine.catalog import compose_catalog
from ..engine.catalog.lightcurve import catalog_at_exposure
from ..engine.inject import inject_sources
from ..engine.memory import release_freed_memory
from .call import run_inputs
from .files import resolve_file_arguments
from .inputs import read_flat
from .marking import mark_injected_catalog, mark_injected_image
from .messages import no_catalog_message
from .provenance import check_recorded_flat
from .shared import InjectionConfigBase, InjectionInputConnections, check_catalog_rows, quantum_rng


class VisitInjectConnections(
    InjectionInputConnections,
    dimensions=("instrument", "visit", "detector"),
    defaultTemplates={"injection_prefix": "injection_", "injected_prefix": "injected_"},
):
    """Connections of `VisitInjectTask` (the catalogs, flat and illumination
    correction are `isrinject.tasks.shared.InjectionInputConnections`)."""

    visit_image = cT.Input(
        doc="Calibrated single-visit image to inject sources into.",
        name="visit_image",
        storageClass="VisitImage",
        dimensions=("instrument", "visit", "detector"),
    )
    injected_visit_image = cT.Output(
        doc="The visit image with injected sources.",
        name="{injected_prefix}visit_image",
        storageClass="VisitImage",
        dimensions=("instrument", "visit", "detector"),
    )
    injected_visit_image_catalog = cT.Output(
        doc="The injection catalog of this visit/detector with positions, fluxes and flags.",
        name="{injected_prefix}visit_image_catalog",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )

    def __init__(self, *, config: VisitInjectConfig | None = None) -> None:
        super().__init__(config=config)
        if config is None:
            return
        self.visit_image = dataclasses.replace(self.visit_image, storageClass=config.visit_image_storage_class)
        self.injected_visit_image = dataclasses.replace(
            self.injected_visit_image, storageClass=config.visit_image_storage_class
        )


class VisitInjectConfig(InjectionConfigBase, PipelineTaskConfig, pipelineConnections=VisitInjectConnections):
    """Configuration of `VisitInjectTask`: the shared fields
    (`isrinject.tasks.shared.InjectionConfigBase`) and the storage class of
    ``visit_image`` (DP1 repositories store ExposureF)."""

    visit_image_storage_class = Field[str](doc="Storage class of visit_image.", default="VisitImage")


class VisitInjectTask(PipelineTask):
    """Inject synthetic sources into a ``visit_image`` as if their photons
    had arrived before ISR (see `isrinject.engine.model`)."""

    ConfigClass = VisitInjectConfig
    _DefaultName = "visitInject"
    config: VisitInjectConfig

    def runQuantum(
        self,
        butlerQC: QuantumContext,
        inputRefs: InputQuantizedConnection,
        outputRefs: OutputQuantizedConnection,
    ) -> None:
        # The butler hands this quantum its own in-memory copy of visit_image
        # (the stored dataset is never touched), so inject into it in place
        # instead of holding a second full copy, and drop the inputs (the
        # flat is as big as the image) before the output is written.
        inputs = butlerQC.get(inputRefs)
        check_recorded_flat(
            inputs["visit_image"].metadata, inputRefs.flat, strict=self.config.check_flat_provenance,
            where=f"Quantum {dict(inputRefs.visit_image.dataId.required)}", log=self.log,
        )
        inputs["flat"] = read_flat(inputs["flat"], with_variance=self.config.include_flat_variance)
        if not inputRefs.injection_catalogs:
            self.log.warning("%s", no_catalog_message(
                VisitInjectConnections(config=self.config).injection_catalogs.name,
                dict(inputRefs.visit_image.dataId.required),
                self.config.process_all_data_ids,
            ))
        outputs = self.run(**inputs, in_place=True, catalogs_are_shards=True)
        del inputs
        release_freed_memory()
        butlerQC.put(outputs, outputRefs)

    def run(
        self,
        *,
        visit_image: VisitImage | str | os.PathLike[str] | None = None,
        injection_catalogs: Table | Sequence[Table] | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        flat: MaskedImage | Image | str | os.PathLike[str] | None = None,
        illumination_correction: Image | MaskedImage | str | os.PathLike[str] | None = None,
        in_place: bool = False,
        catalogs_are_shards: bool = False,
        input_exposure: VisitImage | None = None,
        psf: Any = None,
        photo_calib: Any = None,
        wcs: Any = None,
    ) -> Struct:
        """Inject the catalog sources into a copy of ``visit_image``.

        Also accepts ``lsst.source.injection``'s call (``input_exposure``,
        ``psf``, ``photo_calib``, ``wcs``; see `isrinject.tasks.call.run_inputs`),
        plus the required ``flat``.  The images, the flat and the catalogs
        may also be file names (`isrinject.tasks.files`: lsst.images files,
        afw-written flats and illumination corrections; the flat is checked
        against the one the image records, as `runQuantum` does).

        Parameters
        ----------
        visit_image
            The calibrated visit image (not modified unless ``in_place``);
            ``input_exposure`` is the same under source_injection's name.
        injection_catalogs
            Injection catalogs overlapping the image (source_injection
            format), one Table or a sequence; may be empty.  Extra columns
            pass through to the output catalog.
        flat
            The flat (image f and variance V_f) ISR divided this image by;
            an `Image` has no V_f.  Its mask is not used.  Required: see
            `isrinject.find_isr_flat`.
        psf, photo_calib, wcs
            Overrides of the image's PSF, photometric scaling (a field or a
            float in nJy/e⁻) and sky projection.
        illumination_correction
            The illumination correction R, required when
            ``config.do_illumination_correction``.
        in_place
            Inject into ``visit_image`` itself (it becomes the output) instead
            of a copy; `runQuantum` does, as the butler's object is the
            quantum's own.
        catalogs_are_shards
            The catalogs are the htm7 shards overlapping the image (as in
            `runQuantum`), which hold the neighbouring detectors' rows too:
            rows centred off the image are logged at INFO, not as a warning
            (a warning still when no row is on the image).

        Returns
        -------
        result
            ``injected_visit_image`` (`VisitImage`) and
            ``injected_visit_image_catalog`` (`astropy.table.Table`), also as
            source_injection's ``output_exposure`` and ``output_catalog``
            (the same objects).
        """
        # File names (isrinject inject's files) are read here, the flat checked against the image.
        files = resolve_file_arguments(
            {
                "visit_image": visit_image, "input_exposure": input_exposure, "flat": flat, "in_place": in_place,
                "illumination_correction": illumination_correction, "injection_catalogs": injection_catalogs,
            },
            config=self.config, log=self.log,
        )
        visit_image, input_exposure, flat, illumination_correction, injection_catalogs, in_place = (
            files[name] for name in (
                "visit_image", "input_exposure", "flat", "illumination_correction", "injection_catalogs", "in_place"
            )
        )
        inputs = run_inputs(
            visit_image=visit_image, input_exposure=input_exposure, injection_catalogs=injection_catalogs,
            psf=psf, photo_calib=photo_calib, wcs=wcs, flat=flat, scaling_source=self.config.scaling_source,
        )
        visit_id, detector_id = inputs.data_id
        rng = quantum_rng(self.config.noise_seed, visit_id, detector_id)
        catalog = catalog_at_exposure(compose_catalog(inputs.catalogs), inputs.visit_image, visit_id, self.log)
        check_catalog_rows(
            catalog, inputs.catalogs, visit_id, detector_id, config=self.config, log=self.log,
            catalogs_are_shards=catalogs_are_shards,
        )
        illumination = cast(
            "Image | MaskedImage | None",
            illumination_correction if self.config.do_illumination_correction else None,
        )
        result = inject_sources(
            inputs.visit_image, catalog, flat=inputs.flat, illumination=illumination, config=self.config,
            rng=rng, log=self.log, visit_id=visit_id, in_place=in_place,
            off_image_level=logging.INFO if catalogs_are_shards else logging.WARNING,
        )
        mark_injected_image(result.image, self.config)
        mark_injected_catalog(result.catalog, self.config)
        # Rows that all failed still produce the visit: the flagged catalog is
        # the record of what went wrong, and downstream quanta keep running.
        return Struct(
            injected_visit_image=result.image, injected_visit_image_catalog=result.catalog,
            output_exposure=result.image, output_catalog=result.catalog,
        )

