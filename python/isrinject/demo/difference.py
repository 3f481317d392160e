"""Difference images for the demo repository (`isrinject.sim.difference`).

Each demo visit image gets a template-convolved ``difference_image``, as DP2
makes them: a template of the same scene with a PSF 0.8 times as wide as the
visit's (a deeper coadd in better seeing, variance a quarter of the visit's),
matched by a Gaussian kernel and subtracted.
"""

from __future__ import annotations

__all__ = ["DIFFERENCE_IMAGE", "TEMPLATE_PSF_RATIO", "put_difference_image", "register_difference_image"]

from collections.abc import Callable
from typing import Any

from lsst.daf.butler import Butler, DatasetRef, DatasetType

from ..sim import SimulatedExposure
from ..sim.difference import difference_from_scene, gaussian_sigma

#: Dataset type of the difference images.
DIFFERENCE_IMAGE = "difference_image"
#: Template PSF σ / visit PSF σ.
TEMPLATE_PSF_RATIO = 0.8


def register_difference_image(butler: Butler) -> None:
    """Register ``difference_image`` (``DifferenceImage``, visit + detector)."""
    butler.registry.registerDatasetType(
        DatasetType(DIFFERENCE_IMAGE, ("instrument", "visit", "detector"), "DifferenceImage",
                    universe=butler.dimensions)
    )


def put_difference_image(
    butler: Butler,
    sim: SimulatedExposure,
    simulate: Callable[..., SimulatedExposure],
    *,
    instrument: str,
    visit: int,
    detector: int,
    run: str,
    seed: int,
) -> DatasetRef:
    """Put the difference image of a demo visit image into ``run``.

    Parameters
    ----------
    sim
        The demo's simulated visit.
    simulate
        The call that made ``sim`` with its arguments bound, taking
        ``psf_sigma_pixels`` and ``add_noise``: it draws the template's scene.
    instrument, visit, detector, run
        Where it goes.
    seed
        Seed of the template noise.
    """
    template_sigma = TEMPLATE_PSF_RATIO * gaussian_sigma(sim.visit_image)
    template_scene: Any = simulate(psf_sigma_pixels=template_sigma, add_noise=False).source_model_njy
    pair = difference_from_scene(sim, template_scene, template_psf_sigma=template_sigma, convolved="template",
                                 seed=seed)
    return butler.put(pair.difference_image, DIFFERENCE_IMAGE, instrument=instrument, visit=visit,
                      detector=detector, run=run)
