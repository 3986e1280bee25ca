"""SkinVL configuration: a LLaVA-1.5 configuration whose defaults describe SkinVL-7B.

SkinVL (MM-Skin, arXiv 2505.06152) is LLaVA-Med v1.5 Mistral-7B fine-tuned on dermatology data:
CLIP ViT-L/14 at 336 px (second-to-last layer, CLS dropped, 576 patch tokens), a two-layer GELU
projector and a Mistral-7B language model (rope_theta 1e6, no sliding window). The only fields
added to ``LlavaConfig`` record how the checkpoint expects to be prompted and its images prepared.

This file is copied next to saved checkpoints for ``trust_remote_code`` loading, so it imports
only from transformers and its sibling module files, relatively.
"""

from __future__ import annotations

from transformers import AutoConfig, LlavaConfig
from transformers.configuration_utils import SubConfigSpec

from .processing_skinvl import DEFAULT_TEMPLATE, IMAGE_ASPECT_RATIOS, PROMPT_TEMPLATES, check_choice

# CLIP ViT-L/14-336 (openai/clip-vit-large-patch14-336), vision part only.
_VISION_DEFAULTS = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 336,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
# LLaVA-Med v1.5 Mistral-7B (Mistral-7B-Instruct-v0.2 base) plus one row for the <image> token.
_TEXT_DEFAULTS = {
    "vocab_size": 32001,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1e6,
    "sliding_window": None,
    "tie_word_embeddings": False,
}


class SkinVLConfig(LlavaConfig):
    """Configuration of a SkinVL model; the defaults are SkinVL-7B.

    Besides the ``LlavaConfig`` fields it records ``prompt_template`` (``"mistral_instruct"``, the
    paper's evaluation prompt, or ``"vicuna_v1"``, the training prompt) and ``image_aspect_ratio``
    (``"pad"`` or ``"crop"``), which the processor uses as its defaults.
    """

    model_type = "skinvl"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="clip_vision_model", init_kwargs=_VISION_DEFAULTS
        ),
        "text_config": SubConfigSpec(
            config_class=AutoConfig, model_type="mistral", init_kwargs=_TEXT_DEFAULTS
        ),
    }

    image_token_index: int = 32000
    image_seq_length: int = 576
    prompt_template: str = DEFAULT_TEMPLATE
    image_aspect_ratio: str = "pad"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_choice("SkinVLConfig.prompt_template", self.prompt_template, PROMPT_TEMPLATES)
        check_choice("SkinVLConfig.image_aspect_ratio", self.image_aspect_ratio, IMAGE_ASPECT_RATIOS)


__all__ = ["SkinVLConfig"]
