"""BPS on a real Slurm cluster (issue 17): ``bps submit bps/slurm.yaml``
(ctrl_bps_parsl's ``Slurm`` site) on a single-node cluster on 127.0.0.1
that ``bps/slurm_cluster.sh`` starts for the module (Debian's slurm-wlm and
munge; `.ci/run` installs them when missing, the module skips without them).

One demo repository for the module (3 bands × 2 detectors of 128² px, 6
quanta: each quantum's pixels do not matter here, only where it ran) and two
submissions:

- the whole demo: every quantum ran inside a Slurm job of this workflow
  (each job log names its ``SLURM_JOB_ID``, ``sacct`` lists that job under
  the workflow's name on the cluster's node) and the registry holds every
  output, complete;
- 2 visits (4 quanta, 2 clustered jobs) with a transient failure injected
  through the site's ``commandPrefix`` (a bash ``EXIT`` trap: the first job
  to start runs its quanta, then exits 75 as if its node had been lost):
  parsl retries it (``retries: 1``), the retry skips the quanta whose outputs
  exist, and the outputs equal the first submission's bit for bit.

Then the input files are byte-identical.  test_postgres.py runs
``bps/slurm.yaml`` once more on a PostgreSQL-registry repository with the
``slurm_cluster`` fixture and ``check_ran_in_slurm`` from here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from lsst.daf.butler import Butler

from _repo import (
    ROOT,
    assert_same_outputs,
    bps_logs,
    bps_submit,
    demo_pairs,
    file_hashes,
    input_run_counts,
    registry_pairs,
    stamp_footprint,
)
from isrinject.demo.build import DemoRepo, build_demo_repo
from isrinject.engine.flags import FATAL_FLAGS

pytestmark = pytest.mark.slow

CLUSTER_SCRIPT = ROOT / "bps" / "slurm_cluster.sh"
#: The node name bps/slurm_cluster.sh gives its slurmd.
NODE = "isrinject1"
#: Debian puts the daemons in /usr/sbin, which a non-root PATH may lack.
SLURM_TOOLS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sacct")
JOB_LINE = re.compile(r"^isrinject: Slurm job (\S+) on (\S+)$", re.MULTILINE)
QUANTUM_LINE = re.compile(r"Execution of task 'inject_visit' on quantum \{[^}]*detector: (\d+), visit: (\d+)")
FAILURE_MESSAGE = "isrinject test: injected transient failure of this job"


@dataclasses.dataclass
class SlurmCluster:
    """The running test cluster."""

    conf: Path
    """Its slurm.conf (``SLURM_CONF`` for sbatch, squeue, sacct)."""

    def finished_jobs(self) -> dict[str, dict[str, str]]:
        """Job ID → ``sacct --completion`` fields (JobName, State, NodeList, Start, End)
        of every job that has ended (the cluster keeps no accounting database)."""
        fields = ["JobID", "JobName", "State", "NodeList", "Start", "End"]
        result = subprocess.run(
            ["sacct", "--completion", "--parsable2", "--noheader", "--format", ",".join(fields)],
            check=True, capture_output=True, text=True, timeout=60, env={**os.environ, "SLURM_CONF": str(self.conf)},
        )
        rows = [dict(zip(fields, line.split("|"))) for line in result.stdout.splitlines() if line]
        return {row["JobID"]: row for row in rows}


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start bps/slurm_cluster.sh for the module, with SLURM_CONF set for
    every subprocess (bps submit and its parsl provider call sbatch)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool, path=search) is None]
    if missing:
        pytest.skip(f"No {', '.join(missing)}: install Debian's slurm-wlm and munge (.ci/run does).")
    # Not under pytest's 0700 tmp directory: munged wants its socket directory
    # reachable by everyone, and sockets want a short path.
    state = tempfile.mkdtemp(prefix="isrinject-slurm-")
    os.chmod(state, 0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", search)
        started = subprocess.run([str(CLUSTER_SCRIPT), "start", state], capture_output=True, text=True, timeout=180)
        try:
            if started.returncode != 0:
                pytest.fail(f"bps/slurm_cluster.sh start failed:\n{started.stdout}\n{started.stderr[-3000:]}")
            patch.setenv("SLURM_CONF", os.path.join(state, "slurm.conf"))
            yield SlurmCluster(Path(state) / "slurm.conf")
        finally:
            subprocess.run([str(CLUSTER_SCRIPT), "stop", state], capture_output=True, timeout=120)
            shutil.rmtree(state, ignore_errors=True)


def check_ran_in_slurm(cluster: SlurmCluster, cwd: Path, output: str, pairs) -> dict[str, str]:
    """Every quantum of ``pairs`` ran in a job whose log (bps/slurm.yaml's
    ``commandPrefix`` line) names a Slurm job that ``sacct`` lists under
    this workflow's name on the cluster's node, and no job ran outside
    Slurm.  Returns job log stem → Slurm job ID."""
    (submit_dir,) = cwd.glob(f"submit/{output}/*")
    workflow_name = f"{output}/{submit_dir.name}".replace("/", "_")  # bps's uniqProcName
    finished = cluster.finished_jobs()
    slurm_job_of_log = {}
    executed = []
    for stdout in sorted(submit_dir.glob("logs/visit/*/*.stdout")):
        lines = JOB_LINE.findall(stdout.read_text())
        assert lines, (stdout, bps_logs(cwd))
        for job_id, node in lines:  # one line per attempt
            assert node == NODE and job_id in finished, (stdout, job_id, node, finished)
            assert finished[job_id]["JobName"] == workflow_name, finished[job_id]
            assert finished[job_id]["NodeList"] == NODE and finished[job_id]["Start"] != "Unknown"
        slurm_job_of_log[stdout.stem] = lines[-1][0]
        stderr = stdout.with_suffix(".stderr").read_text()
        executed += [(int(visit), int(detector)) for detector, visit in QUANTUM_LINE.findall(stderr)]
    # bps/clustering.yaml: one job per visit, each quantum executed once.
    assert len(slurm_job_of_log) == len({visit for visit, _ in pairs}), slurm_job_of_log
    assert sorted(executed) == sorted(pairs), executed
    return slurm_job_of_log


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRepo:
    return build_demo_repo(tmp_path_factory.mktemp("slurm_demo") / "repo", bands=("u", "g", "r"),
                           shape=(128, 128), n_sources=8)


@pytest.fixture(scope="module")
def inputs_before(demo: DemoRepo) -> tuple[dict[str, str], dict[str, int]]:
    return file_hashes(demo.root), input_run_counts(Butler.from_config(str(demo.root)), "u/")


@pytest.fixture(scope="module")
def demo_submission(demo: DemoRepo, slurm_cluster: SlurmCluster, inputs_before,
                    tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """``bps submit bps/slurm.yaml`` on the whole demo: (output collection, working directory)."""
    cwd = tmp_path_factory.mktemp("slurm_submit")
    output = "u/test/slurm"
    elapsed = bps_submit("slurm", str(demo.root), output, cwd)
    print(f"bps submit slurm: {len(demo_pairs(demo))} quanta in {elapsed:.1f} s")
    return output, cwd


def test_bps_submit_on_slurm_runs_every_quantum(demo: DemoRepo, slurm_cluster: SlurmCluster,
                                                demo_submission: tuple[str, Path]) -> None:
    output, cwd = demo_submission
    pairs = demo_pairs(demo)
    assert len(pairs) == 6
    jobs = check_ran_in_slurm(slurm_cluster, cwd, output, pairs)
    # parsl ran the 3 jobs (one per visit) in its block(s): Slurm jobs named after the workflow.
    assert 1 <= len(set(jobs.values())) <= len(jobs)
    butler = Butler.from_config(str(demo.root))
    for name in ("injected_visit_image", "injected_visit_image_catalog"):
        assert registry_pairs(butler, name, output) == pairs, name
    # Every output is complete: the catalog lists the demo's sources of that
    # detector (same injection_id), none fatally flagged, and the image has the
    # injected pixels, differing from the input exactly there.
    by_visit = {visit: band for band, visit in demo.visits.items()}
    for visit, detector in pairs:
        data_id = {"instrument": demo.layout.instrument, "visit": visit, "detector": detector}
        catalog = butler.get("injected_visit_image_catalog", data_id, collections=output)
        band_ids = np.asarray(demo.catalog["injection_id"][demo.catalog["band"] == by_visit[visit]])
        ids = np.asarray(catalog["injection_id"])
        # build_demo_repo's injection_id is detector * 100000 + index; rows of the
        # neighbouring detector within trim_padding are in the catalog too.
        own = ids // 100_000 == detector
        assert set(ids) <= set(band_ids), (visit, detector)
        assert sorted(ids[own]) == sorted(band_ids[band_ids // 100_000 == detector]), (visit, detector)
        assert np.all((np.asarray(catalog["injection_flag"])[own] & int(FATAL_FLAGS)) == 0), (visit, detector)
        image = butler.get("injected_visit_image", data_id, collections=output)
        original = butler.get("visit_image", data_id, collections=demo.layout.inputs)
        injected = image.mask.get("INJECTED")
        changed = ~((image.image.array == original.image.array)
                    | (np.isnan(image.image.array) & np.isnan(original.image.array)))
        assert injected.sum() > 0 and changed.any(), (visit, detector)
        assert not (changed & ~stamp_footprint(catalog, image)).any(), (visit, detector)
    # The final job chained the output collection to the run it wrote.
    assert len(butler.collections.query(f"{output}/*")) == 1


def _config_with_transient_failure(tmp_path: Path, marker: Path) -> Path:
    """bps/slurm.yaml with a bash EXIT trap appended to ``commandPrefix``: the
    first job to create ``marker`` runs normally, then exits 75."""
    prefix = yaml.safe_load((ROOT / "bps" / "slurm.yaml").read_text())["site"]["slurm"]["commandPrefix"]
    hook = (f"if mkdir {marker} 2>/dev/null; then "
            f"trap 'echo \"{FAILURE_MESSAGE}\" >&2; exit 75' EXIT; fi")
    config = {"includeConfigs": [str(ROOT / "bps" / "slurm.yaml")],
              "site": {"slurm": {"commandPrefix": f"{prefix}\n{hook}"}}}
    path = tmp_path / "slurm_fail_once.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def retry_submission(demo: DemoRepo, slurm_cluster: SlurmCluster, inputs_before,
                     tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[tuple[int, int]]]:
    """``bps submit`` of 2 visits with the transient failure injected:
    (output collection, working directory, its quanta)."""
    cwd = tmp_path_factory.mktemp("slurm_retry")
    visits = sorted(demo.visits.values())[:2]
    pairs = [pair for pair in demo_pairs(demo) if pair[0] in visits]
    output = "u/test/slurm_retry"
    config = _config_with_transient_failure(cwd, cwd / "failed_once")
    query = f"instrument='{demo.layout.instrument}' AND visit IN ({', '.join(map(str, visits))})"
    bps_submit(config, str(demo.root), output, cwd, "-d", query)
    assert (cwd / "failed_once").is_dir()
    return output, cwd, pairs


def test_job_failing_once_is_retried(demo: DemoRepo, slurm_cluster: SlurmCluster,
                                     demo_submission: tuple[str, Path], retry_submission) -> None:
    output, cwd, pairs = retry_submission
    assert len(pairs) == 4
    # Exactly one job failed once and parsl launched it a second time.
    parsl_log = "\n".join(p.read_text() for p in cwd.glob("runinfo/*/parsl.log"))
    assert len(re.findall(r"[Tt]ask \d+ try 0 failed", parsl_log)) == 1, parsl_log[-3000:]
    assert len(re.findall(r"[Tt]ask \d+ try 1 launched", parsl_log)) == 1
    assert not re.search(r"[Tt]ask \d+ try 2", parsl_log)
    stderr_of = {p.stem: p.read_text() for p in cwd.glob(f"submit/{output}/*/logs/visit/*/*.stderr")}
    failed = [stem for stem, text in stderr_of.items() if re.search(f"^{FAILURE_MESSAGE}$", text, re.MULTILINE)]
    assert len(failed) == 1, list(stderr_of)
    # The retry found the failed attempt's outputs and skipped those quanta.
    assert stderr_of[failed[0]].count("Skipping already-successful quantum") == 2, stderr_of[failed[0]][-3000:]
    jobs = check_ran_in_slurm(slurm_cluster, cwd, output, pairs)
    assert failed[0] in jobs
    butler = Butler.from_config(str(demo.root))
    for name in ("injected_visit_image", "injected_visit_image_catalog", "inject_visit_metadata"):
        assert registry_pairs(butler, name, output) == pairs, name
    assert_same_outputs(butler, pairs, demo_submission[0], output)


def test_inputs_byte_identical_after_submissions(demo: DemoRepo, inputs_before, demo_submission,
                                                 retry_submission) -> None:
    hashes_before, counts_before = inputs_before
    hashes_after = file_hashes(demo.root)
    assert {name: hashes_after.get(name) for name in hashes_before} == hashes_before
    assert input_run_counts(Butler.from_config(str(demo.root)), "u/") == counts_before
