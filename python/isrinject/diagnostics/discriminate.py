"""A classifier two-sample test: can real stars be told from injected stars of the same flux?

The forum's complaint about injection was that injected pixels can be picked
out "just by looking at flux/variance ratios".  This module asks the question
directly and with everything at once: a gradient-boosted classifier sees, for
every star, numbers computed from the *image*, *variance* and *mask* planes
of the injected visit image around it, and tries to tell real stars of the
image from injected stars of matched flux.  Under the null hypothesis
(indistinguishable) its cross-validated ROC AUC is 0.5.

Real stars (`find_real_stars`)
    Sources detected in the original image (`photometry.detect`), whose
    photutils centroid is not within `photometry.ISOLATION_FWHM` PSF FWHMs of
    any injected source or of another detection, whose feature box holds
    no other detection, no saturated or bad pixel and fits in the image, and
    whose size is a star's: second-moment FWHM within `STAR_SIZE_TOLERANCE`
    of the PSF's.  Nothing but the image decides which sources are real stars.

Features (`star_features`, one row per star, the same code for both classes)
    In a square box of side ``2⌈2·FWHM⌉ + 1`` around the star (the mask is
    used only to drop bad pixels: the INJECTED planes are never read):

    1. the centroid: Gaussian-weighted (σ of the PSF) moments iterated
       `CENTROID_ITERATIONS` times from the brightest pixel within 2 pixels of
       the given position (a detection's centroid or a catalog position: the
       fixed point does not remember which), and the visit PSF evaluated there
       (``compute_stellar_image``), for real and injected stars alike;
    2. flux ``F`` and a constant ``b`` are fitted by weighted linear least
       squares ``I ≈ F·P + b`` with weights ``1/V``; ``z = (I − F·P − b)/√V``;
    3. ``chi2_r0``, ``chi2_r1``, ``chi2_r2``: the mean of ``z²`` in the rings
       ``r < FWHM/2``, ``FWHM/2 ≤ r < FWHM``, ``FWHM ≤ r < 2·FWHM`` — the
       realized-to-recorded variance ratio (1 when the variance plane describes
       the noise);
    4. ``z_core``: the mean of ``z`` for ``r < FWHM`` (profile mismatch);
    5. ``slope_local``: the least-squares slope of ``V`` against ``I`` over
       the box [image units], and ``excess_ratio = Σ(V − V_bg)/Σ(I − b)`` for
       ``r < FWHM`` with ``V_bg`` the median variance for ``r ≥ 1.5·FWHM``:
       the local variance-vs-flux relation the forum looked at;
    6. ``peak_snr``, the largest ``I/√V`` for ``r < FWHM`` (to select the
       forum's regime, S/N ≥ 50; not a classifier input), and ``F``, its
       error ``σ_F = (ΣP²/V)^{-1/2}``, used to match the two classes;
    7. ``size_ratio``: the detection's second-moment FWHM over the PSF's, in
       the image measured; both classes must pass `find_real_stars`' size cut
       (so the selection of real stars does not select on their noise alone).

Test (`discriminate`)
    Real and injected stars are matched in ``log F`` (equal counts in each of
    `MATCH_BINS` logarithmic bins, `stats.matched_subsample`); the classifier
    (scikit-learn ``GradientBoostingClassifier``, 100 depth-3 trees) is scored by
    stratified 5-fold cross-validation (every star scored by a model that
    did not see it); the AUC of those scores, with a percentile bootstrap
    interval over stars (`N_BOOTSTRAP` resamples), is reported for all
    matched stars and for those with ``peak_snr ≥ 50``.
"""

from __future__ import annotations

__all__ = [
    "CENTROID_ITERATIONS",
    "COLUMNS",
    "FEATURES",
    "HIGH_SNR",
    "MATCH_BINS",
    "MIN_STARS",
    "N_BOOTSTRAP",
    "STAR_SIZE_TOLERANCE",
    "Discrimination",
    "discriminate",
    "find_real_stars",
    "pooled",
    "roc_auc",
    "roc_curve",
    "star_features",
]

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.table import Table

from . import photometry
from .stats import matched_subsample

type FloatArray = npt.NDArray[np.float64]

