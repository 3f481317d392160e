"""Result dataclasses of ``isrinject diagnose`` (shared by `diagnose`, `figures` and the demo).

They live in their own module so that the figure module and the diagnosis
both import them and not each other.
"""

from __future__ import annotations

__all__ = [
    "CatalogChecks",
    "Completeness",
    "DiagnosisResult",
    "ForumCutout",
    "PullSummary",
    "RegionData",
    "VisitDiagnosis",
]

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.table import Table
from lsst.daf.butler import DatasetRef
from lsst.images import Box

from .stats import DetectorPixels, InjectionStatistics
from .upstream import UpstreamSlopes
from .verdict import Verdict


@dataclasses.dataclass
class RegionData:
    """The arrays of one detector, or of one cutout of it, as diagnosed."""

    detector: int
    bbox: Box
    """The region [absolute pixels]: the detector or a cutout."""
    pixels: DetectorPixels
    upstream_pixels: DetectorPixels | None
    """What ``lsst.source.injection`` makes of the same model (``compare_upstream``)."""
    unit: str
    upstream_slope: npt.NDArray[np.float64]
    """s, the peer package's variance-vs-image slope of each pixel's amplifier [image units]
    (NaN without ``compare_upstream``)."""
    upstream_slopes: UpstreamSlopes | None
    """The detector's per-amplifier fit behind ``upstream_slope``."""
    sources: Table
    """Per-source flux recovery of the detector (all its sources)."""
    flat_ref: DatasetRef
    """The butler reference of the flat used."""
    psf: Any = None
    """The visit's PSF (lsst.images), for star cutouts."""
    extended_model: npt.NDArray[np.float64] | None = None
    """Noiseless model of the injected extended sources alone [image units] (for the stars' isolation)."""
    features: dict[str, tuple[Table, Table]] = dataclasses.field(default_factory=dict)
    """label → `isrinject.diagnostics.discriminate.star_features` of (real stars, injected stars)
    measured in that arm's image (``discriminate=True``)."""
    measurements: dict[str, Table] = dataclasses.field(default_factory=dict)
    """label → forced photometry and detection of the isolated injected stars
    (`isrinject.diagnostics.photometry.measure_stars`; ``catalog_checks=True``)."""


@dataclasses.dataclass
class ForumCutout:
    """The forum's view of one band: a cutout around a bright injected star, before and after injection."""

    detector: int
    bbox: Box
    """The cutout [absolute pixels]."""
    star: tuple[float, float]
    """The star's position [absolute pixels]."""
    unit: str
    original: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
    """I₀, V₀ of the cutout."""
    isrinject: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
    """I, V after isrinject's injection."""
    upstream: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
    """I, V after the upstream-emulated injection of the same model."""
    injected: npt.NDArray[np.bool_]
    """The injected star's pixels: noiseless model above the original 1σ noise."""
    good: npt.NDArray[np.bool_]
    """Pixels that are not bad."""
    upstream_slope: float
    """s of the star's amplifier [image units]."""
    model: npt.NDArray[np.float64] | None = None
    """The noiseless injected model M of the cutout [image units]."""
    gain: npt.NDArray[np.float64] | None = None
    """g = f·R/c of the cutout [e⁻ per image unit]: ISR's slope of each pixel is 1/g."""


@dataclasses.dataclass
class PullSummary:
    """Forced PSF photometry of injected stars: flux pulls ``(F̂ − F)/σ_F̂``."""

    n: int
    """Stars measured."""
    mean: float
    mean_error: float
    """Standard error of the mean, std/√n."""
    std: float
    std_error: float
    """Standard error of the std, std/√(2(n − 1))."""
    pulls: npt.NDArray[np.float64]


