"""Issue 18 (3): per-visit consolidated injected catalogs (task, pipeline, CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from lsst.daf.butler import Butler
from lsst.images import Box

from isrinject.engine.catalog.schema import read_catalog
from isrinject.engine.flags import FATAL_FLAGS, InjectionFlag, flag_descriptions, flag_meanings
from isrinject.tasks.consolidate import consolidate_visit_catalogs
from isrinject.tasks.marking import CONFIG_HASH_KEY, VERSION_KEY

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _catalog(ids, x, y, flags=None, scaling_source="visit_image") -> Table:
    table = Table({"injection_id": ids, "injection_flag": flags if flags is not None else [0] * len(ids),
                   "x": np.asarray(x, float), "y": np.asarray(y, float), "mag": np.full(len(ids), 20.0)})
    table.meta.update(flag_descriptions())
    table.meta["scaling_source"] = scaling_source
    table.meta["LSST.BUTLER.ID"] = "provenance that must not be carried over"
    return table


def test_primary_is_the_detector_holding_the_centre() -> None:
    box = Box.factory[0:100, 0:100]
    catalogs = {
        # id 1 centred on detector 3 (also listed by 4, off its image: NO_OVERLAP);
        # id 2 straddles: centre on 4 at x=0.4 (pixel 0); id 3 centred in the gap (off both);
        # id 4 on both overlapping images: 10 px from 3's edge, 30 px from 4's -> 4;
        # id 5 centred on 3 but MAG_BAD -> no primary.
        3: _catalog([1, 2, 3, 4, 5], [50, 100.6, -3, 89, 20], [50, 50, 50, 40, 20],
                    flags=[0, int(InjectionFlag.PARTIAL_OVERLAP), int(InjectionFlag.PARTIAL_OVERLAP), 0,
                           int(InjectionFlag.MAG_BAD)]),
        4: _catalog([1, 2, 3, 4], [-60, 0.4, 103, 30], [50, 50, 50, 40],
                    flags=[int(InjectionFlag.NO_OVERLAP), 0, int(InjectionFlag.PARTIAL_OVERLAP), 0],
                    scaling_source="empirical"),
    }
    originals = {d: c.copy() for d, c in catalogs.items()}
    result = consolidate_visit_catalogs(catalogs, {3: box, 4: box}, visit=77, band="i")
    assert len(result) == 9
    assert result.colnames[:6] == [
        "injection_id", "visit", "detector", "band", "injection_flag", "injected_isPrimary"
    ]
    assert set(result["visit"]) == {77} and set(result["band"]) == {"i"}
    primary = {int(row["injection_id"]): int(row["detector"]) for row in result if row["injected_isPrimary"]}
    assert primary == {1: 3, 2: 4, 4: 4}
    assert list(result["scaling_source"]) == ["visit_image"] * 5 + ["empirical"] * 4
    assert {k: result.meta[k] for k in flag_descriptions()} == flag_descriptions()
    assert result.meta["injection_flag_meanings"] == flag_meanings()
    assert "LSST.BUTLER.ID" not in result.meta and "scaling_source" not in result.meta
    for detector, catalog in catalogs.items():  # inputs untouched
        assert catalog.colnames == originals[detector].colnames and catalog.meta == originals[detector].meta
        assert np.all(catalog == originals[detector])


def test_version_and_config_hash_are_kept() -> None:
    """The per-detector catalogs' isrinject version and config hash (tasks.marking) reach the visit catalog."""
    box = Box.factory[0:10, 0:10]
    catalogs = {3: _catalog([1], [1], [1]), 4: _catalog([2], [2], [2])}
    for detector, catalog in catalogs.items():
        catalog.meta[VERSION_KEY] = "1.2.3"
        catalog.meta[CONFIG_HASH_KEY] = f"hash{detector}"
    result = consolidate_visit_catalogs(catalogs, {3: box, 4: box}, visit=77, band="i")
    assert result.meta[VERSION_KEY] == "1.2.3"
    assert result.meta[CONFIG_HASH_KEY] == "hash3,hash4"
    assert VERSION_KEY not in consolidate_visit_catalogs(
        {3: _catalog([1], [1], [1])}, {3: box}, visit=77, band="i"
    ).meta


def test_consolidate_errors_name_visit_and_detector() -> None:
    box = Box.factory[0:10, 0:10]
    with pytest.raises(ValueError, match=r"Visit 5: no image bounding box for detector\(s\) \[2\]"):
        consolidate_visit_catalogs({2: _catalog([1], [1], [1])}, {1: box}, visit=5, band="r")
    bad = _catalog([1], [1], [1])
    bad.remove_column("x")
    with pytest.raises(ValueError, match=r"Visit 5, detector 1: the injected catalog has no column\(s\) \['x'\]"):
        consolidate_visit_catalogs({1: bad}, {1: box}, visit=5, band="r")


