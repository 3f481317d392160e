"""File mode: ``isrinject inject`` and file paths to ``VisitInjectTask.run``, no butler.

The inputs are the files of the demo repository as ``butler retrieve-artifacts``
would hand them over (lsst.images FITS written by ``butler.put``: the visit
image records its flat in ``LSST CALIB UUID FLAT``, the flat its dataset ID in
its butler information), and flats / illumination corrections / visit images
rebuilt in afw's legacy FITS layout with astropy.

How the astropy-built legacy files differ from afw's: they have the same HDU
sequence and cards lsst.images' legacy readers use (PRIMARY; IMAGE, MASK,
VARIANCE with EXTNAME, EXTTYPE, INHERIT, LTV1/LTV2, BUNIT; ``MP_*`` mask-plane
cards) but no afw archive HDUs (PSF, WCS, PhotoCalib, detector: afw's
``ARCHIVE_INDEX`` tables and ``AR_HDU`` cards), no offset ``A`` WCS and no
tile compression.  A flat or illumination correction needs nothing from the
archive, so for them the difference does not matter; a visit image does, which
is why an afw visit image needs afw (`VisitImage.read_legacy`).
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from lsst.daf.butler import Butler
from lsst.images import Image, MaskedImage, VisitImage

from isrinject import VisitInjectConfig, VisitInjectTask
from isrinject._version import package_version
from isrinject.tasks.files import (
    BUTLER_ID_CARD,
    FileModeError,
    afw_available,
    file_dataset_id,
    inject_files,
    read_flat_file,
    read_illumination_file,
    read_visit_image_file,
)
from isrinject.tasks.marking import CONFIG_HASH_KEY, VERSION_KEY, config_hash
from isrinject.tasks.provenance import FLAT_UUID_CARD, FlatProvenanceError

pytestmark = pytest.mark.slow  # the session's demo repository (≈ 10 s to build)

BAND, DETECTOR = "r", 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(demo_repo) -> dict[str, Path]:
    """The visit image, the flat it records, the other flat and the catalog of one detector."""
    butler = Butler(str(demo_repo.root))
    data_id = {"instrument": demo_repo.layout.instrument, "detector": DETECTOR, "visit": demo_repo.visits[BAND]}
    visit_ref = butler.find_dataset("visit_image", data_id, collections=demo_repo.layout.inputs)
    recorded = butler.get(visit_ref).metadata[FLAT_UUID_CARD]
    flats = butler.query_datasets(
        "flat", collections=demo_repo.layout.inputs, find_first=False, explain=False,
        where=f"instrument = '{demo_repo.layout.instrument}' AND detector = {DETECTOR} AND band = '{BAND}'",
    )
    (used,) = [ref for ref in flats if str(ref.id) == recorded]
    (other,) = [ref for ref in flats if str(ref.id) != recorded]
    return {
        "visit_image": Path(butler.getURI(visit_ref).ospath),
        "flat": Path(butler.getURI(used).ospath),
        "other_flat": Path(butler.getURI(other).ospath),
        "catalog": demo_repo.root / "demo_catalog.ecsv",
    }


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "isrinject.cli", "inject", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )


def _write_legacy(path: Path, planes: dict[str, np.ndarray], *, primary: dict[str, object], unit: str | None,
                  yx0: tuple[int, int] = (0, 0)) -> None:
    """A FITS file in afw's (Masked)Image layout (module docstring: what differs from afw's)."""
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    for key, value in primary.items():
        hdus[0].header[f"HIERARCH {key}" if len(key) > 8 or " " in key else key] = value
    for name, array in planes.items():
        hdu = fits.ImageHDU(array, name=name)
        hdu.header["EXTTYPE"] = name
        hdu.header["INHERIT"] = True
        hdu.header["LTV1"], hdu.header["LTV2"] = -yx0[1], -yx0[0]
        if name == "MASK":
            hdu.header["MP_BAD"] = 0
        elif unit is not None:
            hdu.header["BUNIT"] = unit if name == "IMAGE" else f"{unit}**2"
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)


def _legacy_flat(path: Path, flat_file: Path, *, with_id: bool = True) -> Path:
    """The flat of ``flat_file`` (lsst.images) in afw's layout, with its dataset ID card."""
    flat = MaskedImage.read(str(flat_file))
    primary = {BUTLER_ID_CARD: str(file_dataset_id(flat_file))} if with_id else {}
    _write_legacy(
        path,
        {"IMAGE": flat.image.array, "MASK": np.zeros(flat.image.array.shape, np.int32),
         "VARIANCE": flat.variance.array},
        primary=primary, unit=None, yx0=(flat.bbox.y.start, flat.bbox.x.start),
    )
    return path


