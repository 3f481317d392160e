"""BPS end to end: ``bps submit bps/local_threads.yaml`` and
``bps submit bps/local_htex.yaml`` (ctrl_bps_parsl: a ThreadPoolExecutor and a
HighThroughputExecutor) on one temporary demo-style repository with 4 visits ×
2 detectors (8 quanta), each site into its own output collection.  bps writes
its submit directory under ``$PWD/submit`` and parsl its ``runinfo/`` under the
working directory: both go to the test's ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import pytest

from _repo import bps_submit, check_bps_outputs, check_inputs, populate_repo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, int]]]:
    """The module's SQLite repository: (root, the (visit, detector) pairs)."""
    from lsst.daf.butler import Butler

    root = tmp_path_factory.mktemp("bps") / "repo"
    Butler.makeRepo(str(root))
    return root, populate_repo(Butler.from_config(str(root), writeable=True))


@pytest.mark.parametrize("site", ["local_threads", "local_htex"])
def test_bps_submit_runs_every_quantum(tmp_path: Path, repo: tuple[Path, list[tuple[int, int]]], site: str) -> None:
    from lsst.daf.butler import Butler

    root, pairs = repo
    check_inputs(Butler.from_config(str(root)), pairs)
    output = f"u/test/bps_{site}"
    elapsed = bps_submit(site, str(root), output, tmp_path)
    # bps's submit directory and parsl's runinfo are under this test's directory; one
    # job (and log) per visit (bps/clustering.yaml).
    assert len(list(tmp_path.glob(f"submit/{output}/*/logs/visit/*/*.stderr"))) == len({v for v, _ in pairs})
    assert list(tmp_path.glob("runinfo/*/parsl.log"))
    check_bps_outputs(Butler.from_config(str(root)), pairs, output, tmp_path)
    check_inputs(Butler.from_config(str(root)), pairs)
    print(f"bps submit {site}: {len(pairs)} quanta in {elapsed:.1f} s")
