"""docs/tutorial.ipynb runs (nbclient) on a demo repository made by `isrinject demo`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from astropy.time import TimeDelta
from lsst.daf.butler import Butler, Timespan
from nbclient import NotebookClient

from isrinject.demo.build import EXPOSURE_TIME_S, load_demo_repo

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_tutorial_runs_and_finds_the_isr_relation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "demo_repo"
    isrinject = Path(sys.executable).parent / "isrinject"
    built = subprocess.run(
        [str(isrinject), "demo", "--repo", str(repo), "--output", str(tmp_path / "out"), "--bands", "u",
         "--detectors", "0", "--size", "256", "--n-sources", "20", "--n-real-stars", "0", "--no-discriminate"],
        capture_output=True, text=True, timeout=1200,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]

    monkeypatch.setenv("ISRINJECT_DEMO_REPO", str(repo))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    last = notebook.cells[-1].outputs
    lines = [line for out in last if out.output_type == "stream" for line in out.text.splitlines()]
    results = json.loads(lines[-1])

    # The flat is the one the visit image records, which is the one certified at its time.
    demo = load_demo_repo(repo)
    butler = Butler.from_config(str(repo))
    band = demo.bands[0]
    begin = demo.visit_begin[band]
    certified = butler.find_dataset(
        "flat", instrument=demo.layout.instrument, detector=0, physical_filter=demo.physical_filters[band],
        collections=demo.layout.inputs, timespan=Timespan(begin, begin + TimeDelta(EXPOSURE_TIME_S, format="sec")),
    )
    assert results["flat_id"] == results["recorded_flat_id"] == str(certified.id)
    assert results["flat_run"] == certified.run == demo.flat_runs[demo.flat_epoch(band)]

    # The star's variance slope: 1 per pre-flat electron plus the flat's own
    # variance, exactly (ΔV·g² = n + V_f/f²·(2Sn + n²), ΔI·g = n; float32 rounding).
    assert results["star_pixels"] > 100
    assert results["slope_isrinject"] == pytest.approx(1 + results["flat_variance_term"], abs=2e-3)
    assert 0 < results["flat_variance_term"] < 0.05
    # lsst.source.injection (emulated) has slope s·g exactly (ΔV = s·ΔI, no flat-variance term) ...
    assert results["slope_upstream"] == pytest.approx(results["expected_upstream"], rel=0.01)
    # ... off the ISR relation where the star sits (low flat, far from its amplifier's fitted mean) ...
    assert abs(results["slope_upstream"] - results["slope_isrinject"]) > 0.03
    # ... and its realized noise is 1/s² of its recorded variance (u, nJy: s ≈ 3-5), within the Poisson
    # noise of Σ(ΔI − M)² over a few hundred pixels (≈ √(2/N) ≈ 10 %).
    assert results["noise_ratio_upstream"] == pytest.approx(results["expected_noise_ratio_upstream"], rel=0.3)
    assert results["noise_ratio_upstream"] < 0.2
    assert results["seed_column"] == ["123"]
    assert results["diagnose_passed"] is True