#: The classifier's inputs (columns of `star_features`).
FEATURES = ("chi2_r0", "chi2_r1", "chi2_r2", "z_core", "slope_local", "excess_ratio")
#: Every column of `star_features`.
COLUMNS = ("x", "y", "flux", "flux_err", "peak_snr", "size_ratio", *FEATURES)
#: Peak S/N of the forum's regime.
HIGH_SNR = 50.0
#: Bootstrap resamples of the AUC interval.
N_BOOTSTRAP = 1000
#: A detection is a star when its second-moment FWHM is within this fraction of the PSF's.
STAR_SIZE_TOLERANCE = 0.25
#: Gaussian-weighted centroid iterations (each shrinks the offset from the fixed point about twofold).
CENTROID_ITERATIONS = 12
#: Logarithmic flux bins of the real/injected matching.
MATCH_BINS = 40
#: Fewest stars per class for a test.
MIN_STARS = 20


def _box_half(fwhm: float) -> int:
    return math.ceil(2 * fwhm)


def find_real_stars(
    image: FloatArray,
    variance: FloatArray,
    bad: npt.NDArray[np.bool_] | None,
    fwhm: float,
    injected_x: FloatArray,
    injected_y: FloatArray,
    x0: int = 0,
    y0: int = 0,
) -> Table:
    """Isolated, unsaturated, star-sized detections of the original image (module docstring).

    Parameters
    ----------
    image, variance, bad
        The original (pre-injection) image of the region [image units, units²]
        and the pixels to avoid (bad and saturated).
    fwhm
        PSF FWHM [pixels].
    injected_x, injected_y
        Positions of every injected source [absolute pixels].
    x0, y0
        Absolute position of ``image[0, 0]``.

    Returns
    -------
    stars
        Columns ``x``, ``y`` [absolute pixels].
    """
    from photutils.segmentation import SegmentationImage, SourceCatalog

    segments = photometry.detect(image, variance, bad, fwhm)
    if not segments.any():
        return Table({"x": np.zeros(0), "y": np.zeros(0)})
    seg = SegmentationImage(segments)
    with np.errstate(invalid="ignore", divide="ignore"):
        catalog = SourceCatalog(np.nan_to_num(image), seg)
    xc = np.asarray(catalog.x_centroid, np.float64)
    yc = np.asarray(catalog.y_centroid, np.float64)
    size = np.asarray(catalog.fwhm.value if hasattr(catalog.fwhm, "value") else catalog.fwhm, np.float64)
    labels = np.asarray(catalog.labels)
    ny, nx = image.shape
    half = _box_half(fwhm)
    unusable = np.zeros(image.shape, bool) if bad is None else np.asarray(bad, bool)
    keep = np.zeros(len(xc), bool)
    for i in range(len(xc)):
        if not (np.isfinite(xc[i]) and np.isfinite(yc[i])):
            continue
        if abs(size[i] / fwhm - 1) > STAR_SIZE_TOLERANCE:
            continue
        d_inj = np.hypot(injected_x - (xc[i] + x0), injected_y - (yc[i] + y0))
        d_det = np.hypot(xc - xc[i], yc - yc[i])
        limit = photometry.ISOLATION_FWHM * fwhm
        if np.any(d_inj < limit) or np.any((d_det > 1e-6) & (d_det < limit)):
            continue
        ix, iy = round(xc[i]), round(yc[i])
        if ix - half < 0 or iy - half < 0 or ix + half >= nx or iy + half >= ny:
            continue
        box = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
        others = segments[box]
        if np.any((others != 0) & (others != labels[i])) or unusable[box].any():
            continue
        keep[i] = True
    return Table({"x": xc[keep] + x0, "y": yc[keep] + y0})


