"""The inference core: loading, the family table, prompts, batching, decoding and image opening.

generate, evaluation, demo, train and convert call it; it calls none of them. One module per job:

- :mod:`~skinvl.inference.options`: ``ModelOptions`` (the model flags of every command), ``ModelError``;
- :mod:`~skinvl.inference.loading`: THE loader (presets, SkinVL, the authors' format, any
  ``AutoModelForImageTextToText`` checkpoint), ``LoadedModel``, the weights hash;
- :mod:`~skinvl.inference.families`: the family table (prompt style, module names);
- :mod:`~skinvl.inference.prompts`: chat prompts per family, named templates, ``--chat-template``,
  rendering within time and size limits;
- :mod:`~skinvl.inference.batching`: ``iter_answers``, ``answer_batch``, ``LocalAnswerer``;
- :mod:`~skinvl.inference.decoding`: the decoding presets (greedy, the paper's);
- :mod:`~skinvl.inference.images`: THE conversion of any image to 8-bit RGB, the lazy image list.

Importing this package loads none of them (nor torch); names resolve on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule defining it
_NAMES = {
    "ModelError": "options", "ModelOptions": "options", "MODEL_HELP": "options",
    "LoadedModel": "loading", "load": "loading", "load_model": "loading", "weights_hash": "loading",
    "FAMILIES": "families", "Family": "families", "family_of": "families",
    "TemplateError": "prompts", "build_prompt": "prompts", "chat_prompt": "prompts", "family_prompt": "prompts",
    "LocalAnswerer": "batching", "answer_batch": "batching", "iter_answers": "batching",
    "DECODINGS": "decoding", "decoding_kwargs": "decoding",
    "ImageFileError": "images", "LazyImages": "images", "open_rgb": "images", "to_rgb": "images",
}
_SUBMODULES = ("batching", "decoding", "families", "images", "loading", "options", "prompts")


def __getattr__(name: str) -> Any:
    """Resolve the public names and submodules on first use."""
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES, *_SUBMODULES})


__all__ = sorted(_NAMES)
