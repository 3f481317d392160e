"""Faults and resumption with the real ``pipetask`` (issue 17).

One demo repository for the module (`build_demo_repo`: 3 bands × 2 detectors
of 128² px = 6 quanta, so four pipetask runs stay short) and four runs with
the default noise seed:

- ``serial``: ``pipetask run -j 1``, uninterrupted: the reference;
- ``parallel``: ``pipetask run -j 2``: bit-identical to ``serial``;
- ``resumed``: ``pipetask run -j 1`` SIGKILLed while the third quantum writes
  its outputs (two quanta finished), then re-run into the same RUN with
  ``--extend-run --skip-existing-in <run> --clobber-outputs`` (the current
  spelling of ``--extend-run --skip-existing-in``: pipe_base refuses to
  overwrite the killed quantum's partial outputs without ``--clobber-outputs``):
  one complete output of each kind per quantum, the finished quanta skipped
  (their dataset IDs unchanged), bit-identical to ``serial``;
- after all of them the input datastore files are byte-identical and the
  input RUNs hold the same datasets.

``assert_same_outputs`` is shared with test_slurm.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lsst.daf.butler import Butler

from _repo import assert_same_outputs, demo_pairs, file_hashes, input_run_counts, registry_pairs
from isrinject.demo.build import DemoRepo, build_demo_repo
from isrinject.demo.run import find_pipeline, find_pipetask, run_pipetask

pytestmark = pytest.mark.slow

#: Every dataset a quantum writes: both outputs, the task metadata and log.
QUANTUM_OUTPUTS = ("injected_visit_image", "injected_visit_image_catalog", "inject_visit_metadata",
                   "inject_visit_log")
#: Quanta that finish before the kill.
FINISHED_BEFORE_KILL = 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRepo:
    return build_demo_repo(tmp_path_factory.mktemp("faults") / "repo", bands=("u", "g", "r"), detectors=(0, 1),
                           shape=(128, 128), n_sources=12, seed=4)


@pytest.fixture(scope="module")
def inputs_before(demo: DemoRepo) -> tuple[dict[str, str], dict[str, int]]:
    """The input files' SHA-256 and the input RUNs' dataset counts, before any run."""
    return file_hashes(demo.root), input_run_counts(Butler.from_config(str(demo.root)), "u/")


def _run(demo: DemoRepo, output: str, *extra: str) -> str:
    result = run_pipetask(demo.root, demo.layout.inputs, output=output, extra_args=extra, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.output_run


@pytest.fixture(scope="module")
def serial_run(demo: DemoRepo, inputs_before) -> str:
    return _run(demo, "u/faults/serial", "-j", "1")


@pytest.fixture(scope="module")
def parallel_run(demo: DemoRepo, inputs_before) -> str:
    return _run(demo, "u/faults/parallel", "-j", "2")


def _output_files(run_dir: Path) -> set[Path]:
    return {p for p in run_dir.rglob("*") if p.is_file() and p.relative_to(run_dir).parts[0].startswith("injected_")}


def _registered(butler: Butler, run: str) -> dict[str, dict[tuple[int, int], object]]:
    """dataset type → (visit, detector) → dataset ID, for the quantum outputs in ``run``."""
    return {
        name: {(int(r.dataId["visit"]), int(r.dataId["detector"])): r.id
               for r in butler.query_datasets(name, collections=run, explain=False)}
        for name in QUANTUM_OUTPUTS
    }


@pytest.fixture(scope="module")
def resumed_run(demo: DemoRepo, inputs_before, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Kill ``pipetask run -j 1`` (SIGKILL, its whole process group) as soon as
    the quantum after the first ``FINISHED_BEFORE_KILL`` writes its first output
    file, record what the registry and the datastore hold, then resume."""
    output_run = "u/faults/resumed/run"
    command = [str(find_pipetask()), "run", "-b", str(demo.root), "-i", demo.layout.inputs, "-o", "u/faults/resumed",
               "--output-run", output_run, "-p", str(find_pipeline()), "--register-dataset-types", "-j", "1"]
    run_dir = demo.root / output_run
    log_path = tmp_path_factory.mktemp("killed") / "pipetask.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # Quanta run one after the other with -j 1, each writing two output
        # files (catalog and image): file 2k + 1 belongs to quantum k + 1.
        deadline = time.monotonic() + 900
        while process.poll() is None and time.monotonic() < deadline:
            if len(_output_files(run_dir)) > 2 * FINISHED_BEFORE_KILL:
                os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        returncode = process.wait(timeout=60)
    assert returncode == -signal.SIGKILL, (returncode, log_path.read_text()[-3000:])
    # Writeable: a kill inside a registry transaction leaves SQLite a hot
    # journal, which the first connection must roll back (a read-only one
    # fails with "attempt to write a readonly database"), as the resumed
    # pipetask would.
    butler = Butler.from_config(str(demo.root), writeable=True)
    at_kill = _registered(butler, output_run)
    files_at_kill = _output_files(run_dir)
    resumed = subprocess.run(
        [*command, "--extend-run", "--skip-existing-in", output_run, "--clobber-outputs"],
        capture_output=True, text=True, timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    return {"run": output_run, "at_kill": at_kill, "files_at_kill": files_at_kill, "log": resumed.stderr}


def test_parallel_run_is_bit_identical_to_serial(demo: DemoRepo, serial_run: str, parallel_run: str) -> None:
    butler = Butler.from_config(str(demo.root))
    pairs = demo_pairs(demo)
    for run in (serial_run, parallel_run):
        for name in QUANTUM_OUTPUTS:
            assert registry_pairs(butler, name, run) == pairs, (run, name)
    assert_same_outputs(butler, pairs, serial_run, parallel_run)


def test_killed_run_resumes_to_the_uninterrupted_outputs(demo: DemoRepo, serial_run: str, resumed_run: dict) -> None:
    butler = Butler.from_config(str(demo.root))
    pairs = demo_pairs(demo)
    run, at_kill = resumed_run["run"], resumed_run["at_kill"]
    # At the kill: the first quanta complete (all four datasets), the next one partial
    # (an output file written or being written, its other outputs missing), the rest not started.
    finished = sorted(set.intersection(*(set(at_kill[name]) for name in QUANTUM_OUTPUTS)))
    assert len(finished) == FINISHED_BEFORE_KILL, at_kill
    started = {pair for name in QUANTUM_OUTPUTS for pair in at_kill[name]}
    assert len(resumed_run["files_at_kill"]) > 2 * FINISHED_BEFORE_KILL
    assert len(started) <= FINISHED_BEFORE_KILL + 1, at_kill
    # The resumption skipped exactly the finished quanta...
    skipped = f"({FINISHED_BEFORE_KILL} previously succeeded and skipped)"
    assert skipped in resumed_run["log"], resumed_run["log"][-3000:]
    after = _registered(butler, run)
    for name in QUANTUM_OUTPUTS:
        # ...kept their datasets (same dataset IDs)...
        assert {pair: after[name][pair] for pair in finished} == {pair: at_kill[name][pair] for pair in finished}
        # ...and left exactly one dataset of each kind per quantum.
        assert registry_pairs(butler, name, run) == pairs, name
    # Every output reads back and equals the uninterrupted run's, bit for bit.
    assert_same_outputs(butler, pairs, serial_run, run)
    # No file of the run is a stray partial output: each belongs to a registered
    # dataset, except the killed write's temporary file (daf_butler writes to a
    # temporary name and renames), which the resumption neither used nor made more of.
    registered_files = {Path(butler.getURI(ref).ospath) for name in QUANTUM_OUTPUTS[:2]
                        for ref in butler.query_datasets(name, collections=run, explain=False)}
    assert len(registered_files) == 2 * len(pairs)
    stray = _output_files(demo.root / run) - registered_files
    assert stray <= resumed_run["files_at_kill"] and len(stray) <= 1, sorted(stray)


def test_inputs_byte_identical_after_all_runs(demo: DemoRepo, inputs_before, serial_run: str, parallel_run: str,
                                              resumed_run: dict) -> None:
    hashes_before, counts_before = inputs_before
    hashes_after = file_hashes(demo.root)
    assert len(hashes_before) >= 3 * 2 * 3  # visit images, two flats per band and detector, catalogs
    assert {name: hashes_after.get(name) for name in hashes_before} == hashes_before
    assert input_run_counts(Butler.from_config(str(demo.root)), "u/") == counts_before
    new_files = set(hashes_after) - set(hashes_before)
    assert new_files and all(name.startswith("u/faults/") for name in new_files), sorted(new_files)[:5]
