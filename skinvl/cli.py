"""The ``skinvl`` command line: one sub-command per workflow module, imported only when chosen.

Each workflow module (convert, generate, evaluation, train, hub, demo) owns its options through a
``register_cli(subparsers)`` function, which derives its sub-command(s) from an options dataclass
with ``mm_skin.cli.add_command``. This file only lists them: ``skinvl --help`` and
``skinvl --version`` import none of them (no torch, no transformers), and ``skinvl CMD ...``
imports only CMD's module.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mm_skin.cli import add_command_list, add_subcommands, chosen_command, make_parser, run_main

# command -> (the module whose register_cli adds it, its line in `skinvl --help`). The same help
# is given by the module's add_command (a test checks they agree). Order is the order of --help.
COMMANDS = {
    "convert": ("skinvl.convert", "convert the authors' LLaVA-format SkinVL checkpoint (or any model skinvl loads) "
                "to a native SkinVL or stock LLaVA one"),
    "generate": ("skinvl.generate", "answer a question about an image with a vision-language model"),
    "eval": ("skinvl.evaluation", "evaluate any VLM: VQA (paper + standard metrics), zero-shot and linear-probe "
             "classification"),
    "train": ("skinvl.train", "LoRA fine-tune SkinVL or any image-text-to-text model (the MM-Skin paper's recipe) "
              "on MM-Skin-format data"),
    "push": ("skinvl.hub", "validate a SkinVL checkpoint folder (or a Space) and publish it to the Hub in one commit"),
    "card": ("skinvl.hub", "preview the model card `skinvl push` would render for a checkpoint folder (offline)"),
    "demo": ("skinvl.demo", "try a model in the browser (Gradio), or export that app as a Hugging Face Space"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only the sub-command named in ``argv`` (if any) is fully registered."""
    from skinvl import __version__

    parser = make_parser(
        "skinvl",
        "SkinVL, the MM-Skin dermatology vision-language model, in transformers: convert the "
        "authors' checkpoints, generate, evaluate, fine-tune and publish.",
        __version__,
    )
    chosen = chosen_command(sys.argv[1:] if argv is None else argv, COMMANDS)
    if chosen is None:  # --help, --version, no or an unknown command: the list is all argparse needs
        add_command_list(parser, {name: help_line for name, (_, help_line) in COMMANDS.items()})
        return parser
    importlib.import_module(COMMANDS[chosen][0]).register_cli(add_subcommands(parser))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skinvl`` console script; returns the process exit code."""
    return run_main(build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
