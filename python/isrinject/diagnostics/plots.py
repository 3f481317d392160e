"""Flux–variance plots of real and injected pixels (matplotlib, Agg backend).

`plot_flux_variance` draws one PNG per band with two panels:

1. the raw relation, variance V [unit²] against flux I [unit]: every pixel
   has its own slope ``1/g = c/(f·R)``, so real pixels form a fan;
2. the flat-normalised relation ``y − b̂ − q̂`` [e⁻²] against ``x = I·g``
   [e⁻] (see `isrinject.diagnostics.stats`), where ISR puts every pixel on
   the slope-1 line; the inset histogram shows the residual
   ``r = (y − b̂ − q̂)/x − 1`` of both populations.
"""

from __future__ import annotations

__all__ = ["plot_flux_variance"]

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .stats import InjectionStatistics  # noqa: E402

_REAL = "#4a4a4a"
_INJECTED = "#e4572e"


def _thin(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, limit, replace=False))


def plot_flux_variance(
    statistics: InjectionStatistics,
    path: str | os.PathLike[str],
    *,
    band: str,
    unit: str = "nJy",
    title: str | None = None,
    max_points: int = 20000,
    passed: bool | None = None,
) -> Path:
    """Write the two-panel flux–variance PNG of one band.

    Parameters
    ----------
    statistics
        Output of `injection_statistics` (its ``real``/``injected`` samples).
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
    ax_raw.scatter(real.image[ir], real.variance[ir], color=_REAL, label=f"real source pixels ({len(real.x)})", **point)
    ax_raw.scatter(inj.image[ii], inj.variance[ii], color=_INJECTED, label=f"injected pixels ({len(inj.x)})", **point)
    ax_raw.set_xscale("log")
    ax_raw.set_yscale("log")
    ax_raw.set_xlabel(f"flux I [{unit}]")
    ax_raw.set_ylabel(f"variance V [{unit}²]")
    ax_raw.set_title("as stored: each pixel has slope c/(f·R)")
    ax_raw.legend(loc="upper left", markerscale=3, frameon=False)

    ax_norm.scatter(real.x[ir], real.excess[ir], color=_REAL, label="real", **point)
    ax_norm.scatter(inj.x[ii], inj.excess[ii], color=_INJECTED, label="injected", **point)
    xs = np.concatenate([real.x, inj.x])
    xs = xs[xs > 0]
    if len(xs):
        grid = np.geomspace(xs.min(), xs.max(), 50)
        ax_norm.plot(grid, grid, color="#2e86ab", lw=1.5, label="ISR: slope 1")
    ax_norm.set_xscale("log")
    ax_norm.set_yscale("log")
    ax_norm.set_xlabel("x = I·g  [pre-flat e⁻],  g = f·R/c")
    ax_norm.set_ylabel("y − b̂ − q̂ = V·g² − baseline  [e⁻²]")
    ax_norm.set_title(
        f"flat-normalised: slope real {statistics.slope_real:.4f}, injected {statistics.slope_injected:.4f}"
    )
    ax_norm.legend(loc="upper left", markerscale=3, frameon=False)
    ax_norm.text(
        0.98, 0.03,
        f"noise ratio {statistics.noise_ratio:.3f} ± {statistics.noise_ratio_error:.3f}\n"
        f"KS p (residuals) {statistics.ks_pvalue:.3g}",
        transform=ax_norm.transAxes, ha="right", va="bottom", fontsize=10,
        bbox=dict(boxstyle="round", fc="white", ec="#cccccc"),
    )
    # Inset: residual histograms (the per-pixel slope − 1).
    inset = ax_norm.inset_axes([0.62, 0.22, 0.35, 0.28])
    r_real, r_inj = real.residual, inj.residual
    both = np.concatenate([r_real, r_inj])
    both = both[np.isfinite(both)]
    if len(both):
        lo, hi = np.percentile(both, [0.5, 99.5])
        if hi <= lo:
            lo, hi = lo - 1e-6, hi + 1e-6
        bins = np.linspace(lo, hi, 40)
        inset.hist(r_real, bins=bins, density=True, histtype="step", color=_REAL, lw=1.3)
        inset.hist(r_inj, bins=bins, density=True, histtype="step", color=_INJECTED, lw=1.3)
    inset.set_yticks([])
    inset.tick_params(labelsize=7)
    inset.set_xlabel("residual r = slope − 1", fontsize=8)
    inset.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
    inset.xaxis.get_offset_text().set_fontsize(7)

    status = "" if passed is None else ("  —  PASS" if passed else "  —  FAIL")
    fig.suptitle(f"band {band}: flux–variance relation of real and injected pixels{status}"
                 + (f"\n{title}" if title else ""), fontsize=13)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
