"""The one PASS/FAIL rule of an injection (used by ``isrinject diagnose`` and the demo).

`verdict` turns `InjectionStatistics` into a `Verdict`: a list of `Check`
results, each either run (passed or failed) or *not available* with the
reason.  An injection passes when at least one check ran and every check
that ran passed.

The checks and their thresholds (defined here and nowhere else):

``relation``
    RMS of the per-pixel relation residual of the injected pixels
    (`isrinject.diagnostics.stats.relation_residual`: the variance increment
    against the ISR prediction from the pixel's own flat, original variance
    and calibration) ≤ `RELATION_TOLERANCE`.  Needs at least
    `MIN_INJECTED_PIXELS` injected pixels above the S/N cut; runs on any field.
``noise_ratio``
    realized-noise ratio ``k̂ = var(ΔI − M)/E[ΔV]`` within
    ``max(RATIO_TOLERANCE, NOISE_RATIO_SIGMAS·σ_k̂)`` of 1 (a small stamp
    has a large σ_k̂).  Needs a noiseless model of the injection.
``slopes``
    ``|slope_injected/slope_real − 1| ≤ SLOPE_TOLERANCE`` on the
    flat-normalised axes.  Needs at least `MIN_REAL_PIXELS` real pixels
    above the S/N cut in the injected pixels' flux range: a sparse field
    (no bright real source) has none, and the comparison is reported as
    not available.
``ks``
    two-sample KS test of the slope residuals of real and injected pixels
    (histogram-matched): fails when the p-value is ≤ `KS_PVALUE_MIN` *and*
    the statistic D exceeds `KS_STATISTIC_MAX`.  With 10⁵ pixels the test
    resolves differences far below what the baseline fit under sources and
    float32 rounding leave (D ≈ 0.05 for correct injections in the demo's
    768² detectors with bright real stars, p < 10⁻⁴⁰), while one slope per
    amplifier gives D ≈ 0.75.  Needs `MIN_REAL_PIXELS` pixels per
    population after matching.
"""

from __future__ import annotations

__all__ = [
    "KS_PVALUE_MIN",
    "KS_STATISTIC_MAX",
    "MIN_INJECTED_PIXELS",
    "MIN_REAL_PIXELS",
    "NOISE_RATIO_SIGMAS",
    "RATIO_TOLERANCE",
    "RELATION_TOLERANCE",
    "SLOPE_TOLERANCE",
    "Check",
    "Verdict",
    "criteria",
    "criteria_text",
    "verdict",
]

import dataclasses
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only its attributes are read; keeps ``isrinject --help`` free of scipy
    from .stats import InjectionStatistics

#: Tolerance of ``|slope_injected/slope_real − 1|``.
SLOPE_TOLERANCE = 0.02
#: Tolerance of ``|noise ratio − 1|`` (widened to NOISE_RATIO_SIGMAS standard errors when larger).
RATIO_TOLERANCE = 0.03
#: Standard errors of the noise ratio always allowed.
NOISE_RATIO_SIGMAS = 3.0
#: KS p-value at or below which real and injected residuals differ.
#: The baseline fit under sources puts a floor under D on small scenes
#: (128² pixels, 12 sources: p down to 2·10⁻⁴ for correct injections, while a
#: flux/gain injection of the same sources gives p < 10⁻⁵⁰).
KS_PVALUE_MIN = 1e-4
#: KS statistic D at or below which a significant difference is too small to count (see the module docstring).
KS_STATISTIC_MAX = 0.1
#: Tolerance of the RMS per-pixel relation residual (float32 rounding gives ≈ 10⁻⁵).
RELATION_TOLERANCE = 1e-3
#: Real pixels above the S/N cut (in the injected flux range) needed for the slope and KS comparisons.
MIN_REAL_PIXELS = 50
#: Injected pixels above the S/N cut needed for any check.
MIN_INJECTED_PIXELS = 10


