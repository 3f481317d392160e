"""Simulated detectors: amplifier layout and nominal amplifier calibrations.

A simulated detector is an `lsst.images.cameras.Detector` whose amplifiers
tile the trimmed, assembled pixel grid in a regular ``(rows, cols)`` grid
(LSSTCam/ComCam sensors: 2 × 8 amplifiers of 509 × 2000 pixels).  Every
amplifier carries nominal calibrations in the afw cameraGeom convention:

- ``gain`` in e⁻/ADU,
- ``read_noise`` in e⁻,
- ``saturation`` in ADU; the saturation level in pre-flat electrons is
  ``saturation × gain``.

Real per-amplifier gains and read noises of LSSTComCam (raft R22) come from
``lsstcomcam_R22_amp_gain_readnoise.csv``, package data of `isrinject.sim`
(``data/``, derived from lsst/obs_lsst's ComCam camera description, GPLv3; see
``data/README.md``), located with `default_comcam_csv` and read with
`load_comcam_amplifiers`.
"""

from __future__ import annotations

__all__ = [
    "COMCAM_FULL_WELL_ELECTRONS",
    "amplifier_boxes",
    "amplifier_index_map",
    "default_comcam_csv",
    "load_comcam_amplifiers",
    "make_comcam_detector",
    "make_detector",
]

import csv
import math
import os
from collections.abc import Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np
from lsst.images import Box
from lsst.images.cameras import (
    Amplifier,
    AmplifierCalibrations,
    CameraFrameSet,
    Detector,
    DetectorAttributes,
    DetectorType,
    Orientation,
    ReadoutCorner,
)

from ..engine.calibration import amplifier_index

#: Typical full well of an LSSTCam/ComCam ITL sensor (pre-flat electrons).
#: ITL sensors saturate at ≈100 000–150 000 e⁻; the simulated saturation in
#: ADU is ``COMCAM_FULL_WELL_ELECTRONS / gain``.
COMCAM_FULL_WELL_ELECTRONS: float = 120_000.0

_COMCAM_CSV_NAME = "lsstcomcam_R22_amp_gain_readnoise.csv"

#: Nominal pixel size of LSST sensors, in mm (10 µm).
_PIXEL_SIZE_MM = 0.010

#: Plate scale used for the FOCAL_PLANE → FIELD_ANGLE map (Rubin: 0.2"/10 µm).
_PLATE_SCALE_ARCSEC_PER_MM = 20.0


def default_comcam_csv() -> Traversable:
    """The ComCam R22 amplifier gain/read-noise table shipped with `isrinject.sim`.

    Returns
    -------
    table
        The package resource ``isrinject/sim/data/lsstcomcam_R22_amp_gain_readnoise.csv``
        (a `~importlib.resources.abc.Traversable`: a `~pathlib.Path` for an
        installed or source checkout, readable with ``.open()`` in any case).
    """
    return files("isrinject.sim").joinpath("data", _COMCAM_CSV_NAME)


