r"""Look at the built site as a reader does: headless Chromium (``make docs-check``).

For each page of `PAGES` this loads the built HTML from disk in headless
Chromium with every network feature off, lets MathJax typeset, then

- takes a screenshot (``doc/_build/screenshots/<page>.png``) to look at;
- checks the rendered DOM: no raw ``\(``/``\[`` TeX left in the visible text
  (MathJax ran, from the site's own copy).

``tests/test_docs.py`` runs the same checks on its build (and a static check
that needs no browser).  Usage::

    python doc/check_site.py [HTML_DIR] [SCREENSHOT_DIR]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["PAGES", "browser", "raw_tex", "rendered_dom", "screenshot", "static_problems"]

#: The pages a reader opens first (paths in the built site, without ``.html``).
PAGES = (
    "index",
    "isrinject/pixel-model",
    "isrinject/tasks/isrinject.VisitInjectTask",
    "isrinject/_generated/tutorial",
    "isrinject/_generated/api/isrinject.engine.model",
)

#: Headless Chromium that touches nothing outside the page: no GPU, no
#: background networking, updates, sync or first-run dialogs, a throwaway profile.
CHROMIUM_OPTIONS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
)
#: Virtual time the page gets to run its scripts (MathJax typesetting) before the capture.
SCRIPT_TIME_MS = 20_000

#: TeX delimiters Sphinx writes around inline and display math.
_TEX = re.compile(r"\\[(\[]")
#: Elements whose text is not prose (code may quote TeX on purpose).
_NOT_PROSE = re.compile(r"<(script|style|pre|code|textarea)\b.*?</\1>", re.S | re.I)


def browser() -> str | None:
    """The Chromium executable (Debian's ``chromium``), or `None`."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(executable: str, page: Path, *options: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [executable, *CHROMIUM_OPTIONS, f"--user-data-dir={profile}",
             f"--virtual-time-budget={SCRIPT_TIME_MS}", *options, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120,
        )


def rendered_dom(executable: str, page: Path) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``)."""
    result = _run(executable, page, "--dump-dom")
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(f"chromium could not render {page}: {result.stderr[-2000:]}")
    return result.stdout


def screenshot(executable: str, page: Path, png: Path, width: int = 1400, height: int = 2400) -> Path:
    """A ``width`` × ``height`` screenshot of the page's top."""
    png.parent.mkdir(parents=True, exist_ok=True)
    result = _run(executable, page, f"--window-size={width},{height}", f"--screenshot={png.resolve()}")
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {page}: {result.stderr[-2000:]}")
    return png


def raw_tex(html: str) -> list[str]:
    """Raw TeX delimiters in the visible prose of ``html`` (code and scripts left out),
    each with some context."""
    prose = _NOT_PROSE.sub("", html)
    return [prose[max(0, m.start() - 40):m.end() + 40] for m in _TEX.finditer(prose)]


def static_problems(site: Path) -> list[str]:
    """What would keep the built site from reading the same offline: a page that loads a
    script or style sheet from another host, math outside the elements MathJax typesets,
    or a MathJax script that is not in the site."""
    problems = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text()
        name = page.relative_to(site)
        for url in re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="(https?:|//)[^"]*"', text):
            problems.append(f"{name}: loads {url}… from another host")
        # Sphinx writes math as <span class="math …">\(…\)</span> and <div class="math …">\[…\]</div>.
        outside = re.sub(r'<(span|div) class="math\b[^"]*">.*?</\1>', "", text, flags=re.S)
        problems.extend(f"{name}: TeX outside a math element: {context!r}" for context in raw_tex(outside))
        if 'class="math' in text:
            scripts = re.findall(r'<script\b[^>]*src="([^"?]*tex-[a-z-]+\.js)[^"]*"', text)
            if not scripts:
                problems.append(f"{name}: math but no MathJax script")
            problems.extend(
                f"{name}: MathJax script {src} is not in the site"
                for src in scripts if not (page.parent / src).resolve().is_file()
            )
    return problems


def main(argv: list[str]) -> int:
    doc = Path(__file__).resolve().parent
    site = Path(argv[1]) if len(argv) > 1 else doc / "_build" / "html"
    shots = Path(argv[2]) if len(argv) > 2 else doc / "_build" / "screenshots"
    problems = static_problems(site)
    executable = browser()
    if executable is None:
        problems.append("chromium not found (Debian: apt-get install chromium): no screenshots, no rendered check")
    else:
        for name in PAGES:
            page = site / f"{name}.html"
            png = screenshot(executable, page, shots / f"{name.replace('/', '_')}.png")
            print(f"{png}")
            problems.extend(f"{name}: raw TeX after rendering: {c!r}" for c in raw_tex(rendered_dom(executable, page)))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
