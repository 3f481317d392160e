"""Tests of isrinject.engine.catalog: schema, validation, generation, ingestion, CLI."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, QTable, Table, vstack
from scipy.spatial import cKDTree

from isrinject.cli import main
from isrinject.engine.catalog import (
    CatalogValidationError,
    check_catalog,
    compose_catalog,
    generate_injection_catalog,
    htm_indices,
    ingest_injection_catalog,
    read_catalog,
    standardize_columns,
    validate_catalog,
    visit_regions,
    write_catalog,
)
from isrinject.engine.flags import InjectionFlag

F = InjectionFlag


def source_injection_catalog() -> Table:
    """A catalog as source_injection's tools write it: per-type tables vstacked
    (Star rows have masked shape columns)."""
    galaxies = Table(
        {
            "injection_id": [0, 1, 2],
            "ra": [150.0, 150.01, 150.02],
            "dec": [2.0, 2.01, 2.02],
            "source_type": ["Sersic", "Sersic", "Sersic"],
            "mag": [20.0, 21.0, 22.0],
            "n": [1.0, 4.0, 2.5],
            "half_light_radius": [0.5, 1.0, 2.0],
            "q": [0.5, 0.9, 1.0],
            "beta": [0.0, 45.0, 90.0],
        }
    )
    stars = Table(
        {
            "injection_id": [3, 4],
            "ra": [150.03, 150.04],
            "dec": [2.03, 2.04],
            "source_type": ["Star", "Star"],
            "mag": [18.0, 19.0],
        }
    )
    return vstack([galaxies, stars])


def min_separation_arcsec(table: Table) -> float:
    ra, dec = np.radians(table["ra"]), np.radians(table["dec"])
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
    distance, _ = cKDTree(xyz).query(xyz, k=2)
    return float(np.degrees(2 * np.arcsin(distance[:, 1].min() / 2)) * 3600)


# --- schema -----------------------------------------------------------------


def test_source_injection_catalog_accepted_unchanged(tmp_path: Path) -> None:
    catalog = source_injection_catalog()
    assert np.ma.getmaskarray(catalog["n"]).tolist() == [False, False, False, True, True]
    path = tmp_path / "si.ecsv"
    catalog.write(path)
    read = read_catalog(str(path))
    before = read.copy()
    report = check_catalog(standardize_columns(read))
    assert report.ok, report.problems
    assert report.flags.tolist() == [0] * 5
    assert report.source_types.tolist() == ["Sersic"] * 3 + ["DeltaFunction"] * 2
    standardized = validate_catalog(read)
    assert standardized["source_type"].tolist() == ["Sersic"] * 3 + ["Star"] * 2  # user's values kept
    assert read.colnames == before.colnames and all((read[c] == before[c]).all() for c in read.colnames)


def test_standardize_quantities_and_renames() -> None:
    catalog = QTable()
    catalog["RA_RAD"] = [np.radians(150.0)] * 3 * u.rad
    catalog["DEC"] = [2.0, 2.1, 2.2] * u.deg
    catalog["flux"] = [3631e9, 1e3, 1.0] * u.nJy
    catalog["half_light_radius"] = [5.0, 10.0, 2.0] * u.pix
    catalog["draw_size"] = [10.0, 20.0, 0.0] * u.arcsec
    catalog["kind"] = MaskedColumn([b" Sersic ", b"Star", b"Gaussian"])
    catalog["beta"] = [0.0, np.pi / 2, np.pi] * u.rad
    names = {"ra": "RA_RAD", "dec": "DEC", "mag": "flux", "source_type": "kind"}
    table = standardize_columns(catalog, names, pixel_scale_arcsec=0.2)
    assert set(names) <= set(table.colnames) and "RA_RAD" in catalog.colnames  # input untouched
    np.testing.assert_allclose(table["ra"], 150.0)
    np.testing.assert_allclose(table["mag"], [0.0, 23.9, 31.4], atol=1e-4)  # AB: 3630.78 Jy
    np.testing.assert_allclose(table["half_light_radius"], [1.0, 2.0, 0.4])
    np.testing.assert_allclose(table["draw_size"], [50.0, 100.0, 0.0])
    np.testing.assert_allclose(table["beta"], [0.0, 90.0, 180.0])
    assert table["ra"].unit is None and table["source_type"].tolist() == ["Sersic", "Star", "Gaussian"]
    # Magnitudes with a mag unit keep their values.
    mags = Table({"mag": [20.0] * u.ABmag})
    assert standardize_columns(mags)["mag"][0] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="'ra' has unit 'pix'.*'mag' has unit 'm'"):
        standardize_columns(QTable({"ra": [1.0] * u.pix, "mag": [1.0] * u.m}))


def test_compose_catalog() -> None:
    catalog = source_injection_catalog()
    no_id = Table({"ra": [1.0], "dec": [2.0], "source_type": ["Gaussian"], "mag": [20.0], "sigma": [1.0]})
    composed = compose_catalog([catalog[:3], catalog[3:]])
    assert composed.colnames[:3] == ["injection_id", "injection_flag", "injection_draw_size"]
    assert composed["injection_id"].tolist() == [0, 1, 2, 3, 4]
    assert composed["injection_flag"].dtype == np.int64 and not composed["injection_flag"].any()
    fresh = compose_catalog([no_id, no_id])
    assert fresh["injection_id"].tolist() == [0, 1]
    empty = compose_catalog([])
    assert len(empty) == 0 and {"ra", "dec", "mag", "source_type", "injection_flag"} <= set(empty.colnames)


# --- validation ---------------------------------------------------------------


def test_check_catalog_flags_every_bad_row(tmp_path: Path) -> None:
    stamp = tmp_path / "good.fits"
    stamp.write_bytes(b"")
    rows = [
        # injection_id, source_type, mag, n, hlr, q, draw_size, stamp, ra
        (0, "Sersic", 20.0, 1.0, 1.0, 0.5, 0, "", 150.0),  # good
        (1, "Sersic", np.nan, 1.0, 1.0, 0.5, 0, "", 150.0),  # NaN mag
        (2, "Blob", 20.0, 1.0, 1.0, 0.5, 0, "", 150.0),  # unknown type
        (3, "Sersic", 20.0, 10.0, 1.0, 0.5, 0, "", 150.0),  # n = 10
        (4, "Sersic", 20.0, 1.0, 1.0, 0.0, 0, "", 150.0),  # q = 0
        (5, "Star", 20.0, 0, 0, 0, 0, "", 150.0),  # duplicate id (with 6)
        (5, "Star", 20.0, 0, 0, 0, -1, "", 150.0),  # duplicate + draw_size -1
        (7, "Star", 20.0, 0, 0, 0, 1e6, "", 150.0),  # draw_size 1e6
        (8, "Stamp", 20.0, 0, 0, 0, 0, "missing.fits", 150.0),  # missing stamp
        (9, "Stamp", 20.0, 0, 0, 0, 0, "good.fits", 150.0),  # good stamp
        (10, "Star", 20.0, 0, 0, 0, 0, "", np.nan),  # no position
        (11, "Sersic", 20.0, 2.0, 0, 0, 0, "", 150.0),  # no half_light_radius
    ]
    ids, types, mags, ns, hlrs, qs, sizes, stamps, ras = map(list, zip(*rows))
    shape_mask = [t != "Sersic" for t in types]
    catalog = Table(
        {
            "injection_id": ids,
            "ra": ras,
            "dec": [2.0] * len(rows),
            "source_type": types,
            "mag": mags,
            "n": MaskedColumn(ns, mask=shape_mask),
            "half_light_radius": MaskedColumn(hlrs, mask=[m or i == 11 for i, m in enumerate(shape_mask)]),
            "q": MaskedColumn(qs, mask=shape_mask),
            "beta": MaskedColumn([30.0] * len(rows), mask=shape_mask),
            "draw_size": sizes,
            "stamp": stamps,
        }
    )
    report = check_catalog(catalog, stamp_prefix=str(tmp_path) + "/")
    expected = {
        0: 0,
        1: F.MAG_BAD,
        2: F.TYPE_UNKNOWN,
        3: F.SERSIC_EXTREME,
        4: F.PARAM_BAD,
        5: F.DUPLICATE_ID,
        6: F.DUPLICATE_ID | F.DRAW_SIZE_BAD,
        7: F.DRAW_SIZE_BAD,
        8: F.STAMP_MISSING,
        9: 0,
        10: F.POSITION_BAD,
        11: F.PARAM_BAD,
    }
    assert {i: int(v) for i, v in enumerate(report.flags)} == {i: int(v) for i, v in expected.items()}
    with pytest.raises(CatalogValidationError) as info:
        report.raise_if_problems()
    message = str(info.value)
    assert "affecting 10 of 12 rows" in message
    for text in (
        "column 'mag' [MAG_BAD]",
        "row [1]",
        "column 'source_type' [TYPE_UNKNOWN]",
        "'Blob'",
        "column 'n' [SERSIC_EXTREME]",
        "values: [10]",
        "column 'q' [PARAM_BAD]",
        "column 'injection_id' [DUPLICATE_ID]",
        "rows [5, 6]",
        "column 'draw_size' [DRAW_SIZE_BAD]",
        "values: [-1, 1e+06]",
        "column 'stamp' [STAMP_MISSING]",
        "missing.fits",
        "[POSITION_BAD]",
        "row [10]",
        "column 'half_light_radius/scale_radius' [PARAM_BAD]: source_type 'Sersic' needs one of",
    ):
        assert text in message, (text, message)
    assert len(info.value.problems) == len(report.problems) == 9


def test_check_catalog_missing_columns_flag_every_row() -> None:
    report = check_catalog(Table({"injection_id": [0, 1], "n": [1.0, 2.0]}))
    expected = F.MAG_BAD | F.TYPE_UNKNOWN | F.POSITION_BAD
    assert report.flags.tolist() == [int(expected)] * 2
    message = str(pytest.raises(CatalogValidationError, report.raise_if_problems).value)
    assert (
        "'source_type' is missing" in message
        and "'mag' is missing" in message
        and "'ra' and 'dec'" in message
    )


def test_check_catalog_trail_and_xy() -> None:
    catalog = Table(
        {
            "x": [10.0, 20.0, 30.0],
            "y": [10.0, 20.0, 30.0],
            "source_type": ["Trail", "Trail", "Gaussian"],
            "mag": [20.0, 20.0, 45.0],
            "trail_length": MaskedColumn([100.0, -5.0, 0.0], mask=[False, False, True]),
            "sigma": MaskedColumn([0.0, 0.0, 1.0], mask=[True, True, False]),
        }
    )
    report = check_catalog(catalog)
    assert report.flags.tolist() == [0, int(F.PARAM_BAD), int(F.MAG_BAD)]


# --- generation -----------------------------------------------------------------


def test_generate_like_source_injection() -> None:
    kwargs = {"source_type": ["Sersic", "Star"], "n": [1.0, 4.0], "half_light_radius": [0.5, 2.0]}
    table = generate_injection_catalog(
        [149.0, 151.0], [1.0, 3.0], mag_lim=[18, 25], number=3, seed="x", **kwargs
    )
    assert len(table) == 8 * 3
    assert table["injection_id"].tolist()[:7] == [0, 1, 2, 10, 11, 12, 20]
    assert len(set(zip(table["source_type"], table["n"], table["half_light_radius"]))) == 8
    assert table.colnames == ["injection_id", "ra", "dec", "mag", "source_type", "n", "half_light_radius"]
    assert (table["mag"] >= 18).all() and (table["mag"] <= 25).all()
    assert (table["ra"] >= 149).all() and (table["ra"] <= 151).all()
    same = generate_injection_catalog(
        [149.0, 151.0], [1.0, 3.0], mag_lim=[18, 25], number=3, seed="x", **kwargs
    )
    other = generate_injection_catalog(
        [149.0, 151.0], [1.0, 3.0], mag_lim=[18, 25], number=3, seed="y", **kwargs
    )
    assert all((table[c] == same[c]).all() for c in table.colnames)
    assert not np.allclose(table["ra"], other["ra"])
    assert check_catalog(table).ok


def test_density_sets_number() -> None:
    table = generate_injection_catalog(
        [10.0, 11.0], [-0.5, 0.5], density=1000, seed=1, source_type=["Star", "Gaussian"], sigma=[1.0]
    )
    area = np.degrees(1.0) * 1.0 * 2 * np.sin(np.radians(0.5))
    assert len(table) == 2 * round(1000 / (2 / area))


@pytest.mark.parametrize("placement", ["halton", "grid"])
def test_min_separation(placement: str) -> None:
    table = generate_injection_catalog(
        [149.0, 150.0], [1.0, 2.0], density=8000, seed=3, placement=placement, min_separation=20.0
    )
    assert abs(len(table) - 8000) < 10  # density × area (0.9997 deg²)
    separation = min_separation_arcsec(table)
    print(f"{placement}: {len(table)} sources, minimum separation {separation:.2f} arcsec")
    assert separation >= 20.0
    unconstrained = generate_injection_catalog([149.0, 150.0], [1.0, 2.0], density=8000, seed=3)
    assert min_separation_arcsec(unconstrained) < 20.0
    with pytest.raises(ValueError, match="min_separation|apart"):
        generate_injection_catalog(
            [149.0, 149.1], [1.0, 1.1], number=10000, placement=placement, min_separation=20.0
        )


def test_grid_is_regular() -> None:
    grid = generate_injection_catalog([0.0, 1.0], [0.0, 1.0], number=100, placement="grid")
    assert len(grid) == 100 and len(np.unique(np.round(grid["dec"], 9))) == 10


# --- butler -----------------------------------------------------------------------


@pytest.fixture()
def repo(tmp_path: Path):
    import lsst.sphgeom
    from astropy.time import Time
    from lsst.daf.butler import Butler, Timespan

    root = str(tmp_path / "repo")
    Butler.makeRepo(root)
    butler = Butler.from_config(root, writeable=True)
    registry = butler.registry
    registry.insertDimensionData(
        "instrument",
        {"name": "Cam", "detector_max": 4, "visit_max": 10**6, "exposure_max": 10**6, "visit_system": 0},
    )
    registry.insertDimensionData(
        "physical_filter",
        {"instrument": "Cam", "name": "g_1", "band": "g"},
        {"instrument": "Cam", "name": "r_1", "band": "r"},
    )
    registry.insertDimensionData("day_obs", {"instrument": "Cam", "id": 20250101})
    box = lsst.sphgeom.ConvexPolygon.convexHull(
        [
            lsst.sphgeom.UnitVector3d(lsst.sphgeom.LonLat.fromDegrees(ra, dec))
            for ra, dec in [(150.0, 2.0), (150.5, 2.0), (150.5, 2.5), (150.0, 2.5)]
        ]
    )
    t0 = Time("2025-01-01T00:00:00", scale="tai")
    registry.insertDimensionData(
        "visit",
        {
            "instrument": "Cam",
            "id": 1,
            "name": "v1",
            "physical_filter": "g_1",
            "day_obs": 20250101,
            "region": box,
            "timespan": Timespan(t0, t0 + 30 * u.s),
        },
    )
    yield root, butler


def test_ingest_and_query_back(repo) -> None:
    root, butler = repo
    start = time.perf_counter()
    table = generate_injection_catalog(
        [149.0, 151.0],
        [1.0, 3.0],
        mag_lim=[18, 25],
        number=50_000,
        seed=1,
        source_type=["Sersic", "Star"],
        n=[1.0],
        half_light_radius=[1.0],
    )
    generated = time.perf_counter()
    refs = ingest_injection_catalog(butler, table, "g", "injection/test")
    ingested = time.perf_counter()
    print(
        f"100000 rows: generate {generated - start:.3f} s, ingest {ingested - generated:.3f} s "
        f"({len(refs)} htm7 trixels)"
    )
    assert len(table) == 100_000
    found = butler.query_datasets("injection_catalog", collections="injection/test", where="band = 'g'")
    assert len(found) == len(refs)
    counts = {ref.dataId["htm7"]: len(butler.get(ref)) for ref in found}
    assert sum(counts.values()) == len(table)
    expected = np.unique(htm_indices(table["ra"], table["dec"]), return_counts=True)
    assert counts == dict(zip(expected[0].tolist(), expected[1].tolist()))
    one = butler.get(found[0])
    assert set(one.colnames) == set(table.colnames)
    with pytest.raises(ValueError, match="Band 'z' is not defined.*'g', 'r'"):
        ingest_injection_catalog(butler, table[:10], "z", "injection/test")


def test_htm_indices_match_sphgeom() -> None:
    import lsst.sphgeom

    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 500), np.degrees(np.arcsin(rng.uniform(-1, 1, 500)))
    pix = lsst.sphgeom.HtmPixelization(7)
    expected = [
        pix.index(lsst.sphgeom.UnitVector3d(lsst.sphgeom.LonLat.fromDegrees(a, d))) for a, d in zip(ra, dec)
    ]
    assert htm_indices(ra, dec).tolist() == expected


def test_generate_in_visit_footprint(repo) -> None:
    root, butler = repo
    regions = visit_regions(butler, visits=[1], instrument="Cam")
    table = generate_injection_catalog(None, None, density=2000, seed=2, regions=regions)
    assert (table["ra"] > 150.0).all() and (table["ra"] < 150.5).all()
    assert (table["dec"] > 2.0).all() and (table["dec"] < 2.5).all()
    assert abs(len(table) - 2000 * 0.25 * np.cos(np.radians(2.25))) < 15
    with pytest.raises(LookupError):
        visit_regions(butler, visits=[99], instrument="Cam")


def test_cli_round_trip(repo, tmp_path: Path, capsys, caplog) -> None:
    root, butler = repo
    path = tmp_path / "cat.ecsv"
    args = [
        "generate-catalog",
        "-a",
        "150",
        "150.4",
        "-d",
        "2",
        "2.4",
        "-m",
        "18",
        "25",
        "-n",
        "10",
        "--seed",
        "5",
    ]
    args += [
        "-p",
        "source_type",
        "Sersic",
        "Star",
        "-p",
        "n",
        "1",
        "4",
        "-p",
        "half_light_radius",
        "0.5",
        "-o",
        str(path),
    ]
    assert main(args) == 0
    table = read_catalog(str(path))
    assert len(table) == 40
    assert main(["ingest-catalog", "-b", root, "-i", str(path), "--band", "g", "r", "-o", "cli/run"]) == 0
    for band in ("g", "r"):
        refs = butler.query_datasets("injection_catalog", collections="cli/run", where=f"band = '{band}'")
        assert sum(len(butler.get(ref)) for ref in refs) == 40

    # Straight into the repository, inside the visit footprint.
    assert (
        main(
            [
                "generate-catalog",
                "-b",
                root,
                "--visits",
                "1",
                "--instrument",
                "Cam",
                "-s",
                "500",
                "-p",
                "source_type",
                "Star",
                "-m",
                "20",
                "22",
                "--band",
                "g",
                "--run",
                "cli/visit",
            ]
        )
        == 0
    )
    refs = butler.query_datasets("injection_catalog", collections="cli/visit")
    assert sum(len(butler.get(ref)) for ref in refs) > 0

    # A bad catalog: one message listing every problem, exit code 1, nothing ingested.
    bad = source_injection_catalog()
    bad["mag"][1] = np.nan
    bad["source_type"][4] = "Blob"
    bad["n"][0] = 10.0
    bad_path = tmp_path / "bad.fits"
    bad.write(bad_path)
    capsys.readouterr()
    assert main(["ingest-catalog", "-b", root, "-i", str(bad_path), "g", "-o", "cli/bad"]) == 1
    err = capsys.readouterr().err
    assert "3 problems" in err and "'mag'" in err and "'Blob'" in err and "column 'n'" in err
    assert "cli/bad" not in butler.collections.query("*")

    # B73 (issue 26): a 'magnitude' column: the error names the --column option that fixes it.
    renamed = source_injection_catalog()
    renamed.rename_column("mag", "magnitude")
    renamed_path = tmp_path / "renamed.fits"
    renamed.write(renamed_path)
    assert main(["ingest-catalog", "-b", root, "-i", str(renamed_path), "g", "-o", "cli/renamed"]) == 1
    err = capsys.readouterr().err
    assert "required column 'mag' is missing; did you mean 'magnitude'? use --column mag=magnitude" in err
    assert main(["ingest-catalog", "-b", root, "-i", str(renamed_path), "g", "-o", "cli/renamed",
                 "--column", "mag=magnitude"]) == 0
    # B71: a legal but implausible magnitude is ingested with a warning.
    bright = source_injection_catalog()
    bright["mag"][0] = -3.0
    bright_path = tmp_path / "bright.fits"
    bright.write(bright_path)
    with caplog.at_level(logging.WARNING, logger="isrinject.engine.catalog"):
        assert main(["ingest-catalog", "-b", root, "-i", str(bright_path), "g", "-o", "cli/bright"]) == 0
    assert "1 of 5 sources have magnitudes outside the plausible range 10 ≤ mag ≤ 35 (values: [-3]" in caplog.text


# --- robustness -----------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(np.nan))


@settings(max_examples=60, deadline=None)
@given(
    mags=st.lists(_floats, min_size=1, max_size=6),
    types=st.lists(
        st.sampled_from(["Sersic", "Star", " Gaussian ", "Trail", "Stamp", "", "???"]), min_size=6, max_size=6
    ),
    ns=st.lists(_floats, min_size=6, max_size=6),
)
def test_check_catalog_never_raises(mags: list[float], types: list[str], ns: list[float]) -> None:
    size = len(mags)
    catalog = Table(
        {
            "ra": np.full(size, 150.0),
            "dec": ns[:size],
            "source_type": types[:size],
            "mag": mags,
            "n": ns[:size],
            "sigma": mags,
            "half_light_radius": ns[:size],
            "draw_size": mags,
        }
    )
    report = check_catalog(catalog)
    assert report.flags.shape == (size,)
    bad = report.flags != 0
    assert bad.sum() == len(set().union(*(set(p.rows.tolist()) for p in report.problems)))


@pytest.mark.parametrize("extension", ["fits", "parquet"])
def test_file_formats_round_trip(tmp_path: Path, extension: str) -> None:
    catalog = source_injection_catalog()
    path = tmp_path / f"cat.{extension}"
    write_catalog(catalog, str(path))
    with pytest.raises(OSError):
        write_catalog(catalog, str(path))
    read = read_catalog(str(path))
    assert read["source_type"].tolist() == catalog["source_type"].tolist()
    assert check_catalog(standardize_columns(read)).ok


def test_shape_checks_apply_only_to_types_that_use_them() -> None:
    """A Star row of a mixed catalog may carry hlr = 0 / q = 0: not a problem."""
    from isrinject.engine.catalog import check_catalog
    from isrinject.engine.flags import InjectionFlag

    table = Table(
        {
            "injection_id": [0, 1, 2],
            "ra": [150.0, 150.001, 150.002],
            "dec": [2.0, 2.0, 2.0],
            "source_type": ["Star", "Sersic", "Trail"],
            "mag": [20.0, 21.0, 22.0],
            "n": [0.0, 1.0, 0.0],
            "half_light_radius": [0.0, 0.0, 0.0],
            "q": [0.0, 0.5, 0.0],
            "beta": [0.0, 10.0, 30.0],
            "trail_length": [0.0, 0.0, 12.0],
        }
    )
    report = check_catalog(table)
    assert report.flags[0] == 0
    assert report.flags[1] == InjectionFlag.PARAM_BAD
    assert report.flags[2] == 0
    assert any("half_light_radius" in str(problem) and "[1]" in str(problem) for problem in report.problems)


def test_q_without_beta_is_named() -> None:
    from isrinject.engine.catalog import check_catalog
    from isrinject.engine.flags import InjectionFlag

    table = Table(
        {"ra": [150.0, 150.001], "dec": [2.0, 2.0], "source_type": ["Exponential", "Star"], "mag": [20.0, 20.0],
         "half_light_radius": [0.5, 0.5], "q": [0.5, 0.5]}
    )
    report = check_catalog(table)
    assert report.flags.tolist() == [int(InjectionFlag.PARAM_BAD), 0]
    assert any("'beta'" in str(problem) and "[0]" in str(problem) for problem in report.problems)


def test_lazy_catalog_namespace_matches_the_submodules() -> None:
    """`isrinject.engine.catalog` exports exactly its submodules' public names, each
    from the submodule that defines it (the lazy table must not drift)."""
    import importlib

    import isrinject.engine.catalog as catalog

    exported = {}
    for name in catalog._SUBMODULES:
        module = importlib.import_module(f"isrinject.engine.catalog.{name}")
        exported.update(dict.fromkeys(module.__all__, module))
    assert set(catalog.__all__) == set(exported)
    for public, module in exported.items():
        assert getattr(catalog, public) is getattr(module, public)


@pytest.mark.parametrize(
    ("standard", "columns", "expected"),
    [
        ("mag", ["ra", "dec", "magnitude"], "magnitude"),
        ("mag", ["MAG"], "MAG"),
        ("mag", ["ab_mag"], "ab_mag"),
        ("ra", ["RAJ2000", "DEJ2000"], "RAJ2000"),
        ("dec", ["coord_ra", "coord_dec"], "coord_dec"),
        ("source_type", ["type", "mag"], "type"),
        ("half_light_radius", ["hlr"], "hlr"),
        ("ra", ["radius", "rank"], None),  # "ra" + anything is not a suggestion
        ("mag", ["flux"], None),
    ],
)
def test_column_suggestions(standard, columns, expected) -> None:
    """Issue 26 (B73): the column a missing standard column probably is, and the rename hint."""
    from isrinject.engine.catalog.plausibility import column_suggestion, missing_column_hint

    assert column_suggestion(standard, columns) == expected
    if expected is None:
        assert missing_column_hint(standard, columns) == ""
    else:
        assert missing_column_hint(standard, columns, "cli") == f"; did you mean {expected!r}? use --column " \
                                                                 f"{standard}={expected}"


def test_source_type_any_case_and_suggestions() -> None:
    """Issue 26 (B72): any case is accepted by validation; near misses get a did-you-mean."""
    from isrinject.engine.catalog.plausibility import match_source_type, source_type_hint

    assert match_source_type("star") == "Star" and match_source_type(" SERSIC ") == "Sersic"
    assert match_source_type("Blob") is None
    assert source_type_hint("Sersik") == " (did you mean 'Sersic'?)"
    assert source_type_hint("Gausian") == " (did you mean 'Gaussian'?)"
    assert source_type_hint("Blob") == "" and source_type_hint("") == ""
    table = Table({"ra": [150.0, 150.0], "dec": [2.0, 2.0], "source_type": ["star", "exponential"],
                   "mag": [20.0, 21.0], "half_light_radius": [np.nan, 0.5]})
    report = check_catalog(table)
    assert report.ok, [str(p) for p in report.problems]
    assert list(report.source_types) == ["DeltaFunction", "Exponential"]
