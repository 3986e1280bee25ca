"""SkinVL processor: CLIP image pre-processing, ``<image>`` expansion and SkinVL's prompt templates.

The class is LLaVA's processor; what is SkinVL-specific is the data around it:

* two chat templates, named as in the authors' LLaVA code: ``mistral_instruct`` (every evaluation
  in the paper) and ``vicuna_v1`` (training). For one user turn with an image they render exactly
  the original ``conv.get_prompt()`` strings (``[INST] <image>\\n{q} [/INST]`` and the Vicuna system
  sentence + `` USER: <image>\\n{q} ASSISTANT:``). Assistant content is wrapped in
  ``{% generation %}`` so ``apply_chat_template(..., return_assistant_tokens_mask=True)`` works.
  Images are placed first in a user turn, as LLaVA's ``preprocess_multimodal`` does.
* ``image_processor(image_aspect_ratio)``: "pad" (expand to a square in the CLIP mean colour, as in
  training; LLaVA's ``expand2square``) or "crop" (shortest-edge resize + centre crop, as the
  authors' evaluation scripts did).

The templates, their names and the image modes are in ``prompt_templates.py`` (no imports at all,
so the command lines' ``--help`` can name them without transformers). Both files are copied next
to saved checkpoints for ``trust_remote_code`` loading, so they import only from transformers and
each other.
"""

from __future__ import annotations

from transformers import LlavaProcessor

from .prompt_templates import (
    CHAT_TEMPLATES,
    DEFAULT_TEMPLATE,
    IMAGE_ASPECT_RATIOS,
    PROMPT_TEMPLATES,
    TRAINING_TEMPLATE,
    VICUNA_V1_SYSTEM,
    chat_templates,
    check_choice,
)


class SkinVLProcessor(LlavaProcessor):
    """LLaVA processor with SkinVL's chat templates ("mistral_instruct" by default, "vicuna_v1").

    ``processor(images=..., text=..., return_tensors="pt")`` expands every ``<image>`` into one
    token per vision patch (CLS dropped). ``processor.apply_chat_template(messages,
    chat_template="vicuna_v1")`` selects a template by name; without the argument the "default"
    template is used.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        patch_size=None,
        vision_feature_select_strategy=None,
        chat_template=None,
        image_token="<image>",
        num_additional_image_tokens=1,
        **kwargs,
    ):
        # num_additional_image_tokens=1: CLIP prepends a CLS position, which the "default"
        # feature strategy drops again, so an image is (size // patch) ** 2 tokens.
        if chat_template is None:
            chat_template = chat_templates()
        elif isinstance(chat_template, dict):
            # A saved processor carries its own templates; add any missing named one.
            chat_template = {**CHAT_TEMPLATES, **chat_template}
            chat_template.setdefault("default", CHAT_TEMPLATES[DEFAULT_TEMPLATE])
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=patch_size,
            vision_feature_select_strategy=vision_feature_select_strategy,
            chat_template=chat_template,
            image_token=image_token,
            num_additional_image_tokens=num_additional_image_tokens,
            **kwargs,
        )
        self._share_templates_with_tokenizer()

    def _share_templates_with_tokenizer(self) -> None:
        # A base model's tokenizer (e.g. Mistral's own [INST] template) would otherwise render
        # other prompts through ``processor.tokenizer.apply_chat_template`` than the processor.
        if self.tokenizer is not None:
            self.tokenizer.chat_template = dict(self.chat_template)

    def set_default_template(self, name: str) -> None:
        """Make the named template (``mistral_instruct`` or ``vicuna_v1``) the default one."""
        templates = self.chat_template if isinstance(self.chat_template, dict) else {}
        if name not in templates or name == "default":
            raise ValueError(
                f"Unknown chat template {name!r}; this processor has "
                f"{sorted(k for k in templates if k != 'default')}."
            )
        self.chat_template = {**templates, "default": templates[name]}
        self._share_templates_with_tokenizer()

    def set_image_aspect_ratio(self, mode: str) -> None:
        """Choose "pad" (square in the CLIP mean colour, as in training) or "crop" (centre crop)."""
        check_choice("image_aspect_ratio", mode, IMAGE_ASPECT_RATIOS)
        self.image_processor.do_pad = mode == "pad"


__all__ = [
    "SkinVLProcessor", "CHAT_TEMPLATES", "PROMPT_TEMPLATES", "DEFAULT_TEMPLATE", "TRAINING_TEMPLATE",
    "IMAGE_ASPECT_RATIOS",
    "check_choice", "chat_templates", "VICUNA_V1_SYSTEM",
]


# Saved processors carry an ``auto_map`` entry and this file, for trust_remote_code users.
SkinVLProcessor.register_for_auto_class("AutoProcessor")


def build_image_processor(
    image_size: int,
    *,
    image_aspect_ratio: str = "pad",
    image_mean: list[float] | None = None,
    image_std: list[float] | None = None,
    resample: int = 3,
):
    """Return LLaVA's PIL image processor set up like CLIP's at ``image_size``.

    "pad" first expands the image to a square filled with ``int(255 * mean)`` per channel, pasted
    centred (LLaVA's ``expand2square``); "crop" skips that. Both then resize the shortest edge
    (bicubic) to ``image_size``, centre-crop, rescale and normalise. The PIL backend is used on
    purpose: it is what the reference pixel values were made with, and it needs no torchvision.
    """
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    check_choice("image_aspect_ratio", image_aspect_ratio, IMAGE_ASPECT_RATIOS)
    return LlavaImageProcessorPil(
        do_pad=image_aspect_ratio == "pad",
        size={"shortest_edge": int(image_size)},
        crop_size={"height": int(image_size), "width": int(image_size)},
        image_mean=list(image_mean if image_mean is not None else OPENAI_CLIP_MEAN),
        image_std=list(image_std if image_std is not None else OPENAI_CLIP_STD),
        resample=resample,
    )


__all__ += ["build_image_processor"]