def load_comcam_amplifiers(
    csv_path: str | os.PathLike[str] | Traversable | None = None, ccd: str = "S11"
) -> list[dict[str, object]]:
    """Read the nominal gain and read noise of every amplifier of one ComCam CCD.

    Parameters
    ----------
    csv_path
        A table in the layout of ``lsstcomcam_R22_amp_gain_readnoise.csv``
        (columns ``ccd``, ``amp``, ``gain_e_per_adu``, ``read_noise_e``);
        `None` reads the packaged one (`default_comcam_csv`).
    ccd
        Sensor name within raft R22 (``S00`` … ``S22``).

    Returns
    -------
    amplifiers
        One ``dict(name=str, gain=float [e⁻/ADU], read_noise=float [e⁻])``
        per amplifier, sorted by amplifier name (``C00`` … ``C17``).

    Raises
    ------
    FileNotFoundError
        If ``csv_path`` does not exist.
    ValueError
        If the file has no row for ``ccd`` or a non-positive gain.
    """
    path = default_comcam_csv() if csv_path is None else csv_path
    if not isinstance(path, Traversable):
        path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ComCam amplifier table {str(path)!r} does not exist.")
    rows: list[dict[str, object]] = []
    # Traversable.open takes no ``newline``; the table is small, so read it whole.
    for record in csv.DictReader(path.read_text(encoding="utf-8").splitlines()):
        if record["ccd"] != ccd:
            continue
        gain = float(record["gain_e_per_adu"])
        if not gain > 0:
            raise ValueError(f"Amplifier {record['amp']!r} of {ccd} has non-positive gain {gain!r}.")
        rows.append({"name": record["amp"], "gain": gain, "read_noise": float(record["read_noise_e"])})
    if not rows:
        raise ValueError(f"No amplifiers for ccd={ccd!r} in {str(path)!r}.")
    return sorted(rows, key=lambda r: str(r["name"]))


def amplifier_boxes(shape: tuple[int, int], amp_grid: tuple[int, int] = (2, 8)) -> list[Box]:
    """Split a ``(ny, nx)`` detector into a ``(rows, cols)`` grid of amplifier boxes.

    Amplifier ``(row, col)`` is element ``row * cols + col``; row 0 is at the
    bottom (low y).  Sizes differ by at most one pixel when the shape is not
    divisible by the grid.

    Raises
    ------
    ValueError
        If the grid has fewer than one amplifier per axis or more amplifiers
        than pixels along an axis.
    """
    ny, nx = (int(v) for v in shape)
    rows, cols = (int(v) for v in amp_grid)
    if rows < 1 or cols < 1:
        raise ValueError(f"amp_grid must be positive; got {amp_grid!r}.")
    if ny < rows or nx < cols:
        raise ValueError(f"shape {shape!r} is too small for amp_grid {amp_grid!r}.")
    y_edges = np.linspace(0, ny, rows + 1).round().astype(int)
    x_edges = np.linspace(0, nx, cols + 1).round().astype(int)
    return [
        Box.factory[y_edges[r] : y_edges[r + 1], x_edges[c] : x_edges[c + 1]]
        for r in range(rows)
        for c in range(cols)
    ]


def amplifier_index_map(shape: tuple[int, int], boxes: Sequence[Box]) -> np.ndarray:
    """Return an ``int`` array of ``shape`` holding each pixel's amplifier index.

    Pixels outside every box get ``-1``.  Boxes are in the detector's absolute
    coordinates with the array origin at (0, 0).
    """
    return amplifier_index(boxes, Box.from_shape(shape))


def _validate_per_amp(name: str, values: Sequence[float], n_amps: int, *, positive: bool) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != n_amps:
        raise ValueError(f"{name} needs {n_amps} values (one per amplifier); got {len(values)}: {values!r}.")
    for v in values:
        if not math.isfinite(v) or (v <= 0 if positive else v < 0):
            raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}; got {v!r}.")
    return values


