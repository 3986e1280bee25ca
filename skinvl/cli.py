"""The ``skinvl`` command line: one sub-command per workflow module.

Each workflow module (convert, generate, evaluation, train, hub) owns its options through a
``register_cli(subparsers)`` function, which derives its sub-command(s) from an options dataclass
with ``mm_skin.cli.add_command``. This file only assembles them, so a workflow's options live next
to the code that uses them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mm_skin.cli import add_subcommands, make_parser, run_main

# Order is the order of ``skinvl --help``.
WORKFLOW_MODULES = (
    "skinvl.convert",
    "skinvl.generate",
    "skinvl.evaluation",
    "skinvl.train",
    "skinvl.hub",
    "skinvl.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every workflow's sub-commands registered."""
    from skinvl import __version__

    parser = make_parser(
        "skinvl",
        "SkinVL, the MM-Skin dermatology vision-language model, in transformers: convert the "
        "authors' checkpoints, generate, evaluate, fine-tune and publish.",
        __version__,
    )
    subparsers = add_subcommands(parser)
    for name in WORKFLOW_MODULES:
        importlib.import_module(name).register_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skinvl`` console script; returns the process exit code."""
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
