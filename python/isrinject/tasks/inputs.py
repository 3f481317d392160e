"""Reading the task's inputs from butler handles (`isrinject.tasks.call` adapts run()'s arguments)."""

from __future__ import annotations

__all__ = ["read_flat"]

from typing import Any

from lsst.daf.butler import DeferredDatasetHandle
from lsst.images import Image, MaskedImage, MaskSchema


def read_flat(handle: DeferredDatasetHandle, *, with_variance: bool) -> MaskedImage | Image | Any:
    """Read the planes of the flat that the pixel model uses.

    The flat's mask is never used, and reading a 4k × 4k mask plane costs as
    much as an image plane plus its conversion (≈ 0.6 s), so storage classes
    that declare lsst.images' ``components`` read (``MaskedImageV2``) give
    the image and, if ``with_variance``, the variance plane only; any other
    storage class (``ExposureF``) is read whole.

    Parameters
    ----------
    handle
        The quantum's deferred handle of the flat.
    with_variance
        Whether to read the variance plane V_f (``include_flat_variance``).

    Returns
    -------
    flat
        A `MaskedImage` with an empty mask when the variance is read, else
        the image plane as an `Image`; the whole dataset for storage classes
        without component reads.
    """
    wanted = ["image", "variance"] if with_variance else ["image"]
    components = handle.ref.datasetType.storageClass.allComponents()
    if "components" not in components or any(name not in components for name in wanted):
        return handle.get()
    planes = handle.get(component="components", parameters={"components": wanted})
    if not with_variance:
        return planes["image"]
    return MaskedImage(planes["image"], variance=planes["variance"], mask_schema=MaskSchema([]))