def star_features(
    image: FloatArray,
    variance: FloatArray,
    bad: npt.NDArray[np.bool_] | None,
    psf: Any,
    x: FloatArray,
    y: FloatArray,
    fwhm: float,
    x0: int = 0,
    y0: int = 0,
) -> Table:
    """The per-star features of the module docstring, measured in ``image``/``variance``.

    Parameters
    ----------
    image, variance, bad
        The planes of the region [image units, units²] and the pixels to drop.
    psf
        The visit PSF (``compute_stellar_image(x=, y=)``, absolute pixels).
    x, y
        Starting positions [absolute pixels].
    fwhm
        PSF FWHM [pixels].
    x0, y0
        Absolute position of ``image[0, 0]``.

    Returns
    -------
    features
        `FEATURES` plus ``x``, ``y`` (refined), ``flux``, ``flux_err`` and
        ``peak_snr``; NaN for a star whose box leaves the region.
    """
    image = np.asarray(image, np.float64)
    variance = np.asarray(variance, np.float64)
    unusable = ~np.isfinite(image) | ~np.isfinite(variance) | (variance <= 0)
    if bad is not None:
        unusable |= np.asarray(bad, bool)
    ny, nx = image.shape
    half = _box_half(fwhm)
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    out = {name: np.full(len(x), np.nan) for name in COLUMNS}
    out["size_ratio"] = _size_ratio(image, variance, bad, fwhm, np.asarray(x, np.float64) - x0,
                                    np.asarray(y, np.float64) - y0)
    dy, dx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    for k, (xs, ys) in enumerate(zip(np.asarray(x, np.float64), np.asarray(y, np.float64))):
        ix, iy = round(xs) - x0, round(ys) - y0
        if ix - half < 0 or iy - half < 0 or ix + half >= nx or iy + half >= ny:
            continue
        box = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
        im, var, ok = image[box], variance[box], ~unusable[box]
        if ok.sum() < 10:
            continue
        # 1. Gaussian-weighted centroid, started from the brightest pixel within 2 pixels of the given
        #    position (the same start for a detection and a catalog position) and iterated to convergence.
        outer = ok & (np.hypot(dx, dy) >= 1.5 * fwhm)
        level = float(np.median(im[outer])) if outer.any() else 0.0
        near = ok & (np.hypot(dx - (xs - x0 - ix), dy - (ys - y0 - iy)) <= 2.0)
        if not near.any():
            continue
        peak = np.argmax(np.where(near, im, -np.inf))
        px, py = float(dx.ravel()[peak]), float(dy.ravel()[peak])
        for _ in range(CENTROID_ITERATIONS):
            w = np.exp(-((dx - px) ** 2 + (dy - py) ** 2) / (2 * sigma**2)) * np.clip(im - level, 0, None) * ok
            if w.sum() <= 0:
                break
            px, py = float(np.sum(w * dx) / w.sum()), float(np.sum(w * dy) / w.sum())
            px, py = float(np.clip(px, -2.5, 2.5)), float(np.clip(py, -2.5, 2.5))
        xa, ya = ix + x0 + px, iy + y0 + py
        # 2. PSF model at the refined position, on the box.
        stellar = psf.compute_stellar_image(x=xa, y=ya)
        model = np.zeros(im.shape)
        sb = stellar.bbox
        bx0, by0 = ix + x0 - half, iy + y0 - half
        xs0, xs1 = max(sb.x.start, bx0), min(sb.x.stop, bx0 + 2 * half + 1)
        ys0, ys1 = max(sb.y.start, by0), min(sb.y.stop, by0 + 2 * half + 1)
        model[ys0 - by0 : ys1 - by0, xs0 - bx0 : xs1 - bx0] = np.asarray(stellar.array, np.float64)[
            ys0 - sb.y.start : ys1 - sb.y.start, xs0 - sb.x.start : xs1 - sb.x.start
        ]
        w = ok / np.where(ok, var, 1.0)
        design = np.stack([model[ok], np.ones(int(ok.sum()))], axis=1)
        weights = w[ok]
        normal = design.T @ (design * weights[:, None])
        try:
            flux, level = np.linalg.solve(normal, design.T @ (weights * im[ok]))
        except np.linalg.LinAlgError:
            continue
        z = np.where(ok, (im - flux * model - level) / np.sqrt(np.where(ok, var, 1.0)), np.nan)
        r = np.hypot(dx - px, dy - py)
        rings = ((r < 0.5 * fwhm), (r >= 0.5 * fwhm) & (r < fwhm), (r >= fwhm) & (r < 2 * fwhm))
        for name, ring in zip(("chi2_r0", "chi2_r1", "chi2_r2"), rings):
            sel = ring & ok
            out[name][k] = float(np.mean(z[sel] ** 2)) if sel.any() else np.nan
        core = (r < fwhm) & ok
        out["z_core"][k] = float(np.mean(z[core])) if core.any() else np.nan
        out["slope_local"][k] = float(np.polyfit(im[ok], var[ok], 1)[0]) if np.ptp(im[ok]) > 0 else np.nan
        v_bg = float(np.median(var[outer])) if outer.any() else np.nan
        signal = float(np.sum(im[core] - level))
        out["excess_ratio"][k] = float(np.sum(var[core] - v_bg)) / signal if signal > 0 else np.nan
        out["peak_snr"][k] = float(np.max(im[core] / np.sqrt(var[core]))) if core.any() else np.nan
        out["flux"][k] = float(flux)
        out["flux_err"][k] = float(1 / math.sqrt(max(float(np.sum(weights * design[:, 0] ** 2)), 1e-300)))
        out["x"][k], out["y"][k] = xa, ya
    return Table(out)


