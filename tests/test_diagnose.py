"""`isrinject diagnose` on a small demo repository after a real `pipetask run`.

The statistics, not only the files: the correct injection passes (KS p > 0.01,
realized-noise ratio ≈ 1, slopes agree) in every band, the emulated
lsst.source.injection injection of the same model fails for its noise
(realized/recorded = 1/s²), missing datasets fail with a message naming them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lsst.daf.butler import Butler

from isrinject.demo.build import build_demo_repo
from isrinject.diagnostics.diagnose import MissingDatasetError, diagnose

pytestmark = pytest.mark.slow

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "inject.yaml"
BIN = Path(sys.executable).parent
OUTPUT = "u/test/diagnose"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("diagnose") / "repo"
    demo = build_demo_repo(root, bands=("u", "r"), detectors=(0,), shape=(160, 160), n_sources=12, seed=0)
    command = [
        str(BIN / "pipetask"), "run", "-b", str(root), "-i", demo.layout.inputs, "-o", OUTPUT,
        "-p", str(PIPELINE), "--register-dataset-types", "-d", f"instrument='{demo.layout.instrument}'",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return demo


@pytest.fixture(scope="module")
def diagnosis(demo, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("diagnose_out")
    butler = Butler.from_config(str(demo.root))
    lines: list[str] = []
    result = diagnose(
        butler, visit=list(demo.visits.values()), detector=0, collections=OUTPUT, output_dir=out,
        compare_upstream=True, discriminate=True, progress=lines.append,
    )
    return result, out, lines


@pytest.mark.parametrize("band", ["u", "r"])
def test_correct_injection_passes(diagnosis, band) -> None:
    result, _, _ = diagnosis
    visit = result.by_band()[band]
    s = visit.summary["isrinject"]
    assert s["n_ks"] > 100 and s["n_noise"] > 1000 and s["n_injected"] > 100
    assert s["ks_pvalue"] > 0.01, s
    assert abs(s["noise_ratio"] - 1.0) <= max(0.03, 3 * s["noise_ratio_error"]), s
    assert abs(s["slope_injected"] / s["slope_real"] - 1.0) < 0.02, s
    assert abs(s["slope_real"] - 1.0) < 0.02, s
    assert s["relation_rms"] < 1e-5, s
    # The JSON carries the verdict of every check: all ran and passed.
    assert {name: c["status"] for name, c in s["checks"].items()} == dict.fromkeys(
        ("relation", "noise_ratio", "slopes", "ks"), "PASS")
    assert s["passed"] and visit.passed


@pytest.mark.parametrize("band", ["u", "r"])
def test_upstream_fails_for_its_noise(diagnosis, band) -> None:
    """The emulated peer package records V = s·M but draws noise of variance M/s: ratio 1/s² (0.1 in u, 2 in r)."""
    result, _, _ = diagnosis
    visit = result.by_band()[band]
    up = visit.summary["upstream"]
    slopes = np.asarray(up["slopes"]["0"])
    assert len(slopes) == 16 and np.all(slopes > 0) and not up["fallbacks"]
    # An unweighted line through 1600 pixels per amplifier (a 160² detector) scatters around c/f: u ≈ 3, r ≈ 0.7.
    assert np.median(slopes) == pytest.approx({"u": 3.05, "r": 0.70}[band] / 0.95, rel=0.35)
    # k̂ is a weighted mean over the injected pixels of their amplifier's 1/s².
    assert np.min(slopes**-2) <= up["noise_ratio"] <= np.max(slopes**-2), (up["noise_ratio"], slopes**-2)
    assert up["noise_ratio"] < 0.2 if band == "u" else up["noise_ratio"] > 1.5
    assert abs(up["noise_ratio"] - 1) > 10 * up["noise_ratio_error"]
    assert up["checks"]["noise_ratio"]["status"] == "FAIL" and not up["passed"]
    # One slope per amplifier is off every pixel's own relation by s·g − 1 (the flat within the amplifier).
    assert up["checks"]["relation"]["status"] == "FAIL" and up["relation_rms"] > 3e-3, up["relation_rms"]
    # Same real pixels: the real slope does not depend on the injection method.
    assert up["slope_real"] == pytest.approx(visit.summary["isrinject"]["slope_real"])
    assert up["algorithm"].startswith("lsst.source.injection 8da8778")


def test_flux_recovery_and_rerender(diagnosis, demo) -> None:
    result, _, _ = diagnosis
    for visit in result.visits:
        sources = visit.sources
        ok = np.asarray(sources["injected"])
        assert ok.sum() >= 8
        # The noiseless re-render with the run's configuration reproduces the run's model fluxes.
        np.testing.assert_allclose(sources["rerendered_model_flux"][ok], sources["injection_model_flux"][ok], rtol=1e-9)
        pulls = np.asarray(sources["flux_pull"])[ok]
        assert np.sqrt(np.mean(pulls**2)) < 2.5, pulls
        assert abs(visit.summary["flux_recovery"]["total_flux_ratio"] - 1) < 0.01
        # The flat read is the one certified at the visit's time.
        flat_run = visit.summary["flats"]["0"]["run"]
        assert flat_run == demo.flat_runs[demo.flat_epoch(visit.band)]


def test_json_and_pngs(diagnosis, demo) -> None:
    result, out, lines = diagnosis
    assert len(lines) == 2 and all("isrinject relation" in line and "→ PASS | upstream" in line for line in lines)
    # The upstream comparison's verdict comes before the catalog-level numbers.
    assert all(line.split(" | upstream: ")[1].split(" | ")[0].endswith("→ FAIL") for line in lines)
    assert all(" | isrinject: pulls " in line for line in lines)
    summary = json.loads((out / "diagnose_summary.json").read_text())
    assert summary["passed"] is True
    assert {v["band"] for v in summary["visits"]} == {"u", "r"}
    for visit in result.visits:
        path = out / f"diagnose_{visit.visit}_{visit.band}.json"
        data = json.loads(path.read_text())
        assert data["visit"] == visit.visit and data["band"] == visit.band and data["detectors"] == [0]
        for key in ("slope_real", "slope_injected", "ks_statistic", "ks_pvalue", "noise_ratio", "noise_ratio_error"):
            assert data["isrinject"][key] == pytest.approx(getattr(visit.statistics, key))
            assert data["upstream"][key] == pytest.approx(getattr(visit.upstream, key))
        assert data["config"]["add_noise"] is True
        assert len(data["sources"]) == len(visit.sources)
        assert {"injection_flux", "expected_flux", "flux_pull", "rerendered_model_flux"} <= set(data["sources"][0])
        import matplotlib.image

        # Catalog level without a truth: isrinject and the upstream emulation, the same stars.
        assert set(data["catalog_checks"]) == {"isrinject", "upstream"}
        assert data["catalog_checks"]["isrinject"]["pulls"]["n"] == visit.catalog_checks["upstream"].pulls.n > 0
        # A 160² field without real stars cannot feed the classifier: reported, not faked.
        for arm in ("isrinject", "upstream"):
            d = data["discrimination"][arm]
            assert d["auc"] is None and d["reason"].startswith("all: only "), d
        for name in (f"diagnose_{visit.visit}_{visit.band}_completeness.png",
                     f"diagnose_{visit.visit}_{visit.band}_pulls.png", f"diagnose_{visit.visit}_{visit.band}_roc.png",
                     f"diagnose_{visit.visit}_{visit.band}_forum.png"):
            assert (out / name) in visit.paths and (out / name).stat().st_size > 20_000
        for name in (f"diagnose_{visit.visit}_{visit.band}_flux_variance.png",
                     f"diagnose_{visit.visit}_{visit.band}_maps_d0.png"):
            png = out / name
            assert png in visit.paths
            assert png.stat().st_size > 50_000
            image = matplotlib.image.imread(png)
            assert image.shape[0] > 300 and image.shape[1] > 1000
            assert np.std(image[..., :3]) > 0.05  # not blank


def test_missing_datasets(demo, tmp_path) -> None:
    butler = Butler.from_config(str(demo.root))
    visit = demo.visits["u"]
    # No config in the input chain (the run never wrote there).
    with pytest.raises(MissingDatasetError, match="inject_visit_config"):
        diagnose(butler, visit=visit, detector=0, collections=demo.layout.inputs)
    # No flats in the input collections: the CLI names dataset, data ID and collections.
    result = subprocess.run(
        [str(BIN / "isrinject"), "diagnose", "-b", str(demo.root), "--collections", OUTPUT,
         "--input-collections", demo.layout.raw_run, "--visit", str(visit), "--detector", "0",
         "-o", str(tmp_path / "out")],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "'flat'" in result.stderr and f"visit={visit}" in result.stderr
    assert demo.layout.raw_run in result.stderr
    # An unknown visit with outputs queried by list.
    result = subprocess.run(
        [str(BIN / "isrinject"), "diagnose", "-b", str(demo.root), "--collections", OUTPUT,
         "--band", "g", "-o", str(tmp_path / "out2")],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "injected_visit_image" in result.stderr and OUTPUT in result.stderr


def test_cli_all_visits(demo, tmp_path) -> None:
    out = tmp_path / "cli"
    result = subprocess.run(
        [str(BIN / "isrinject"), "diagnose", "-b", str(demo.root), "--collections", OUTPUT, "--no-figures",
         "-o", str(out)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("→ PASS") == 2 and "[2/2]" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"diagnose_{v}_{b}.json" for b, v in demo.visits.items()] + ["diagnose_summary.json"]
    )


def test_cutout_around_an_injected_star(demo, diagnosis, tmp_path) -> None:
    """``--around X Y``: statistics and maps of a 64×64 cutout around the brightest injected star."""
    result, _, _ = diagnosis
    u = result.by_band()["u"]
    stars = u.sources[np.asarray(u.sources["injected"]) & (np.asarray(u.sources["source_type"]) == "Star")]
    star = stars[np.argmin(np.asarray(stars["mag"]))]
    out = tmp_path / "cutout"
    command = [str(BIN / "isrinject"), "diagnose", "-b", str(demo.root), "--collections", OUTPUT,
               "--visit", str(u.visit), "--detector", "0", "--around", str(star["x"]), str(star["y"]),
               "--cutout-size", "64", "-o", str(out)]
    run = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    data = json.loads((out / f"diagnose_{u.visit}_u.json").read_text())
    x0, y0 = round(float(star["x"])) - 32, round(float(star["y"])) - 32
    assert data["cutouts"] == [[x0, y0, 64, 64]]
    s = data["isrinject"]
    # Only the cutout's pixels: fewer injected pixels than the whole detector, the star's among them.
    assert 20 < s["n_relation"] < u.summary["isrinject"]["n_relation"]
    assert s["relation_rms"] < 1e-5 and s["passed"], s
    assert (out / f"diagnose_{u.visit}_u_maps_d0.png").stat().st_size > 20_000
    # A cutout off the detector is an input error naming the cutout.
    bad = subprocess.run(command[:-4] + ["--cutout", "5000", "5000", "64", "64", "-o", str(tmp_path / "bad")],
                         check=False, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "does not overlap detector 0" in bad.stderr, bad.stderr[-2000:]
