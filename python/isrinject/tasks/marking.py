"""Marking injected outputs as simulated and naming what made them.

Every injected image says it holds simulated content, as upstream
``lsst.source.injection`` does since DM-50420 (``hasSimulatedContent=True`` on
the afw ``VisitInfo`` of every injected exposure): here the lsst.images
equivalent, ``obs_info.has_simulated_content``.  The image metadata and the
output catalog's ``meta`` also name isrinject's version and a hash of the task
configuration, so an output can be traced to the code and the settings that
made it.
"""

from __future__ import annotations

__all__ = [
    "CONFIG_HASH_KEY",
    "VERSION_KEY",
    "config_hash",
    "mark_injected_catalog",
    "mark_injected_image",
]

import hashlib
import json
from typing import Any

from astropy.table import Table
from lsst.images import VisitImage

from .._version import package_version

#: Metadata key (image) and ``meta`` key (catalog) of isrinject's version.
VERSION_KEY = "ISRINJECT VERSION"
#: Metadata key (image) and ``meta`` key (catalog) of the configuration hash.
CONFIG_HASH_KEY = "ISRINJECT CONFIG SHA256"


def config_hash(config: Any) -> str:
    """sha256 (hex) of a pex_config configuration's field values.

    The values (``config.toDict()``, keys sorted, non-JSON values by their
    ``repr``) and the configuration's class are hashed, not the saved text,
    so editing a field's documentation does not change the hash.
    """
    values = {"class": f"{type(config).__module__}.{type(config).__qualname__}", "values": config.toDict()}
    text = json.dumps(values, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def mark_injected_image(image: VisitImage, config: Any) -> None:
    """Mark ``image`` (an injection output, modified in place) as simulated
    and record isrinject's version and the configuration hash in its metadata.

    Parameters
    ----------
    image
        The injected visit image; it must be the output's own object (its
        ``obs_info`` is replaced, never edited: the input may share it).
    config
        The task configuration that made it.
    """
    if not image.obs_info.has_simulated_content:
        # lsst.images has no obs_info setter (ObservationInfo is sealed);
        # a new VisitImage would drop the opaque FITS header of a legacy file.
        # The attribute is checked so that a change in lsst.images fails here,
        # loudly, rather than writing an unmarked image.
        if not hasattr(image, "_obs_info"):
            raise RuntimeError(
                "lsst.images' VisitImage no longer stores obs_info as _obs_info; update mark_injected_image."
            )
        image._obs_info = image.obs_info.model_copy(update={"has_simulated_content": True})
    image.metadata[VERSION_KEY] = package_version()
    image.metadata[CONFIG_HASH_KEY] = config_hash(config)


def mark_injected_catalog(catalog: Table, config: Any) -> None:
    """Record isrinject's version and the configuration hash in the output
    catalog's ``meta`` (modified in place)."""
    catalog.meta[VERSION_KEY] = package_version()
    catalog.meta[CONFIG_HASH_KEY] = config_hash(config)
