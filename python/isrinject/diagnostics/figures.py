"""Figures of ``isrinject diagnose`` and the demo (matplotlib, Agg backend), one palette.

`plot_flux_variance`: per visit, first the forum's panel (`plot_forum_panel`:
linear variance against image of the 128×128 cutout around a bright injected
star, real, isrinject-injected and upstream-injected pixels with their fitted
slopes; `isrinject.diagnostics.forum`), then one row per injection method
(isrinject, and the emulated ``lsst.source.injection`` with
``compare_upstream``) of four panels:

1. variance V against flux I of real and injected pixels with the expected
   relation ``V = I/g + V_sky`` for the range of ``g = f·R/c``;
2. each pixel's flat-normalised slope ``(y − b̂ − q̂)/x`` against
   ``x = I·g`` [pre-flat e⁻] (`isrinject.diagnostics.stats`): ISR puts
   every pixel at 1, one slope ``s`` per amplifier scatters as ``s·g``;
3. the histogram of that slope residual for real and injected pixels (the
   KS comparison);
4. the histogram of the per-pixel relation residual ``(V − V₀)/ΔV_ISR − 1``
   of the injected pixels (`stats.relation_residual`; needs no real pixels).

`plot_maps`: per detector or cutout, the flat ``f``, the effective gain
``g = f·R/c`` with the injected footprint, ``ΔI = I − I₀`` and, with
``compare_upstream``, ``s·g`` (the upstream slope over ISR's ``1/g``).

`plot_completeness` and `plot_pulls`: the catalog-level checks
(`isrinject.diagnostics.photometry`) of isrinject, the upstream emulation
and, on simulations, the truth.  `plot_roc`: the classifier two-sample test
(`isrinject.diagnostics.discriminate`).  `plot_forum`: the forum panel alone
(the README figure).

Every axis range follows the data it shows.
"""

from __future__ import annotations

__all__ = [
    "LABELS",
    "PALETTE",
    "histogram_bins",
    "plot_completeness",
    "plot_flux_variance",
    "plot_forum",
    "plot_forum_panel",
    "plot_maps",
    "plot_pulls",
    "plot_roc",
    "thin",
]

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .forum import line_fit
from .results import CatalogChecks, ForumCutout, RegionData, VisitDiagnosis
from .stats import InjectionStatistics
from .verdict import Verdict

#: Colours of the pixel populations and injection methods (every figure uses these).
PALETTE: dict[str, str] = {
    "real": "#6b6b6b",
    "isrinject": "#1f77b4",
    "upstream": "#d62728",
    "truth": "#2ca02c",
}
#: How the arms are named in legends.
LABELS: dict[str, str] = {
    "real": "real",
    "isrinject": "isrinject",
    "upstream": "source_injection (emulated)",
    "truth": "truth (simulator)",
}


def thin(n: int, limit: int, rng: np.random.Generator) -> npt.NDArray[np.intp]:
    """Indices of at most ``limit`` of ``n`` points (random, sorted), for scatter plots."""
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, limit, replace=False))


def histogram_bins(
    values: Sequence[npt.NDArray[np.float64]], n_bins: int = 40
) -> tuple[npt.NDArray[np.float64], int]:
    """Bin edges that fit the data, in units of 10^e so the axis needs no offset text.

    The range is the 0.5–99.5 percentile span of all finite values, padded by
    5 % (values outside belong in the edge bins), so a narrow distribution
    (e.g. relation residuals of 10⁻⁷) is resolved into many bins instead of
    falling into one.

    Returns
    -------
    edges, exponent
        ``n_bins + 1`` edges of the values divided by ``10**exponent``.
    """
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    peak = float(np.max(np.abs(finite))) if len(finite) else 0.0
    exponent = 0 if peak == 0 or 1e-2 <= peak < 1e3 else math.floor(math.log10(peak))
    scaled = finite / 10.0**exponent
    lo, hi = np.percentile(scaled, [0.5, 99.5]) if len(scaled) else (-1.0, 1.0)
    if not hi > lo:
        half = max(abs(lo) * 1e-3, 1e-12)
        lo, hi = lo - half, hi + half
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, n_bins + 1), exponent


