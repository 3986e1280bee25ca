"""Loading the authors' ``llava_mistral`` checkpoints in one call, and their Auto-class entries.

Builds the SkinVL model (weights renamed while loading, ``<image>`` rows, the identity projector
layer and the CLIP tower from ``skinvl.original_translation``, as ``convert`` does) and the SkinVL
processor (the checkpoint's tokenizer + the CLIP tower's pre-processing settings); ``convert``
uses the same processor assembly.

``import skinvl`` calls ``register()``, after which ``AutoModelForImageTextToText.from_pretrained``
and ``AutoProcessor.from_pretrained`` on an authors'-format folder return a SkinVL model and
processor (translated while loading; see ``skinvl.original_format``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from .configuration_skinvl import SkinVLConfig
from .modeling_skinvl import SkinVLForConditionalGeneration, set_generation_tokens
from .original_format import (
    LlavaMistralConfig,
    OriginalCheckpoint,
    OriginalFormatError,
    _hub_only,
    check_shapes,
    expected_shapes,
    inspect_original,
    load_original_tokenizer,
    load_vision_config,
    original_key_mapping,
    read_json_object,
    read_original_config,
    resolve_folder,
    resolve_vision_tower,
)
from .original_translation import (
    IDENTITY_LAYER,
    VISION_TOWER,
    identity_projector,
    vision_tower_key,
    with_image_token_rows,
)
from .processing_skinvl import DEFAULT_TEMPLATE, SkinVLProcessor, chat_templates

logger = logging.getLogger(__name__)

_FROM_PRETRAINED_PASSTHROUGH = (
    "dtype", "torch_dtype", "device_map", "max_memory", "offload_folder", "attn_implementation",
    "low_cpu_mem_usage", "quantization_config",
)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports for loads whose key accounting is done here."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def load_original_model(name_or_path: str | os.PathLike, *, vision_tower: str | None = None,
                        **kwargs: Any) -> SkinVLForConditionalGeneration:
    """Load an authors'-format checkpoint as a ``SkinVLForConditionalGeneration`` in one call.

    ``kwargs`` accept from_pretrained's ``dtype``, ``device_map``, ``attn_implementation`` and Hub
    options (``revision``, ``token``, ``cache_dir``, ``local_files_only``). ``vision_tower`` (a CLIP
    folder or Hub id) replaces the checkpoint's ``mm_vision_tower``.
    """
    import torch

    kwargs.pop("config", None)
    kwargs.pop("trust_remote_code", None)
    kwargs.pop("_from_auto", None)
    kwargs.pop("_from_pipeline", None)
    output_loading_info = kwargs.pop("output_loading_info", False)
    hub = _hub_only(kwargs)
    load_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _FROM_PRETRAINED_PASSTHROUGH}
    ckpt = inspect_original(name_or_path, vision_tower=vision_tower, **hub)
    expected = expected_shapes(ckpt.skinvl_config)
    check_shapes(ckpt, expected)

    # Load with the ORIGINAL vocabulary size; the <image> row is added afterwards.
    config = ckpt.skinvl_config
    load_config = SkinVLConfig.from_dict(config.to_dict())
    load_config.text_config.vocab_size = ckpt.original_vocab_rows
    with quiet_transformers():  # missing/unexpected keys are accounted for below, not printed
        model, info = SkinVLForConditionalGeneration.from_pretrained(
            str(ckpt.folder), config=load_config, key_mapping=original_key_mapping(ckpt.projector),
            output_loading_info=True, **load_kwargs,
        )
    missing = set(info.get("missing_keys", ()))
    allowed_missing: set[str] = set()
    if not ckpt.vision_from_checkpoint:
        allowed_missing |= {k for k in expected if k.startswith("model.vision_tower.")}
    if ckpt.projector == "linear":
        allowed_missing |= {f"{IDENTITY_LAYER}.weight", f"{IDENTITY_LAYER}.bias"}  # the layer identity_projector fills
    unexplained = sorted(missing - allowed_missing)
    if unexplained:
        raise OriginalFormatError(
            f"{ckpt.folder}: these parameters are not in the checkpoint and would be left random: "
            f"{unexplained[:10]}{' ...' if len(unexplained) > 10 else ''}"
        )
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        raise OriginalFormatError(f"{ckpt.folder}: tensors with the wrong shape: {list(mismatched)[:10]}")

    with torch.no_grad():
        if ckpt.projector == "linear":
            dtype = model.get_parameter(f"{IDENTITY_LAYER}.weight").dtype
            for name, tensor in identity_projector(config.text_config.hidden_size, dtype).items():
                model.get_parameter(name).copy_(tensor)
        if not ckpt.vision_from_checkpoint:
            _load_vision_tower(model, ckpt, hub)
    add_image_token_rows(model, config.image_token_id)
    model.config.image_token_id = config.image_token_id
    model.config.text_config.vocab_size = model.get_input_embeddings().weight.shape[0]
    # The renames above were only for reading this format: saving writes native names.
    model._weight_conversions = []
    set_generation_tokens(model.generation_config, ckpt.tokenizer, ckpt.config).use_cache = True
    model.config._name_or_path = str(name_or_path)
    model.eval()
    if output_loading_info:
        return model, info
    return model


def _load_vision_tower(model, ckpt: OriginalCheckpoint, hub: dict[str, Any]) -> None:
    """Copy the CLIP checkpoint's vision weights into the tower (names by ``vision_tower_key``)."""
    from transformers import CLIPVisionModel

    dtype = next(model.model.vision_tower.parameters()).dtype
    try:
        with quiet_transformers():  # the CLIP text tower's keys are expected to be unused
            clip, info = CLIPVisionModel.from_pretrained(
                ckpt.vision_source, dtype=dtype, output_loading_info=True, **hub
            )
    except OSError as err:
        raise OriginalFormatError(
            f"{ckpt.folder}: the CLIP vision-tower weights at {ckpt.vision_source!r} cannot be read "
            f"({err}); pass vision_tower=<local CLIP folder>."
        ) from err
    if info.get("missing_keys"):
        raise OriginalFormatError(
            f"{ckpt.vision_source}: the CLIP checkpoint lacks vision weights "
            f"{sorted(info['missing_keys'])[:10]}."
        )
    renamed = {vision_tower_key(k): v for k, v in clip.state_dict().items()}
    renamed.pop(None, None)
    tower = {k for k in model.state_dict() if k.startswith(VISION_TOWER)}
    if set(renamed) != tower:
        raise OriginalFormatError(
            f"{ckpt.vision_source}: the CLIP vision weights do not match the tower "
            f"(missing {sorted(tower - set(renamed))[:5]}, extra {sorted(set(renamed) - tower)[:5]})."
        )
    model.load_state_dict(renamed, strict=False)


