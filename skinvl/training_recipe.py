"""Recipes for ``skinvl train``: TRL-style YAML files of options, and the command's parser.

A recipe is a YAML mapping, as TRL's ``--config`` files are: its keys are ``skinvl train``'s own
options (:class:`skinvl.train.TrainOptions`: ``lora_r``, ``projector_lr``, ``template``...) and TRL
``SFTConfig`` fields (``learning_rate``, ``per_device_train_batch_size``...); an ``env`` mapping sets
environment variables. The MM-Skin paper's recipe ships in the package
(``skinvl/recipes/mm_skin_paper.yaml``) and is always the base: a recipe of yours changes only the
keys it names, and flags on the command line win over both::

    skinvl train --recipe my_recipe.yaml --model skinvl-tiny --data mm-skin --output out/lora

The trainer's options are TRL's own ``SFTConfig`` fields, each a flag (``--learning-rate``,
``--per-device-train-batch-size``, ``--report-to``...), never restated here. ``--recipe`` is the
spelling because ``--config`` already names the dataset config (``vqa``, ``instruct``); as in TRL,
``--config FILE.yaml`` (a name ending in ``.yaml`` or ``.yml``) also reads a recipe. The flags of
earlier releases (``--batch-size``, ``--epochs``, ``--grad-accum``, ``--lr-scheduler``,
``--num-workers``, ``--warmup-ratio``, ``--gradient-checkpointing``) still work.

Python use::

    from skinvl.train import TrainOptions, train
    from skinvl.train import recipe_options
    options = recipe_options("my_recipe.yaml", model="skinvl-tiny", data=["mm-skin"],
                             output="out/lora", training_args={"max_steps": 10})
    train(options)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import typing
from pathlib import Path
from typing import Any

RECIPE_DIR = Path(__file__).parent / "recipes"
PAPER_RECIPE = RECIPE_DIR / "mm_skin_paper.yaml"
RECIPE_SUFFIXES = (".yaml", ".yml")

# SFTConfig fields that are not flags: skinvl train's own options say them (--output,
# --resume-from-checkpoint), the chat template decides the loss masking, and the deprecated
# gradient_checkpointing* names would fight activation_checkpointing (--gradient-checkpointing
# is kept as a spelling of --activation-checkpointing).
NOT_FLAGS = frozenset({
    "output_dir", "resume_from_checkpoint", "assistant_only_loss", "completion_only_loss",
    "gradient_checkpointing", "gradient_checkpointing_kwargs",
})  # fmt: skip
# Flags of earlier releases -> the SFTConfig field they set.
OLD_FLAGS = {
    "--batch-size": "per_device_train_batch_size",
    "--epochs": "num_train_epochs",
    "--grad-accum": "gradient_accumulation_steps",
    "--lr-scheduler": "lr_scheduler_type",
    "--num-workers": "dataloader_num_workers",
    "--warmup-ratio": "warmup_steps",
    "--gradient-checkpointing": "activation_checkpointing",
}


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The mapping a recipe file holds (``env`` included); ValueError naming the file otherwise.

    A name without a folder or suffix that is not a file names a shipped recipe
    (``mm_skin_paper``).
    """
    import yaml

    path = Path(path)
    if not path.is_file() and path.suffix == "" and (RECIPE_DIR / f"{path}.yaml").is_file():
        path = RECIPE_DIR / f"{path}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
        raise ValueError(f"recipe {path}: no such file; give a YAML file or a shipped recipe ({shipped})")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"recipe {path}: not UTF-8 YAML ({err}); fix the file") from None
    if not isinstance(recipe, dict) or not all(isinstance(key, str) for key in recipe):
        raise ValueError(f"recipe {path}: expected a YAML mapping of option names to values")
    return recipe


@functools.cache
def paper_recipe() -> dict[str, Any]:
    """The shipped MM-Skin paper recipe (the defaults of ``skinvl train``)."""
    return read_recipe(PAPER_RECIPE)


@functools.cache
def trainer_fields() -> dict[str, dataclasses.Field]:
    """TRL ``SFTConfig`` fields that are ``skinvl train`` flags, by name, types resolved."""
    from trl import SFTConfig

    hints = typing.get_type_hints(SFTConfig)
    fields = {}
    for field in dataclasses.fields(SFTConfig):
        if field.init and field.name not in NOT_FLAGS:
            field.type = hints[field.name]
            fields[field.name] = field
    return fields


def split_recipe(recipe: dict[str, Any], own: type, source: str | Path) -> tuple[dict, dict]:
    """``recipe`` (without ``env``) as (own options, SFTConfig fields); unknown keys are an error."""
    own_names = {f.name for f in dataclasses.fields(own) if f.init}
    own_values, trainer = {}, {}
    for key, value in recipe.items():
        if key == "env":
            continue
        if key in own_names:
            own_values[key] = value
        elif key in trainer_fields():
            trainer[key] = value
        else:
            raise ValueError(
                f"recipe {source}: unknown option {key!r}; use a skinvl train option or a TRL "
                "SFTConfig field (skinvl train --help lists both)"
            )
    return own_values, trainer


