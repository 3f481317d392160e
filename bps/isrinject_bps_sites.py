"""A ctrl_bps_parsl site that runs jobs in a parsl ThreadPoolExecutor.

ctrl_bps_parsl ships a ``local`` site (HighThroughputExecutor, used by
``local_htex.yaml``) but no thread-pool one.  Threads are the cheapest way
to run a small workflow on one machine: no interchange or worker processes
to start (each job is still its own ``pipetask run-qbb`` process, run by
bash).  Put this directory on ``PYTHONPATH`` for ``bps submit``::

    PYTHONPATH=$ISRINJECT_DIR/bps:$PYTHONPATH bps submit bps/local_threads.yaml

Site settings: ``site.<computeSite>.cores`` (int, number of threads).
"""

from __future__ import annotations

__all__ = ["LocalHtex", "LocalThreads"]

from typing import Any

from lsst.ctrl.bps.parsl.configuration import get_bps_config_value
from lsst.ctrl.bps.parsl.site import SiteConfig
from lsst.ctrl.bps.parsl.sites.local import Local
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor
from parsl.executors.base import ParslExecutor


class LocalThreads(SiteConfig):
    """Run every job on this machine with ``cores`` threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A ThreadPoolExecutor accepts no resource specification.
        kwargs["resource_list"] = []
        super().__init__(*args, **kwargs)

    def get_executors(self) -> list[ParslExecutor]:
        cores = get_bps_config_value(self.site, "cores", int, required=True)
        return [ThreadPoolExecutor(label="threads", max_threads=cores)]

    def select_executor(self, job: Any) -> str:
        return "threads"


class LocalHtex(Local):
    """ctrl_bps_parsl's ``Local`` site (a ``HighThroughputExecutor`` with
    ``cores`` workers on this machine) with parsl's strategy period settable.

    parsl starts the executor's first block of workers only at the first
    strategy pass, ``strategy_period`` (default 5 s) after the workflow
    starts: for a short local workflow that is a fixed 5 s of idle cores.
    ``site.<computeSite>.strategyPeriod`` (float, seconds; default 5) sets it.
    """

    def get_parsl_config(self) -> Config:
        config = super().get_parsl_config()
        config.strategy_period = float(get_bps_config_value(self.site, "strategyPeriod", (int, float), 5.0))
        return config
