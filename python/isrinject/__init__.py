"""isrinject: ISR-consistent synthetic source injection into Rubin visit images.

Layers (imports point down only): `model` ← `draw` ← `catalog` ←
`calibration` ← `inject` (the engine) ← `task` ← `cli`, `demo`,
`diagnostics`, `sim`.  The task classes are imported lazily so
that ``import isrinject.model`` stays light (no pipe_base, no GalSim).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ConsolidateVisitCatalogsTask",
    "InjectionFlag",
    "PixelInjection",
    "VisitInjectConfig",
    "VisitInjectConnections",
    "VisitInjectTask",
    "find_isr_flat",
    "inject_pixels",
    "inject_sources",
    "make_injection_pipeline",
]

_LAZY = {
    "InjectionFlag": "isrinject.flags",
    "PixelInjection": "isrinject.model",
    "inject_pixels": "isrinject.model",
    "VisitInjectConfig": "isrinject.task",
    "VisitInjectConnections": "isrinject.task",
    "VisitInjectTask": "isrinject.task",
    "inject_sources": "isrinject.inject",
    "find_isr_flat": "isrinject.provenance",
    "ConsolidateVisitCatalogsTask": "isrinject.consolidate",
    "make_injection_pipeline": "isrinject.pipeline_tools",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'isrinject' has no attribute {name!r}")
