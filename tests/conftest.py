"""Fixtures shared by several test modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from isrinject.demo.build import DemoRepo


@pytest.fixture(scope="session")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> DemoRepo:
    """A small demo repository: bands r and g (one visit each), detectors 0 and 1 side by side
    (128×128, 6 px apart, so a source near the inner edges lies within the other detector's
    trim padding), 8 sources per detector and band."""
    from isrinject.demo.build import build_demo_repo

    root = tmp_path_factory.mktemp("demo_repo") / "repo"
    return build_demo_repo(root, bands=("r", "g"), detectors=(0, 1), shape=(128, 128), n_sources=8, seed=1)
