"""`DifferenceInjectTask`: transients into ``difference_image``, as if they had
been in the science visit before subtraction.

Connections, config and task read top to bottom; ``run()`` is glue over
`isrinject.engine.difference.inject_difference`, which reuses the visit
engine's pixel model (a transient's photons arrive in the science exposure:
ΔI, ΔV follow the science pixel's c/f) and, where the subtraction convolved
the science image, carries ΔI through the matching kernel and ΔV through its
square.  The catalogs, flat and illumination correction and every pixel-model
field are shared with `VisitInjectTask` (`isrinject.tasks.shared`).
"""

from __future__ import annotations

__all__ = [
    "DifferenceInjectConfig",
    "DifferenceInjectConnections",
    "DifferenceInjectTask",
]

import dataclasses
from collections.abc import Sequence

from astropy.table import Table
from lsst.images import DifferenceImage, Image, MaskedImage
from lsst.images.psfs import PointSpreadFunction
from lsst.pex.config import ChoiceField, Field
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
from ..engine.difference import inject_difference
from ..engine.memory import release_freed_memory
from .call import run_inputs
from .inputs import read_flat
from .marking import mark_injected_catalog, mark_injected_image
from .provenance import check_recorded_flat
from .shared import InjectionConfigBase, InjectionInputConnections, check_catalog_rows, quantum_rng


class DifferenceInjectConnections(
    InjectionInputConnections,
    dimensions=("instrument", "visit", "detector"),
    defaultTemplates={"injection_prefix": "injection_", "injected_prefix": "injected_"},
):
    """Connections of `DifferenceInjectTask`: the difference image, optionally
    the science visit's PSF, and the shared catalogs, flat and illumination
    correction (`isrinject.tasks.shared.InjectionInputConnections`)."""

    difference_image = cT.Input(
        doc="Difference image (science visit minus matched template) to inject transients into.",
        name="difference_image",
        storageClass="DifferenceImage",
        dimensions=("instrument", "visit", "detector"),
    )
    science_psf = cT.Input(
        doc="PSF of the science visit, needed when the subtraction convolved the science image (the "
        "difference image then carries the template's PSF).",
        name="visit_image.psf",
        storageClass="PointSpreadFunction",
        dimensions=("instrument", "visit", "detector"),
    )
    injected_difference_image = cT.Output(
        doc="The difference image with injected transients.",
        name="{injected_prefix}difference_image",
        storageClass="DifferenceImage",
        dimensions=("instrument", "visit", "detector"),
    )
    injected_difference_image_catalog = cT.Output(
        doc="The injection catalog of this visit/detector with positions, fluxes and flags.",
        name="{injected_prefix}difference_image_catalog",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )

    def __init__(self, *, config: DifferenceInjectConfig | None = None) -> None:
        super().__init__(config=config)
        if config is None:
            return
        self.difference_image = dataclasses.replace(
            self.difference_image, storageClass=config.difference_image_storage_class
        )
        self.injected_difference_image = dataclasses.replace(
            self.injected_difference_image, storageClass=config.difference_image_storage_class
        )
        if not config.use_science_psf:
            del self.science_psf


class DifferenceInjectConfig(
    InjectionConfigBase, PipelineTaskConfig, pipelineConnections=DifferenceInjectConnections
):
    """Configuration of `DifferenceInjectTask`: the shared fields
    (`isrinject.tasks.shared.InjectionConfigBase`; ``flat`` is the science
    visit's) and how the matching kernel is read."""

    difference_image_storage_class = Field[str](
        doc="Storage class of difference_image.", default="DifferenceImage"
    )
    convolved_image = ChoiceField[str](
        doc="Which image the subtraction's matching kernel convolved.",
        allowed={
            "auto": "Read it: the CONVOLVED_EXPOSURE/convolvedExposure metadata, else the PSF sizes of the "
            "difference image, its templates and the kernel (isrinject.engine.difference).",
            "template": "The template (ip_diffim mode convolveTemplate): the injection is not convolved.",
            "science": "The science image (convolveScience): ΔI is convolved with the kernel, ΔV with its square.",
        },
        default="auto",
    )
    use_science_psf = Field[bool](
        doc="Read the science visit's PSF (visit_image.psf), needed when the science image was convolved.",
        default=False,
    )
    kernel_cell_size = Field[int](
        doc="Side [pixels] of the cells over which the spatially varying matching kernel is held constant.",
        default=256,
        check=lambda value: value >= 1,
    )

    def validate(self) -> None:
        super().validate()
        if self.scaling_source == "empirical":
            raise ValueError(
                "DifferenceInjectConfig.scaling_source='empirical' cannot work: difference pixels do not "
                "follow V ∝ I. Use 'visit_image' or 'config'."
            )


