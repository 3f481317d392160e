"""Small sky-geometry helpers shared by the catalog modules (a package-private module)."""

from __future__ import annotations

__all__ = ["unit_vector_components"]

import numpy as np


def unit_vector_components(
    ra_rad: np.ndarray, dec_rad: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z components of the unit vectors of positions given in radians."""
    cos_dec = np.cos(dec_rad)
    return cos_dec * np.cos(ra_rad), cos_dec * np.sin(ra_rad), np.sin(dec_rad)
