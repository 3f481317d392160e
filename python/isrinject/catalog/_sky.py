"""Small sky-geometry helpers shared by the catalog modules (private)."""

from __future__ import annotations

import numpy as np


def _unit_vector_components(
    ra_rad: np.ndarray, dec_rad: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z components of the unit vectors of positions given in radians."""
    cos_dec = np.cos(dec_rad)
    return cos_dec * np.cos(ra_rad), cos_dec * np.sin(ra_rad), np.sin(dec_rad)
