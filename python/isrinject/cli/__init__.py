"""``isrinject`` command line: one sub-command per module.

Each sub-command module provides ``add_parser(subparsers)`` which registers
an ``argparse`` sub-parser whose ``func`` default takes the parsed namespace
and returns an exit code.  Modules are imported lazily so ``--help`` is fast.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import importlib
from collections.abc import Sequence

#: Modules that contribute sub-commands (in ``--help`` order).
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "isrinject.demo.cli",
    "isrinject.cli.catalog",
    "isrinject.cli.inject",
    "isrinject.diagnostics.cli",
    "isrinject.cli.pipeline",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="isrinject",
        description="ISR-consistent synthetic source injection into Rubin visit images.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # Only tolerate the sub-command module itself being absent.
            if err.name != module_name and not module_name.startswith(str(err.name) + "."):
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)

