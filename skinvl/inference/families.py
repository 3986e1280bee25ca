"""The one table of model-family facts: module names and prompt quirks, by ``config.model_type``.

Everything that differs between vision-language families lives here as data, never as a branch
in loading, prompting, batching or training code. A family absent from :data:`FAMILIES` gets
:data:`DEFAULT_FAMILY` (the transformers LLaVA layout and its own chat template), which fits
LLaVA, SkinVL, Gemma 3, PaliGemma, Mistral 3 and most image-text-to-text models of transformers 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Family:
    """What one family of image-text-to-text models looks like to our code.

    ``projector``, ``vision_tower`` and ``language_model`` are the leaf names of those modules
    (as found in ``model.named_modules()``); training gives LoRA to the language model's linear
    layers, trains the projector in full and freezes the vision tower. ``prompt`` is how a
    question becomes the processor's text: ``"chat"`` renders ONE user turn [image, text] with
    the chat template; ``"bare"`` passes the question as is (the processor adds image tokens).
    """

    name: str
    projector: str = "multi_modal_projector"
    vision_tower: str = "vision_tower"
    language_model: str = "language_model"
    prompt: Literal["chat", "bare"] = "chat"


DEFAULT_FAMILY = Family("llava-layout")

_IDEFICS = {"projector": "connector", "vision_tower": "vision_model", "language_model": "text_model"}

# model_type -> Family. Only families that differ from DEFAULT_FAMILY are listed.
FAMILIES: dict[str, Family] = {
    # PaliGemma is prompted with bare text: its processor adds the image tokens, <bos> and "\n".
    "paligemma": Family("paligemma", prompt="bare"),
    "idefics3": Family("idefics3", **_IDEFICS),
    "smolvlm": Family("smolvlm", **_IDEFICS),
}


def family_of(model_or_config: Any) -> Family:
    """The :class:`Family` of a model, a config, or a ``model_type`` string."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = config if isinstance(config, str) else getattr(config, "model_type", None)
    return FAMILIES.get(model_type, DEFAULT_FAMILY)


__all__ = ["DEFAULT_FAMILY", "FAMILIES", "Family", "family_of"]
