"""The README / documentation figures are what the code draws (isrinject.demo.figure).

``make demo`` and ``make docs`` redraw doc/_static/forum_cutout_u.png and
doc/_static/bright_stars.png; this test redraws them into a temporary file and compares the decoded pixels with
the committed copy, so a change to the pixel model, the upstream emulation,
the simulator or the figure code that is not followed by a re-drawn figure
fails here (re-draw with ``python -m isrinject.demo.figure`` and commit it).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np

from isrinject.demo.figure import (
    BRIGHT_STARS_FIGURE,
    README_FIGURE,
    forum_example,
    write_bright_stars_figure,
    write_readme_figure,
)

ROOT = Path(__file__).resolve().parents[1]


def test_committed_figure_is_what_the_code_draws(tmp_path: Path) -> None:
    committed = ROOT / README_FIGURE
    assert committed.is_file(), f"{README_FIGURE} is missing; draw it with python -m isrinject.demo.figure"
    drawn = matplotlib.image.imread(write_readme_figure(tmp_path / "figure.png"))
    stored = matplotlib.image.imread(committed)
    assert drawn.shape == stored.shape, (drawn.shape, stored.shape)
    assert np.array_equal(drawn, stored), (
        f"{README_FIGURE} differs from what isrinject.demo.figure draws in {np.mean(drawn != stored):.2%} of its "
        "pixel values; re-draw it with python -m isrinject.demo.figure and commit it")
    for doc in ("README.md", "doc/index.rst", "doc/isrinject/getting-started.rst", "doc/isrinject/checking.rst"):
        assert "forum_cutout_u.png" in (ROOT / doc).read_text(), doc


def test_committed_bright_star_figure_is_what_the_code_draws(tmp_path: Path) -> None:
    committed = ROOT / BRIGHT_STARS_FIGURE
    assert committed.is_file(), f"{BRIGHT_STARS_FIGURE} is missing; draw it with python -m isrinject.demo.figure"
    drawn = matplotlib.image.imread(write_bright_stars_figure(tmp_path / "bright.png"))
    stored = matplotlib.image.imread(committed)
    assert drawn.shape == stored.shape and np.array_equal(drawn, stored), (
        f"{BRIGHT_STARS_FIGURE} differs from what isrinject.demo.figure draws; re-draw it with "
        "python -m isrinject.demo.figure and commit it")
    assert "bright_stars.png" in (ROOT / "doc/isrinject/pixel-model.rst").read_text()


def test_figure_shows_the_noise_mismatch() -> None:
    """The numbers behind the figure: isrinject's star pixels have unit normalised noise, upstream's 1/s."""
    forum = forum_example()
    i0, v0 = forum.original
    assert forum.model is not None and forum.injected.sum() > 100
    for (image, variance), expected in ((forum.isrinject, 1.0), (forum.upstream, 1 / forum.upstream_slope)):
        recorded = (variance - v0)[forum.injected]
        z = (image - i0 - forum.model)[forum.injected][recorded > 0] / np.sqrt(recorded[recorded > 0])
        n = len(z)
        assert n > 0.9 * forum.injected.sum()
        # Var of a sample std ≈ σ²/(2n); the star straddles two amplifiers of slightly different s (±35 %).
        tolerance = 4 * expected / np.sqrt(2 * n) + (0.35 * expected if expected < 1 else 0.0)
        assert abs(np.std(z) - expected) < tolerance, (np.std(z), expected)
