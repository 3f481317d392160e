"""Figures of ``isrinject diagnose`` (matplotlib, Agg backend).

`plot_flux_variance`: per visit, one row per injection method (isrinject, and
gain-only with ``compare_gain_only``) of three panels — the raw variance vs
flux of real and injected pixels with the expected relation ``V = I/g + V_sky``
for the flat's range of ``g = f·R/c``; the flat-normalised relation where ISR
puts every pixel on slope 1; the histogram of the residual
``r = (V − V_expected(I)) / (V_expected(I) − V_sky)`` of both groups.

`plot_maps`: per detector (optionally a cutout), the flat ``f``, the effective
gain ``g = f·R/c`` with the injected footprint, ``ΔI = I − I₀`` and, with
``compare_gain_only``, ``g/ḡ`` (the per-pixel error of a one-gain injection).
"""

from __future__ import annotations

__all__ = ["plot_flux_variance", "plot_maps"]

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from .diagnose import DetectorData, VisitDiagnosis
    from .stats import InjectionStatistics

_REAL = "#6b6b6b"
_INJECTED = {"isrinject": "#1f77b4", "gain-only": "#d62728"}


def _thin(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, limit, replace=False))


def _row(axes: Any, s: InjectionStatistics, method: str, unit: str, summary: dict[str, Any], rng: np.random.Generator) -> None:
    ax_raw, ax_norm, ax_hist = axes
    colour = _INJECTED[method]
    real, inj = s.real, s.injected
    verdict = "PASS" if summary["passed"] else "FAIL"
    # (a) raw V against I.
    with np.errstate(invalid="ignore", divide="ignore"):
        g_real = real.x / real.image
    ir = _thin(len(real.x), 6000, rng)
    ii = _thin(len(inj.x), 6000, rng)
    # Real pixels are fewer: draw them on top so they stay visible.
    ax_raw.scatter(inj.image[ii], inj.variance[ii], s=3, c=colour, alpha=0.6, lw=0,
                   label=f"injected pixels ({len(inj.x)})")
    ax_raw.scatter(real.image[ir], real.variance[ir], s=4, c=_REAL, alpha=0.8, lw=0, zorder=3,
                   label=f"real pixels ({len(real.x)})")
    finite_g = g_real[np.isfinite(g_real) & (g_real > 0)]
    if len(finite_g) and len(real.image):
        with np.errstate(invalid="ignore", divide="ignore"):
            v_sky = float(np.nanmedian((real.y - real.excess) / g_real**2))
        lo, hi = np.nanpercentile(np.concatenate([real.image, inj.image]), [0.5, 100])
        grid = np.geomspace(max(lo, 1e-3 * hi), hi, 100)
        for pct, style in ((5, ":"), (50, "-"), (95, "--")):
            g = float(np.percentile(finite_g, pct))
            ax_raw.plot(grid, grid / g + v_sky, "k", ls=style, lw=1,
                        label=f"expected V = I/g + V_sky, g at flat's {pct}th pct ({g:.3g} e⁻/{unit})")
    ax_raw.set_xscale("log")
    ax_raw.set_yscale("log")
    ax_raw.set_xlabel(f"flux I [{unit}]")
    ax_raw.set_ylabel(f"variance V [{unit}²]")
    ax_raw.set_title(f"{method}: variance vs flux")
    ax_raw.legend(fontsize=6.5, loc="upper left", markerscale=3)
    # (b) flat-normalised: every ISR pixel on slope 1.
    ax_norm.scatter(inj.x[ii], inj.excess[ii], s=3, c=colour, alpha=0.6, lw=0, label="injected")
    ax_norm.scatter(real.x[ir], real.excess[ir], s=4, c=_REAL, alpha=0.8, lw=0, zorder=3, label="real")
    xs = np.concatenate([real.x, inj.x])
    xs = xs[xs > 0]
    if len(xs):
        line = np.geomspace(xs.min(), xs.max(), 50)
        ax_norm.plot(line, line, "k-", lw=1, label="ISR: slope 1")
    ax_norm.set_xscale("log")
    ax_norm.set_yscale("log")
    ax_norm.set_xlabel("x = I·g  [pre-flat e⁻]")
    ax_norm.set_ylabel("y − b̂ − q̂ = V·g² − baseline  [e⁻²]")
    ax_norm.set_title(
        f"slope real {summary['slope_real']:.4f}, injected {summary['slope_injected']:.4f}"
        if summary["slope_real"] is not None and summary["slope_injected"] is not None else "slopes: n/a"
    )
    ax_norm.legend(fontsize=7, loc="upper left", markerscale=3)
    # (c) residual histogram.
    rr, ri = real.residual, inj.residual
    both = np.concatenate([rr, ri])
    both = both[np.isfinite(both)]
    if len(both):
        lo, hi = np.percentile(both, [0.5, 99.5])
        span = max(hi - lo, 1e-3)
        bins = np.linspace(lo - 0.05 * span, hi + 0.05 * span, 50)
        for values, kwargs in (
            (rr[np.isfinite(rr)], {"histtype": "stepfilled", "color": _REAL, "alpha": 0.5, "label": f"real ({len(rr)})"}),
            (ri[np.isfinite(ri)], {"histtype": "step", "color": colour, "lw": 1.8, "label": f"injected ({len(ri)})"}),
        ):
            if len(values):
                ax_hist.hist(values, bins=bins, weights=np.full(len(values), 1.0 / len(values)), **kwargs)
        ax_hist.set_yscale("log")
        # A fixed range keeps decade ticks even when every pixel is in one bin.
        ax_hist.set_ylim(1e-4, 1.5)
    ax_hist.axvline(0, color="k", lw=0.8)
    ax_hist.set_xlabel("residual r = (V − V_expected(I)) / (V_expected(I) − V_sky)")
    ax_hist.set_ylabel("fraction of pixels per bin")
    ks_p = summary["ks_pvalue"]
    ratio = summary["noise_ratio"]
    ax_hist.set_title(
        f"KS p = {ks_p:.2g}, noise ratio = {ratio:.3f} → {verdict}" if ks_p is not None and ratio is not None
        else f"→ {verdict}",
        color="green" if summary["passed"] else "red",
    )
    ax_hist.legend(fontsize=7)