def _size_ratio(
    image: FloatArray, variance: FloatArray, bad: npt.NDArray[np.bool_] | None, fwhm: float, x: FloatArray,
    y: FloatArray,
) -> FloatArray:
    """Second-moment FWHM of the detection under each position over the PSF FWHM (NaN: not detected).

    The same detection (`photometry.detect`) and photutils ``SourceCatalog.fwhm``
    as `find_real_stars`, in the image measured, for real and injected stars alike.
    """
    from photutils.segmentation import SegmentationImage, SourceCatalog

    out = np.full(len(x), np.nan)
    segments = photometry.detect(image, variance, bad, fwhm)
    if not segments.any() or not len(x):
        return out
    catalog = SourceCatalog(np.nan_to_num(image), SegmentationImage(segments))
    size = np.asarray(catalog.fwhm.value if hasattr(catalog.fwhm, "value") else catalog.fwhm, np.float64)
    index = {int(label): k for k, label in enumerate(np.asarray(catalog.labels))}
    ny, nx = image.shape
    ix = np.clip(np.round(x).astype(int), 0, nx - 1)
    iy = np.clip(np.round(y).astype(int), 0, ny - 1)
    for k, label in enumerate(segments[iy, ix]):
        if label:
            out[k] = size[index[int(label)]] / fwhm
    return out


