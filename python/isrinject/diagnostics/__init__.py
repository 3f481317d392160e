"""Diagnostics: statistics, verdict, catalog-level checks and figures of an injection.

- `isrinject.diagnostics.stats`: flux–variance statistics on plain arrays;
- `isrinject.diagnostics.verdict`: the one PASS/FAIL rule and its thresholds;
- `isrinject.diagnostics.results`: the result dataclasses;
- `isrinject.diagnostics.diagnose`: ``isrinject diagnose`` (butler in, JSON and PNG out);
- `isrinject.diagnostics.figures`: every figure (matplotlib, Agg), one palette;
- `isrinject.diagnostics.upstream`: lsst.source.injection HEAD's variance and noise, emulated (comparison arm);
- `isrinject.diagnostics.discriminate`: the classifier two-sample test, real vs injected stars;
- `isrinject.diagnostics.forum`: the 128×128 cutout view around a bright injected star.

(Real simulated against injected saturated stars need the simulator: that
comparison is `isrinject.demo.bright_stars`.)

Import the submodules directly (this package imports nothing heavy).
"""

__all__: list[str] = []