def plot_flux_variance(diagnosis: VisitDiagnosis, path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write the flux–variance PNG of one visit (rows: isrinject, gain-only)."""
    rows = [("isrinject", diagnosis.statistics, diagnosis.summary["isrinject"])]
    if diagnosis.gain_only is not None:
        rows.append(("gain-only", diagnosis.gain_only, diagnosis.summary["gain_only"]))
    fig, axes = plt.subplots(len(rows), 3, figsize=(16, 4.8 * len(rows)), squeeze=False)
    rng = np.random.default_rng(seed)
    for ax_row, (method, s, summary) in zip(axes, rows):
        _row(ax_row, s, method, diagnosis.unit, summary, rng)
    if len(rows) > 1:
        for col in range(3):
            lims = [ax.get_xlim() for ax in axes[:, col]]
            for ax in axes[:, col]:
                ax.set_xlim(min(l[0] for l in lims), max(l[1] for l in lims))
            if col < 2:
                lims = [ax.get_ylim() for ax in axes[:, col]]
                for ax in axes[:, col]:
                    ax.set_ylim(min(l[0] for l in lims), max(l[1] for l in lims))
    fig.suptitle(
        f"visit {diagnosis.visit}, band {diagnosis.band}, detector(s) {', '.join(map(str, diagnosis.detectors))}: "
        "injected vs real pixels on the ISR flux–variance relation"
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_maps(
    data: DetectorData,
    path: str | os.PathLike[str],
    *,
    visit: int,
    band: str,
    cutout: tuple[int, int, int, int] | None = None,
    compare_gain_only: bool = False,
) -> Path:
    """Write the flat / effective gain / injected footprint maps of one detector."""
    bbox = data.bbox
    y0, x0 = bbox.y.start, bbox.x.start
    ny, nx = bbox.shape
    if cutout is None:
        cx0, cy0, w, h = x0, y0, nx, ny
    else:
        cx0, cy0, w, h = (int(v) for v in cutout)
    lx0, ly0 = max(cx0 - x0, 0), max(cy0 - y0, 0)
    lx1, ly1 = min(cx0 - x0 + w, nx), min(cy0 - y0 + h, ny)
    if lx1 <= lx0 or ly1 <= ly0:
        raise ValueError(f"Cutout {cutout} does not overlap detector {data.detector} (bbox {bbox}).")
    sl = (slice(ly0, ly1), slice(lx0, lx1))
    extent = (x0 + lx0 - 0.5, x0 + lx1 - 0.5, y0 + ly0 - 0.5, y0 + ly1 - 0.5)
    p = data.pixels
    gain = p.gain[sl]
    stamps = np.asarray(p.injected, bool)[sl]
    # The footprint: where the noiseless model exceeds the original 1σ noise.
    with np.errstate(invalid="ignore"):
        footprint = (np.nan_to_num(p.model) > np.sqrt(p.original_variance))[sl] if p.model is not None else stamps
    delta = (p.image - p.original_image)[sl]
    panels: list[tuple[str, np.ndarray, str, str]] = [
        ("flat f", p.flat[sl], "viridis", "f (dimensionless)"),
        ("effective gain g = f·R/c", gain, "magma", f"g [e⁻/{data.unit}]"),
        ("injected ΔI = I − I₀", delta, "gray_r", f"ΔI [{data.unit}]"),
    ]
    if compare_gain_only:
        panels.append(("g/ḡ: slope error of a flux/gain injection", gain / data.mean_gain[sl], "coolwarm", "g/ḡ"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    for ax, (title, array, cmap, label) in zip(axes[0], panels):
        finite = array[np.isfinite(array)]
        if "ΔI" in title:
            vmax = float(np.percentile(finite, 99.5)) if len(finite) else 1.0
            vmin = -0.05 * vmax
        elif "ḡ" in title:
            dev = float(np.nanmax(np.abs(finite - 1))) if len(finite) else 0.1
            vmin, vmax = 1 - dev, 1 + dev
        else:
            vmin, vmax = (np.percentile(finite, [0.5, 99.5]) if len(finite) else (0, 1))
        im = ax.imshow(array, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        if footprint.any() and "flat f" not in title:
            ax.contour(footprint.astype(float), levels=[0.5], colors="tab:cyan" if "ΔI" not in title else "tab:blue",
                       linewidths=0.8, extent=extent, origin="lower")
        if "ΔI" in title:
            src = data.sources
            ok = np.asarray(src["injected"], bool)
            ax.plot(np.asarray(src["x"])[ok], np.asarray(src["y"])[ok], "+", color="tab:orange", ms=6,
                    label="catalog positions")
            ax.plot([], [], color="tab:blue", lw=0.8, label="footprint: model M > √V₀")
            ax.plot([], [], " ", label=f"INJECTED stamps: {stamps.mean():.0%} of pixels")
            ax.legend(fontsize=7, loc="upper left")
            ax.set_xlim(extent[:2])
            ax.set_ylim(extent[2:])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x [pixel]")
        ax.set_ylabel("y [pixel]")
        fig.colorbar(im, ax=ax, label=label, shrink=0.85)
    where = "" if cutout is None else f", cutout x={cx0}..{cx0 + w - 1}, y={cy0}..{cy0 + h - 1}"
    fig.suptitle(f"visit {visit}, band {band}, detector {data.detector}{where}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
