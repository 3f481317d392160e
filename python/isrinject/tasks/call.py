"""The arguments of `VisitInjectTask.run`, in either vocabulary.

``lsst.source.injection`` users call the task directly::

    result = task.run(
        injection_catalogs=catalog,          # one Table or a sequence
        input_exposure=visit_img.clone(),
        psf=visit_img.psf, photo_calib=visit_img.photoCalib, wcs=visit_img.wcs,
    )

isrinject also needs the flat ISR divided the image by.  `run_inputs` turns
either call into what the engine takes (a `VisitImage` with the overrides
applied and a list of catalogs), with afw objects converted by lsst.images'
``from_legacy`` when afw is importable.  Nothing here needs a butler.
"""

from __future__ import annotations

__all__ = ["MISSING_FLAT_HELP", "RunInputs", "as_visit_image", "run_inputs"]

import dataclasses
import importlib.util
import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table
from lsst.images import Image, MaskedImage, SkyProjection, VisitImage
from lsst.images.fields import (
    BaseField,
    ChebyshevField,
    Field,
    ProductField,
    SplineField,
    SumField,
    field_from_legacy_photo_calib,
)
from lsst.images.psfs import PointSpreadFunction

#: How to get the flat, quoted by the missing-flat error.
MISSING_FLAT_HELP = (
    "pass flat=<the flat ISR divided this image by>, e.g. "
    "flat = butler.get(isrinject.find_isr_flat(butler, visit_image_data_id)) "
    "(the flat recorded in the visit image's 'LSST CALIB UUID FLAT' card or its butler provenance), "
    "or butler.get('flat', data_id, collections=<calibration collection>) for the one certified "
    "at the visit's time"
)


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What `VisitInjectTask.run` injects, whichever names it was called with."""

    visit_image: VisitImage
    """The image to inject into, with any psf/photo_calib/wcs override applied
    (it shares pixels with the caller's image, which is never modified)."""
    catalogs: list[Table]
    """The injection catalogs."""
    flat: MaskedImage | Image
    """The flat ISR divided the image by."""

    @property
    def data_id(self) -> tuple[int, int]:
        """(visit, detector) of the image, for the noise seed and messages."""
        obs_info = self.visit_image.obs_info
        visit_id = obs_info.visit_id if obs_info.visit_id is not None else (obs_info.exposure_id or 0)
        return int(visit_id), int(self.visit_image.detector.id)


def _afw_available() -> bool:
    """Whether lsst.afw is installed here (it is never required, nor imported
    by isrinject: lsst.images' ``from_legacy`` converters use it)."""
    return importlib.util.find_spec("lsst.afw") is not None


def as_visit_image(obj: Any, what: str = "visit_image") -> VisitImage:
    """Return ``obj`` as an lsst.images `VisitImage`.

    An ``lsst.afw.image.Exposure`` (only when afw is importable) is converted
    with `VisitImage.from_legacy`, which shares its image and variance pixels.

    Raises
    ------
    TypeError
        If ``obj`` is neither, naming ``what`` and the type received.
    """
    if isinstance(obj, VisitImage):
        return obj
    if hasattr(obj, "getMaskedImage") and _afw_available():
        return VisitImage.from_legacy(obj, exposure_record=None)
    raise TypeError(
        f"{what} must be an lsst.images.VisitImage (or an lsst.afw.image.Exposure where afw is "
        f"installed); got {type(obj).__name__}."
    )


def _catalog_list(injection_catalogs: Any) -> list[Table]:
    if injection_catalogs is None:
        raise TypeError("injection_catalogs is required: one astropy Table or a sequence of them.")
    if isinstance(injection_catalogs, Table):
        return [injection_catalogs]
    if not isinstance(injection_catalogs, Sequence) or isinstance(injection_catalogs, str):
        raise TypeError(
            f"injection_catalogs must be an astropy Table or a sequence of them; got "
            f"{type(injection_catalogs).__name__}."
        )
    bad = [f"[{i}] {type(c).__name__}" for i, c in enumerate(injection_catalogs) if not isinstance(c, Table)]
    if bad:
        raise TypeError(f"injection_catalogs must hold astropy Tables; got {', '.join(bad)}.")
    return list(injection_catalogs)


def _as_psf(psf: Any, visit_image: VisitImage) -> PointSpreadFunction:
    if isinstance(psf, PointSpreadFunction):
        return psf
    if hasattr(psf, "computeKernelImage") and _afw_available():
        return PointSpreadFunction.from_legacy(psf, bounds=visit_image.bounds)
    raise TypeError(
        f"psf must be an lsst.images.psfs.PointSpreadFunction (or an afw Psf where afw is installed); "
        f"got {type(psf).__name__}."
    )


def _as_scaling(photo_calib: Any, visit_image: VisitImage) -> Field | None:
    """The photometric scaling [nJy/e⁻] as a field; `None` keeps the image's own
    (an afw PhotoCalib of an image already in nJy is the identity and says
    nothing about electrons)."""
    if isinstance(photo_calib, BaseField):
        if not isinstance(photo_calib, ChebyshevField | ProductField | SplineField | SumField):
            raise TypeError(
                f"photo_calib must be one of lsst.images' concrete fields; got {type(photo_calib).__name__}."
            )
        if photo_calib.unit is None:
            raise TypeError("photo_calib (a photometric-scaling field) must carry a unit, e.g. nJy / electron.")
        return photo_calib
    if isinstance(photo_calib, Real) and not isinstance(photo_calib, bool):
        value = float(photo_calib)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"photo_calib must be a positive, finite scaling in nJy per electron; got {value!r}.")
        return ChebyshevField(visit_image.bounds, np.array([[value]]), unit=u.nJy / u.electron)
    if hasattr(photo_calib, "getCalibrationMean") and _afw_available():
        return field_from_legacy_photo_calib(photo_calib, visit_image.bounds)
    raise TypeError(
        "photo_calib must be an lsst.images photometric-scaling field, a float in nJy per electron, or an "
        f"afw PhotoCalib where afw is installed; got {type(photo_calib).__name__}."
    )


