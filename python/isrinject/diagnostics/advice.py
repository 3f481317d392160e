"""What ``isrinject diagnose`` says when there is nothing it can check.

- `missing_collections_message`: collections given that do not exist, with
  the existing ones that look like them (a typo, a missing timestamp);
- `nothing_injected_line`: a visit whose catalogs have no injected source
  (every row flagged), reported as "nothing injected — nothing to check"
  instead of a FAIL of checks that had no pixels to look at.
"""

from __future__ import annotations

__all__ = ["NOTHING_INJECTED", "missing_collections_message", "nothing_injected_line"]

import difflib
from collections.abc import Iterable, Sequence

import numpy as np
from lsst.daf.butler import Butler

from ..engine.flags import InjectionFlag

#: The status of a visit with no injected source.
NOTHING_INJECTED = "nothing injected — nothing to check"

_MAX_LISTED = 10


def _similar(name: str, existing: Sequence[str]) -> list[str]:
    """Existing collections that ``name`` probably meant: close spellings
    and the collections under them (a chain's timestamped RUNs), else the
    collections under the same parent."""
    close = difflib.get_close_matches(name, list(existing), n=3, cutoff=0.8)
    found = [c for c in existing if any(c == m or c.startswith(m + "/") for m in [name, *close])]
    if not found:
        parent = name.rstrip("/").rsplit("/", 1)[0]
        found = [c for c in existing if parent != name and c.startswith(parent + "/")]
    return sorted(found)


def missing_collections_message(butler: Butler, names: Iterable[str]) -> str | None:
    """``None`` if every collection of ``names`` exists, else the message
    naming the missing ones and the existing collections that match them."""
    existing = sorted(butler.collections.query("*"))
    missing = [name for name in dict.fromkeys(names) if name not in existing]
    if not missing:
        return None
    parts = []
    for name in missing:
        similar = _similar(name, existing)
        listed = ", ".join(similar[:_MAX_LISTED]) + (", ..." if len(similar) > _MAX_LISTED else "")
        parts.append(f"collection {name!r} does not exist"
                     + (f" (existing collections like it: {listed})" if similar else ""))
    message = "; ".join(parts) + "."
    if not any(_similar(name, existing) for name in missing):
        shown = ", ".join(existing[:_MAX_LISTED]) + (", ..." if len(existing) > _MAX_LISTED else "")
        message += f" The repository has {len(existing)} collections: {shown}."
    return message + (" Give --collections the pipetask -o collection (butler query-collections REPO lists them).")


def nothing_injected_line(injection_flag: np.ndarray) -> str:
    """``"nothing injected — nothing to check (2 sources, all flagged: NO_OVERLAP(2))"``."""
    flags = np.asarray(injection_flag, dtype=np.int64)
    counts = {name: int(np.sum((flags & flag.value) != 0)) for name, flag in InjectionFlag.__members__.items()}
    listed = ", ".join(f"{name}({count})" for name, count in counts.items() if count) or "none"
    return (f"{NOTHING_INJECTED} ({len(flags)} source{'s' if len(flags) != 1 else ''} in the catalog, none "
            f"injected; flags: {listed}; the run's log says why)")
