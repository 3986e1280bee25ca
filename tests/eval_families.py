"""Tiny random checkpoints of other vision-language families, built in code and saved to a folder.

Each builder writes a real ``save_pretrained`` folder (model + processor) that
``AutoModelForImageTextToText`` / ``AutoProcessor`` load, with PIL image processors (no
torchvision) and the toy byte-level tokenizer of ``skinvl.presets``. Chat templates follow the
shape of the families' released templates (LLaVA-1.5 "USER: <image>\\n... ASSISTANT:", Gemma 3
turns, SmolVLM / Idefics3 "User:<image>..."); PaliGemma has none, as released.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AddedToken,
    AutoTokenizer,
    CLIPVisionConfig,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3Processor,
    Gemma3TextConfig,
    GemmaConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    Idefics3VisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipVisionConfig,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

from skinvl.presets import build_tiny_tokenizer

LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    " {% else %}ASSISTANT: {{ message['content'][0]['text'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% else %}{{ item['text'] | trim }}{% endif %}{% endfor %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# SmolVLM / Idefics3's template shape: "<|im_start|>User:<image>{q}<end_of_utterance>\nAssistant:".
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}"
    "{% elif item['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
_SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}


def _siglip() -> SiglipVisionConfig:
    return SiglipVisionConfig(**_SMALL, image_size=32, patch_size=8)


def _save(model_class, config, processor, folder: Path) -> Path:
    """A seeded random ``model_class(config)`` saved with ``processor`` (pad / eos from its tokenizer)."""
    torch.manual_seed(0)
    model = model_class(config).eval()
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_llava(folder: Path) -> Path:
    """LlavaForConditionalGeneration: tiny CLIP tower + Llama text model, LLaVA-1.5 template."""
    tokenizer = build_tiny_tokenizer()
    vision = CLIPVisionConfig(**_SMALL, image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(**_SMALL, vocab_size=len(tokenizer), num_key_value_heads=2, max_position_embeddings=512)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE,
    )
    return _save(LlavaForConditionalGeneration, config, processor, folder)


def build_gemma3(folder: Path) -> Path:
    """Gemma3ForConditionalGeneration: tiny SigLIP tower + Gemma 3 text model, Gemma turn template."""
    specials = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    base = build_tiny_tokenizer()
    base.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials.values()], special_tokens=True)
    base.save_pretrained(folder / "tokenizer-base")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer-base", extra_special_tokens=specials)
    text = Gemma3TextConfig(**_SMALL, vocab_size=len(tokenizer), num_key_value_heads=1, head_dim=16,
                            max_position_embeddings=512, sliding_window=64)
    config = Gemma3Config(text_config=text, vision_config=_siglip(), mm_tokens_per_image=4,
                          boi_token_index=tokenizer.boi_token_id, image_token_index=tokenizer.image_token_id,
                          eoi_token_index=tokenizer.convert_tokens_to_ids(specials["eoi_token"]))
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessorPil(size={"height": 32, "width": 32}),
                                tokenizer=tokenizer, image_seq_length=4, chat_template=GEMMA3_TEMPLATE)
    return _save(Gemma3ForConditionalGeneration, config, processor, folder)


def build_paligemma(folder: Path) -> Path:
    """PaliGemmaForConditionalGeneration: tiny SigLIP + Gemma; no chat template (prompted with bare text)."""
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16  # (32 / 8) ** 2 patches
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=build_tiny_tokenizer())
    text = GemmaConfig(**_SMALL, vocab_size=len(processor.tokenizer), num_key_value_heads=1, head_dim=16)
    config = PaliGemmaConfig(text_config=text, vision_config=_siglip(), image_token_index=processor.image_token_id,
                             projection_dim=32)
    return _save(PaliGemmaForConditionalGeneration, config, processor, folder)


def build_idefics3(folder: Path) -> Path:
    """Idefics3ForConditionalGeneration (SmolVLM's architecture): tiny tower + Llama, no image splitting."""
    tokenizer = build_tiny_tokenizer()
    extra = ["<fake_token_around_image>", "<end_of_utterance>", "<global-img>"]
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in extra], special_tokens=True)
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
                                                do_image_splitting=False)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=IDEFICS3_TEMPLATE)
    text = LlamaConfig(**_SMALL, vocab_size=len(processor.tokenizer), num_key_value_heads=2, max_position_embeddings=512)
    config = Idefics3Config(vision_config=Idefics3VisionConfig(**_SMALL, image_size=32, patch_size=8), text_config=text,
                            scale_factor=2, image_token_id=processor.image_token_id)
    return _save(Idefics3ForConditionalGeneration, config, processor, folder)


FAMILIES = {"llava": build_llava, "gemma3": build_gemma3, "paligemma": build_paligemma, "idefics3": build_idefics3}
