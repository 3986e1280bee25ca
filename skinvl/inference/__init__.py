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

from skinvl.lazy_exports import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, {name: f"{__name__}.{module}" for name, module in _NAMES.items()})

__all__ = sorted(_NAMES)
