"""Sérsic Fourier profiles for any index n from one shipped table.

`galsim.Sersic` builds a Hankel-transform table for every distinct index n
the first time it is drawn in Fourier space (≈ 10 ms for n ≈ 1 up to ≈ 1 s
for n = 6.2, per process), so a catalog with continuous n pays it per source.
This module replaces that per-n work with one table of the unit-flux,
unit-half-light-radius profile's Fourier transform::

    T_n(k) = 2π ∫₀^∞ I_n(r) J₀(k r) r dr,   I_n(r) ∝ exp(−b_n r^{1/n}),   T_n(0) = 1

(radially symmetric, real; k in radians per half-light radius), tabulated
once from GalSim's own `galsim.Sersic` at tighter accuracy than its defaults
(``kvalue_accuracy`` 1e-8, ``maxk_threshold`` 1e-5) on

- n = 0.30, 0.35, …, 6.20 (GalSim's whole valid range), and
- ln k = ln 1e-4, ln 1e-4 + 0.05, …, ln 1e4,

and shipped as package data (``data/sersic_fourier.npz``, 0.3 MB; rebuilt
by ``python -m isrinject.engine.draw.sersic_table``).  A process only loads it.

Evaluation.  On load (≈ 0.1 s) each row is refined onto a ln k grid ten
times finer with a cubic spline in ln k, kept in single precision (as the
k-images).  For a given n the four nearest rows are combined with cubic
Lagrange weights in n (only over the k range the grid needs), and each
k-point interpolates that row linearly in ln k.  Below k = 1e-4, T is the first node's value
(1 − T < 1e-6 there), and T(0) = 1 exactly so that the total flux is exact.
Above k = 1e4, T = 0 (T < 1e-5 there for every n; the argument is
half-light radius × k, so this needs a half-light radius of more than
2,000 pixels).  Against GalSim at ``kvalue_accuracy`` 1e-8 the interpolated
T is good to ≈ 2e-5 everywhere (tested); GalSim's default-accuracy Sersic
itself differs from that by up to 1.6e-4 at low k.

An affine-transformed Sérsic: GalSim's `galsim.Transformation` of a Sérsic
of flux F and half-light radius h, with matrix A, offset x₀ and flux ratio
ρ, is g(x) = ρ · S(A⁻¹(x − x₀)), so its Fourier transform is::

    ĝ(k) = ρ · |det A| · F · T_n(h · |Aᵀ k|) · exp(−i k·x₀)

which `k_image` evaluates on the frequencies of an N × N periodic pixel grid
(``rfft2`` layout).  A truncated Sérsic (``trunc > 0``, taken by name from
a catalog column) depends on trunc/h as well and is left to GalSim (exact,
but with GalSim's per-profile table cost).
"""

from __future__ import annotations

__all__ = [
    "TABLE_VERSION",
    "SersicFourierTable",
    "build_table",
    "fourier_table",
    "k_image",
]

import dataclasses
import functools
import importlib.resources
import sys
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from scipy.interpolate import CubicSpline

TABLE_VERSION: int = 1
"""Version key of the table's layout and grid; a file of another version is
refused (rebuild it with ``python -m isrinject.engine.draw.sersic_table``)."""

_DATA_FILE = "sersic_fourier.npz"
_N_STEP = 0.05
_LN_K_MIN, _LN_K_MAX, _LN_K_STEP = np.log(1e-4), np.log(1e4), 0.05
_REFINE = 10
_BUILD_GSPARAMS = {"kvalue_accuracy": 1e-8, "maxk_threshold": 1e-5}


def build_table() -> dict[str, np.ndarray]:
    """Tabulate T_n(k) with GalSim (see the module docstring; minutes).

    Returns
    -------
    table
        ``n`` (the index grid), ``ln_k`` (the ln k grid, k in radians per
        half-light radius), ``values`` (T, shape ``(len(n), len(ln_k))``),
        ``version`` and ``galsim_version``.
    """
    n_min, n_max = galsim.Sersic._minimum_n, galsim.Sersic._maximum_n
    n_values = np.round(np.arange(n_min, n_max + _N_STEP / 2, _N_STEP), 10)
    ln_k = _LN_K_MIN + _LN_K_STEP * np.arange(int(round((_LN_K_MAX - _LN_K_MIN) / _LN_K_STEP)) + 1)
    gsparams = galsim.GSParams(**_BUILD_GSPARAMS)
    values = np.empty((len(n_values), len(ln_k)))
    for i, n in enumerate(n_values):
        profile = galsim.Sersic(float(n), half_light_radius=1.0, gsparams=gsparams)
        values[i] = [profile.kValue(galsim.PositionD(k, 0.0)).real for k in np.exp(ln_k)]
    return {
        "n": n_values, "ln_k": ln_k, "values": values,
        "version": np.array(TABLE_VERSION), "galsim_version": np.array(galsim.__version__),
    }


