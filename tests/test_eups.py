"""isrinject run the eups way: only ups/isrinject.table's PYTHONPATH and PATH, nothing pip-installed.

A user of the Science Pipelines stack runs ``setup -k -r .`` in a clone (eups
prepends the table's paths) and ``scons`` (which writes ``bin/isrinject`` and
``python/isrinject/version.py``).  eups is not installable here, so this
builds what they would have:

- a clone of HEAD (commit first), in which the pinned lsst-sconsutils'
  ``scons`` builds ``bin/`` and ``version.py``;
- a "stack" Python without isrinject: a new virtualenv whose one ``.pth``
  line puts the shared virtualenv's site-packages on ``sys.path`` (the
  dependencies, as the stack's conda environment provides them).  A path
  named in a ``.pth`` file is not itself scanned for ``.pth`` files, so the
  shared virtualenv's editable install of isrinject
  (``__editable__.isrinject-*.pth``) is not active: without the table's
  ``PYTHONPATH``, ``import isrinject`` fails, which the first test proves;
- ``PATH`` = the table's ``bin/`` (from the clone), then a ``bin/`` with the
  stack's ``python`` and ``pipetask`` (ctrl_mpexec's command), then
  ``/usr/bin:/bin``; ``PYTHONPATH`` = the table's ``python/``.

Every isrinject module then comes from the clone, which the version proves:
``scons`` wrote the clone's ``version.py`` (the git hash), and the outputs of
the CLI, ``pipetask`` and the direct call all carry that version.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from astropy.table import Table
from lsst.daf.butler import Butler
from lsst.images import VisitImage

from isrinject.tasks.marking import VERSION_KEY

ROOT = Path(__file__).resolve().parents[1]
SCONS = Path(sys.executable).parent / "scons"
DEPENDENCIES = sysconfig.get_paths()["purelib"]  # the shared virtualenv's site-packages


def _table_environment(table: Path, product_dir: Path) -> dict[str, list[str]]:
    """``envPrepend(VAR, value)`` lines of an eups table: VAR → prepended paths."""
    found: dict[str, list[str]] = {}
    for line in table.read_text().splitlines():
        match = re.fullmatch(r"\s*envPrepend\((\w+),\s*(.+?)\)\s*", line)
        if match:
            found.setdefault(match[1], []).append(match[2].replace("${PRODUCT_DIR}", str(product_dir)))
    return found


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the project")
    target = tmp_path_factory.mktemp("eups") / "isrinject"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    return target


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack's Python, with the dependencies but without isrinject."""
    root = tmp_path_factory.mktemp("stack")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    (site,) = (root / "lib").glob("python3*/site-packages")
    (site / "stack_dependencies.pth").write_text(DEPENDENCIES + "\n")
    # ctrl_mpexec's bin/pipetask, for this Python.
    pipetask = root / "bin" / "pipetask"
    pipetask.write_text("#!/usr/bin/env python\nimport sys\nfrom lsst.ctrl.mpexec.cli.pipetask import main\n"
                        "sys.exit(main())\n")
    pipetask.chmod(0o755)
    return root


