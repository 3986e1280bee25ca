"""Named SkinVL presets: ``skinvl-7b`` (the real architecture, config only) and ``skinvl-tiny``.

``skinvl-tiny`` is the SkinVL architecture at toy size with RANDOM weights and a tokenizer built in
code (a byte-fallback BPE in the LLaMA layout: <unk>=0, <s>=1, </s>=2, 256 byte pieces, then
merges, plus an ``<image>`` token). It exists for the demo and for tests; its answers are noise.
The JSON files in ``skinvl/presets/`` hold the configurations.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

PRESET_NAMES = ("skinvl-7b", "skinvl-tiny")

# A few sentences in the register of the MM-Skin VQA data plus the template words, so that the toy
# tokenizer has real merges for what the tests and the demo say.
_TINY_CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "USER: ASSISTANT: [INST] [/INST] <<SYS>> <</SYS>>",
    "What type of lesion is shown in this image? Describe the color and border of the lesion.",
    "The image shows an erythematous plaque with silver scale on the extensor surface.",
    "Dermoscopy reveals an atypical pigment network, irregular dots and globules.",
    "Histopathology shows acanthosis, parakeratosis and a dense lymphocytic infiltrate in the dermis.",
    "A well demarcated pink papule with a pearly rolled border and arborizing vessels.",
    "Which modality is this: clinical, dermoscopic or pathology? The diagnosis is melanoma, nevus, "
    "basal cell carcinoma, psoriasis, eczema, or seborrheic keratosis.",
    "Is the lesion symmetric? What is the most likely diagnosis? Answer in one sentence.",
]


def _read_preset(name: str) -> dict[str, Any]:
    if name not in PRESET_NAMES:
        raise ValueError(f"Unknown SkinVL preset {name!r}; the presets are {PRESET_NAMES}.")
    text = resources.files("skinvl").joinpath("presets", f"{name}.json").read_text(encoding="utf-8")
    data = json.loads(text)
    data.pop("_comment", None)
    return data


def preset_config(name: str, **overrides: Any):
    """Return the ``SkinVLConfig`` of preset ``name`` ("skinvl-7b" or "skinvl-tiny")."""
    from .configuration_skinvl import SkinVLConfig

    data = _read_preset(name)
    data.pop("model_type", None)
    data.update(overrides)
    return SkinVLConfig(**data)


def build_tiny_tokenizer():
    """Build the toy LLaMA-layout tokenizer (byte-fallback BPE + ``<image>``) in memory."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False)
    trainer_tok.train_from_iterator(_TINY_CORPUS, trainer=trainer)
    model = json.loads(trainer_tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # legacy=True: every text segment gets sentencepiece's dummy prefix, as the authors'
    # tokenizer (and the reference ids) do (tests/test_skinvl_core.py checks the prefix).
    tokenizer = LlamaTokenizer(
        vocab=model["vocab"],
        merges=merges,
        legacy=True,
        add_bos_token=True,
        add_eos_token=False,
        pad_token="<unk>",
        model_max_length=2048,
    )
    # LlamaTokenizer does not record ``legacy`` in its init kwargs; without this, a saved copy
    # reloads with legacy=False and loses the dummy prefix after ``<image>`` (different ids).
    tokenizer.init_kwargs["legacy"] = True
    tokenizer.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    tokenizer.padding_side = "left"
    return tokenizer


def build_tiny(seed: int = 0):
    """Build the ``skinvl-tiny`` model and processor with random weights from ``seed``.

    Returns ``(model, processor)``: a ``SkinVLForConditionalGeneration`` in eval mode and a
    ``SkinVLProcessor``. The weights are random; the answers mean nothing.
    """
    import torch

    from .modeling_skinvl import SkinVLForConditionalGeneration, set_generation_tokens
    from .processing_skinvl import SkinVLProcessor, build_image_processor, chat_templates

    tokenizer = build_tiny_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    data = _read_preset("skinvl-tiny")
    data["text_config"]["vocab_size"] = len(tokenizer)
    config = preset_config("skinvl-tiny", text_config=data["text_config"], image_token_index=image_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # _from_config, not the constructor: under DeepSpeed ZeRO-3 it partitions the weights
        # first and initializes them gathered (the constructor's init indexes empty shards).
        model = SkinVLForConditionalGeneration._from_config(config)
    model.eval()
    set_generation_tokens(model.generation_config, tokenizer)

    vision = config.vision_config
    processor = SkinVLProcessor(
        image_processor=build_image_processor(vision.image_size, image_aspect_ratio=config.image_aspect_ratio),
        tokenizer=tokenizer,
        patch_size=vision.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        chat_template=chat_templates(config.prompt_template),
    )
    return model, processor


__all__ = ["PRESET_NAMES", "preset_config", "build_tiny", "build_tiny_tokenizer"]
