"""Mask planes of a visit image: names, bits and the planes isrinject adds.

Users configure mask planes by their legacy (afw) names (``BAD``, ``SAT``,
``NO_DATA``, ...); lsst.images spells some of them differently
(``SATURATED``).  `LEGACY_MASK_NAMES` maps one to the other so both work.
"""

from __future__ import annotations

__all__ = ["LEGACY_MASK_NAMES", "add_mask_planes", "any_bit", "mask_bits", "plane_bits"]

from collections.abc import Sequence

import numpy as np
from lsst.images import (
    MaskPlane,
    MaskPlaneBit,
    VisitImage,
    get_legacy_optional_mask_planes,
    get_legacy_visit_image_mask_planes,
)

#: lsst.images names of the legacy (afw) mask plane names users put in configs.
LEGACY_MASK_NAMES: dict[str, str] = {
    legacy: plane.name
    for legacy, plane in {**get_legacy_visit_image_mask_planes(), **get_legacy_optional_mask_planes()}.items()
    if plane is not None
}


def plane_bits(image: VisitImage, names: Sequence[str]) -> list[MaskPlaneBit]:
    """Mask-schema bits of the named planes present in the image (legacy names accepted)."""
    present = set(image.mask.schema.names)
    resolved = [LEGACY_MASK_NAMES.get(name, name) for name in names]
    return [image.mask.schema.bit(name) for name in dict.fromkeys(resolved) if name in present]


def any_bit(mask_array: np.ndarray, bits: Sequence[MaskPlaneBit]) -> np.ndarray:
    """Where any of ``bits`` is set in a (ny, nx, n_bytes) mask array."""
    result = np.zeros(mask_array.shape[:-1], dtype=bool)
    for bit in bits:
        result |= (mask_array[..., bit.index] & bit.mask) != 0
    return result


def mask_bits(visit_image: VisitImage, names: Sequence[str]) -> np.ndarray:
    """OR of the named mask planes present in the image (legacy names accepted)."""
    return any_bit(visit_image.mask.array, plane_bits(visit_image, names))


def add_mask_planes(visit_image: VisitImage, names: Sequence[str]) -> None:
    """Add the missing planes among ``names`` (e.g. INJECTED, SATURATED) in place.

    Planes lsst.images knows (``SATURATED``) keep its description; others
    are described as set by isrinject.
    """
    known = {**get_legacy_visit_image_mask_planes(), **get_legacy_optional_mask_planes()}
    by_name = {plane.name: plane for plane in known.values() if plane is not None}
    present = set(visit_image.mask.schema.names)
    missing = [
        by_name.get(name, MaskPlane(name, f"Pixel affected by isrinject ({name})."))
        for name in names
        if name not in present
    ]
    if missing:
        visit_image.mask = visit_image.mask.add_planes(missing)
