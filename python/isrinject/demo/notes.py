"""The demo's last words: where its repository is (or was) and how to use it.

`repository_note` is what ``isrinject demo`` prints at the end: whether the
repository was kept (``--repo DIR`` or ``--keep``) or removed (the default
temporary directory), and for a kept one the copy-paste commands that run
the injection again and open the tutorial notebook on it.
"""

from __future__ import annotations

__all__ = ["repository_note", "tutorial_notebook"]

import shlex
from collections.abc import Sequence
from pathlib import Path

from .repo import RepoLayout


def tutorial_notebook() -> str:
    """Path of ``doc/isrinject/tutorial.ipynb`` in the source tree, or its name when
    isrinject runs from an installed package (no doc/ beside it)."""
    candidate = Path(__file__).resolve().parents[3] / "doc" / "isrinject" / "tutorial.ipynb"
    return str(candidate) if candidate.is_file() else "doc/isrinject/tutorial.ipynb"


def repository_note(
    root: str | Path,
    *,
    kept: bool,
    inputs: str = RepoLayout.inputs,
    pipetask_command: Sequence[str] | None = None,
    output: str = "u/demo/inject-again",
) -> str:
    """The lines ``isrinject demo`` ends with.

    Parameters
    ----------
    root
        The repository directory.
    kept
        Whether it is still there (``--repo`` or ``--keep``).
    inputs
        The input collection of the demo's runs.
    pipetask_command
        The ``pipetask`` command the demo ran (its ``-o``/``--output-run``
        are replaced by ``output``); `None` if it did not get that far.
    output
        The output collection of the command printed.
    """
    root = Path(root)
    if not kept:
        return (f"Removed the temporary demo repository {root} "
                "(keep it with --keep, or build it where you like with --repo DIR).")
    lines = [f"The demo repository is kept at {root}.", "Run the injection on it again:"]
    command = _rerun_command(pipetask_command, root, inputs, output)
    lines.append("  " + shlex.join(command))
    lines += [
        "Open the tutorial notebook on it:",
        f"  ISRINJECT_DEMO_REPO={shlex.quote(str(root))} jupyter lab {shlex.quote(tutorial_notebook())}",
    ]
    return "\n".join(lines)


def _rerun_command(command: Sequence[str] | None, root: Path, inputs: str, output: str) -> list[str]:
    """The demo's pipetask command with a new output collection (and no
    --output-run, so pipetask makes a new timestamped RUN)."""
    if not command:
        return ["pipetask", "run", "-b", str(root), "-i", inputs, "-o", output, "-p", "pipelines/inject.yaml",
                "--register-dataset-types"]
    rerun: list[str] = []
    items = iter(command)
    for item in items:
        if item == "--output-run":
            next(items, None)
            continue
        rerun.append(item)
        if item in ("-o", "--output"):
            next(items, None)
            rerun.append(output)
    return rerun
