"""isrinject: ISR-consistent synthetic source injection into Rubin visit images.

Subpackages, imports pointing one way: ``isrinject.engine`` (``model`` ←
``draw`` ← ``catalog`` ← ``calibration`` ← ``inject``; no butler) ←
``isrinject.tasks`` (the PipelineTasks and their butler glue) ← ``isrinject.cli``,
``isrinject.demo``, ``isrinject.diagnostics``, ``isrinject.sim``.  The public names
below are imported lazily so that ``import isrinject.engine.model`` stays light
(no pipe_base, no GalSim).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ConsolidateVisitCatalogsTask",
    "DifferenceInjectConfig",
    "DifferenceInjectConnections",
    "DifferenceInjectTask",
    "InjectionFlag",
    "PixelInjection",
    "VisitInjectConfig",
    "VisitInjectConnections",
    "VisitInjectTask",
    "find_isr_flat",
    "inject_files",
    "inject_pixels",
    "inject_sources",
    "make_injection_pipeline",
]

_LAZY = {
    "InjectionFlag": "isrinject.engine.flags",
    "PixelInjection": "isrinject.engine.model",
    "inject_pixels": "isrinject.engine.model",
    "VisitInjectConfig": "isrinject.tasks.visit",
    "VisitInjectConnections": "isrinject.tasks.visit",
    "VisitInjectTask": "isrinject.tasks.visit",
    "DifferenceInjectConfig": "isrinject.tasks.difference",
    "DifferenceInjectConnections": "isrinject.tasks.difference",
    "DifferenceInjectTask": "isrinject.tasks.difference",
    "inject_sources": "isrinject.engine.inject",
    "find_isr_flat": "isrinject.tasks.provenance",
    "inject_files": "isrinject.tasks.files",
    "ConsolidateVisitCatalogsTask": "isrinject.tasks.consolidate",
    "make_injection_pipeline": "isrinject.tasks.pipeline_tools",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'isrinject' has no attribute {name!r}")