class DifferenceInjectTask(PipelineTask):
    """Inject transients into a ``difference_image`` as if their photons had
    arrived in the science visit before ISR and subtraction (see
    `isrinject.engine.difference`)."""

    ConfigClass = DifferenceInjectConfig
    _DefaultName = "differenceInject"
    config: DifferenceInjectConfig

    def runQuantum(
        self,
        butlerQC: QuantumContext,
        inputRefs: InputQuantizedConnection,
        outputRefs: OutputQuantizedConnection,
    ) -> None:
        # As VisitInjectTask: the quantum's own copy of the image is injected
        # in place, the flat's image and variance planes only are read.
        inputs = butlerQC.get(inputRefs)
        check_recorded_flat(
            inputs["difference_image"].metadata, inputRefs.flat, strict=self.config.check_flat_provenance,
            where=f"Quantum {dict(inputRefs.difference_image.dataId.required)}", log=self.log,
        )
        inputs["flat"] = read_flat(inputs["flat"], with_variance=self.config.include_flat_variance)
        outputs = self.run(**inputs, in_place=True)
        del inputs
        release_freed_memory()
        butlerQC.put(outputs, outputRefs)

    def run(
        self,
        *,
        difference_image: DifferenceImage,
        injection_catalogs: Table | Sequence[Table],
        flat: MaskedImage | Image | None = None,
        illumination_correction: Image | MaskedImage | None = None,
        science_psf: PointSpreadFunction | None = None,
        in_place: bool = False,
    ) -> Struct:
        """Inject the catalog's transients into a copy of ``difference_image``.

        Parameters
        ----------
        difference_image
            The difference image (not modified unless ``in_place``).
        injection_catalogs
            Injection catalogs overlapping the image, one Table or a
            sequence; rows may carry a light curve
            (`isrinject.engine.catalog.lightcurve`), evaluated at the
            exposure midpoint of the science visit (its ``obs_info``).
        flat
            The flat ISR divided the *science* visit by (required).
        illumination_correction
            Its illumination correction R, required when
            ``config.do_illumination_correction``.
        science_psf
            The science visit's PSF, required when the science image was
            convolved.
        in_place
            Inject into ``difference_image`` itself.

        Returns
        -------
        result
            ``injected_difference_image`` (`DifferenceImage`) and
            ``injected_difference_image_catalog`` (`astropy.table.Table`).
        """
        inputs = run_inputs(
            visit_image=difference_image, injection_catalogs=injection_catalogs, flat=flat,
            scaling_source=self.config.scaling_source,
        )
        visit_id, detector_id = inputs.data_id
        rng = quantum_rng(self.config.noise_seed, visit_id, detector_id)
        catalog = catalog_at_exposure(compose_catalog(inputs.catalogs), inputs.visit_image, visit_id, self.log)
        check_catalog_rows(catalog, inputs.catalogs, visit_id, detector_id, config=self.config, log=self.log)
        illumination = illumination_correction if self.config.do_illumination_correction else None
        result = inject_difference(
            inputs.visit_image, catalog, flat=inputs.flat, illumination=illumination, config=self.config,
            rng=rng, log=self.log, visit_id=visit_id, in_place=in_place, science_psf=science_psf,
        )
        # Marked as simulated, with isrinject's version and config hash, as the visit task's outputs.
        mark_injected_image(result.image, self.config)
        mark_injected_catalog(result.catalog, self.config)
        return Struct(
            injected_difference_image=result.image, injected_difference_image_catalog=result.catalog
        )