def test_cli_injects_lsst_images_files_marks_them_and_leaves_inputs(files, tmp_path: Path) -> None:
    before = {name: _sha256(path) for name, path in files.items()}
    output = tmp_path / "injected.fits"
    run = _run_cli("--visit-image", str(files["visit_image"]), "--flat", str(files["flat"]),
                   "--catalog", str(files["catalog"]), "-o", str(output))
    assert run.returncode == 0, run.stderr[-3000:]
    assert {name: _sha256(path) for name, path in files.items()} == before  # inputs untouched
    injected = VisitImage.read(str(output))
    original = VisitImage.read(str(files["visit_image"]))
    catalog = Table.read(tmp_path / "injected_catalog.parquet")
    # Only the image's band (the demo catalog holds r and g rows).
    assert len(catalog) > 0 and set(np.asarray(catalog["band"]).astype(str)) == {BAND}
    injected_rows = (catalog["injection_flag"] == 0) | (catalog["injection_flux"] > 0)
    assert np.isfinite(catalog["injection_flux"][injected_rows]).all()
    delta = injected.image.array - original.image.array
    assert delta.sum() > 0 and injected.mask.get("INJECTED").any()
    # Marked as simulated and traceable; the input's own obs_info is unchanged.
    assert injected.obs_info.has_simulated_content
    assert injected.metadata[VERSION_KEY] == package_version() == catalog.meta[VERSION_KEY]
    assert injected.metadata[CONFIG_HASH_KEY] == config_hash(VisitInjectConfig()) == catalog.meta[CONFIG_HASH_KEY]
    assert VERSION_KEY not in original.metadata
    # The injected image keeps the input's metadata, e.g. the flat ISR used.
    assert injected.metadata[FLAT_UUID_CARD] == original.metadata[FLAT_UUID_CARD]

    # The direct call with the same files gives the same pixels.
    result = VisitInjectTask(config=VisitInjectConfig()).run(
        visit_image=str(files["visit_image"]), flat=files["flat"], injection_catalogs=str(files["catalog"]),
    )
    np.testing.assert_array_equal(result.injected_visit_image.image.array, injected.image.array)
    np.testing.assert_array_equal(result.injected_visit_image.variance.array, injected.variance.array)
    assert result.injected_visit_image.obs_info.has_simulated_content

    # Never overwrite: a second run fails before doing anything, both outputs unchanged.
    written = {p: _sha256(p) for p in (output, tmp_path / "injected_catalog.parquet")}
    with pytest.raises(FileModeError, match="injected.fits' exists; isrinject never overwrites"):
        inject_files(visit_image=files["visit_image"], flat=files["flat"], catalog=files["catalog"], output=output)
    with pytest.raises(FileModeError, match="injected_catalog.parquet' exists"):
        inject_files(visit_image=files["visit_image"], flat=files["flat"], catalog=files["catalog"],
                     output=tmp_path / "new.fits", output_catalog=tmp_path / "injected_catalog.parquet")
    assert {p: _sha256(p) for p in written} == written and not (tmp_path / "new.fits").exists()


def test_the_wrong_flat_file_is_refused_naming_both(files, tmp_path: Path, caplog) -> None:
    output = tmp_path / "wrong.fits"
    run = _run_cli("--visit-image", str(files["visit_image"]), "--flat", str(files["other_flat"]),
                   "--catalog", str(files["catalog"]), "-o", str(output))
    assert run.returncode == 1
    error = run.stderr.strip().splitlines()[-1]
    recorded = VisitImage.read(str(files["visit_image"])).metadata[FLAT_UUID_CARD]
    assert error.startswith("isrinject inject: error:")
    assert recorded in error and str(file_dataset_id(files["other_flat"])) in error
    assert not output.exists() and not list(tmp_path.iterdir())  # nothing written, no partial file
    # check_flat_provenance=False only warns, and injects with that flat.
    config = VisitInjectConfig()
    config.check_flat_provenance = False
    with caplog.at_level(logging.WARNING, logger="isrinject"):
        inject_files(visit_image=files["visit_image"], flat=files["other_flat"], catalog=files["catalog"],
                     output=output, config=config)
    assert "check_flat_provenance=False, so injecting with this flat" in caplog.text and output.exists()
    # The direct call refuses it too.
    with pytest.raises(FlatProvenanceError, match=recorded):
        VisitInjectTask().run(visit_image=files["visit_image"], flat=files["other_flat"],
                              injection_catalogs=files["catalog"])


