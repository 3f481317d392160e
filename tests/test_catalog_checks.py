"""Catalog-level checks on the demo: forced PSF photometry and completeness, isrinject vs the truth.

A demo repository of 6 bands × 2 detectors of 512² pixels with 160 injected
stars per detector reaching S/N 2 (past the detection limit), run through the
real ``pipetask``; `diagnose_demo` measures every isolated injected star with
photutils in the isrinject output, in the simulator's *physical* injection of
the same catalog (photons into the pre-flat electrons, then ISR: the truth)
and in the emulated lsst.source.injection injection.  Tolerances follow from the sample sizes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from isrinject.demo.build import build_demo_repo
from isrinject.demo.cli import catalog_table
from isrinject.demo.run import diagnose_demo, run_pipetask

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("catalog_checks") / "repo"
    demo = build_demo_repo(root, shape=(512, 512), n_sources=160, source_types=("Star",), faint_snr=2.0, seed=2)
    run = run_pipetask(demo.root, demo.layout.inputs)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path_factory.mktemp("catalog_checks_out")
    # The classifier two-sample test is tested in test_discriminate.py and test_diagnose.py.
    return demo, diagnose_demo(demo, run.output_run, output_dir=out, discriminate=False), out


def _pulls(diagnosis, label: str) -> np.ndarray:
    return np.concatenate([v.catalog_checks[label].pulls.pulls for v in diagnosis.visits])


def test_isrinject_pulls_are_unit_normal(checked) -> None:
    _, diagnosis, _ = checked
    pulls = _pulls(diagnosis, "isrinject")
    n = len(pulls)
    # σ(std) = 1/√(2n): with n ≥ 600 the ±0.05 band is ≥ 1.7σ wide.
    assert n >= 600, n
    std = float(np.std(pulls, ddof=1))
    assert abs(std - 1.0) <= 0.05, (std, n)
    # The mean is biased low by the variance plane's own noise (photometry module docstring,
    # ≈ −0.3…−0.4 for sky-limited stars), as it is for the truth: the paired test below compares them.
    assert -0.6 < float(np.mean(pulls)) < 0.1, (np.mean(pulls), n)


def test_isrinject_agrees_with_the_truth(checked) -> None:
    _, diagnosis, _ = checked
    for visit in diagnosis.visits:
        isr, truth = visit.catalog_checks["isrinject"], visit.catalog_checks["truth"]
        # The same stars, measured in both (they share the original image and its noise).
        np.testing.assert_array_equal(isr.stars["injection_id"], truth.stars["injection_id"])
        # Paired pull differences: only the injected photons' noise differs.
        d = np.asarray(isr.stars["pull"]) - np.asarray(truth.stars["pull"])
        d = d[np.isfinite(d)]
        assert abs(np.mean(d)) <= 3 * np.std(d, ddof=1) / math.sqrt(len(d)), (visit.band, np.mean(d))
        assert abs(isr.pulls.std - truth.pulls.std) <= 3 * math.hypot(isr.pulls.std_error, truth.pulls.std_error)
        # Completeness per magnitude bin within the binomial errors.
        a, b = isr.completeness, truth.completeness
        np.testing.assert_array_equal(a.edges, b.edges)
        np.testing.assert_array_equal(a.n_injected, b.n_injected)
        filled = a.n_injected > 0
        diff = np.abs(a.fraction - b.fraction)[filled]
        assert np.all(diff <= 3 * np.hypot(a.error, b.error)[filled]), (visit.band, a.fraction, b.fraction)
    # The catalog reaches past the detection limit: the curve goes from ~0 to 1 in every band.
    for visit in diagnosis.visits:
        fraction = visit.catalog_checks["truth"].completeness.fraction
        fraction = fraction[np.isfinite(fraction)]
        assert fraction.max() == 1.0 and fraction.min() < 0.3, (visit.band, fraction)
    truth = _pulls(diagnosis, "truth")
    assert abs(np.std(truth, ddof=1) - 1.0) <= 0.05


def test_reports_show_all_three(checked) -> None:
    demo, diagnosis, out = checked
    table = catalog_table(diagnosis.by_band())
    for band in demo.bands:
        assert any(line.startswith(band) for line in table.splitlines())
    assert table.count("truth") == len(demo.bands) and table.count("upstream") == len(demo.bands)
    for visit in diagnosis.visits:
        data = json.loads((out / f"diagnose_{visit.visit}_{visit.band}.json").read_text())
        checks = data["catalog_checks"]
        assert set(checks) == {"isrinject", "truth", "upstream"}
        assert checks["isrinject"]["pulls"]["n"] == visit.catalog_checks["isrinject"].pulls.n
        assert sum(checks["truth"]["completeness"]["n_injected"]) == len(visit.catalog_checks["truth"].stars)
        for name in ("completeness", "pulls"):
            assert (out / f"diagnose_{visit.visit}_{visit.band}_{name}.png").stat().st_size > 20_000