@dataclasses.dataclass(frozen=True)
class SersicFourierTable:
    """T_n(k) on the refined grid (see the module docstring)."""

    n: np.ndarray
    """Index grid (uniform)."""
    ln_k_start: float
    ln_k_step: float
    """The refined ln k grid is ``ln_k_start + ln_k_step · j``."""
    values: np.ndarray
    """T on (n, refined ln k), with one trailing node T = 0 for k beyond the grid."""
    slopes: np.ndarray
    """Differences of ``values`` along ln k (the linear interpolation's slopes)."""

    @classmethod
    def from_arrays(cls, n: np.ndarray, ln_k: np.ndarray, values: np.ndarray) -> SersicFourierTable:
        """Refine a table of `build_table` (cubic spline in ln k)."""
        step = (ln_k[-1] - ln_k[0]) / (len(ln_k) - 1) / _REFINE
        fine = ln_k[0] + step * np.arange((len(ln_k) - 1) * _REFINE + 1)
        refined = CubicSpline(ln_k, values, axis=1)(fine)
        refined = np.concatenate([refined, np.zeros((len(n), 1))], axis=1)
        slopes = np.diff(refined, axis=1)
        # Single precision, as the k-images: halves the work per source.
        refined, slopes = refined.astype(np.float32), slopes.astype(np.float32)
        for array in (refined, slopes):
            array.setflags(write=False)
        return cls(np.asarray(n, dtype=np.float64), float(ln_k[0]), float(step), refined, slopes)

    def _weights(self, n: float) -> tuple[int, np.ndarray]:
        """First of the four nodes around ``n`` and their cubic Lagrange weights."""
        grid = self.n
        if not grid[0] <= n <= grid[-1]:
            raise ValueError(f"Sersic index n={n!r} is outside the tabulated range [{grid[0]}, {grid[-1]}].")
        position = (n - grid[0]) / (grid[1] - grid[0])
        first = min(max(int(position) - 1, 0), len(grid) - 4)
        t = position - first  # n in units of the node spacing from the first node
        weights = np.array([
            -(t - 1.0) * (t - 2.0) * (t - 3.0) / 6.0,
            t * (t - 2.0) * (t - 3.0) / 2.0,
            -t * (t - 1.0) * (t - 3.0) / 2.0,
            t * (t - 1.0) * (t - 2.0) / 6.0,
        ])
        return first, weights

    def row(self, n: float) -> np.ndarray:
        """T_n on the refined ln k grid (cubic Lagrange interpolation in n).

        Raises
        ------
        ValueError
            ``n`` is outside the tabulated range (GalSim's valid range).
        """
        first, weights = self._weights(n)
        return weights @ self.values[first : first + 4].astype(np.float64)

    def evaluate(self, n: float, quadratic: np.ndarray, k_x: np.ndarray, k_y: np.ndarray) -> np.ndarray:
        """T_n(√(kᵀ·Q·k)) on the grid of frequencies ``k_y`` × ``k_x`` (float32).

        Parameters
        ----------
        n
            Sérsic index.
        quadratic
            Q, symmetric positive definite 2 × 2 (x, y order), so that
            kᵀ·Q·k is k² in units of the half-light radius.
        k_x, k_y
            Frequencies of the columns and rows [radians per pixel]; the
            grid's nonzero ``|k|`` lie between the smallest nonzero ``|k_x|``, ``|k_y|``
            and √(max k_x² + max k_y²).

        Raises
        ------
        ValueError
            ``n`` is outside the tabulated range.
        """
        first, weights = self._weights(n)
        # Only the nodes between the grid's smallest nonzero and largest k²
        # are combined in n.
        (a, b), (_, c) = quadratic
        half_spread = np.hypot(0.5 * (a - c), b)
        eigenvalues = (0.5 * (a + c) - half_spread, 0.5 * (a + c) + half_spread)
        k_min = min(np.abs(k_x[1]), np.min(np.abs(k_y[1:]))) if len(k_x) > 1 else 1.0
        k_sq_range = (eigenvalues[0] * k_min**2, eigenvalues[1] * (np.max(k_x**2) + np.max(k_y**2)))
        scale, start = 0.5 / self.ln_k_step, self.ln_k_start / self.ln_k_step
        last_node = self.values.shape[1] - 1
        low, high = (min(max(int(scale * np.log(bound) - start) + offset, 0), last_node)
                     for bound, offset in zip(k_sq_range, (0, 2)))
        weights = weights.astype(np.float32)
        values = weights @ self.values[first : first + 4, low : high + 1]
        slopes = weights @ self.slopes[first : first + 4, low : high]
        # Fractional node index (½ ln k² − ln k₀) / Δ − low = scale · ln(k²·u)
        # with u = exp(−(start + low)/scale) folded into Q, clipped to the
        # nodes: k = 0 gives −inf → the first node (or below k_sq_range, the
        # one at its lower end), k beyond the grid the zero node.
        unit = np.exp(-(start + low) / scale)
        a, b, c = a * unit, b * unit, c * unit
        index = (a * k_x**2).astype(np.float32)[None, :] + (c * k_y**2).astype(np.float32)[:, None]
        index += (2.0 * b * k_y).astype(np.float32)[:, None] * k_x.astype(np.float32)[None, :]
        with np.errstate(divide="ignore"):
            np.log(index, out=index)
        index *= np.float32(scale)
        np.clip(index, 0.0, high - low - 0.001, out=index)
        lower = index.astype(np.int32)
        index -= lower
        index *= slopes[lower]
        index += values[lower]
        return index


