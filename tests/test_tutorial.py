"""doc/isrinject/tutorial.ipynb as kept in git: stored without outputs.

The notebook is executed once per test run, by the documentation build of
tests/test_docs.py (myst-nb runs it on an ``isrinject demo --bands u
--detectors 0`` repository); ``test_docs.test_tutorial_finds_the_isr_relation``
checks its printed results against that repository.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from isrinject.demo.notes import repository_note

NOTEBOOK = Path(__file__).resolve().parents[1] / "doc" / "isrinject" / "tutorial.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    # It reads the demo repository the documentation build provides, and prints its results last.
    assert "ISRINJECT_DEMO_REPO" in code[0].source
    assert "print(json.dumps(results))" in code[-1].source


def test_demo_note_when_the_repository_is_removed() -> None:
    """B81: without --keep/--repo the demo says it removed its temporary repository and how to keep it."""
    assert repository_note("/tmp/isrinject-demo-x", kept=False) == (
        "Removed the temporary demo repository /tmp/isrinject-demo-x (keep it with --keep, or build it where "
        "you like with --repo DIR)."
    )
    command = ["pipetask", "run", "-b", "R", "-i", "I", "-o", "u/demo/inject", "--output-run", "u/demo/inject/T",
               "-p", "P"]
    note = repository_note("R", kept=True, inputs="I", pipetask_command=command).splitlines()
    assert note[2] == "  pipetask run -b R -i I -o u/demo/inject-again -p P"
