"""Injected outputs say they are simulated and name the code and config that made them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from lsst.images import XY, VisitImage

from isrinject import VisitInjectConfig, VisitInjectTask
from isrinject._version import package_version
from isrinject.sim import simulate_exposure
from isrinject.tasks.marking import CONFIG_HASH_KEY, VERSION_KEY, config_hash

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def observed():
    """A simulated exposure whose visit image claims, as a real one does, no simulated content."""
    sim = simulate_exposure(band="g", visit=7, detector=0, shape=(64, 64), seed=3, n_background_stars=2,
                            n_background_galaxies=0)
    vi = sim.visit_image
    real = VisitImage(
        vi.image, mask=vi.mask, variance=vi.variance, sky_projection=vi.sky_projection, bounds=vi.bounds,
        obs_info=vi.obs_info.model_copy(update={"has_simulated_content": False}), summary_stats=vi.summary_stats,
        photometric_scaling=vi.photometric_scaling, psf=vi.psf, detector=vi.detector, band=vi.band,
        metadata={"ORIGIN": "observed"},
    )
    sky = vi.sky_projection.pixel_to_sky(XY(x=np.array([30.0]), y=np.array([33.0])))
    catalog = Table({"injection_id": [1], "source_type": ["Star"], "mag": [18.0], "ra": sky.ra.deg,
                     "dec": sky.dec.deg})
    return real, sim.flat, catalog


def test_every_output_is_marked_and_the_input_is_not(observed) -> None:
    image, flat, catalog = observed
    result = VisitInjectTask().run(visit_image=image, injection_catalogs=catalog, flat=flat)
    out, out_catalog = result.injected_visit_image, result.injected_visit_image_catalog
    assert out.obs_info.has_simulated_content is True
    assert image.obs_info.has_simulated_content is False  # the caller's image is untouched
    assert VERSION_KEY not in image.metadata and image.metadata["ORIGIN"] == "observed"
    assert out.metadata["ORIGIN"] == "observed"  # the rest of the metadata is kept
    assert out.metadata[VERSION_KEY] == out_catalog.meta[VERSION_KEY] == package_version()
    assert out.metadata[CONFIG_HASH_KEY] == out_catalog.meta[CONFIG_HASH_KEY] == config_hash(VisitInjectConfig())
    # Everything else of obs_info is the input's.
    assert out.obs_info.model_dump(exclude={"has_simulated_content"}) == image.obs_info.model_dump(
        exclude={"has_simulated_content"}
    )


def test_marks_survive_a_fits_round_trip(observed, tmp_path: Path) -> None:
    image, flat, catalog = observed
    result = VisitInjectTask().run(visit_image=image, injection_catalogs=catalog, flat=flat)
    path = tmp_path / "injected.fits"
    result.injected_visit_image.write(str(path))
    back = VisitImage.read(str(path))
    assert back.obs_info.has_simulated_content is True
    assert back.metadata[VERSION_KEY] == package_version()
    result.injected_visit_image_catalog.write(tmp_path / "catalog.parquet")
    assert Table.read(tmp_path / "catalog.parquet").meta[CONFIG_HASH_KEY] == config_hash(VisitInjectConfig())


def test_the_config_hash_follows_the_values() -> None:
    default = VisitInjectConfig()
    same = VisitInjectConfig()
    other = VisitInjectConfig()
    other.noise_seed = 1
    assert config_hash(default) == config_hash(same)
    assert config_hash(other) != config_hash(default)
    assert len(config_hash(default)) == 64 and int(config_hash(default), 16) >= 0


def test_the_version_is_the_source_tree_s() -> None:
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as stream:
        assert package_version() == tomllib.load(stream)["project"]["version"]
