"""Transient catalogs in DMTN-319's proportions: hostless and hosted fakes per detector."""

from __future__ import annotations

import subprocess
import sys

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table
from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

from isrinject.engine.catalog.transients import host_offsets, hosted_count, transient_catalog


def _box(ra0: float, dec0: float, width: float) -> ConvexPolygon:
    corners = [(0, 0), (width, 0), (width, width), (0, width)]
    return ConvexPolygon([UnitVector3d(LonLat.fromDegrees(ra0 + a, dec0 + b)) for a, b in corners])


@pytest.fixture(scope="module")
def hosts() -> Table:
    """3000 sources over two 0.1° detectors and around them; half of them galaxies."""
    rng = np.random.default_rng(1)
    n = 3000
    return Table({"id": np.arange(n) + 1000, "ra": rng.uniform(149.95, 150.35, n),
                  "dec": rng.uniform(1.95, 2.15, n), "half_light_radius": rng.uniform(0.3, 1.5, n),
                  "extendedness": (np.arange(n) % 2).astype(float)})


def test_hosted_count_is_min_100_or_5_percent() -> None:
    assert [hosted_count(n) for n in (0, 19, 20, 399, 1999, 2000, 10**5)] == [0, 0, 1, 19, 99, 100, 100]


def test_per_detector_proportions_and_host_offsets(hosts: Table) -> None:
    regions = [_box(150.0, 2.0, 0.1), _box(150.2, 2.0, 0.1)]
    catalog = transient_catalog(regions, limiting_mag=24.5, n_hostless=50, hosts=hosts, seed=3)
    assert list(catalog["injection_id"]) == list(range(len(catalog)))
    position = SkyCoord(catalog["ra"] * u.deg, catalog["dec"] * u.deg)
    by_id = {int(i): k for k, i in enumerate(hosts["id"])}
    for region in regions:
        in_region = np.array([region.contains(UnitVector3d(LonLat.fromDegrees(a, d)))
                              for a, d in zip(hosts["ra"], hosts["dec"])])
        hostless = catalog[catalog["transient_kind"] == "hostless"]
        inside = np.array([region.contains(UnitVector3d(LonLat.fromDegrees(a, d)))
                           for a, d in zip(hostless["ra"], hostless["dec"])])
        assert inside.sum() == 50
        hosted = catalog[catalog["transient_kind"] == "hosted"]
        host_rows = np.array([by_id[int(h)] for h in hosted["host_id"]])
        on_region = in_region[host_rows]
        assert on_region.sum() == hosted_count(int(in_region.sum()))  # 5 % of the detector's sources
        assert np.all(hosts["extendedness"][host_rows] >= 0.5)  # galaxies only
    assert np.all((catalog["mag"] >= 20.0) & (catalog["mag"] <= 25.5))
    hosted = catalog[catalog["transient_kind"] == "hosted"]
    host_rows = np.array([by_id[int(h)] for h in hosted["host_id"]])
    separation = SkyCoord(hosts["ra"][host_rows] * u.deg, hosts["dec"][host_rows] * u.deg).separation(
        position[catalog["transient_kind"] == "hosted"]
    ).arcsec
    np.testing.assert_allclose(separation, hosted["host_offset_arcsec"], rtol=1e-6, atol=1e-6)
    assert len(set(hosted["host_id"])) == len(hosted)


def test_offsets_follow_an_exponential_disc() -> None:
    """r ~ Gamma(2, h), h = R_e / 1.678: the median offset is 1.0 R_e (Gamma(2) median 1.678 h)."""
    rng = np.random.default_rng(2)
    radius, angle = host_offsets(np.full(20000, 1.2), rng)
    assert np.median(radius) / 1.2 == pytest.approx(1.0, abs=0.02)
    assert 0 <= angle.min() and angle.max() < 360
    sizeless, _ = host_offsets(np.full(20000, np.nan), rng, max_offset_arcsec=2.0)
    assert sizeless.max() <= 2.0 and np.mean(sizeless**2) == pytest.approx(2.0, rel=0.03)  # uniform in area


def test_bad_inputs_name_the_problem(hosts: Table) -> None:
    with pytest.raises(ValueError, match="not fainter than bright_mag"):
        transient_catalog([_box(150, 2, 0.1)], limiting_mag=18.0, n_hostless=1)
    with pytest.raises(ValueError, match="no 'ra' column"):
        transient_catalog([_box(150, 2, 0.1)], limiting_mag=24.0, n_hostless=1, hosts=Table({"x": [1.0]}))


@pytest.mark.slow
def test_generate_catalog_command(tmp_path, hosts: Table) -> None:
    hosts_path = tmp_path / "hosts.ecsv"
    hosts.write(hosts_path)
    out = tmp_path / "transients.ecsv"
    command = [sys.executable, "-m", "isrinject.cli", "generate-catalog", "-a", "150.0", "150.1", "-d", "2.0",
               "2.1", "--transients", "--limiting-mag", "24.0", "--hostless", "30", "--hosts", str(hosts_path),
               "-o", str(out), "--seed", "5"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    catalog = Table.read(out)
    assert (catalog["transient_kind"] == "hostless").sum() == 30
    assert 10 <= (catalog["transient_kind"] == "hosted").sum() <= 25
    without_depth = [arg for arg in command if arg not in ("--limiting-mag", "24.0")]
    missing = subprocess.run(without_depth, capture_output=True, text=True, check=False, timeout=300)
    assert missing.returncode != 0 and "--transients needs --limiting-mag" in missing.stderr