def _environment(clone: Path, stack: Path, *, with_table: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and
           not k.startswith("ISRINJECT")}
    paths = _table_environment(clone / "ups" / "isrinject.table", clone) if with_table else {}
    env["PATH"] = os.pathsep.join([*paths.get("PATH", []), str(stack / "bin"), "/usr/bin", "/bin"])
    if paths.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(paths["PYTHONPATH"])
    env["ISRINJECT_DIR"] = str(clone)  # eups sets <PRODUCT>_DIR
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def built(clone: Path, stack: Path) -> Path:
    """The clone after ``scons shebang version`` (the stack's python on PATH)."""
    env = _environment(clone, stack)
    run = subprocess.run([str(SCONS), "-Q", "shebang", "version"], cwd=clone, env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return clone


def _run(args: list[str], clone: Path, stack: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=kwargs.pop("cwd", clone), env=_environment(clone, stack, **kwargs),
                          capture_output=True, text=True, timeout=600, check=False)


#: Top-level import → eups product, where the names differ.
_PRODUCTS = {"lsst.pipe.base": "pipe_base", "lsst.pex.config": "pex_config", "lsst.daf.butler": "daf_butler",
             "lsst.ctrl.mpexec": "ctrl_mpexec", "lsst.ctrl.bps": "ctrl_bps", "lsst.afw": "afw"}


def _imported_distributions() -> set[str]:
    """lsst.* / astro_metadata_translator products and third-party packages isrinject imports."""
    names = set()
    for path in (ROOT / "python" / "isrinject").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for module in modules:
                parts = module.split(".")
                if parts[0] in sys.stdlib_module_names or parts[0] == "isrinject":
                    continue
                if parts[0] == "lsst":
                    key = ".".join(parts[:3]) if parts[1] in ("pipe", "pex", "daf", "ctrl") else ".".join(parts[:2])
                    names.add(_PRODUCTS.get(key, parts[1]))
                else:
                    names.add(parts[0])
    return names


def test_the_table_lists_every_import() -> None:
    """Every eups product isrinject imports is setupRequired; every third-party
    package it imports is named in the table's list of Python packages."""
    text = (ROOT / "ups" / "isrinject.table").read_text()
    required = set(re.findall(r"^setupRequired\((\w+)\)", text, re.MULTILINE))
    optional = set(re.findall(r"^setupOptional\((\w+)\)", text, re.MULTILINE))
    third_party = set(re.findall(r"^#\s+(?:required|recommended|optional)[^:]*:(.*)$", text, re.MULTILINE))
    listed = {word for line in third_party for word in re.findall(r"[a-z_]+", line)}
    imported = _imported_distributions()
    products = {name for name in imported if name in _PRODUCTS.values() or name in
                {"utils", "sphgeom", "images", "resources", "astro_metadata_translator"}}
    assert products - required == set(), "imported eups products missing from setupRequired"
    assert imported - products - listed == set(), "imported third-party packages missing from the table's list"
    assert {"piff", "pandas", "photutils"} <= listed and "afw" in optional and "afw" not in imported


def _clone_version(clone: Path) -> str:
    text = (clone / "python" / "isrinject" / "version.py").read_text()
    return ast.literal_eval(re.search(r"__version__: str = (.+)", text)[1])


@pytest.mark.slow
def test_the_stack_python_has_no_isrinject_but_the_table_s(built: Path, stack: Path) -> None:
    without = _run(["python", "-c", "import isrinject"], built, stack, with_table=False, cwd=stack)
    assert without.returncode == 1 and "No module named 'isrinject'" in without.stderr
    code = ("import isrinject, isrinject.tasks.visit as v; from isrinject._version import package_version; "
            "print(isrinject.__file__); print(v.__file__); print(package_version())")
    where = _run(["python", "-c", code], built, stack, cwd=stack)
    assert where.returncode == 0, where.stderr[-2000:]
    *files, version = where.stdout.split()
    assert all(Path(p).resolve().is_relative_to(built.resolve()) for p in files), where.stdout
    assert version == _clone_version(built)  # scons' version.py of the clone


@pytest.mark.slow
def test_scons_builds_bin_and_version(built: Path, stack: Path) -> None:
    command = built / "bin" / "isrinject"
    assert os.access(command, os.X_OK)
    assert command.read_text().splitlines()[1:] == (built / "bin.src" / "isrinject").read_text().splitlines()[1:]
    assert shutil.which("isrinject", path=_environment(built, stack)["PATH"]) == str(command)
    version = _clone_version(built)
    git_hash = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=built, capture_output=True, text=True,
                              check=True).stdout.strip()
    assert version.startswith(git_hash[:7]) or git_hash.startswith(version[:7]), (version, git_hash)