def test_every_flag_has_a_meaning() -> None:
    meanings = flag_meanings()
    assert list(meanings) == [flag.name for flag in InjectionFlag]
    assert meanings["NO_OVERLAP"] == "The drawn stamp does not overlap the image."
    assert all(len(text) > 10 for text in meanings.values())


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ISRINJECT_DIR": str(ROOT), "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.slow
def test_consolidated_catalogs_through_pipetask_and_the_cli(demo_repo, tmp_path: Path) -> None:
    demo = demo_repo
    injected, consolidated = "u/test/consolidate/inject", "u/test/consolidate/visits"
    runs = (("inject.yaml", demo.layout.inputs, injected), ("consolidate.yaml", injected, consolidated))
    for pipeline, inputs, output in runs:
        ran = _run([str(BIN / "pipetask"), "run", "-b", str(demo.root), "-i", inputs, "-o", output,
                    "-p", str(ROOT / "pipelines" / pipeline), "--register-dataset-types"])
        assert ran.returncode == 0, ran.stderr[-3000:]

    butler = Butler.from_config(str(demo.root), collections=consolidated)
    visit_refs = butler.query_datasets("injected_visit_catalog", explain=False)
    assert sorted(ref.dataId["visit"] for ref in visit_refs) == sorted(demo.visits.values())
    n_multi = 0
    total_rows = 0
    for ref in visit_refs:
        visit = ref.dataId["visit"]
        detector_refs = butler.query_datasets("injected_visit_image_catalog", where=f"visit = {visit}", explain=False)
        assert sorted(r.dataId["detector"] for r in detector_refs) == sorted(demo.detectors)
        per_detector = {r.dataId["detector"]: butler.get(r) for r in detector_refs}
        table = butler.get(ref, parameters={"strip_astropy_meta_yaml": False})
        # Row counts: exactly the sum of the per-detector catalogs, each row once.
        assert len(table) == sum(len(c) for c in per_detector.values())
        total_rows += len(table)
        for detector, catalog in per_detector.items():
            rows = table[table["detector"] == detector]
            assert list(rows["injection_id"]) == list(catalog["injection_id"])
            np.testing.assert_array_equal(rows["injection_flux"], catalog["injection_flux"])
        assert set(table["band"]) == {ref.dataId["band"]} and set(table["visit"]) == {visit}
        ids, counts = np.unique(np.asarray(table["injection_id"]), return_counts=True)
        n_multi += int(np.sum(counts > 1))
        # Primary flags: at most one per source; every demo source is placed inside its own detector
        # (injection_id = detector * 100000 + i) and injected there, so that detector is its primary.
        primary = table[table["injected_isPrimary"]]
        assert len(set(primary["injection_id"])) == len(primary)
        assert sorted(primary["injection_id"]) == sorted(ids)
        np.testing.assert_array_equal(primary["detector"], np.asarray(primary["injection_id"]) // 100_000)
        assert np.all((np.asarray(primary["injection_flag"]) & int(FATAL_FLAGS)) == 0)
        assert table.meta["injection_flag_meanings"] == flag_meanings()
        assert table.meta["NO_OVERLAP"] == 3
    # Sources near the facing edges are listed by both detectors (within trim_padding).
    assert n_multi > 0

    output = tmp_path / "injected.parquet"
    command = [str(BIN / "isrinject"), "consolidate-catalogs", "-b", str(demo.root), "-i", injected, "-o", str(output)]
    cli = _run(command)
    assert cli.returncode == 0, cli.stderr[-3000:]
    collected = read_catalog(str(output))
    assert len(collected) == total_rows
    # The file holds the same rows as the pipeline's visit catalogs, ordered by band then visit.
    from_task = {
        (int(row["visit"]), int(row["detector"]), int(row["injection_id"])): bool(row["injected_isPrimary"])
        for ref in visit_refs for row in butler.get(ref)
    }
    from_file = {
        (int(row["visit"]), int(row["detector"]), int(row["injection_id"])): bool(row["injected_isPrimary"])
        for row in collected
    }
    assert from_file == from_task
    assert list(collected["band"]) == sorted(collected["band"])
    assert collected["injection_flux"].unit == "nJy"
    assert collected.meta["injection_flag_meanings"] == flag_meanings()
    again = _run(command)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    # -d restricts the data IDs: the r-band file holds exactly the r-band visit's rows.
    r_only = tmp_path / "r.parquet"
    restricted = _run([*command[:-1], str(r_only), "-d", "band='r'"])
    assert restricted.returncode == 0, restricted.stderr[-3000:]
    r_rows = read_catalog(str(r_only))
    assert set(r_rows["band"]) == {"r"} and set(r_rows["visit"]) == {demo.visits["r"]}
    assert len(r_rows) == int(np.sum(np.asarray(collected["band"]) == "r"))
