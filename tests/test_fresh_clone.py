"""Guard: a `git clone` of the project, alone in an empty directory, runs the demo.

The package, demo and tests once read files from a sibling ``shared/``
directory that no user has.  This clones the working tree's HEAD (commit first: uncommitted
changes are not in the clone) into an empty temporary directory and runs the
demo there with the already built virtualenv, so nothing outside the clone
can be found.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lsst.daf.butler import Butler

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the project")
    parent = tmp_path_factory.mktemp("fresh")
    target = parent / "isrinject"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    assert sorted(p.name for p in parent.iterdir()) == ["isrinject"]  # no shared/ beside it
    return target


def _environment(clone: Path) -> dict[str, str]:
    """The user's environment with the clone as the only isrinject source."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISRINJECT")}
    env["PYTHONPATH"] = str(clone / "python")
    env["ISRINJECT_DIR"] = str(clone)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def test_nothing_tracked_refers_to_a_sibling_shared_directory(clone: Path) -> None:
    found = subprocess.run(
        ["git", "grep", "-n", "-e", "[.][.]/shared", "--", "."],
        cwd=clone, capture_output=True, text=True,
    )
    assert found.returncode == 1 and found.stdout == "", found.stdout


def test_demo_runs_in_a_fresh_clone(clone: Path) -> None:
    env = _environment(clone)
    where = subprocess.run(
        [sys.executable, "-c", "import isrinject, isrinject.sim as s; print(isrinject.__file__); "
         "print(s.default_comcam_csv())"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split()
    assert all(Path(path).resolve().is_relative_to(clone.resolve()) for path in where), where

    output = clone / "demo_output"
    repo = clone / "demo_repo"
    demo = subprocess.run(
        # One band is enough to find what the clone lacks (tests/test_demo.py runs two).
        [sys.executable, "-m", "isrinject.cli", "demo", "--size", "128", "--bands", "u",
         "--detectors", "0", "--n-sources", "12", "--n-real-stars", "0", "--no-discriminate",
         "--output", str(output), "--repo", str(repo)],
        cwd=clone, env=env, capture_output=True, text=True, timeout=900,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "1/1 bands pass" in demo.stdout
    # B81 (issue 26): the demo ends saying where its repository is, with commands that work as printed.
    note = demo.stdout.rstrip().splitlines()[-5:]
    assert note[0] == f"The demo repository is kept at {repo}.", note
    assert note[3] == "Open the tutorial notebook on it:"
    assert note[4].startswith(f"  ISRINJECT_DEMO_REPO={repo} jupyter lab "), note
    rerun = subprocess.run(shlex.split(note[2]), cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert Butler.from_config(str(repo)).query_datasets(
        "injected_visit_image", collections="u/demo/inject-again", explain=False
    )
    for band in ("u",):
        (png,) = output.glob(f"diagnose_*_{band}_flux_variance.png")
        assert png.read_bytes()[:8] == PNG_SIGNATURE, png
        assert png.stat().st_size > 20_000, png.stat().st_size
