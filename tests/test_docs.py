r"""The documentation site (doc/) builds with warnings as errors and shows what the code has.

The whole site is built once (``sphinx -W --keep-going -n``, as ``make docs``);
the pages are then checked against the objects they are generated from, and
read as a reader does: no page loads anything from another host, and in
headless Chromium (when installed) the equations are typeset from the site's own
MathJax, no raw ``\(``/``\[`` TeX left.  The build executes the tutorial
notebook (doc/isrinject/tutorial.ipynb) on a demo repository; its printed
results are checked here against that repository (tests/test_tutorial.py only
checks the stored notebook, so the notebook runs once).  Small second sites
built with the same configuration check that the build really fails on a broken
cross-reference and on a notebook cell that raises.
"""

from __future__ import annotations

import argparse
import html
import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from astropy.time import TimeDelta

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "doc"
sys.path.insert(0, str(DOC))
import check_site  # noqa: E402  (doc/check_site.py: what ``make docs-check`` runs)

#: How Sphinx reports a problem in its output (``<file>:<line>: WARNING: …``).
SPHINX_PROBLEM = re.compile(r": (WARNING|ERROR|CRITICAL|SEVERE):")


def _sphinx(source: Path, out: Path, *options: str, demo_repo: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Build ``source`` into ``out/html``.  The notebook runs on ``demo_repo`` when given (a
    notebook that does not read it: the build then makes no demo repository of its own)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    env.pop("ISRINJECT_DEMO_REPO", None)
    if demo_repo is not None:
        env["ISRINJECT_DEMO_REPO"] = str(demo_repo)
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q",
         "-d", str(out / "doctrees"), *options, str(source), str(out / "html")],
        capture_output=True, text=True, env=env, timeout=1200,
    )


def _text(page: Path) -> str:
    """The visible text of a built page's article (tags stripped, whitespace collapsed)."""
    source = page.read_text()
    article = source[source.index("<article"):source.index("</article>")]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", article)).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    result = _sphinx(DOC, out)
    assert result.returncode == 0, result.stderr[-5000:]
    # (-W already turns warnings into a failure; this also catches messages
    # logged below warning level by extensions.  The notebook kernel's own
    # stderr lines, e.g. "[IPKernelApp] WARNING | ...", are not Sphinx's.)
    assert not SPHINX_PROBLEM.search(result.stderr), result.stderr[-5000:]
    return out / "html"


def test_pages_exist(site: Path) -> None:
    for page in ("index", "isrinject/getting-started", "isrinject/pixel-model", "isrinject/catalogs",
                 "isrinject/checking",
                 "isrinject/coming-from-source-injection", "isrinject/real-data", "isrinject/at-scale",
                 "isrinject/bad-inputs", "isrinject/_generated/tutorial", "isrinject/design",
                 "isrinject/layout", "isrinject/scripts/isrinject",
                 "isrinject/tasks/isrinject.VisitInjectTask", "isrinject/api", "isrinject/api-engine",
                 "isrinject/api-tasks", "isrinject/_generated/api/isrinject.engine.model"):
        assert (site / f"{page}.html").is_file(), page
    # The forum figure (drawn by isrinject.demo.figure) is on the front page and the getting-started page.
    assert (site / "_images" / "forum_cutout_u.png").stat().st_size > 10_000


def test_tutorial_is_rendered_with_its_outputs(site: Path) -> None:
    page = (site / "isrinject" / "_generated" / "tutorial.html").read_text()
    article = page[page.index("<article"):page.index("</article>")]
    # Executed by the build: the variance-against-flux figure and the cells' printed output.
    assert article.count("<img") >= 1
    assert article.count('class="output stream highlight-myst-ansi notranslate"') >= 3
    # The catalog table prints x and y rounded (not 224.29999999973174).
    assert re.search(r"<td>\d+\.\d\d</td>", article) and not re.search(r"<td>\d+\.\d{6,}</td>", article)
    assert "Warning" not in _text(site / "isrinject" / "_generated" / "tutorial.html")


def _tutorial_results(site: Path) -> dict[str, object]:
    """The JSON line the tutorial's last cell printed, from the rendered page."""
    page = (site / "isrinject" / "_generated" / "tutorial.html").read_text()
    streams = re.findall(r'class="output stream[^"]*"><div class="highlight"><pre>(.*?)</pre>', page, re.S)
    return json.loads(html.unescape(re.sub(r"<[^>]+>", "", streams[-1])).strip().splitlines()[-1])


