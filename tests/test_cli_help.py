"""``isrinject --help`` and every sub-command's help import nothing heavy (they take < 0.1 s).

The measured times are in the report of issue 25 (3.0 s before, 0.07 s after);
this checks the cause instead of timing it: building the parser and printing
each help imports no lsst, astropy, scipy, GalSim or matplotlib module.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("lsst", "astropy", "scipy", "galsim", "matplotlib", "numpy", "pyarrow", "photutils")

SCRIPT = f"""
import contextlib, io, json, sys
from isrinject.cli import build_parser, main
names = sorted(build_parser()._subparsers._group_actions[0].choices)
for argv in [["--help"]] + [[name, "--help"] for name in names]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit as exit:
            assert exit.code == 0, (argv, exit.code)
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
print(json.dumps({{"commands": names, "heavy": heavy}}))
"""


def test_help_imports_nothing_heavy() -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(run.stdout.splitlines()[-1])
    assert {"demo", "inject", "generate-catalog", "ingest-catalog", "diagnose", "make-injection-pipeline",
            "consolidate-catalogs", "show-source-types"} <= set(result["commands"])
    assert result["heavy"] == [], result["heavy"]