def test_a_legacy_layout_flat_gives_the_same_injection(files, tmp_path: Path, caplog) -> None:
    legacy = _legacy_flat(tmp_path / "flat_legacy.fits", files["flat"])
    assert fits.getheader(legacy).get("DATAMODL") is None  # not an lsst.images file
    planes = read_flat_file(legacy)
    reference = MaskedImage.read(str(files["flat"]))
    np.testing.assert_array_equal(planes.image.array, reference.image.array)
    np.testing.assert_array_equal(planes.variance.array, reference.variance.array)
    assert planes.bbox == reference.bbox
    assert file_dataset_id(legacy) == file_dataset_id(files["flat"])  # its LSST BUTLER ID card

    modern = inject_files(visit_image=files["visit_image"], flat=files["flat"], catalog=files["catalog"],
                          output=tmp_path / "modern.fits")
    old = inject_files(visit_image=files["visit_image"], flat=legacy, catalog=files["catalog"],
                       output=tmp_path / "old.fits")
    np.testing.assert_array_equal(VisitImage.read(str(old.image_path)).image.array,
                                  VisitImage.read(str(modern.image_path)).image.array)
    np.testing.assert_array_equal(Table.read(old.catalog_path)["injection_flux"],
                                  Table.read(modern.catalog_path)["injection_flux"])

    # A legacy flat without an ID card cannot be checked: a warning, not an error.
    anonymous = _legacy_flat(tmp_path / "flat_anonymous.fits", files["flat"], with_id=False)
    with caplog.at_level(logging.WARNING, logger="isrinject"):
        inject_files(visit_image=files["visit_image"], flat=anonymous, catalog=files["catalog"],
                     output=tmp_path / "anonymous.fits")
    assert "records no dataset ID" in caplog.text


def test_a_legacy_illumination_correction_is_read_and_used(files, tmp_path: Path) -> None:
    flat = MaskedImage.read(str(files["flat"]))
    rng = np.random.default_rng(5)
    values = (1.0 + 0.05 * rng.standard_normal(flat.image.array.shape)).astype(np.float32)
    path = tmp_path / "illumination.fits"
    _write_legacy(path, {"IMAGE": values}, primary={}, unit=None, yx0=(flat.bbox.y.start, flat.bbox.x.start))
    illumination = read_illumination_file(path)
    np.testing.assert_array_equal(illumination.array, values)
    config = VisitInjectConfig()
    with_r = inject_files(visit_image=files["visit_image"], flat=files["flat"], illumination=path,
                          catalog=files["catalog"], output=tmp_path / "with_r.fits", config=config)
    assert config.do_illumination_correction is False  # the caller's config is not changed
    without = inject_files(visit_image=files["visit_image"], flat=files["flat"], catalog=files["catalog"],
                           output=tmp_path / "without_r.fits")
    gain_r = Table.read(with_r.catalog_path)["injection_effective_gain"]
    gain = Table.read(without.catalog_path)["injection_effective_gain"]
    ok = np.isfinite(gain) & np.isfinite(gain_r)
    # g = f·R/c: the illumination correction enters every source's effective gain.
    assert ok.sum() > 3 and not np.allclose(gain_r[ok], gain[ok], rtol=1e-4)
    assert np.allclose(gain_r[ok] / gain[ok], 1.0, atol=0.25)


@pytest.mark.skipif(afw_available(), reason="afw is importable: VisitImage.read_legacy would read the file")
def test_an_afw_visit_image_without_afw_is_a_one_line_error(files, tmp_path: Path) -> None:
    original = VisitImage.read(str(files["visit_image"]))
    path = tmp_path / "visit_image_afw.fits"
    _write_legacy(path, {"IMAGE": original.image.array, "MASK": np.zeros(original.image.array.shape, np.int32),
                         "VARIANCE": original.variance.array}, primary={"LSST BUTLER DATASETTYPE": "visit_image"},
                  unit="nJy")
    with pytest.raises(FileModeError, match="python -m lsst.images convert"):
        read_visit_image_file(path)
    run = _run_cli("--visit-image", str(path), "--flat", str(files["flat"]), "--catalog", str(files["catalog"]),
                   "-o", str(tmp_path / "out.fits"))
    assert run.returncode == 1
    (error,) = run.stderr.strip().splitlines()  # one line, nothing else (no traceback, no log)
    assert "written by afw" in error and f"python -m lsst.images convert {path}" in error


def test_bad_files_are_named(files, tmp_path: Path) -> None:
    not_fits = tmp_path / "notes.fits"
    not_fits.write_text("not a FITS file")
    with pytest.raises(FileModeError, match="notes.fits.*is not a FITS file"):
        read_flat_file(not_fits)
    with pytest.raises(FileModeError, match="missing.fits.*does not exist"):
        read_flat_file(tmp_path / "missing.fits")
    wrong_layout = tmp_path / "wrong_layout.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((4, 4), np.float32), name="SCI")]).writeto(wrong_layout)
    with pytest.raises(FileModeError, match="HDU 1 is 'SCI', expected EXTNAME 'IMAGE'"):
        read_flat_file(wrong_layout)
    with pytest.raises(FileModeError, match="holds an lsst.images 'masked_image', not a visit_image"):
        read_visit_image_file(files["flat"])
    with pytest.raises(FileModeError, match=r"must end in \.fits"):
        inject_files(visit_image=files["visit_image"], flat=files["flat"], catalog=files["catalog"],
                     output=tmp_path / "out.hdf5")
    with pytest.raises(FileModeError, match="is also an input"):
        inject_files(visit_image=files["visit_image"], flat=files["flat"], catalog=files["catalog"],
                     output=tmp_path / "x.fits", output_catalog=files["catalog"])
    assert isinstance(read_illumination_file(files["flat"]), Image)