def add_image_token_rows(model, image_token_id: int) -> None:
    """Give the embedding and lm_head a row for ``<image>`` (``with_image_token_rows``)."""
    import torch

    embeddings = model.get_input_embeddings()
    rows = embeddings.weight.shape[0]
    if image_token_id < rows:
        return
    model.resize_token_embeddings(image_token_id + 1, mean_resizing=False)
    with torch.no_grad():
        new_in = model.get_input_embeddings().weight
        new_in.copy_(with_image_token_rows(new_in[:rows], new_in.shape[0]))
        head = model.get_output_embeddings()
        if head is not None and head.weight.shape[0] > rows and head.weight is not new_in:
            head.weight.copy_(with_image_token_rows(head.weight[:rows], head.weight.shape[0]))


def load_original_processor(name_or_path: str | os.PathLike, *, vision_tower: str | None = None,
                            image_aspect_ratio: str | None = None, template: str = DEFAULT_TEMPLATE,
                            **hub_kwargs: Any) -> SkinVLProcessor:
    """Build a ``SkinVLProcessor`` for an authors'-format checkpoint (tokenizer + CLIP settings)."""
    hub = _hub_only(hub_kwargs)
    folder = resolve_folder(name_or_path, **hub)
    config = read_original_config(folder)
    vision_source = resolve_vision_tower(folder, config, vision_tower)
    vision_config = load_vision_config(vision_source, **hub)
    tokenizer = load_original_tokenizer(folder)
    settings = read_image_processor_settings(vision_source, vision_config, **hub)
    aspect = image_aspect_ratio or ("pad" if config.get("image_aspect_ratio", "pad") == "pad" else "crop")
    return build_processor(tokenizer, vision_config, settings, image_aspect_ratio=aspect, template=template)


