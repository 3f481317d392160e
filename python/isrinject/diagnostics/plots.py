"""Flux–variance plots of real and injected pixels (matplotlib, Agg backend).

`plot_flux_variance` draws one PNG per band with two panels:

1. the raw relation, variance V [unit²] against flux I [unit]: every pixel
   has its own slope ``1/g = c/(f·R)``, so real pixels form a fan;
2. each pixel's flat-normalised slope ``(y − b̂ − q̂)/x`` against
   ``x = I·g`` [e⁻] (see `isrinject.diagnostics.stats`): ISR puts every
   real pixel at 1; optionally a flux/gain injection of the same sources
   for comparison (it scatters as ``g/ḡ``).
"""

from __future__ import annotations

__all__ = ["plot_flux_variance"]

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .figures import _thin  # noqa: E402
from .stats import InjectionStatistics  # noqa: E402

_REAL = "#4a4a4a"
_INJECTED = "#e4572e"
_GAIN_ONLY = "#3b8ed0"


def plot_flux_variance(
    statistics: InjectionStatistics,
    path: str | os.PathLike[str],
    *,
    band: str,
    unit: str = "nJy",
    title: str | None = None,
    max_points: int = 20000,
    passed: bool | None = None,
    gain_only: InjectionStatistics | None = None,
) -> Path:
    """Write the two-panel flux–variance PNG of one band.

    Parameters
    ----------
    statistics
        Output of `~isrinject.diagnostics.stats.injection_statistics` (its ``real``/``injected`` samples).
    path
        PNG to write.
    band
        Band name for the title.
    unit
        Image unit (axis labels).
    title
        Extra title text.
    max_points
        Points drawn per population (random subsample).
    passed
        Adds PASS/FAIL to the title when given.
    gain_only
        Statistics of a flux/gain injection of the same sources
        (`~isrinject.diagnostics.stats.gain_only_injection`), drawn for comparison.

    Returns
    -------
    path
        The written file.
    """
    rng = np.random.default_rng(0)
    real, inj = statistics.real, statistics.injected
    ir = _thin(len(real.x), max_points, rng)
    ii = _thin(len(inj.x), max_points, rng)
    fig, (ax_raw, ax_norm) = plt.subplots(1, 2, figsize=(12.5, 5.4), constrained_layout=True)
    point = dict(s=5, alpha=0.5, linewidths=0, rasterized=True)
    ax_raw.scatter(inj.image[ii], inj.variance[ii], color=_INJECTED, label=f"injected pixels ({len(inj.x)})", **point)
    ax_raw.scatter(real.image[ir], real.variance[ir], color=_REAL, label=f"real source pixels ({len(real.x)})",
                   zorder=3, **{**point, "s": 7, "alpha": 0.8})
    ax_raw.set_xscale("log")
    ax_raw.set_yscale("log")
    ax_raw.set_xlabel(f"flux I [{unit}]")
    ax_raw.set_ylabel(f"variance V [{unit}²]")
    ax_raw.set_title("as stored: each pixel has slope c/(f·R)")
    ax_raw.legend(loc="upper left", markerscale=3, frameon=False)

    # Right: each pixel's apparent slope (y − b̂ − q̂)/x against x.
    if gain_only is not None:
        go = gain_only.injected
        ig = _thin(len(go.x), max_points, rng)
        ax_norm.scatter(go.x[ig], go.excess[ig] / go.x[ig], color=_GAIN_ONLY, label=(
            f"flux/gain injection (KS p {gain_only.ks_pvalue:.2g})"), **point)
    ax_norm.scatter(inj.x[ii], inj.excess[ii] / inj.x[ii], color=_INJECTED, label="isrinject", **point)
    ax_norm.scatter(real.x[ir], real.excess[ir] / real.x[ir], color=_REAL, label="real", zorder=3,
                    **{**point, "s": 7, "alpha": 0.8})
    ax_norm.axhline(1.0, color="#2e86ab", lw=1.2, ls="--", label="ISR: slope 1", zorder=4)
    ax_norm.set_xscale("log")
    ax_norm.set_ylim(0.4, 1.6)
    ax_norm.set_xlabel("x = I·g  [pre-flat e⁻],  g = f·R/c per pixel")
    ax_norm.set_ylabel("per-pixel slope (V·g² − baseline) / (I·g)")
    ax_norm.set_title(
        f"flat-normalised: slope real {statistics.slope_real:.4f}, injected {statistics.slope_injected:.4f}"
    )
    ax_norm.legend(loc="upper right", markerscale=3, frameon=False)
    ax_norm.text(
        0.98, 0.03,
        f"isrinject: noise ratio {statistics.noise_ratio:.3f} ± {statistics.noise_ratio_error:.3f}, "
        f"KS p {statistics.ks_pvalue:.3g}\n"
        f"residual rms: real {np.std(real.residual):.1e}, injected {np.std(inj.residual):.1e}",
        transform=ax_norm.transAxes, ha="right", va="bottom", fontsize=9.5,
        bbox=dict(boxstyle="round", fc="white", ec="#cccccc"),
    )

    status = "" if passed is None else ("  —  PASS" if passed else "  —  FAIL")
    fig.suptitle(f"band {band}: flux–variance relation of real and injected pixels{status}"
                 + (f"\n{title}" if title else ""), fontsize=13)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