def test_tutorial_finds_the_isr_relation(site: Path) -> None:
    from lsst.daf.butler import Butler, Timespan

    from isrinject.demo.build import EXPOSURE_TIME_S, load_demo_repo

    results = _tutorial_results(site)
    # The repository the build ran the notebook on (doc/_ext/isrinject_docs.py makes it in the doctrees).
    repo = site.parent / "doctrees" / "tutorial_demo_repo"
    demo = load_demo_repo(repo)
    assert (demo.bands, demo.detectors) == (("u",), (0,))

    # The flat is the one the visit image records, which is the one certified at its time.
    butler = Butler.from_config(str(repo))
    band = demo.bands[0]
    begin = demo.visit_begin[band]
    certified = butler.find_dataset(
        "flat", instrument=demo.layout.instrument, detector=0, physical_filter=demo.physical_filters[band],
        collections=demo.layout.inputs, timespan=Timespan(begin, begin + TimeDelta(EXPOSURE_TIME_S, format="sec")),
    )
    assert results["flat_id"] == results["recorded_flat_id"] == str(certified.id)
    assert results["flat_run"] == certified.run == demo.flat_runs[demo.flat_epoch(band)]

    # The star's variance slope: 1 per pre-flat electron plus the flat's own
    # variance, exactly (ΔV·g² = n + V_f/f²·(2Sn + n²), ΔI·g = n; float32 rounding).
    assert results["star_pixels"] > 100
    assert results["slope_isrinject"] == pytest.approx(1 + results["flat_variance_term"], abs=2e-3)
    assert 0 < results["flat_variance_term"] < 0.05
    # lsst.source.injection (emulated) has slope s·g exactly (ΔV = s·ΔI, no flat-variance term) ...
    assert results["slope_upstream"] == pytest.approx(results["expected_upstream"], rel=0.01)
    # ... off the ISR relation where the star sits (low flat, far from its amplifier's fitted mean) ...
    assert abs(results["slope_upstream"] - results["slope_isrinject"]) > 0.03
    # ... and its realized noise is 1/s² of its recorded variance (u, nJy: s ≈ 3-5), within the Poisson
    # noise of Σ(ΔI − M)² over a few hundred pixels (≈ √(2/N) ≈ 10 %).
    assert results["noise_ratio_upstream"] == pytest.approx(results["expected_noise_ratio_upstream"], rel=0.3)
    assert results["noise_ratio_upstream"] < 0.2
    assert results["seed_column"] == ["123"]
    assert results["diagnose_passed"] is True


def _api_modules() -> list[types.ModuleType]:
    """Every isrinject module with a public ``__all__``, except the sub-commands' own
    modules (``isrinject.cli.*`` and ``*.cli``, documented by the command reference) and
    private ones."""
    import isrinject

    modules = [isrinject]
    for info in pkgutil.walk_packages(isrinject.__path__, "isrinject."):
        last = info.name.rsplit(".", 1)[-1]
        command_line = info.name.startswith("isrinject.cli.") or last == "cli"
        if not (last.startswith("_") or command_line):
            modules.append(importlib.import_module(info.name))
    return [module for module in modules if getattr(module, "__all__", None)]


def test_every_public_name_has_an_api_entry(site: Path) -> None:
    documented = set()
    for page in (site / "isrinject" / "api").glob("*.html"):
        documented.update(re.findall(r'id="(isrinject\.[\w.]+)"', page.read_text()))
    missing = []
    for module in _api_modules():
        for name in module.__all__:
            obj = getattr(module, name)
            # A package's re-export is documented in the module that defines it.
            owners = [module.__name__] if not hasattr(module, "__path__") else [
                other.__name__ for other in list(sys.modules.values())
                if isinstance(other, types.ModuleType) and other.__name__.startswith(module.__name__ + ".")
                and not hasattr(other, "__path__") and getattr(other, name, None) is obj
            ]
            if not any(f"{owner}.{name}" in documented for owner in owners):
                missing.append(f"{module.__name__}.{name}")
    assert not missing
    # Every module has its own page, holding its module target, listed by its layer's page.
    for module in _api_modules():
        page = site / "isrinject" / "_generated" / "api" / f"{module.__name__}.html"
        assert f'id="module-{module.__name__}"' in page.read_text(), module.__name__
    layers = {layer: (site / "isrinject" / f"api-{layer}.html").read_text()
              for layer in ("engine", "tasks", "diagnostics", "sim", "demo", "cli")}
    for module in _api_modules():
        if module.__name__ != "isrinject":
            layer = module.__name__.split(".")[1]
            assert f'href="_generated/api/{module.__name__}.html"' in layers[layer], module.__name__


