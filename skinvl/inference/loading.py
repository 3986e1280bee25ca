"""THE loader: every command (generate, eval, demo, train, convert) and ``skinvl.load`` load models here.

A model is a SkinVL preset ("skinvl-tiny": random weights), a native SkinVL checkpoint, a folder in
the authors' ``llava_mistral`` format (translated while loading), or any checkpoint that
``AutoModelForImageTextToText`` + ``AutoProcessor`` load (LLaVA, Gemma 3, Idefics3, PaliGemma,
Mistral 3, ...), local or on the Hub. :func:`load` returns ``(model, processor)``;
:func:`load_model` turns :class:`~skinvl.inference.options.ModelOptions` into a
:class:`LoadedModel` (prompting and provenance included) and every failure into a one-line
:class:`~skinvl.inference.options.ModelError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinvl.inference.families import family_of
from skinvl.inference.options import ModelError, ModelOptions, first_line
from skinvl.inference.prompts import (
    TemplateError,
    default_template_name,
    family_prompt,
    read_template_file,
    template_names,
)

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def load(
    name_or_path: str,
    *,
    dtype: Any = None,
    device_map: Any = None,
    template: str | None = None,
    vision_tower: str | None = None,
    revision: str | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """Load a model and its processor in one call (see the module docstring for what ``name_or_path`` may be).

    ``dtype``, ``device_map``, ``revision``, ``attn_implementation`` and ``trust_remote_code`` go to
    ``from_pretrained``; ``template`` picks a named chat template of the processor (SkinVL:
    "mistral_instruct" or "vicuna_v1") as its default. ``vision_tower`` (a CLIP folder or Hub id)
    replaces the ``mm_vision_tower`` an authors'-format checkpoint names; other checkpoints carry
    their tower and refuse it. Raises ``ValueError`` (:class:`ModelError` for our checks) naming the fix.
    """
    from skinvl.auto_registration import register
    from skinvl.modeling_skinvl import parse_dtype
    from skinvl.presets import PRESET_NAMES

    register()  # SkinVL and the authors' format in the Auto classes
    torch_dtype = parse_dtype(dtype)  # fails early, naming the value, for an unknown dtype
    if name_or_path in PRESET_NAMES:
        for option, value in (("vision_tower", vision_tower), ("revision", revision)):
            if value is not None:
                raise ModelError(f"{option}={value!r} applies to checkpoints, not to the preset {name_or_path!r}.")
        model, processor = _load_preset(name_or_path, torch_dtype, device_map)
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
    else:
        model, processor = _load_checkpoint(
            name_or_path, vision_tower=vision_tower, revision=revision, trust_remote_code=trust_remote_code,
            options={"dtype": dtype, "device_map": device_map, "attn_implementation": attn_implementation})
    model.eval()
    if template is not None:
        _set_default_template(processor, template, name_or_path)
    return model, processor


def _load_checkpoint(name_or_path: str, *, vision_tower: str | None, revision: str | None, trust_remote_code: bool,
                     options: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from skinvl.original_format import LlavaMistralConfig

    # A local folder that is no checkpoint fails here, naming the file.
    model_type = checkpoint_model_type(name_or_path, revision, ask_hub=vision_tower is not None)
    _refuse_other_tasks(name_or_path, model_type)
    if vision_tower is not None and model_type != LlavaMistralConfig.model_type:
        raise ModelError(
            f"{name_or_path} is a {model_type!r} checkpoint with its own vision tower; vision_tower "
            f"({vision_tower}) applies only to the authors' llava_mistral format: leave it out."
        )
    common: dict[str, Any] = {k: v for k, v in (("revision", revision), ("vision_tower", vision_tower)) if v is not None}
    if trust_remote_code:
        common["trust_remote_code"] = True
    kwargs = {k: v for k, v in options.items() if v is not None}
    model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs, **common)
    processor = AutoProcessor.from_pretrained(name_or_path, **common)
    return model, processor


def is_image_text_to_text(model_type: str) -> bool:
    """Whether the loader takes ``model_type``: any AutoModelForImageTextToText type, SkinVL, the authors' format."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    from skinvl.configuration_skinvl import SkinVLConfig
    from skinvl.original_format import LlavaMistralConfig

    return model_type in {*MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES, SkinVLConfig.model_type,
                          LlavaMistralConfig.model_type}


def _refuse_other_tasks(name_or_path: str, model_type: str | None) -> None:
    """A local checkpoint whose model_type AutoModelForImageTextToText cannot load fails here, naming the file."""
    from skinvl.original_format import read_json_object

    if model_type is None or is_image_text_to_text(model_type):
        return
    config_file = Path(name_or_path) / "config.json"
    auto_map = read_json_object(config_file).get("auto_map") or {}
    if "AutoModelForImageTextToText" not in auto_map:  # a checkpoint with its own code may map itself
        raise ModelError(
            f"{config_file}: model_type {model_type!r} is not an image-text-to-text model "
            "(AutoModelForImageTextToText cannot load it); pass SkinVL, the authors' format, LLaVA, "
            "Gemma 3, PaliGemma, Idefics3 or another vision-language checkpoint."
        )