@dataclasses.dataclass
class Completeness:
    """Detection completeness in magnitude bins."""

    edges: npt.NDArray[np.float64]
    """Bin edges [AB mag]."""
    n_injected: npt.NDArray[np.int64]
    n_detected: npt.NDArray[np.int64]
    threshold: float
    """Detection threshold on image/√variance [σ]."""

    @property
    def fraction(self) -> npt.NDArray[np.float64]:
        """n_detected/n_injected (NaN in empty bins)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.n_detected / self.n_injected

    @property
    def error(self) -> npt.NDArray[np.float64]:
        """Binomial standard error √(p(1 − p)/n), at least 1/(2n) (so p = 0 or 1 has one)."""
        p = self.fraction
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.maximum(np.sqrt(p * (1 - p) / self.n_injected), 0.5 / self.n_injected)

    @property
    def centres(self) -> npt.NDArray[np.float64]:
        return 0.5 * (self.edges[1:] + self.edges[:-1])


@dataclasses.dataclass
class CatalogChecks:
    """Catalog-level checks of one injection (one band): forced photometry and completeness."""

    label: str
    """``isrinject``, ``upstream`` or ``truth``."""
    pulls: PullSummary
    completeness: Completeness
    stars: Table
    """Per injected star: position, mag, true and measured flux, error, pull, detected."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "pulls": {k: v for k, v in dataclasses.asdict(self.pulls).items() if k != "pulls"},
            "completeness": {
                "edges": self.completeness.edges.tolist(), "n_injected": self.completeness.n_injected.tolist(),
                "n_detected": self.completeness.n_detected.tolist(), "threshold": self.completeness.threshold,
            },
            "stars": [
                {name: (value.item() if hasattr(value, "item") else value) for name, value in zip(row.colnames, row)}
                for row in self.stars
            ],
        }


@dataclasses.dataclass
class VisitDiagnosis:
    """The diagnosis of one visit (its detectors or cutouts pooled)."""

    visit: int
    band: str
    detectors: list[int]
    unit: str
    statistics: InjectionStatistics
    """Statistics of the injection as run (isrinject)."""
    verdict: Verdict
    """`isrinject.diagnostics.verdict.verdict` of ``statistics``."""
    upstream: InjectionStatistics | None
    """Statistics of the upstream-emulated injection of the same model (``compare_upstream``)."""
    upstream_verdict: Verdict | None
    sources: Table
    """Per-source flux recovery (all detectors)."""
    summary: dict[str, Any]
    """What ``<stem>.json`` holds."""
    catalog_checks: dict[str, CatalogChecks] = dataclasses.field(default_factory=dict)
    """label → forced photometry and completeness (``catalog_checks=True``)."""
    paths: list[Path] = dataclasses.field(default_factory=list)
    """Files written."""
    nothing_injected: bool = False
    """No source of the visit was injected (every catalog row flagged): no
    check had pixels to look at; neither passed nor failed."""
    discrimination: dict[str, Any] = dataclasses.field(default_factory=dict)
    """label → `isrinject.diagnostics.discriminate.Discrimination` (``discriminate=True``)."""
    forum: ForumCutout | None = None
    """The 128×128 cutout around a bright injected star in every arm (``compare_upstream``)."""

    @property
    def passed(self) -> bool:
        return self.verdict.passed


@dataclasses.dataclass
class DiagnosisResult:
    """Result of `isrinject.diagnostics.diagnose.diagnose`."""

    visits: list[VisitDiagnosis]
    paths: list[Path]
    """Every file written (figures, per-visit JSON, the summary JSON)."""
    summary: dict[str, Any]
    """What ``diagnose_summary.json`` holds."""

    @property
    def passed(self) -> bool:
        """True when every visit with injected sources passed (and there is one)."""
        checked = [v for v in self.visits if not v.nothing_injected]
        return bool(checked) and all(v.passed for v in checked)

    @property
    def nothing_injected(self) -> bool:
        """True when no visit had an injected source: nothing was checked."""
        return bool(self.visits) and all(v.nothing_injected for v in self.visits)

    def by_band(self) -> dict[str, VisitDiagnosis]:
        """band → diagnosis (the last visit of each band)."""
        return {v.band: v for v in self.visits}