def test_site_reads_the_same_offline(site: Path) -> None:
    # Nothing is loaded from another host; math sits only in the elements MathJax
    # typesets, with the site's own copy of MathJax.
    assert check_site.static_problems(site) == []
    assert (site / "_static" / "tex-svg-full.js").stat().st_size > 1_000_000
    pixel_model = (site / "isrinject" / "pixel-model.html").read_text()
    assert 'src="../_static/tex-svg-full.js' in pixel_model and "\\frac" in pixel_model


def test_equations_are_typeset_in_a_browser(site: Path) -> None:
    browser = check_site.browser()
    if browser is None:
        pytest.skip("needs Chromium (Debian: apt-get install chromium; .ci/run installs it)")
    for name in check_site.PAGES:
        assert check_site.raw_tex(check_site.rendered_dom(browser, site / f"{name}.html")) == [], name
    # The check sees TeX where MathJax has not run (the page as written), and MathJax
    # replaced it: the pixel model's equations became SVG.
    pixel_model = site / "isrinject" / "pixel-model.html"
    assert len(check_site.raw_tex(pixel_model.read_text())) > 20
    assert check_site.rendered_dom(browser, pixel_model).count("<mjx-container") > 20


def _options(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Sub-command name → its option strings, from the parser the CLI runs."""
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        name: [option for action in sub._actions for option in action.option_strings if option != "-h"]
        for name, sub in subparsers.choices.items()
    }


def test_command_reference_matches_the_parser(site: Path) -> None:
    from isrinject.cli import build_parser

    text = _text(site / "isrinject" / "scripts" / "isrinject.html")
    options = _options(build_parser())
    assert set(options) >= {"demo", "generate-catalog", "ingest-catalog", "diagnose", "show-source-types",
                            "make-injection-pipeline", "consolidate-catalogs"}
    for command, strings in options.items():
        assert f"isrinject {command}" in text, command
        for option in strings:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (command, option)


def test_task_page_lists_connections_and_config(site: Path) -> None:
    from isrinject.tasks.visit import VisitInjectConfig

    text = _text(site / "isrinject" / "tasks" / "isrinject.VisitInjectTask.html")
    for connection, dataset_type, storage_class in (
        ("visit_image", "visit_image", "VisitImage"),
        ("flat", "flat", "MaskedImageV2"),
        ("injection_catalogs", "injection_catalog", "ArrowAstropy"),
        ("injected_visit_image", "injected_visit_image", "VisitImage"),
        ("illumination_correction", "illuminationCorrection", "ImageV2"),
    ):
        assert f"{connection} " in text and f" {dataset_type} {storage_class}" in text, connection
    config = VisitInjectConfig()
    for name in ("noise_seed", "scaling_source", "calib_flux_radius", "psf_cache_spacing", "bad_mask_names"):
        field = VisitInjectConfig._fields[name]
        assert f"{name} " in text and repr(field.default) in text, name
    assert f"noise_seed int {config.noise_seed!r}" in text
    assert "scaling_source str 'visit_image'" in text
    assert "bad_mask_names list[str] ['BAD'," in text


def test_flag_table_matches_the_flags(site: Path) -> None:
    from isrinject.engine.flags import FATAL_FLAGS, InjectionFlag

    text = _text(site / "isrinject" / "coming-from-source-injection.html")
    for flag in InjectionFlag:
        verdict = "not injected" if flag & FATAL_FLAGS else "injected, with a caveat"
        assert f"{flag.value.bit_length() - 1} {flag.name} {verdict}" in text, flag.name


def test_source_types_match_the_command(site: Path) -> None:
    from isrinject.engine.catalog.source_types import SOURCE_TYPE_PARAMETERS

    text = _text(site / "isrinject" / "catalogs.html")
    for parameters in SOURCE_TYPE_PARAMETERS.values():
        # Each type's block as show-source-types prints it (whitespace aside).
        assert " ".join(parameters.describe(100).split()) in text, parameters.source_type


def test_included_tables_are_complete(site: Path) -> None:
    bad_inputs = _text(site / "isrinject" / "bad-inputs.html")
    ids = set(re.findall(r"^\| (B\d+)", (ROOT / "tests" / "README.md").read_text(), flags=re.M))
    assert len(ids) > 50
    assert all(re.search(rf"\b{i}\b", bad_inputs) for i in ids)
    at_scale = _text(site / "isrinject" / "at-scale.html")
    assert "local_threads.yaml" in at_scale and "PostgreSQL registry" in at_scale


def test_pixel_model_page_has_the_equations(site: Path) -> None:
    text = _text(site / "isrinject" / "pixel-model.html")
    for latex in (r"\lambda &= M\,\frac{f R}{c}", r"\Delta I &= \frac{c\, n}{f R}",
                  r"\left(\frac{c}{R}\right)^2 \frac{V_f}{f^4}\,\bigl(2 S n + n^2\bigr)"):
        assert latex in text


# --- the build fails when it should, and executes the notebook -----------------------------------


def _small_site(tmp_path: Path, index: str) -> Path:
    """A site with doc/'s configuration and extension and one page."""
    source = tmp_path / "doc"
    shutil.copytree(DOC / "_ext", source / "_ext")
    shutil.copytree(DOC / "_static", source / "_static")
    shutil.copy(DOC / "conf.py", source / "conf.py")
    (source / "index.rst").write_text(
        index + "\n.. toctree::\n   :hidden:\n\n   isrinject/_generated/tutorial\n"
    )
    return source


def _notebook(path: Path, code: str) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# A notebook"), nbformat.v4.new_code_cell(code)]
    nbformat.write(notebook, path)
    return path


def test_broken_reference_fails_the_build(tmp_path: Path) -> None:
    good = "`isrinject.engine.model.inject_pixels` and `lsst.images.VisitImage`"
    source = _small_site(tmp_path, f"Title\n=====\n\n.. automodule:: isrinject.engine.model\n   :members:\n\n{good}\n")
    assert _sphinx(source, tmp_path / "ok").returncode == 0
    (source / "index.rst").write_text(
        (source / "index.rst").read_text()
        # A name that exists nowhere, one that lsst.images does not have, and an
        # isrinject constant this site does not document (a str has no module of
        # its own: it is isrinject's because isrinject.tasks.call holds it).
        + "\n`isrinject.engine.model.no_such_function`, `lsst.images.NoSuchImage`,"
        + " `isrinject.tasks.call.MISSING_FLAT_HELP`\n"
    )
    result = _sphinx(source, tmp_path / "broken")
    assert result.returncode != 0
    warnings = "\n".join(line for line in result.stderr.splitlines() if SPHINX_PROBLEM.search(line))
    assert warnings.count("reference target not found") == 3, result.stderr
    for target in (
        "isrinject.engine.model.no_such_function",
        "lsst.images.NoSuchImage",
        "isrinject.tasks.call.MISSING_FLAT_HELP",
    ):
        assert target in warnings


def test_tutorial_is_executed_and_a_failing_cell_fails(tmp_path: Path) -> None:
    source = _small_site(tmp_path, "Title\n=====\n")
    good = _notebook(tmp_path / "good.ipynb", "from isrinject.engine.model import effective_gain\n"
                                                "print(effective_gain([0.75], 2.0) * 1000)")
    # (These notebooks do not read the demo repository: none is built for them.)
    unused_repo = tmp_path / "no_demo_repo"
    result = _sphinx(source, tmp_path / "good", "-D", f"isrinject_tutorial={good}", demo_repo=unused_repo)
    assert result.returncode == 0, result.stderr[-3000:]
    # g = f·R/c = 0.75 / 2 = 0.375 e⁻ per image unit, printed by the executed cell.
    assert "[375.]" in _text(tmp_path / "good" / "html" / "isrinject" / "_generated" / "tutorial.html")
    bad = _notebook(tmp_path / "bad.ipynb", "raise RuntimeError('tutorial cell failed')")
    result = _sphinx(source, tmp_path / "bad", "-D", f"isrinject_tutorial={bad}", demo_repo=unused_repo)
    assert result.returncode != 0
    assert "tutorial cell failed" in result.stderr
    # Without the notebook the page says so, without a warning.
    result = _sphinx(source, tmp_path / "none", "-D", f"isrinject_tutorial={tmp_path / 'absent.ipynb'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is not part of this checkout" in _text(tmp_path / "none" / "html" / "isrinject" / "_generated" /
                                                   "tutorial.html")