def read_image_processor_settings(source: str, vision_config, **hub_kwargs: Any) -> dict[str, Any]:
    """CLIP preprocessing settings from the vision tower's preprocessor_config.json (or defaults)."""
    from transformers.utils import cached_file

    settings: dict[str, Any] = {}
    path = Path(source) / "preprocessor_config.json"
    if not path.is_file():
        try:
            found = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False,
                                **hub_kwargs)
        except OSError:
            found = None
        path = Path(found) if found else None
    if path is not None and path.is_file():
        settings = read_json_object(path)
    else:
        logger.warning("No preprocessor_config.json for the vision tower %s; using CLIP defaults.", source)

    def edge(value, default):
        if value is None:
            return default
        if isinstance(value, dict):
            return int(value.get("shortest_edge", value.get("height", default)))
        return int(value)

    size = edge(settings.get("size"), vision_config.image_size)
    crop = edge(settings.get("crop_size"), vision_config.image_size)
    if crop != vision_config.image_size:
        raise OriginalFormatError(
            f"{source}: preprocessor crop size {crop} differs from the vision tower's image_size "
            f"{vision_config.image_size}."
        )
    return {
        "size": size,
        "crop": crop,
        "image_mean": settings.get("image_mean"),
        "image_std": settings.get("image_std"),
        "resample": int(settings.get("resample", 3)),
    }


def build_processor(tokenizer, vision_config, settings: dict[str, Any], *, image_aspect_ratio: str,
                    template: str, processor_class=SkinVLProcessor):
    """Assemble a (SkinVL or stock LLaVA) processor from converted parts.

    The tokenizer gets the processor's templates too: the base model's own (Mistral's ``[INST]``)
    would make ``processor.tokenizer.apply_chat_template`` render other prompts.
    """
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    from .processing_skinvl import build_image_processor

    image_processor = build_image_processor(
        settings["crop"], image_aspect_ratio=image_aspect_ratio, image_mean=settings["image_mean"],
        image_std=settings["image_std"], resample=settings["resample"],
    )
    if settings["size"] != settings["crop"]:
        image_processor = LlavaImageProcessorPil(
            **{**image_processor.to_dict(), "size": {"shortest_edge": settings["size"]}}
        )
    tokenizer.chat_template = chat_templates(template)
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy="default",
        chat_template=chat_templates(template),
        num_additional_image_tokens=1,
    )


# --------------------------------------------------------------------------------------------
# Auto-class registration
# --------------------------------------------------------------------------------------------


class SkinVLFromOriginalForConditionalGeneration(SkinVLForConditionalGeneration):
    """Auto-class entry for ``llava_mistral`` folders: ``from_pretrained`` returns a SkinVL model."""

    config_class = LlavaMistralConfig

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Translate and load an authors'-format checkpoint (see ``load_original_model``)."""
        if model_args:
            raise TypeError("Positional model arguments are not supported for llava_mistral checkpoints.")
        return load_original_model(pretrained_model_name_or_path, **kwargs)


class SkinVLFromOriginalProcessor(SkinVLProcessor):
    """Auto-class entry for ``llava_mistral`` folders: ``from_pretrained`` returns a SkinVLProcessor."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Build the processor of an authors'-format checkpoint (see ``load_original_processor``)."""
        options = {k: kwargs[k] for k in ("vision_tower", "image_aspect_ratio", "template") if k in kwargs}
        return load_original_processor(pretrained_model_name_or_path, **options, **_hub_only(kwargs))


def register() -> None:
    """Register ``llava_mistral`` with AutoConfig, AutoModelForImageTextToText and AutoProcessor."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    AutoConfig.register("llava_mistral", LlavaMistralConfig, exist_ok=True)
    AutoModelForImageTextToText.register(
        LlavaMistralConfig, SkinVLFromOriginalForConditionalGeneration, exist_ok=True
    )
    AutoProcessor.register(LlavaMistralConfig, SkinVLFromOriginalProcessor, exist_ok=True)
