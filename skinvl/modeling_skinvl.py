"""SkinVL models: the transformers LLaVA classes under SkinVL's configuration.

Nothing is re-implemented: the forward pass, generation and weight layout are LLaVA's. What is ours
is ``save_pretrained``, which writes a checkpoint that loads with ``trust_remote_code=True`` for
people who do not have the ``skinvl`` package (all four Auto classes in ``auto_map`` and the module
files beside the weights).

This file is copied next to saved checkpoints, so it imports only transformers/torch and its
sibling module files, relatively.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LlavaForConditionalGeneration, LlavaModel

from .configuration_skinvl import SkinVLConfig

#: ``auto_map`` written into every saved SkinVL config.json (module names are the files beside it).
AUTO_MAP = {
    "AutoConfig": "configuration_skinvl.SkinVLConfig",
    "AutoModel": "modeling_skinvl.SkinVLModel",
    "AutoModelForImageTextToText": "modeling_skinvl.SkinVLForConditionalGeneration",
    "AutoProcessor": "processing_skinvl.SkinVLProcessor",
}
# Copied next to a saved checkpoint for trust_remote_code loading (they import only transformers).
MODULE_FILES = ("configuration_skinvl.py", "modeling_skinvl.py", "processing_skinvl.py", "prompt_templates.py")


class SkinVLModel(LlavaModel):
    """SkinVL without the language-modelling head (vision tower, projector, Mistral decoder)."""

    config_class = SkinVLConfig


class SkinVLForConditionalGeneration(LlavaForConditionalGeneration):
    """SkinVL for image-text-to-text generation (LLaVA-1.5 architecture)."""

    config_class = SkinVLConfig

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """Save weights and config, plus the module files and ``auto_map`` for remote code.

        ``register_for_auto_class`` would only record the class's own Auto class, so the full map
        (AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor) is written here.
        """
        super().save_pretrained(save_directory, *args, **kwargs)
        write_remote_code_files(save_directory)


def write_remote_code_files(save_directory: str | os.PathLike) -> None:
    """Copy the SkinVL module files into ``save_directory`` and set ``auto_map`` in its config.json."""
    save_directory = Path(save_directory)
    here = Path(__file__).resolve().parent
    for name in MODULE_FILES:
        source = here / name
        if source.is_file() and source.resolve() != (save_directory / name).resolve():
            shutil.copyfile(source, save_directory / name)
    config_file = save_directory / "config.json"
    if config_file.is_file():
        data = json.loads(config_file.read_text(encoding="utf-8"))
        data["auto_map"] = {**data.get("auto_map", {}), **AUTO_MAP}
        config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def parse_dtype(value: Any) -> torch.dtype | None:
    """``"bfloat16"`` / ``"torch.float16"`` / a ``torch.dtype`` -> that floating-point dtype; None or "auto" -> None.

    >>> parse_dtype("bfloat16")
    torch.bfloat16
    """
    if value is None or value == "auto":
        return None
    if isinstance(value, torch.dtype):
        return value
    found = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise ValueError(f"dtype {value!r} is not a floating-point torch dtype; use float32, bfloat16 or float16.")
    return found


def set_generation_tokens(
    generation_config: GenerationConfig, tokenizer: Any, declared: Mapping[str, Any] | None = None
) -> GenerationConfig:
    """Set BOS / EOS / PAD ids: ``declared`` (a checkpoint's config.json) wins over the tokenizer.

    PAD falls back to EOS when the tokenizer has no pad token (as the authors' evaluation did).
    """
    declared = declared or {}
    generation_config.bos_token_id = declared.get("bos_token_id", tokenizer.bos_token_id)
    generation_config.eos_token_id = declared.get("eos_token_id", tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id
    generation_config.pad_token_id = pad if pad is not None else generation_config.eos_token_id
    return generation_config


__all__ = [
    "SkinVLModel", "SkinVLForConditionalGeneration", "AUTO_MAP", "write_remote_code_files", "parse_dtype",
    "set_generation_tokens",
]
