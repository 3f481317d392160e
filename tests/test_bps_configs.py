"""The shipped BPS configurations as BPS and ctrl_bps_parsl read them (fast:
no submission; tests/test_bps.py and tests/test_slurm.py submit them)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("local_threads", "local_htex", "slurm", "htcondor")


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch):
    """``load(name, **overrides)``: ``BpsConfig`` of ``bps/<name>.yaml``
    (ISRINJECT_DIR, used by its includeConfigs, set to this checkout)."""
    from lsst.ctrl.bps import BpsConfig

    monkeypatch.setenv("ISRINJECT_DIR", str(ROOT))

    def _load(name: str, **overrides: object) -> BpsConfig:
        config = BpsConfig(str(ROOT / "bps" / f"{name}.yaml"))
        for key, value in overrides.items():
            config[key] = value
        return config

    return _load


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_cluster_quanta_by_visit(load, name: str) -> None:
    config = load(name)
    assert config["clusterAlgorithm"] == "lsst.ctrl.bps.quantum_clustering_funcs.dimension_clustering"
    assert config[".cluster.visit.pipetasks"] == "inject_visit"
    assert config[".cluster.visit.dimensions"] == "visit"
    assert config[".cluster.visit.partitionDimensions"] == "detector"
    assert config[".cluster.visit.partitionMaxSize"] == 20
    assert config["pipelineYaml"] == f"{ROOT}/pipelines/inject.yaml"


def test_slurm_site_builds_the_sbatch_options_the_readme_names(load) -> None:
    """bps/README.md's 'what to change' keys reach parsl's SlurmProvider."""
    from lsst.ctrl.bps.parsl.site import SiteConfig
    from parsl.providers import SlurmProvider

    config = load("slurm", uniqProcName="u_test_slurm_1")
    site = SiteConfig.from_config(config)
    assert type(site).__module__ + "." + type(site).__name__ == "lsst.ctrl.bps.parsl.sites.slurm.Slurm"
    (executor,) = site.get_executors()
    provider = executor.provider
    assert isinstance(provider, SlurmProvider)
    assert (provider.nodes_per_block, provider.cores_per_node, provider.walltime) == (1, 2, "00:30:00")
    assert provider.account is None
    assert "#SBATCH --job-name=u_test_slurm_1" in provider.scheduler_options
    assert site.get_parsl_config().retries == 1
    assert 'echo "isrinject: Slurm job ${SLURM_JOB_ID:-none}' in site.get_command_prefix()

    real = load("slurm", uniqProcName="u_test_slurm_1")
    real[".site.slurm.account"] = "m1234"
    real[".site.slurm.walltime"] = "04:00:00"
    real[".site.slurm.cores_per_node"] = 128
    real[".site.slurm.scheduler_options"] = "#SBATCH --partition=regular"
    (executor,) = SiteConfig.from_config(real).get_executors()
    provider = executor.provider
    assert (provider.cores_per_node, provider.walltime, provider.account) == (128, "04:00:00", "m1234")
    assert provider.scheduler_options.startswith("#SBATCH --partition=regular\n")