def apply_env(recipe: dict[str, Any], source: str | Path) -> None:
    """Set the recipe's ``env`` mapping in ``os.environ``, as TRL does."""
    env = recipe.get("env", {})
    if not isinstance(env, dict):
        raise ValueError(f"recipe {source}: env must be a mapping of variable names to values")
    for key, value in env.items():
        os.environ[str(key)] = str(value)


def sft_values(options: Any) -> dict[str, Any]:
    """The ``SFTConfig`` keyword arguments of a run: paper recipe < ``--recipe`` < given flags."""
    _, values = split_recipe(paper_recipe(), type(options), PAPER_RECIPE)
    if options.recipe is not None:
        values.update(split_recipe(read_recipe(options.recipe), type(options), options.recipe)[1])
    values.update(options.training_args)
    return values


# --------------------------------------------------------------------------------------------
# The parser of `skinvl train`
# --------------------------------------------------------------------------------------------


def _recipe_in(args: list[str]) -> tuple[list[str], str | None]:
    """``args`` without a ``--config FILE.yaml`` (TRL's spelling), and the recipe named, if any."""
    recipe, rest, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--config" and i + 1 < len(args) and args[i + 1].endswith(RECIPE_SUFFIXES):
            recipe = args[i + 1]
            i += 2
            continue
        if arg == "--recipe" and i + 1 < len(args):
            recipe = args[i + 1]
        elif arg.startswith("--recipe="):
            recipe = arg.split("=", 1)[1]
        rest.append(arg)
        i += 1
    return rest, recipe


@functools.cache
def train_parser_class(own: type) -> type[argparse.ArgumentParser]:
    """The parser class of ``skinvl train``: its own options (the dataclass ``own``), then TRL's
    ``SFTConfig`` fields (added on first parse, so ``skinvl --help`` does not import TRL and torch)."""
    from mm_skin.cli import _add_field, options_parser_class

    def add_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        if field.metadata.get("cli", True):
            _add_field(parser, field)

    class TrainParser(options_parser_class()):
        """Parses TrainOptions + SFTConfig flags over the recipe's values (``training_args``)."""

        _parse_dataclass_field = staticmethod(add_field)
        _trainer_flags_added = False

        def _add_trainer_flags(self) -> None:
            if self._trainer_flags_added:
                return
            self._trainer_flags_added = True
            group = self.add_argument_group("trainer options (TRL SFTConfig fields)")
            for field in trainer_fields().values():
                if field.type == (bool | None):  # --bf16 / --no-bf16; unset means "decide"
                    flag = f"--{field.name.replace('_', '-')}"
                    group.add_argument(flag, dest=field.name, default=field.default,
                                       action=argparse.BooleanOptionalAction,
                                       help=field.metadata.get("help"))  # fmt: skip
                else:
                    _add_field(group, field)
            for flag, dest in OLD_FLAGS.items():
                like = next(a for a in self._actions if a.dest == dest and a.option_strings)
                extra = {} if like.nargs == 0 else {"type": like.type}
                group.add_argument(flag, dest=dest, action=type(like), default=argparse.SUPPRESS,
                                   help=argparse.SUPPRESS, **extra)  # fmt: skip
            self.set_defaults(**split_recipe(paper_recipe(), own, PAPER_RECIPE)[1])
            self._base_defaults = ([a.default for a in self._actions], dict(self._defaults))

        def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
            args = list(sys.argv[1:] if args is None else args)
            if any(arg.startswith("--print-accelerate-config") for arg in args):
                return super().parse_known_args(args, namespace)  # prints a path: no TRL import
            self._add_trainer_flags()
            args, recipe = _recipe_in(args)
            defaults, parser_defaults = self._base_defaults  # a recipe of an earlier parse is gone
            for action, default in zip(self._actions, defaults, strict=True):
                action.default = default
            self._defaults = dict(parser_defaults)
            recipe_trainer: dict[str, Any] = {}
            if recipe is not None:
                try:
                    values = read_recipe(recipe)
                    own_values, recipe_trainer = split_recipe(values, own, recipe)
                    apply_env(values, recipe)
                except ValueError as err:
                    self.error(str(err))  # usage and the one line naming the file; exit 2
                self.set_defaults(**own_values, **recipe_trainer)
            namespace, rest = super().parse_known_args(args, namespace)
            given = self._given(args)
            namespace.training_args = {
                name: vars(namespace).pop(name) for name in trainer_fields()
                if name in given or name in recipe_trainer
                or name in paper_recipe()  # the paper's values are recorded with the run
            }  # fmt: skip
            for name in trainer_fields():
                vars(namespace).pop(name, None)
            namespace.recipe = recipe
            return namespace, rest

        def _given(self, args: list[str]) -> set[str]:
            """The destinations that ``args`` set themselves (not by a default)."""
            saved = [(action, action.default) for action in self._actions]
            for action, _ in saved:
                action.default = argparse.SUPPRESS
            try:
                return set(vars(super().parse_known_args(args)[0]))
            finally:
                for action, default in saved:
                    action.default = default

    return TrainParser
