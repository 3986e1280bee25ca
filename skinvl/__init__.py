"""SkinVL: the MM-Skin dermatology VLM as a first-class transformers model.

``import skinvl`` registers SkinVL with ``AutoConfig``, ``AutoModel``,
``AutoModelForImageTextToText`` and ``AutoProcessor``, and registers the authors' original
``llava_mistral`` checkpoint format, so that

    AutoModelForImageTextToText.from_pretrained("zwq803/SkinVL-PubMM", dtype=torch.bfloat16)
    AutoProcessor.from_pretrained("zwq803/SkinVL-PubMM")

load the released checkpoints in one call each. ``skinvl.load(...)`` does both at once.
"""

from __future__ import annotations

from typing import Any

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .configuration_skinvl import SkinVLConfig
from .modeling_skinvl import SkinVLForConditionalGeneration, SkinVLModel
from .processing_skinvl import SkinVLProcessor


def _register() -> None:
    AutoConfig.register("skinvl", SkinVLConfig, exist_ok=True)
    AutoModel.register(SkinVLConfig, SkinVLModel, exist_ok=True)
    AutoModelForImageTextToText.register(SkinVLConfig, SkinVLForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(SkinVLConfig, SkinVLProcessor, exist_ok=True)
    # The authors' format (model_type "llava_mistral"): translated while loading.
    from . import convert_original

    convert_original.register()


_register()


def load(
    name_or_path: str,
    *,
    dtype: Any = None,
    device_map: Any = None,
    template: str | None = None,
) -> tuple[SkinVLForConditionalGeneration, SkinVLProcessor]:
    """Load a SkinVL model and its processor in one call.

    ``name_or_path`` is a preset name ("skinvl-tiny": random weights, seeded; "skinvl-7b" is a
    configuration only and cannot be loaded with weights), a native SkinVL checkpoint folder, a
    folder in the authors' ``llava_mistral`` format, or a Hub id of either. ``dtype`` and
    ``device_map`` go to ``from_pretrained``; ``template`` ("mistral_instruct" or "vicuna_v1")
    overrides the checkpoint's default prompt template.
    """
    from .presets import PRESET_NAMES, build_tiny

    if name_or_path in PRESET_NAMES:
        if name_or_path == "skinvl-7b":
            raise ValueError(
                "The 'skinvl-7b' preset is a configuration only (no weights): use "
                "skinvl.presets.preset_config('skinvl-7b'), or load real weights with "
                "skinvl.load('zwq803/SkinVL-PubMM') or a local checkpoint folder."
            )
        model, processor = build_tiny()
        if dtype is not None:
            model = model.to(dtype=_as_dtype(dtype))
        if device_map is not None and isinstance(device_map, str) and device_map != "auto":
            model = model.to(device_map)
    else:
        _check_local_folder(name_or_path)
        kwargs: dict[str, Any] = {}
        if dtype is not None:
            kwargs["dtype"] = dtype
        if device_map is not None:
            kwargs["device_map"] = device_map
        model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)
        processor = AutoProcessor.from_pretrained(name_or_path)
        model.eval()
    if template is not None:
        processor.set_default_template(template)
    return model, processor


_LOADABLE_MODEL_TYPES = ("skinvl", "llava", "llava_mistral")


def _check_local_folder(name_or_path: str) -> None:
    """Fail early, naming the file, for a local folder that is no checkpoint we can load."""
    import json
    from pathlib import Path

    folder = Path(name_or_path)
    if not folder.is_dir():
        return  # a Hub id: from_pretrained reports what is wrong
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"{folder} has no config.json: it is not a model checkpoint folder. Pass a native SkinVL "
            "checkpoint, a folder in the authors' llava_mistral format, a Hub id or 'skinvl-tiny'."
        )
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file} is not valid JSON ({err}).") from err
    if model_type not in _LOADABLE_MODEL_TYPES:
        raise ValueError(
            f"{config_file}: model_type {model_type!r} is neither SkinVL ('skinvl'), transformers "
            "LLaVA ('llava') nor the authors' format ('llava_mistral'); pass a SkinVL checkpoint."
        )


def _as_dtype(dtype: Any):
    import torch

    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"Unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16'.")
        return getattr(torch, dtype)
    return dtype


__all__ = [
    "SkinVLConfig",
    "SkinVLModel",
    "SkinVLForConditionalGeneration",
    "SkinVLProcessor",
    "load",
]