@pytest.mark.slow
def test_cli_help_and_the_file_mode(built: Path, stack: Path, demo_repo, tmp_path: Path) -> None:
    helped = _run(["isrinject", "--help"], built, stack, cwd=tmp_path)
    assert helped.returncode == 0 and "inject" in helped.stdout and "demo" in helped.stdout
    butler = Butler(str(demo_repo.root))
    data_id = {"instrument": demo_repo.layout.instrument, "detector": 0, "visit": demo_repo.visits["r"]}
    ref = butler.find_dataset("visit_image", data_id, collections=demo_repo.layout.inputs)
    from isrinject import find_isr_flat

    flat = butler.getURI(find_isr_flat(butler, ref)).ospath
    output = tmp_path / "injected.fits"
    run = _run(["isrinject", "inject", "--visit-image", butler.getURI(ref).ospath, "--flat", flat,
                "--catalog", str(demo_repo.root / "demo_catalog.ecsv"), "-o", str(output)], built, stack,
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    image = VisitImage.read(str(output))
    assert image.metadata[VERSION_KEY] == _clone_version(built) and image.obs_info.has_simulated_content

    # The direct call, in the stack's python with the table's path.
    script = textwrap.dedent(f"""
        import isrinject
        from isrinject import VisitInjectTask
        result = VisitInjectTask().run(visit_image={butler.getURI(ref).ospath!r}, flat={flat!r},
                                       injection_catalogs={str(demo_repo.root / 'demo_catalog.ecsv')!r})
        print(isrinject.__file__)
        print(result.injected_visit_image.metadata["{VERSION_KEY}"])
        print(len(result.injected_visit_image_catalog))
    """)
    direct = _run(["python", "-c", script], built, stack, cwd=tmp_path)
    assert direct.returncode == 0, direct.stderr[-3000:]
    module, version, rows = direct.stdout.split()[-3:]
    assert Path(module).resolve().is_relative_to(built.resolve())
    assert version == _clone_version(built) and int(rows) == len(Table.read(str(output)[:-5] + "_catalog.parquet"))


@pytest.mark.slow
def test_pipetask_runs_the_clone_s_pipeline(built: Path, stack: Path, demo_repo, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(demo_repo.root, repo)  # the session's repository stays as it is
    output = "u/eups/inject"
    run = _run(["pipetask", "run", "-b", str(repo), "-i", demo_repo.layout.inputs, "-o", output,
                "-p", str(built / "pipelines" / "inject.yaml"), "--register-dataset-types",
                "-d", f"instrument='{demo_repo.layout.instrument}' AND band='r' AND detector=0"],
               built, stack, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Unable to import type pandas" not in run.stderr  # pandas is installed
    butler = Butler(str(repo), collections=output)
    (ref,) = butler.query_datasets("injected_visit_image", explain=False)
    image = butler.get(ref)
    assert image.obs_info.has_simulated_content
    # The quantum ran the clone's isrinject (the shared virtualenv's has no version.py).
    assert image.metadata[VERSION_KEY] == _clone_version(built)
    # The butler strips an ArrowAstropy table's meta on read unless asked not to.
    catalog = butler.get("injected_visit_image_catalog", ref.dataId, parameters={"strip_astropy_meta_yaml": False})
    assert catalog.meta[VERSION_KEY] == _clone_version(built) and len(catalog) > 0


@pytest.mark.slow
def test_pip_install_no_deps_into_the_stack(clone: Path, tmp_path: Path) -> None:
    """``pip install --no-deps`` of the clone into a stack Python: the wheel
    carries the command and the package data; nothing else is installed."""
    stack_python = tmp_path / "stack"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(stack_python)], check=True, timeout=120)
    (site,) = (stack_python / "lib").glob("python3*/site-packages")
    (site / "stack_dependencies.pth").write_text(DEPENDENCIES + "\n")
    before = {p.name for p in site.iterdir()}
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(stack_python / "bin" / "python"), "install", "--quiet",
         "--no-deps", "--no-build-isolation", "--no-index", str(clone)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    added = {p.name for p in site.iterdir()} - before
    assert {name.split("-")[0] for name in added} == {"isrinject"}, added  # nothing but isrinject
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(stack_python / "bin"), "/usr/bin", "/bin"])
    code = ("import isrinject, isrinject.sim as s; from isrinject.engine.draw.sersic_table import fourier_table; "
            "from isrinject._version import package_version; fourier_table(); print(isrinject.__file__); "
            "print(s.default_comcam_csv()); print(package_version())")
    run = subprocess.run([str(stack_python / "bin" / "python"), "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    module, csv, version = run.stdout.split()
    assert Path(module).is_relative_to(site) and Path(csv).is_file() and Path(csv).is_relative_to(site)
    import tomllib

    # scons' version.py when the clone was built first (it is then in the wheel), else pyproject's version.
    built_version = (clone / "python" / "isrinject" / "version.py").exists()
    expected = _clone_version(clone) if built_version else tomllib.loads(
        (clone / "pyproject.toml").read_text())["project"]["version"]
    assert version == expected
    helped = subprocess.run(["isrinject", "inject", "--help"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert helped.returncode == 0 and "--visit-image" in helped.stdout
    assert (stack_python / "bin" / "isrinject").read_text().startswith(f"#!{stack_python / 'bin' / 'python'}")
