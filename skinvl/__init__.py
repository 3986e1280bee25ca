"""SkinVL: the MM-Skin dermatology VLM as a first-class transformers model.

``import skinvl`` registers SkinVL with ``AutoConfig``, ``AutoModel``,
``AutoModelForImageTextToText`` and ``AutoProcessor``, and registers the authors' original
``llava_mistral`` checkpoint format, so that

    AutoModelForImageTextToText.from_pretrained("zwq803/SkinVL-PubMM", dtype=torch.bfloat16)
    AutoProcessor.from_pretrained("zwq803/SkinVL-PubMM")

load the released checkpoints in one call each. ``skinvl.load(...)`` does both at once::

    model, processor = skinvl.load("skinvl-tiny")  # random weights, for trying things out
    model, processor = skinvl.load("path/to/llava-med-folder", vision_tower="path/to/clip-vit-l-336")
"""

from __future__ import annotations

from typing import Any

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from mm_skin import __version__  # one distribution, one version

from .configuration_skinvl import SkinVLConfig
from .modeling_skinvl import SkinVLForConditionalGeneration, SkinVLModel, parse_dtype
from .original_format import LlavaMistralConfig, read_json_object
from .processing_skinvl import SkinVLProcessor


def _register() -> None:
    AutoConfig.register("skinvl", SkinVLConfig, exist_ok=True)
    AutoModel.register(SkinVLConfig, SkinVLModel, exist_ok=True)
    AutoModelForImageTextToText.register(SkinVLConfig, SkinVLForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(SkinVLConfig, SkinVLProcessor, exist_ok=True)
    # The authors' format (model_type "llava_mistral"): translated while loading.
    from . import original_loading

    original_loading.register()


_register()


def load(
    name_or_path: str,
    *,
    dtype: Any = None,
    device_map: Any = None,
    template: str | None = None,
    vision_tower: str | None = None,
    revision: str | None = None,
    attn_implementation: str | None = None,
) -> tuple[SkinVLForConditionalGeneration, SkinVLProcessor]:
    """Load a SkinVL model and its processor in one call.

    ``name_or_path`` is a preset name ("skinvl-tiny": random weights, seeded; "skinvl-7b" is a
    configuration only and cannot be loaded with weights), a native SkinVL checkpoint folder, a
    folder in the authors' ``llava_mistral`` format, or a Hub id of either. ``dtype``,
    ``device_map``, ``revision`` and ``attn_implementation`` go to ``from_pretrained``; ``template``
    ("mistral_instruct" or "vicuna_v1") overrides the checkpoint's default prompt template.
    ``vision_tower`` (a CLIP folder or Hub id) replaces the ``mm_vision_tower`` an authors'-format
    checkpoint names, e.g. when that path does not exist here; other checkpoints carry their
    tower and refuse it.
    """
    from .presets import PRESET_NAMES

    torch_dtype = parse_dtype(dtype)  # fails early, naming the value, for an unknown dtype
    if name_or_path in PRESET_NAMES:
        for option, value in (("vision_tower", vision_tower), ("revision", revision)):
            if value is not None:
                raise ValueError(f"{option}={value!r} applies to checkpoints, not to the preset {name_or_path!r}.")
        model, processor = _load_preset(name_or_path, torch_dtype, device_map)
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
    else:
        # A local folder that is no checkpoint fails here, naming the file.
        model_type = _model_type(name_or_path, revision, ask_hub=vision_tower is not None)
        _refuse_vision_tower(vision_tower, name_or_path, model_type)
        common = {k: v for k, v in (("revision", revision), ("vision_tower", vision_tower)) if v is not None}
        options = (("dtype", dtype), ("device_map", device_map), ("attn_implementation", attn_implementation))
        kwargs = {k: v for k, v in options if v is not None}
        model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs, **common)
        processor = AutoProcessor.from_pretrained(name_or_path, **common)
        model.eval()
    if template is not None:
        processor.set_default_template(template)
    return model, processor


def _load_preset(name: str, dtype: Any, device_map: Any):
    from .presets import build_tiny

    if name == "skinvl-7b":
        raise ValueError(
            "The 'skinvl-7b' preset is a configuration only (no weights): use "
            "skinvl.presets.preset_config('skinvl-7b'), or load real weights with "
            "skinvl.load('zwq803/SkinVL-PubMM') or a local checkpoint folder."
        )
    model, processor = build_tiny()
    if dtype is not None:
        model = model.to(dtype=dtype)
    if device_map is not None and isinstance(device_map, str) and device_map != "auto":
        model = model.to(device_map)
    return model, processor


_LOADABLE_MODEL_TYPES = ("skinvl", "llava", LlavaMistralConfig.model_type)


def _refuse_vision_tower(vision_tower: str | None, name_or_path: str, model_type: str | None) -> None:
    if vision_tower is not None and model_type != LlavaMistralConfig.model_type:
        raise ValueError(
            f"{name_or_path} is a {model_type!r} checkpoint with its own vision tower; vision_tower "
            f"({vision_tower}) applies only to the authors' llava_mistral format: leave it out."
        )


def _model_type(name_or_path: str, revision: str | None, *, ask_hub: bool = False) -> str | None:
    """The checkpoint's model_type; a local folder that is no checkpoint we load fails, naming the file."""
    from pathlib import Path

    folder = Path(name_or_path)
    if not folder.is_dir():  # a Hub id: from_pretrained reports what is wrong
        return AutoConfig.from_pretrained(name_or_path, revision=revision).model_type if ask_hub else None
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"{folder} has no config.json: it is not a model checkpoint folder. Pass a native SkinVL "
            "checkpoint, a folder in the authors' llava_mistral format, a Hub id or 'skinvl-tiny'."
        )
    model_type = read_json_object(config_file).get("model_type")
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if model_type not in _LOADABLE_MODEL_TYPES and model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise ValueError(
            f"{config_file}: model_type {model_type!r} is neither SkinVL ('skinvl'), the authors' format "
            "('llava_mistral') nor an AutoModelForImageTextToText model; pass an image-text-to-text checkpoint."
        )
    return model_type


from .generate import answer_batch  # noqa: E402  (the public batch-answer helper; after load, which generate uses)

__all__ = [
    "SkinVLConfig",
    "SkinVLModel",
    "SkinVLForConditionalGeneration",
    "SkinVLProcessor",
    "load",
    "answer_batch",
    "__version__",
]
