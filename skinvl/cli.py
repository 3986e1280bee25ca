"""The ``skinvl`` command line: one sub-command per workflow module.

Each workflow module (convert, generate, evaluation, train, hub) owns its arguments through a
``register_cli(subparsers)`` function that adds its parser(s) and sets ``func`` to a callable
``(argparse.Namespace) -> int``. This file only assembles them, so a workflow's options live next
to the code that uses them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order of ``skinvl --help``.
WORKFLOW_MODULES = (
    "skinvl.convert",
    "skinvl.generate",
    "skinvl.evaluation",
    "skinvl.train",
    "skinvl.hub",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every workflow's sub-commands registered."""
    parser = argparse.ArgumentParser(
        prog="skinvl",
        description="SkinVL, the MM-Skin dermatology vision-language model, in transformers: "
        "convert the authors' checkpoints, generate, evaluate, fine-tune and publish.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in WORKFLOW_MODULES:
        importlib.import_module(name).register_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skinvl`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