def _load_preset(name: str, dtype: Any, device_map: Any) -> tuple[Any, Any]:
    from skinvl.presets import build_tiny

    if name == "skinvl-7b":
        raise ModelError(
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


def checkpoint_model_type(name_or_path: str, revision: str | None = None, *, ask_hub: bool = False) -> str | None:
    """The ``model_type`` of a checkpoint; a local folder without a readable config.json fails, naming the file.

    For a Hub id the config is fetched only when ``ask_hub`` (otherwise None: from_pretrained
    reports what is wrong with it).
    """
    folder = Path(name_or_path)
    if not folder.is_dir():
        if not ask_hub:
            return None
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(name_or_path, revision=revision).model_type
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(
            f"{folder} has no config.json: it is not a model checkpoint folder. Pass a SkinVL preset "
            "(skinvl-tiny), a checkpoint folder (SkinVL, the authors' format or any "
            "AutoModelForImageTextToText one) or a Hub id."
        )
    from skinvl.original_format import read_json_object

    model_type = read_json_object(config_file).get("model_type")  # a broken file: one line naming it
    if not isinstance(model_type, str) or not model_type:
        raise ModelError(f"{config_file}: no model_type; this is not a transformers checkpoint config.")
    return model_type


def _set_default_template(processor, template: str, name_or_path: str) -> None:
    if hasattr(processor, "set_default_template"):  # SkinVL: names checked by the processor
        processor.set_default_template(template)
        return
    names = template_names(processor)
    if template not in names:
        raise TemplateError(f"--template {template!r}: the processor of {name_or_path} has the named templates "
                            f"{names}; pass one of them or --chat-template FILE.")
    # transformers renders chat_template["default"] when no template is named: make the chosen one it.
    processor.chat_template = {**processor.chat_template, "default": processor.chat_template[template]}


@dataclass
class LoadedModel:
    """A model ready to answer: weights, processor, the template its prompts use, and provenance."""

    model: Any
    processor: Any
    template: str | None  # a template name of the processor, Jinja text, or None (its default)
    template_name: str
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def prompt(self, question: str, template: str | None = None) -> str:
        """The exact text the processor receives (with the image) for ``question``.

        ``template`` (a name or Jinja text) overrides the loaded template for this prompt.
        """
        return family_prompt(self.model, self.processor, question, template if template is not None else self.template)

    @classmethod
    def wrap(cls, model, processor, name: str = "in-memory") -> LoadedModel:
        """An already loaded ``(model, processor)`` with its default template (tests, notebooks)."""
        info = {"model": name, "model_type": model.config.model_type, "adapter": _prompt_style(model)}
        return cls(model, processor, None, default_template_name(processor), info)


def _prompt_style(model) -> str:
    """How prompts are built, for provenance: "chat_template", or the family whose own form is used."""
    family = family_of(model)
    return "chat_template" if family.prompt == "chat" else family.name


def load_model(options: ModelOptions, *, device_map: Any = None) -> LoadedModel:
    """Load ``options.model`` with :func:`load`; every failure is a one-line :class:`ModelError`.

    ``device_map`` overrides ``options.device_map`` (data-parallel ranks pass their device). The
    template is rendered once here, so a model without a usable chat template fails before any question.
    """
    if not options.model:
        raise ModelError("no model: pass --model (preset, folder or Hub id) or --endpoint URL --model-name NAME.")
    kwargs = {"dtype": options.dtype, "device_map": device_map if device_map is not None else options.device_map,
              "template": options.template, "vision_tower": options.vision_tower, "revision": options.revision,
              "attn_implementation": options.attn_implementation, "trust_remote_code": options.trust_remote_code}
    try:
        model, processor = load(options.model, **kwargs)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, ImportError) as err:  # ImportError: e.g. flash-attn not installed
        needs_code = "trust_remote_code" in str(err) and not options.trust_remote_code
        hint = " (a checkpoint with its own code needs --trust-remote-code)" if needs_code else ""
        raise ModelError(f"cannot load --model {options.model!r}: {first_line(err)}{hint}") from err
    template, template_name = options.template, options.template or default_template_name(processor)
    if options.chat_template:
        template, template_name = read_template_file(options.chat_template), f"file:{Path(options.chat_template).name}"
    loaded = LoadedModel(model, processor, template, template_name)
    _check_template(loaded, options)
    loaded.info = {
        "model": options.model, "model_type": model.config.model_type, "class": type(model).__name__,
        "revision": options.revision or getattr(model.config, "_commit_hash", None),
        "weights_blake2b": weights_hash(options.model), "adapter": _prompt_style(model),
        "template": template_name, "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    return loaded


def _check_template(loaded: LoadedModel, options: ModelOptions) -> None:
    """Render one prompt now, so a model without a chat template fails before any question."""
    try:
        loaded.prompt("?")
    except TemplateError:
        raise
    except ValueError as err:
        if "chat template" not in str(err) and "chat_template" not in str(err):
            raise
        raise TemplateError(
            f"--model {options.model}: the processor has no chat template; pass --chat-template FILE "
            "(a Jinja template for one user turn [image, text]) or --template NAME."
        ) from err


def weights_hash(name_or_path: str) -> str | None:
    """blake2b of a local checkpoint's weight files (name + bytes), None for presets and Hub ids."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        return None
    digest = hashlib.blake2b(digest_size=16)
    for file in sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)):
        digest.update(file.name.encode())
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


__all__ = ["LoadedModel", "checkpoint_model_type", "load", "load_model", "weights_hash"]