def _make_camera_frame_set(instrument: str, detector_id: int, shape: tuple[int, int]) -> CameraFrameSet:
    """Build a one-detector `CameraFrameSet` (the only private lsst.images API use).

    The AST FrameSet has three frames: ``FOCAL_PLANE`` (mm, base),
    ``FIELD_ANGLE`` (radians; ``ZoomMap`` of the 20"/mm plate scale) and
    ``DETECTOR_nnn`` (pixels; the detector centre at the focal-plane origin,
    10 µm pixels).  The detector frame's ``Bottom``/``Top`` attributes carry
    the bounding box, which `CameraFrameSet.detector` reads back.
    """
    from lsst.images._transforms import _ast as ast  # private: no public builder exists

    ny, nx = shape
    focal_plane = ast.Frame(2, "Ident=FOCAL_PLANE,Domain=FOCAL_PLANE")
    focal_plane.setUnit(1, "mm")
    focal_plane.setUnit(2, "mm")
    frame_set = ast.FrameSet(focal_plane)
    rad_per_mm = _PLATE_SCALE_ARCSEC_PER_MM / 206264.80624709636
    field_angle = ast.Frame(2, "Ident=FIELD_ANGLE,Domain=FIELD_ANGLE")
    field_angle.setUnit(1, "rad")
    field_angle.setUnit(2, "rad")
    frame_set.addFrame(ast.FrameSet.BASE, ast.ZoomMap(2, rad_per_mm), field_angle)
    pixels = ast.Frame(
        2,
        f"Ident=DETECTOR_{detector_id:03d},Domain=PIXELS,Bottom(1)=0,Top(1)={nx},Bottom(2)=0,Top(2)={ny}",
    )
    # focal plane (mm) → pixels: x_pix = x_mm / pixel_size + (nx - 1) / 2.
    fp_to_pix = ast.ZoomMap(2, 1.0 / _PIXEL_SIZE_MM).then(ast.ShiftMap([(nx - 1) / 2.0, (ny - 1) / 2.0]))
    frame_set.addFrame(ast.FrameSet.BASE, fp_to_pix, pixels)
    return CameraFrameSet(instrument, frame_set)


def make_detector(
    *,
    instrument: str,
    detector_id: int,
    shape: tuple[int, int],
    gains: Sequence[float],
    read_noises: Sequence[float],
    saturations: Sequence[float],
    amp_grid: tuple[int, int] = (2, 8),
    visit: int | None = None,
    serial: str = "SIM",
    name: str | None = None,
    suspect_levels: Sequence[float] | None = None,
) -> Detector:
    """Build a simulated `lsst.images.cameras.Detector` with a grid of amplifiers.

    Parameters
    ----------
    instrument
        Short instrument name (butler ``instrument`` dimension).
    detector_id
        Detector ID (``DETECTOR_nnn`` frame, butler ``detector``).
    shape
        ``(ny, nx)`` of the trimmed, assembled detector.
    gains
        Per-amplifier gain in e⁻/ADU, in `amplifier_boxes` order.
    read_noises
        Per-amplifier read noise σ_a in e⁻.
    saturations
        Per-amplifier saturation level in **ADU** (afw cameraGeom
        convention); pre-flat electrons saturate at ``saturation × gain``.
    amp_grid
        ``(rows, cols)`` of amplifiers; 2 × 8 for LSSTCam/ComCam sensors.
    visit
        Visit ID attached to the detector frame (`None` for nominal geometry).
    serial
        Sensor serial number.
    name
        Detector name; defaults to ``f"D{detector_id:03d}"``.
    suspect_levels
        Per-amplifier suspect level in **ADU** (ISR's SUSPECT: pixels at or
        above it); `None` gives NaN (no suspect level, as before).

    Returns
    -------
    detector
        Detector with one `Amplifier` named ``f"C{row}{col}"`` per grid cell;
        ``nominal_calibrations`` hold gain, read noise and saturation,
        ``suspect_level`` (NaN unless given), ``linearity_type = "None"``.  Readout corners
        are LL/LR for the bottom row halves and UL/UR for the top row halves.

    Raises
    ------
    ValueError
        If a per-amplifier sequence has the wrong length or a bad value.
    """
    ny, nx = (int(v) for v in shape)
    if ny < 1 or nx < 1:
        raise ValueError(f"shape must be positive; got {shape!r}.")
    boxes = amplifier_boxes((ny, nx), amp_grid)
    rows, cols = amp_grid
    n_amps = len(boxes)
    gains = _validate_per_amp("gains", gains, n_amps, positive=True)
    read_noises = _validate_per_amp("read_noises", read_noises, n_amps, positive=False)
    saturations = _validate_per_amp("saturations", saturations, n_amps, positive=True)
    suspects = (
        [float("nan")] * n_amps if suspect_levels is None
        else _validate_per_amp("suspect_levels", suspect_levels, n_amps, positive=True)
    )
    amplifiers = []
    for i, box in enumerate(boxes):
        row, col = divmod(i, cols)
        top = rows > 1 and row >= rows / 2
        right = cols > 1 and col >= cols / 2
        corner = ReadoutCorner.from_flips(y=top, x=right)
        amplifiers.append(
            Amplifier(
                name=f"C{row}{col}",
                bbox=box,
                readout_corner=corner,
                # Trimmed, assembled images only: the simulator has no raw overscan layout.
                assembled_raw_geometry=None,
                unassembled_raw_geometry=None,
                nominal_calibrations=AmplifierCalibrations(
                    gain=gains[i],
                    read_noise=read_noises[i],
                    saturation=saturations[i],
                    suspect_level=suspects[i],
                    linearity_coefficients=np.zeros(4),
                    linearity_type="None",
                ),
            )
        )
    attributes = DetectorAttributes(
        name=name if name is not None else f"D{detector_id:03d}",
        id=int(detector_id),
        type=DetectorType.SCIENCE,
        serial=serial,
        bbox=Box.factory[0:ny, 0:nx],
        orientation=Orientation(
            focal_plane_x=0.0,
            focal_plane_y=0.0,
            focal_plane_z=0.0,
            pixel_reference_x=(nx - 1) / 2.0,
            pixel_reference_y=(ny - 1) / 2.0,
        ),
        pixel_size=_PIXEL_SIZE_MM,
        physical_type="ITL",
    )
    frames = _make_camera_frame_set(instrument, int(detector_id), (ny, nx))
    return Detector(attributes, amplifiers, frames, visit=visit)


