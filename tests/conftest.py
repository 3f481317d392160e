"""Fixtures shared by several test modules, and the order `make test` hands out test files."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from isrinject.demo.build import DemoRepo

#: The test files that take longest (tests/README.md has the measured times), longest
#: first.  `make test` runs pytest-xdist with ``--dist loadfile``, which hands whole
#: files to its workers in collection order; starting these first keeps one of them
#: from starting last and running alone while the other workers idle.
LONGEST_FIRST = (
    "test_catalog_checks.py",
    "test_docs.py",
    "test_faults.py",
    "test_postgres.py",
    "test_slurm.py",
    "test_bps.py",
    "test_diagnose.py",
    "test_consolidate.py",
    "test_make_injection_pipeline.py",
    "test_reliability_pipetask.py",
    "test_provenance.py",
    "test_fresh_clone.py",
    "test_demo.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect the files of `LONGEST_FIRST` first, in that order; the others follow in their
    usual order (a stable sort), and the tests within a file keep theirs."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> DemoRepo:
    """A small demo repository: bands r and g (one visit each), detectors 0 and 1 side by side
    (128×128, 6 px apart, so a source near the inner edges lies within the other detector's
    trim padding), 8 sources per detector and band."""
    from isrinject.demo.build import build_demo_repo

    root = tmp_path_factory.mktemp("demo_repo") / "repo"
    return build_demo_repo(root, bands=("r", "g"), detectors=(0, 1), shape=(128, 128), n_sources=8, seed=1)
