"""How a command names and loads its model: :class:`ModelOptions`, shared by every command that loads one.

Torch-free on purpose: ``--help`` of every command builds its parser from these options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skinvl.prompt_templates import DEFAULT_TEMPLATE, PROMPT_TEMPLATES

# Commands that always need a local model redeclare ``model`` as required with this same help.
MODEL_HELP = {"help": "preset (skinvl-tiny), checkpoint folder or Hub id: SkinVL, the authors' format, or any "
              "AutoModelForImageTextToText checkpoint (LLaVA, Gemma 3, Idefics3, PaliGemma, ...)"}


class ModelError(ValueError):
    """A model that cannot be loaded or prompted; the message names the model and the fix."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@dataclass(kw_only=True)
class ModelOptions:
    """How to load the model under test (shared by generate, eval, demo, train and convert)."""

    model: str | None = field(default=None, metadata=MODEL_HELP)
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "allow the checkpoint's own Python code (only for checkpoints you trust)"})
    dtype: str | None = field(default=None, metadata={"help": "torch dtype, e.g. bfloat16, float16, float32"})
    device_map: str | None = field(default=None, metadata={"help": "e.g. cuda, cpu or auto (default: as loaded)"})
    attn_implementation: str | None = field(default=None, metadata={
        "help": "attention kernel, e.g. sdpa, eager, flash_attention_2"})
    vision_tower: str | None = field(default=None, metadata={
        "help": "the authors' format only: CLIP vision tower folder or Hub id (replaces the checkpoint's "
        "mm_vision_tower; needed when that names a path outside the checkpoint folder)"})
    template: str | None = field(default=None, metadata={
        "help": "named chat template of the processor (SkinVL: " + " or ".join(PROMPT_TEMPLATES)
        + f"; the paper evaluates with {DEFAULT_TEMPLATE})"})
    chat_template: str | None = field(default=None, metadata={
        "help": "Jinja chat template FILE replacing the model's own (for models without one)"})


__all__ = ["MODEL_HELP", "ModelError", "ModelOptions", "first_line"]