@dataclasses.dataclass
class Discrimination:
    """The classifier two-sample test of one arm in one band (`discriminate`)."""

    label: str
    """The injected arm (``isrinject``, ``upstream``, ``truth``)."""
    auc: float
    """Cross-validated ROC AUC, all matched stars (0.5: indistinguishable)."""
    auc_interval: tuple[float, float]
    """Its 95 % percentile bootstrap interval."""
    n_real: int
    n_injected: int
    auc_high_snr: float
    """The same for the stars with peak S/N ≥ `HIGH_SNR`."""
    auc_high_snr_interval: tuple[float, float]
    n_real_high_snr: int
    n_injected_high_snr: int
    roc: tuple[FloatArray, FloatArray]
    """False- and true-positive rates (all matched stars)."""
    roc_high_snr: tuple[FloatArray, FloatArray]
    reason: str = ""
    """Why the test could not run (too few stars); empty when it ran."""
    real: Table | None = None
    """The matched real stars' features (all matched stars)."""
    injected: Table | None = None
    """The matched injected stars' features."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "auc": self.auc, "auc_interval": list(self.auc_interval),
            "n_real": self.n_real, "n_injected": self.n_injected, "auc_high_snr": self.auc_high_snr,
            "auc_high_snr_interval": list(self.auc_high_snr_interval), "n_real_high_snr": self.n_real_high_snr,
            "n_injected_high_snr": self.n_injected_high_snr, "high_snr": HIGH_SNR, "reason": self.reason,
            "features": list(FEATURES),
        }


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC as the Mann–Whitney statistic: P(score of a positive > score of a negative), ties count ½."""
    from scipy.stats import rankdata

    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not (n_pos and n_neg):
        return math.nan
    ranks = rankdata(np.asarray(scores, np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """False- and true-positive rates of every score threshold (from (0, 0) to (1, 1))."""
    labels = np.asarray(labels, bool)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    tp = np.concatenate([[0], np.cumsum(labels[order])])
    fp = np.concatenate([[0], np.cumsum(~labels[order])])
    return fp / max(int((~labels).sum()), 1), tp / max(int(labels.sum()), 1)


def _cross_validated_auc(
    features: FloatArray, labels: npt.NDArray[np.int64], seed: int
) -> tuple[float, tuple[float, float], tuple[FloatArray, FloatArray], str]:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n_min = int(min(np.sum(labels == 0), np.sum(labels == 1)))
    if n_min < MIN_STARS:
        why = f"only {n_min} stars in the smaller class (need ≥ {MIN_STARS})"
        return math.nan, (math.nan, math.nan), (np.zeros(0), np.zeros(0)), why
    # Single-threaded (no OpenMP) and quick for a few hundred stars.
    classifier = GradientBoostingClassifier(n_estimators=100, learning_rate=0.1, max_depth=3, subsample=0.8,
                                            min_samples_leaf=5, random_state=seed)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_predict(classifier, features, labels, cv=folds, method="predict_proba")[:, 1]
    auc = roc_auc(labels, scores)
    rng = np.random.default_rng(seed)
    boot = [roc_auc(labels[pick], scores[pick]) for pick in rng.integers(0, len(labels), (N_BOOTSTRAP, len(labels)))]
    lo, hi = (float(v) for v in np.nanpercentile(boot, [2.5, 97.5]))
    return auc, (lo, hi), roc_curve(labels, scores), ""


def discriminate(label: str, real: Table, injected: Table, *, seed: int = 0) -> Discrimination:
    """Match ``real`` and ``injected`` star features in flux and run the classifier test.

    Parameters
    ----------
    label
        The injected arm's name.
    real, injected
        `star_features` tables of real stars and of injected stars (same band).
    seed
        Seeds the matching, the folds, the classifier and the bootstrap.
    """
    def usable(t: Table) -> Table:
        good = np.isfinite(np.asarray(t["flux"], np.float64)) & (np.asarray(t["flux"], np.float64) > 0)
        # The star-size cut of `find_real_stars`, applied to both classes in the image measured.
        good &= np.abs(np.asarray(t["size_ratio"], np.float64) - 1) <= STAR_SIZE_TOLERANCE
        for name in FEATURES:
            good &= np.isfinite(np.asarray(t[name], np.float64))
        return t[good]

    real, injected = usable(real), usable(injected)
    results: list[tuple[float, tuple[float, float], tuple[FloatArray, FloatArray], str, int, int]] = []
    matched: list[tuple[Table, Table]] = []
    for high in (False, True):
        r, i = real, injected
        if high:
            r = r[np.asarray(r["peak_snr"]) >= HIGH_SNR]
            i = i[np.asarray(i["peak_snr"]) >= HIGH_SNR]
        ia, ib = matched_subsample(np.asarray(r["flux"], np.float64), np.asarray(i["flux"], np.float64),
                                   n_bins=MATCH_BINS, rng=np.random.default_rng(seed))
        r, i = r[ia], i[ib]
        matched.append((r, i))
        x = np.concatenate([_matrix(r), _matrix(i)])
        y = np.concatenate([np.zeros(len(r), np.int64), np.ones(len(i), np.int64)])
        results.append((*_cross_validated_auc(x, y, seed), len(r), len(i)))
    (auc, ci, roc, why, nr, ni), (auc_h, ci_h, roc_h, why_h, nr_h, ni_h) = results
    reason = "; ".join(part for part in (why and f"all: {why}", why_h and f"S/N ≥ {HIGH_SNR:g}: {why_h}") if part)
    return Discrimination(label=label, auc=auc, auc_interval=ci, n_real=nr, n_injected=ni, auc_high_snr=auc_h,
                          auc_high_snr_interval=ci_h, n_real_high_snr=nr_h, n_injected_high_snr=ni_h, roc=roc,
                          roc_high_snr=roc_h, reason=reason, real=matched[0][0], injected=matched[0][1])


def _matrix(table: Table) -> FloatArray:
    return np.stack([np.asarray(table[name], np.float64) for name in FEATURES], axis=1) if len(table) else np.zeros(
        (0, len(FEATURES)))


def pooled(tables: Sequence[Table]) -> Table:
    """Stack feature tables (e.g. of several detectors)."""
    from astropy.table import vstack

    tables = [t for t in tables if len(t)]
    return vstack(tables) if tables else Table({name: np.zeros(0) for name in COLUMNS})