@functools.cache
def fourier_table() -> SersicFourierTable:
    """The shipped table, loaded and refined once per process.

    Raises
    ------
    RuntimeError
        The package data file is of another `TABLE_VERSION`.
    """
    with importlib.resources.files(__package__).joinpath("data", _DATA_FILE).open("rb") as stream:
        data = np.load(stream)
        version = int(data["version"])
        if version != TABLE_VERSION:
            raise RuntimeError(
                f"{_DATA_FILE} is table version {version}, this code reads version {TABLE_VERSION}; "
                "rebuild it with `python -m isrinject.engine.draw.sersic_table`."
            )
        return SersicFourierTable.from_arrays(data["n"], data["ln_k"], data["values"])


def _tabulated_sersic(profile: galsim.GSObject) -> tuple[galsim.Sersic, np.ndarray, galsim.PositionD, float] | None:
    """(Sérsic, A, x₀, ρ) of a profile that is an untruncated Sérsic or a
    transformation of one, else `None`."""
    if isinstance(profile, galsim.Transformation):
        original, matrix, offset, ratio = profile.original, profile.jac, profile.offset, profile.flux_ratio
    else:
        original, matrix, offset, ratio = profile, np.eye(2), galsim.PositionD(0.0, 0.0), 1.0
    if not isinstance(original, galsim.Sersic) or original.trunc > 0:
        return None
    return original, np.asarray(matrix, dtype=np.float64), offset, float(ratio)


def k_image(profile: galsim.GSObject, n: int) -> np.ndarray | None:
    """Fourier transform of a Sérsic profile on an N × N pixel grid, or `None`.

    Parameters
    ----------
    profile
        Surface brightness in pixel coordinates: a `galsim.Sersic` (or
        `galsim.DeVaucouleurs`) or a `galsim.Transformation` of one (shear,
        local Jacobian, shift, flux), as ``shear``/``shift``/``withFlux``
        and ``JacobianWCS.profileToImage`` build them.
    n
        Even grid side; frequencies k = 2π·(p, q)/N [radians per pixel].

    Returns
    -------
    spectrum
        ĝ(k) (module docstring), complex64, ``rfft2`` layout N × (N/2 + 1):
        row p holds k_y = 2π·p/N for p < N/2 and 2π·(p − N)/N above, column
        q holds k_x = 2π·q/N.  `None` when the profile is not an untruncated
        Sérsic (including ``trunc > 0``): draw it with GalSim.
    """
    parts = _tabulated_sersic(profile)
    if parts is None:
        return None
    sersic, matrix, offset, ratio = parts
    k_x, k_y = _frequencies(n)
    # |h·Aᵀk|² = kᵀ·Q·k with Q = h²·A·Aᵀ.
    quadratic = sersic.half_light_radius**2 * (matrix @ matrix.T)
    values = fourier_table().evaluate(float(sersic.n), quadratic, k_x, k_y)
    values[0, 0] = 1.0  # T(0) = 1: the total flux is exact.
    amplitude = ratio * abs(matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0]) * sersic.flux
    phase_x = np.exp(-1j * k_x * offset.x).astype(np.complex64)
    phase_y = (amplitude * np.exp(-1j * k_y * offset.y)).astype(np.complex64)
    spectrum = phase_y[:, None] * phase_x[None, :]
    spectrum *= values
    return spectrum


@functools.lru_cache(maxsize=64)
def _frequencies(n: int) -> tuple[np.ndarray, np.ndarray]:
    """k_x (N/2 + 1) and k_y (N, FFT order) of an N × N grid [radians per pixel]."""
    k_x = (2.0 * np.pi / n) * np.arange(n // 2 + 1)
    k_y = (2.0 * np.pi / n) * np.fft.fftfreq(n, 1.0 / n)
    for array in (k_x, k_y):
        array.setflags(write=False)
    return k_x, k_y


def main() -> None:
    """Rebuild the package data file (``python -m isrinject.engine.draw.sersic_table [PATH]``)."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data" / _DATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = build_table()  # savez's stub types keyword arrays as bool
    np.savez_compressed(path, **arrays)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