def make_comcam_detector(
    *,
    instrument: str,
    detector_id: int,
    shape: tuple[int, int],
    visit: int | None = None,
    csv_path: str | os.PathLike[str] | Traversable | None = None,
    ccd: str = "S11",
    full_well_electrons: float = COMCAM_FULL_WELL_ELECTRONS,
    suspect_electrons: float | None = None,
) -> Detector:
    """Build a 2 × 8-amplifier detector with the gains and read noises of ComCam R22 ``ccd``.

    Amplifier ``k`` of the grid takes the ``k``-th ComCam amplifier in name
    order (C00 … C07, C10 … C17); saturation [ADU] = ``full_well_electrons / gain``.

    Parameters
    ----------
    csv_path
        Amplifier table; the packaged one (`default_comcam_csv`) when `None`.
    full_well_electrons
        Saturation level in pre-flat electrons (ITL ≈ 1.0–1.5 × 10⁵ e⁻).
    suspect_electrons
        Suspect level in pre-flat electrons (suspect level [ADU] =
        ``suspect_electrons / gain``); `None`: none (NaN).
    """
    if not (math.isfinite(full_well_electrons) and full_well_electrons > 0):
        raise ValueError(f"full_well_electrons must be finite and positive; got {full_well_electrons!r}.")
    amps = load_comcam_amplifiers(csv_path, ccd=ccd)
    if len(amps) != 16:
        raise ValueError(f"Expected 16 amplifiers for ccd={ccd!r}; got {len(amps)}.")
    gains = [float(a["gain"]) for a in amps]  # type: ignore[arg-type]
    return make_detector(
        instrument=instrument,
        detector_id=detector_id,
        shape=shape,
        gains=gains,
        read_noises=[float(a["read_noise"]) for a in amps],  # type: ignore[arg-type]
        saturations=[full_well_electrons / g for g in gains],
        suspect_levels=None if suspect_electrons is None else [suspect_electrons / g for g in gains],
        amp_grid=(2, 8),
        visit=visit,
        serial=f"R22_{ccd}",
        name=f"R22_{ccd}",
    )
