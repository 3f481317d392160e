"""docs/tutorial.ipynb runs (nbclient) on a demo repository made by `isrinject demo`."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from astropy.time import TimeDelta
from lsst.daf.butler import Butler, Timespan
from nbclient import NotebookClient

from isrinject.demo.build import EXPOSURE_TIME_S, load_demo_repo
from isrinject.demo.notes import repository_note

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
         "--detectors", "0"],
        capture_output=True, text=True, timeout=1200,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    # B81 (issue 26): the demo ends saying where its repository is, with commands that work as printed.
    note = built.stdout.rstrip().splitlines()[-5:]
    assert note[0] == f"The demo repository is kept at {repo}.", note
    assert note[3] == "Open the tutorial notebook on it:"
    assert note[4] == f"  ISRINJECT_DEMO_REPO={repo} jupyter lab {NOTEBOOK}"
    rerun = subprocess.run(shlex.split(note[2]), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert Butler.from_config(str(repo)).query_datasets(
        "injected_visit_image", collections="u/demo/inject-again", explain=False
    )

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
    # A flux/gain injection has slope g/ḡ; its noise on Σ ΔI·g is 1/√N_e ≈ 0.1 % for ~10⁶ e⁻.
    assert results["slope_flux_gain"] == pytest.approx(results["expected_flux_gain"], rel=0.01)
    # The star sits where f is ≈ 0.6 of the detector mean: far off the ISR relation.
    assert results["slope_flux_gain"] < 0.8
    assert results["seed_column"] == ["123"]
    assert results["diagnose_passed"] is True


def test_demo_note_when_the_repository_is_removed() -> None:
    """B81: without --keep/--repo the demo says it removed its temporary repository and how to keep it."""
    assert repository_note("/tmp/isrinject-demo-x", kept=False) == (
        "Removed the temporary demo repository /tmp/isrinject-demo-x (keep it with --keep, or build it where "
        "you like with --repo DIR)."
    )
    command = ["pipetask", "run", "-b", "R", "-i", "I", "-o", "u/demo/inject", "--output-run", "u/demo/inject/T",
               "-p", "P"]
    note = repository_note("R", kept=True, inputs="I", pipetask_command=command).splitlines()
    assert note[2] == "  pipetask run -b R -i I -o u/demo/inject-again -p P"