def _as_sky_projection(wcs: Any, visit_image: VisitImage) -> SkyProjection:
    if isinstance(wcs, SkyProjection):
        return wcs
    if hasattr(wcs, "getFitsApproximation") and _afw_available():
        return SkyProjection.from_legacy(
            wcs, visit_image.sky_projection.pixel_frame, pixel_bounds=visit_image.bbox
        )
    raise TypeError(
        f"wcs must be an lsst.images SkyProjection (or an afw SkyWcs where afw is installed); "
        f"got {type(wcs).__name__}."
    )


def _psf_or_read_error(visit_image: VisitImage) -> Any:
    """The image's PSF, or the error that reading it raised (kept for later,
    as lsst.images does: the engine flags every source PSF_COMPUTE_ERROR)."""
    try:
        return visit_image.psf
    except Exception as err:
        return err


def run_inputs(
    *,
    visit_image: Any = None,
    input_exposure: Any = None,
    injection_catalogs: Any = None,
    psf: Any = None,
    photo_calib: Any = None,
    wcs: Any = None,
    flat: Any = None,
    scaling_source: str = "visit_image",
) -> RunInputs:
    """Normalise the arguments of `VisitInjectTask.run`.

    Parameters
    ----------
    visit_image, input_exposure
        The image to inject into, under isrinject's or source_injection's
        name (exactly one): an lsst.images `VisitImage`, or an afw Exposure
        where afw is importable.
    injection_catalogs
        One `astropy.table.Table` or a sequence of them.  Extra columns of any
        dtype pass through to the output catalog unchanged.
    psf
        Replaces the image's PSF: an lsst.images ``PointSpreadFunction`` (afw
        ``Psf`` where afw is importable).
    photo_calib
        Replaces the image's photometric scaling c: an lsst.images field with
        a unit, or a float in nJy per electron (a constant field); an afw
        ``PhotoCalib`` where afw is importable (an identity PhotoCalib of an
        nJy image keeps the image's own scaling).
    wcs
        Replaces the image's sky projection: an lsst.images `SkyProjection`
        (afw ``SkyWcs`` where afw is importable).
    flat
        Required: only checked for presence here (the engine reads it).
    scaling_source
        The task's ``config.scaling_source``; a ``photo_calib`` is only used
        with ``"visit_image"``, so any other value with one is an error.

    Returns
    -------
    inputs
        `RunInputs`.  With no override the image is the caller's object;
        with one it is a new `VisitImage` sharing the caller's pixels (and,
        with ``wcs``, a copy of its metadata without the opaque FITS cards
        of a legacy file).

    Raises
    ------
    TypeError
        For a missing or doubly given image, a missing flat (the message says
        how to get it) or arguments of the wrong type.
    ValueError
        For a non-positive ``photo_calib`` or one that the configured
        ``scaling_source`` would ignore.
    """
    if (visit_image is None) == (input_exposure is None):
        raise TypeError(
            "Pass the image to inject into as visit_image= or input_exposure= (exactly one); got "
            f"{'both' if visit_image is not None else 'neither'}."
        )
    name = "visit_image" if visit_image is not None else "input_exposure"
    image = as_visit_image(visit_image if visit_image is not None else input_exposure, name)
    if flat is None:
        raise TypeError(f"VisitInjectTask.run needs the flat field: {MISSING_FLAT_HELP}.")
    catalogs = _catalog_list(injection_catalogs)
    if photo_calib is not None and scaling_source != "visit_image":
        raise ValueError(
            f"photo_calib was given but config.scaling_source={scaling_source!r} would ignore it; set "
            "scaling_source='visit_image' to use it."
        )
    if psf is None and photo_calib is None and wcs is None:
        return RunInputs(image, catalogs, flat)
    # A new VisitImage sharing the caller's pixels and metadata, so that the
    # overrides below never reach the caller's object.
    overridden = image[...] if wcs is None else _with_sky_projection(image, _as_sky_projection(wcs, image))
    if psf is not None:
        overridden.psf = _as_psf(psf, image)
    if photo_calib is not None and (scaling := _as_scaling(photo_calib, image)) is not None:
        overridden.photometric_scaling = scaling
    return RunInputs(overridden, catalogs, flat)


def _with_sky_projection(image: VisitImage, sky_projection: SkyProjection) -> VisitImage:
    """``image`` with another sky projection (lsst.images has no setter for it),
    sharing its pixels; its metadata is copied, the opaque FITS cards of a
    legacy file are not carried."""
    return VisitImage(
        image.image,
        mask=image.mask,
        variance=image.variance,
        sky_projection=sky_projection,
        bounds=image.bounds,
        obs_info=image.obs_info,
        summary_stats=image.summary_stats,
        photometric_scaling=image.photometric_scaling,
        psf=_psf_or_read_error(image),
        detector=image.detector,
        aperture_corrections=image.aperture_corrections,
        backgrounds=image.backgrounds,
        band=image.band,
        metadata=dict(image.metadata.native),
    )