def _histograms(
    ax: Axes, samples: Sequence[tuple[npt.NDArray[np.float64], str, str, bool]], xlabel: str
) -> None:
    """Fraction-per-bin histograms of ``(values, label, colour, filled)`` on `histogram_bins`."""
    samples = [(v[np.isfinite(v)], label, colour, filled) for v, label, colour, filled in samples]
    samples = [s for s in samples if len(s[0])]
    if not samples:
        ax.text(0.5, 0.5, "no pixels", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlabel(xlabel)
        return
    edges, exponent = histogram_bins([s[0] for s in samples])
    smallest = 1.0
    for values, label, colour, filled in samples:
        clipped = np.clip(values / 10.0**exponent, edges[0], edges[-1])
        weights = np.full(len(clipped), 1.0 / len(clipped))
        counts = np.asarray(ax.hist(
            clipped, bins=edges.tolist(), weights=weights, color=colour,
            label=f"{label} ({len(values)}), rms {np.sqrt(np.mean(values**2)):.2g}",
            histtype="stepfilled" if filled else "step", alpha=0.45 if filled else None,
            linewidth=None if filled else 1.8,
        )[0])
        smallest = min(smallest, float(np.min(counts[counts > 0])))
    ax.set_yscale("log")
    ax.set_ylim(smallest / 2, 1.5)
    ax.set_xlim(edges[0], edges[-1])
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(xlabel + (f"  [$\\times 10^{{{exponent}}}$]" if exponent else ""))
    ax.set_ylabel("fraction of pixels per bin")
    ax.legend(fontsize=7)


def _check_text(result: Verdict, names: Sequence[str]) -> str:
    parts = []
    for name in names:
        c = result[name]
        value = "" if c.value is None else f" {c.value:.3g}"
        parts.append(f"{name}{value}: {c.status}")
    return ", ".join(parts)


def _row(axes: Sequence[Axes], s: InjectionStatistics, result: Verdict, method: str, unit: str,
         rng: np.random.Generator) -> None:
    ax_raw, ax_norm, ax_ks, ax_rel = axes
    colour = PALETTE[method]
    real, inj = s.real, s.injected
    ir, ii = thin(len(real.x), 6000, rng), thin(len(inj.x), 6000, rng)
    # (1) raw V against I; real pixels are fewer: on top so they stay visible.
    ax_raw.scatter(inj.image[ii], inj.variance[ii], s=3, color=colour, alpha=0.6, lw=0, rasterized=True,
                   label=f"injected pixels ({len(inj.x)})")
    ax_raw.scatter(real.image[ir], real.variance[ir], s=4, color=PALETTE["real"], alpha=0.8, lw=0, zorder=3,
                   rasterized=True, label=f"real pixels ({len(real.x)})")
    images = np.concatenate([real.image, inj.image])
    with np.errstate(invalid="ignore", divide="ignore"):
        gains = np.concatenate([real.x, inj.x]) / images
        v_sky = np.concatenate([(real.y - real.excess), (inj.y - inj.excess)]) / gains**2
    usable = np.isfinite(gains) & (gains > 0) & (images > 0)
    if usable.any():
        sky = float(np.nanmedian(v_sky[usable]))
        lo, hi = np.percentile(images[usable], [0.5, 100])
        grid = np.geomspace(max(lo, 1e-3 * hi), hi, 100)
        for pct, style in ((5, ":"), (50, "-"), (95, "--")):
            g = float(np.percentile(gains[usable], pct))
            ax_raw.plot(grid, grid / g + sky, "k", ls=style, lw=1,
                        label=f"V = I/g + V_sky, g at {pct}th pct ({g:.3g} e⁻/{unit})")
    ax_raw.set_xscale("log")
    ax_raw.set_yscale("log")
    ax_raw.set_xlabel(f"flux I [{unit}]")
    ax_raw.set_ylabel(f"variance V [{unit}²]")
    ax_raw.set_title(f"{LABELS[method]}: variance vs flux (each pixel has slope 1/g)", fontsize=10)
    ax_raw.legend(fontsize=6.5, loc="upper left", markerscale=3)
    # (2) per-pixel flat-normalised slope: 1 for ISR.
    slopes = []
    for sample, idx, c, label, size in ((inj, ii, colour, "injected", 3), (real, ir, PALETTE["real"], "real", 4)):
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = sample.excess[idx] / sample.x[idx]
        slopes.append(slope)
        ax_norm.scatter(sample.x[idx], slope, s=size, color=c, alpha=0.6, lw=0, rasterized=True, label=label,
                        zorder=3 if label == "real" else 2)
    ax_norm.axhline(1.0, color="k", lw=1, ls="--", label="ISR: slope 1")
    every = np.concatenate(slopes)
    every = every[np.isfinite(every)]
    if len(every):
        lo, hi = np.percentile(every, [1, 99])
        lo, hi = min(lo, 1.0), max(hi, 1.0)
        pad = max(0.1 * (hi - lo), 1e-3)
        ax_norm.set_ylim(lo - pad, hi + pad)
    ax_norm.set_xscale("log")
    ax_norm.set_xlabel("x = I·g  [pre-flat e⁻]")
    ax_norm.set_ylabel("per-pixel slope (V·g² − b̂ − q̂) / (I·g)")
    ax_norm.set_title(_check_text(result, ("slopes",)), fontsize=10)
    ax_norm.legend(fontsize=7, loc="upper right", markerscale=3)
    # (3) slope residuals, real vs injected (KS).
    _histograms(ax_ks, [(real.residual, "real", PALETTE["real"], True), (inj.residual, "injected", colour, False)],
                "slope residual (V·g² − b̂ − q̂)/(I·g) − 1")
    ax_ks.set_title(_check_text(result, ("ks",)), fontsize=10)
    # (4) per-pixel relation residual of the injected pixels.
    _histograms(ax_rel, [(s.relation, "injected", colour, False)], "relation residual (V − V₀)/ΔV_ISR − 1")
    ax_rel.set_title(f"{_check_text(result, ('relation', 'noise_ratio'))} → {result.status}", fontsize=10,
                     color="green" if result.passed else "red")


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Lay out, write (creating the folder) and close ``fig``; return its path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_forum_panel(ax: Axes, forum: ForumCutout, *, title: str = "") -> None:
    """The forum's plot on ``ax``: V against I (linear) of the cutout, real and injected pixels, fitted slopes
    (`isrinject.diagnostics.forum`), with ISR's line of the star's own pixels."""
    good, star = forum.good, forum.injected
    i0, v0 = forum.original
    ax.scatter(i0[good], v0[good], s=3, color="#c8c8c8", lw=0, rasterized=True, zorder=0,
               label=f"all pixels before injection ({int(good.sum())})")
    with np.errstate(invalid="ignore"):
        sources = good & ~star & (i0 > 5 * np.sqrt(v0))
    real = ("real-source pixels (> 5σ)", sources) if sources.sum() >= 20 else (
        "real pixels under the star, before injection", star)
    populations = [
        ("real", real[0], i0[real[1]], v0[real[1]], 5),
        ("isrinject", "isrinject-injected pixels", forum.isrinject[0][star], forum.isrinject[1][star], 7),
        ("upstream", "source_injection-injected pixels (emulated)", forum.upstream[0][star],
         forum.upstream[1][star], 7),
    ]
    every = np.concatenate([i0[good]] + [im for _, _, im, _, _ in populations])
    grid = np.linspace(float(np.min(every)), float(np.max(every)), 50) if len(every) else np.zeros(0)
    for name, text, im, var, size in populations:
        a, b = line_fit(im, var)
        ax.scatter(im, var, s=size, color=PALETTE[name], alpha=0.8, lw=0, rasterized=True,
                   label=f"{text} ({len(im)}): slope {a:.4g}", marker="s" if name == "upstream" else "o",
                   zorder=1 if name == "real" else 2)
        if np.isfinite(a):
            ax.plot(grid, a * grid + b, color=PALETTE[name], lw=1.2, ls="--" if name == "upstream" else "-")
    if forum.gain is not None and star.any():
        isr = float(np.median(1.0 / forum.gain[star]))
        base = float(np.median(v0[star]))
        ax.plot(grid, isr * grid + base, "k:", lw=1.2, label=f"ISR for the star's pixels: slope c/f = {isr:.4g}")
    ax.plot([], [], " ", label=f"source_injection's slope s of the star's amplifier: {forum.upstream_slope:.4g}")
    ax.set_xlabel(f"image I [{forum.unit}]")
    ax.set_ylabel(f"variance V [{forum.unit}²]")
    box = forum.bbox
    ax.set_title(title or (f"{box.x.stop - box.x.start}×{box.y.stop - box.y.start} cutout around a bright injected "
                           f"star (detector {forum.detector}, x={forum.star[0]:.0f}, y={forum.star[1]:.0f})"),
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", markerscale=2.5)
    ax.ticklabel_format(style="sci", scilimits=(-3, 4))


def _forum_noise_panel(ax: Axes, forum: ForumCutout) -> None:
    """Histogram of (ΔI − M)/√ΔV of the star's pixels: the realized noise over the recorded variance."""
    star = forum.injected
    i0, v0 = forum.original
    grid = np.linspace(-5, 5, 41)
    model = np.zeros(i0.shape) if forum.model is None else forum.model
    for name, (image, variance) in (("isrinject", forum.isrinject), ("upstream", forum.upstream)):
        with np.errstate(invalid="ignore", divide="ignore"):
            z: npt.NDArray[np.float64] = ((image - i0 - model) / np.sqrt(variance - v0))[star]
        z = z[np.isfinite(z)]
        if len(z):
            ax.hist(np.clip(z, grid[0], grid[-1]), bins=grid.tolist(), density=True, histtype="step", lw=1.8,
                    color=PALETTE[name], label=f"{LABELS[name]}: std {np.std(z):.3f} ({len(z)} px)")
    ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), "k--", lw=1, label="N(0, 1)")
    ax.set_xlabel("(ΔI − M) / √ΔV of the star's pixels")
    ax.set_ylabel("density")
    ax.set_title("realized noise over recorded variance", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")


def plot_forum(forum: ForumCutout, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Write the forum panel and, with the model, the noise of the star's pixels beside it (the README figure)."""
    if forum.model is None:
        fig, ax = plt.subplots(figsize=(7.5, 5.4))
        plot_forum_panel(ax, forum, title=title)
        return _save(fig, path)
    fig, (ax, ax_noise) = plt.subplots(1, 2, figsize=(12.5, 5.4), gridspec_kw={"width_ratios": [1.6, 1]})
    plot_forum_panel(ax, forum, title=title)
    _forum_noise_panel(ax_noise, forum)
    return _save(fig, path)


def plot_flux_variance(diagnosis: VisitDiagnosis, path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write the flux–variance PNG of one visit: the forum panel, then rows isrinject and upstream."""
    rows = [("isrinject", diagnosis.statistics, diagnosis.verdict)]
    if diagnosis.upstream is not None and diagnosis.upstream_verdict is not None:
        rows.append(("upstream", diagnosis.upstream, diagnosis.upstream_verdict))
    forum = diagnosis.forum
    n_cols = 4 + (forum is not None)
    fig = plt.figure(figsize=(5.25 * n_cols, 4.9 * len(rows)))
    grid_spec = fig.add_gridspec(len(rows), n_cols)
    if forum is not None:
        plot_forum_panel(fig.add_subplot(grid_spec[:, 0]), forum)
    first = n_cols - 4
    axes = np.array([[fig.add_subplot(grid_spec[r, first + c]) for c in range(4)] for r in range(len(rows))])
    rng = np.random.default_rng(seed)
    for ax_row, (method, s, result) in zip(axes, rows):
        _row(ax_row, s, result, method, diagnosis.unit, rng)
    if len(rows) > 1:
        # Same ranges in both rows for the scatter panels (the histograms follow their own data).
        for col in range(2):
            for get, put in ((lambda a: a.get_xlim(), lambda a, v: a.set_xlim(v)),
                             (lambda a: a.get_ylim(), lambda a, v: a.set_ylim(v))):
                lims = [get(ax) for ax in axes[:, col]]
                for ax in axes[:, col]:
                    put(ax, (min(low for low, _ in lims), max(high for _, high in lims)))
    where = ", cutouts" if diagnosis.summary.get("cutouts") else ""
    fig.suptitle(
        f"visit {diagnosis.visit}, band {diagnosis.band}, detector(s) {', '.join(map(str, diagnosis.detectors))}"
        f"{where}: injected vs real pixels on the ISR flux–variance relation"
    )
    return _save(fig, path)


def plot_maps(
    region: RegionData,
    path: str | os.PathLike[str],
    *,
    visit: int,
    band: str,
    compare_upstream: bool = False,
) -> Path:
    """Write the flat / effective gain / injected footprint maps of one detector or cutout."""
    box = region.bbox
    extent = (box.x.start - 0.5, box.x.stop - 0.5, box.y.start - 0.5, box.y.stop - 0.5)
    p = region.pixels
    gain = p.gain
    stamps = np.asarray(p.injected, bool)
    # The footprint: where the noiseless model exceeds the original 1σ noise.
    with np.errstate(invalid="ignore"):
        footprint = np.nan_to_num(p.model) > np.sqrt(p.original_variance) if p.model is not None else stamps
    delta = p.image - p.original_image
    panels: list[tuple[str, npt.NDArray[np.float64], str, str]] = [
        ("flat f", np.asarray(p.flat, np.float64), "viridis", "f (dimensionless)"),
        ("effective gain g = f·R/c", gain, "magma", f"g [e⁻/{region.unit}]"),
        ("injected ΔI = I − I₀", delta, "gray_r", f"ΔI [{region.unit}]"),
    ]
    if compare_upstream:
        panels.append(("s·g: upstream slope s over ISR's 1/g", gain * region.upstream_slope, "coolwarm", "s·g"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    src = region.sources
    inside = (np.asarray(src["injected"], bool)
              & (np.asarray(src["x"]) >= extent[0]) & (np.asarray(src["x"]) <= extent[1])
              & (np.asarray(src["y"]) >= extent[2]) & (np.asarray(src["y"]) <= extent[3]))
    for ax, (title, array, cmap, label) in zip(axes[0], panels):
        finite = array[np.isfinite(array)]
        if "ΔI" in title:
            vmax = float(np.percentile(finite, 99.5)) if len(finite) else 1.0
            vmin = -0.05 * vmax
        elif "s·g" in title:
            dev = float(np.nanmax(np.abs(finite - 1))) if len(finite) else 0.1
            vmin, vmax = 1 - dev, 1 + dev
        else:
            vmin, vmax = (np.percentile(finite, [0.5, 99.5]) if len(finite) else (0, 1))
        im = ax.imshow(array, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        if footprint.any() and "flat f" not in title:
            ax.contour(footprint.astype(float), levels=[0.5], colors=PALETTE["isrinject"], linewidths=0.8,
                       extent=extent, origin="lower")
        if "ΔI" in title:
            ax.plot(np.asarray(src["x"])[inside], np.asarray(src["y"])[inside], "+", color=PALETTE["upstream"],
                    ms=6, label="catalog positions")
            ax.plot([], [], color=PALETTE["isrinject"], lw=0.8, label="footprint: model M > √V₀")
            ax.plot([], [], " ", label=f"INJECTED stamps: {stamps.mean():.0%} of pixels")
            ax.legend(fontsize=7, loc="upper left")
            ax.set_xlim(extent[:2])
            ax.set_ylim(extent[2:])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x [pixel]")
        ax.set_ylabel("y [pixel]")
        fig.colorbar(im, ax=ax, label=label, shrink=0.85)
    fig.suptitle(f"visit {visit}, band {band}, detector {region.detector}, "
                 f"x={box.x.start}..{box.x.stop - 1}, y={box.y.start}..{box.y.stop - 1}")
    return _save(fig, path)


def plot_completeness(checks: Mapping[str, CatalogChecks], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Completeness against magnitude (binomial error bars) of every method in ``checks``."""
    fig, ax = plt.subplots(figsize=(7, 4.6))
    offsets = np.linspace(-0.04, 0.04, max(len(checks), 1))
    for offset, (label, c) in zip(offsets, checks.items()):
        keep = c.completeness.n_injected > 0
        ax.errorbar(c.completeness.centres[keep] + offset, c.completeness.fraction[keep],
                    yerr=c.completeness.error[keep], fmt="o-", ms=4, capsize=2, color=PALETTE[label],
                    label=f"{LABELS.get(label, label)} "
                          f"({int(c.completeness.n_detected.sum())}/{int(c.completeness.n_injected.sum())})")
    ax.set_xlabel("injected magnitude [AB]")
    ax.set_ylabel("fraction detected")
    ax.set_ylim(-0.05, 1.05)
    threshold = next(iter(checks.values())).completeness.threshold if checks else math.nan
    ax.set_title(f"detection completeness ({threshold:g}σ on image/√variance){': ' + title if title else ''}",
                 fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_pulls(checks: Mapping[str, CatalogChecks], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Histograms of the forced-photometry flux pulls with the N(0, 1) they should follow."""
    fig, ax = plt.subplots(figsize=(7, 4.6))
    every = np.concatenate([c.pulls.pulls for c in checks.values()]) if checks else np.zeros(0)
    every = every[np.isfinite(every)]
    lo, hi = (np.percentile(every, [0.5, 99.5]) if len(every) else (-4.0, 4.0))
    lo, hi = min(lo, -4.0), max(hi, 4.0)
    # ≈ 2√n bins: enough stars per bin for the shape to show.
    edges = np.linspace(lo, hi, int(np.clip(2 * math.sqrt(max(len(every), 1) / max(len(checks), 1)), 8, 40)) + 1)
    for label, c in checks.items():
        values = np.clip(c.pulls.pulls[np.isfinite(c.pulls.pulls)], edges[0], edges[-1])
        ax.hist(values, bins=edges.tolist(), density=True, histtype="step", lw=1.8, color=PALETTE[label],
                label=f"{LABELS.get(label, label)}: mean {c.pulls.mean:+.3f}±{c.pulls.mean_error:.3f}, "
                      f"std {c.pulls.std:.3f}±{c.pulls.std_error:.3f} ({c.pulls.n})")
    grid = np.linspace(edges[0], edges[-1], 200)
    ax.plot(grid, np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi), "k--", lw=1, label="N(0, 1)")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("flux pull (F_PSF − F_true) / σ_F")
    ax.set_ylabel("density")
    ax.set_title(f"forced PSF photometry of injected stars{': ' + title if title else ''}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_roc(discrimination: Mapping[str, Any], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """ROC curves of the classifier two-sample test per arm: all matched stars and peak S/N ≥ 50."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    for ax, high in zip(axes, (False, True)):
        for label, d in discrimination.items():
            fpr, tpr = d.roc_high_snr if high else d.roc
            auc = d.auc_high_snr if high else d.auc
            lo, hi = d.auc_high_snr_interval if high else d.auc_interval
            n = (d.n_real_high_snr, d.n_injected_high_snr) if high else (d.n_real, d.n_injected)
            if len(fpr):
                ax.plot(fpr, tpr, color=PALETTE.get(label, "k"), lw=1.6,
                        label=f"{LABELS.get(label, label)}: AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] ({n[0]}/{n[1]})")
        ax.plot([0, 1], [0, 1], "k:", lw=1, label="indistinguishable (AUC 0.5)")
        ax.set_xlabel("false-positive rate (real stars called injected)")
        ax.set_title(("peak S/N ≥ 50" if high else "all matched stars") + (f": {title}" if title else ""),
                     fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("true-positive rate (injected stars called injected)")
    fig.suptitle("classifier two-sample test: real stars vs injected stars of matched flux "
                 "(cross-validated gradient boosting, 95 % bootstrap intervals; real/injected stars)", fontsize=10)
    return _save(fig, path)