@dataclasses.dataclass(frozen=True)
class Check:
    """One check of `Verdict`."""

    name: str
    """``relation``, ``noise_ratio``, ``slopes`` or ``ks``."""
    value: float | None
    """The statistic (`None` when not available)."""
    criterion: str
    """What passing means, with the threshold."""
    passed: bool | None
    """`None` when the check could not run."""
    reason: str = ""
    """Why it could not run."""

    @property
    def available(self) -> bool:
        return self.passed is not None

    @property
    def status(self) -> str:
        """``PASS``, ``FAIL`` or ``n/a``."""
        return "n/a" if self.passed is None else ("PASS" if self.passed else "FAIL")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"status": self.status}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The checks of one injection and the overall result."""

    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """At least one check ran and every check that ran passed."""
        ran = [c for c in self.checks if c.available]
        return bool(ran) and all(c.passed for c in ran)

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"No check {name!r}; have {[c.name for c in self.checks]}.")

    def describe(self) -> str:
        """One line, e.g. ``relation 2.1e-06 PASS, noise_ratio 0.994 PASS, slopes n/a (only 0 real …) → PASS``."""
        parts = []
        for check in self.checks:
            value = "" if check.value is None else f" {check.value:.3g}"
            parts.append(f"{check.name}{value} {check.status}" + (f" ({check.reason})" if check.reason else ""))
        return ", ".join(parts) + f" → {self.status}"

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": {c.name: c.as_dict() for c in self.checks}}


def criteria() -> dict[str, float]:
    """The thresholds (for reports and JSON)."""
    return {
        "relation_rms_max": RELATION_TOLERANCE, "noise_ratio_tolerance": RATIO_TOLERANCE,
        "noise_ratio_sigmas": NOISE_RATIO_SIGMAS, "slope_ratio_tolerance": SLOPE_TOLERANCE,
        "ks_pvalue_min": KS_PVALUE_MIN, "ks_statistic_max": KS_STATISTIC_MAX, "min_real_pixels": MIN_REAL_PIXELS,
        "min_injected_pixels": MIN_INJECTED_PIXELS,
    }


def criteria_text() -> str:
    """The thresholds in one sentence (for printed reports)."""
    return (f"PASS: relation rms ≤ {RELATION_TOLERANCE:g}, noise ratio within "
            f"max({RATIO_TOLERANCE:g}, {NOISE_RATIO_SIGMAS:g}σ) of 1, slopes within {SLOPE_TOLERANCE:.0%}, "
            f"KS p > {KS_PVALUE_MIN:g} or D ≤ {KS_STATISTIC_MAX:g}; slopes and KS need ≥ {MIN_REAL_PIXELS} real "
            f"pixels above the S/N cut and are 'n/a' otherwise")


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def verdict(statistics: InjectionStatistics) -> Verdict:
    """Apply the checks of the module docstring to ``statistics``."""
    s = statistics
    few_injected = (
        f"only {s.n_relation} injected pixels above the S/N cut (need ≥ {MIN_INJECTED_PIXELS})"
        if s.n_relation < MIN_INJECTED_PIXELS else ""
    )
    relation = Check(
        "relation", None if few_injected else _finite(s.relation_rms),
        f"RMS of (V − V₀)/ΔV_ISR − 1 ≤ {RELATION_TOLERANCE:g}",
        None if few_injected else bool(s.relation_rms <= RELATION_TOLERANCE), few_injected,
    )
    if not (s.n_noise and math.isfinite(s.noise_ratio)):
        noise = Check("noise_ratio", None, "", None, "no noiseless model of the injected pixels")
    else:
        tolerance = max(RATIO_TOLERANCE, NOISE_RATIO_SIGMAS * s.noise_ratio_error)
        noise = Check(
            "noise_ratio", s.noise_ratio,
            f"|k − 1| ≤ max({RATIO_TOLERANCE:g}, {NOISE_RATIO_SIGMAS:g}σ) = {tolerance:.3g}",
            bool(abs(s.noise_ratio - 1.0) <= tolerance),
        )
    few_real = ""
    if s.n_real < MIN_REAL_PIXELS:
        few_real = (
            f"only {s.n_real} real pixels above the S/N cut in the injected flux range "
            f"(need ≥ {MIN_REAL_PIXELS})"
        )
    elif s.n_injected < MIN_INJECTED_PIXELS:
        few_real = f"only {s.n_injected} injected pixels in the real pixels' flux range (need ≥ {MIN_INJECTED_PIXELS})"
    slopes = Check(
        "slopes", None if few_real else _finite(s.slope_ratio),
        f"|slope_injected/slope_real − 1| ≤ {SLOPE_TOLERANCE:g}",
        None if few_real else bool(math.isfinite(s.slope_ratio) and abs(s.slope_ratio - 1.0) <= SLOPE_TOLERANCE),
        few_real,
    )
    few_ks = few_real or (
        f"only {s.n_ks} pixels per population after histogram matching (need ≥ {MIN_REAL_PIXELS})"
        if s.n_ks < MIN_REAL_PIXELS else ""
    )
    ks = Check(
        "ks", None if few_ks else _finite(s.ks_pvalue), f"KS p > {KS_PVALUE_MIN:g} or D ≤ {KS_STATISTIC_MAX:g}",
        None if few_ks else bool(s.ks_pvalue > KS_PVALUE_MIN or s.ks_statistic <= KS_STATISTIC_MAX), few_ks,
    )
    return Verdict((relation, noise, slopes, ks))
