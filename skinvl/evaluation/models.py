"""Any local vision-language checkpoint for evaluation: options, loading, prompts, provenance.

``--model`` is a SkinVL preset, a SkinVL folder, a folder in the authors' ``llava_mistral``
format (all loaded by :func:`skinvl.load`, with their templates), or any checkpoint that
``AutoModelForImageTextToText`` + ``AutoProcessor`` load (LLaVA, Gemma 3, Idefics3, PaliGemma,
Mistral 3, ...). The prompt is the model's own chat template applied to ONE user turn holding
the image then the question text; ``--template NAME`` picks a named template of the processor,
``--chat-template FILE`` replaces it. A family that needs more than that has an entry in
:data:`ADAPTERS` (the one table of family quirks), never a branch in the generation loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skinvl.processing_skinvl import DEFAULT_TEMPLATE, PROMPT_TEMPLATES

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


# Commands that always need a local model redeclare ``model`` as required with this same help.
MODEL_HELP = {"help": "preset (skinvl-tiny), checkpoint folder or Hub id: SkinVL, the authors' format, or any "
              "AutoModelForImageTextToText checkpoint (LLaVA, Gemma 3, Idefics3, PaliGemma, ...)"}


class ModelError(ValueError):
    """A model that cannot be loaded or prompted; the message names the model and the fix."""


@dataclass(kw_only=True)
class ModelOptions:
    """How to load the model under test (shared by ``skinvl generate`` and ``skinvl eval``)."""

    model: str | None = field(default=None, metadata=MODEL_HELP)
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "allow the checkpoint's own Python code (only for checkpoints you trust)"})
    dtype: str | None = field(default=None, metadata={"help": "torch dtype, e.g. bfloat16, float16, float32"})
    device_map: str | None = field(default=None, metadata={"help": "e.g. cuda, cpu or auto (default: as loaded)"})
    attn_implementation: str | None = field(default=None, metadata={
        "help": "attention kernel, e.g. sdpa, eager, flash_attention_2"})
    vision_tower: str | None = field(default=None, metadata={
        "help": "SkinVL only: CLIP vision tower folder or Hub id for the authors' format"})
    template: str | None = field(default=None, metadata={
        "help": "named chat template of the processor (SkinVL: " + " or ".join(PROMPT_TEMPLATES)
        + f"; the paper evaluates with {DEFAULT_TEMPLATE})"})
    chat_template: str | None = field(default=None, metadata={
        "help": "Jinja chat template FILE replacing the model's own (for models without one)"})


@dataclass(frozen=True)
class Adapter:
    """What a model family needs beyond "its chat template on one [image, text] user turn"."""

    name: str
    # prompt(processor, question, template) -> text given to the processor with the image.
    prompt: Callable[[Any, str, str | None], str]


def chat_prompt(processor, question: str, template: str | None = None) -> str:
    """One user turn [image, question] through the processor's chat template (or ``template``)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, chat_template=template, add_generation_prompt=True)


def _paligemma_prompt(processor, question: str, template: str | None = None) -> str:
    # PaliGemma is prompted with the bare text: its processor adds the image tokens, <bos> and "\n".
    return chat_prompt(processor, question, template) if template else question


# model_type -> adapter. Families absent here use their chat template as is.
ADAPTERS: dict[str, Adapter] = {
    "paligemma": Adapter("paligemma", _paligemma_prompt),
}
CHAT_TEMPLATE = Adapter("chat_template", chat_prompt)


@dataclass
class LoadedModel:
    """A model ready to answer: weights, processor, prompt adapter, template and provenance."""

    model: Any
    processor: Any
    adapter: Adapter
    template: str | None  # a template name of the processor, Jinja text, or None (its default)
    template_name: str
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def prompt(self, question: str) -> str:
        """The exact text the processor receives (with the image) for ``question``."""
        return self.adapter.prompt(self.processor, question, self.template)

    @classmethod
    def wrap(cls, model, processor, name: str = "in-memory") -> LoadedModel:
        """An already loaded ``(model, processor)`` with its default template (tests, notebooks)."""
        adapter = ADAPTERS.get(model.config.model_type, CHAT_TEMPLATE)
        info = {"model": name, "model_type": model.config.model_type, "adapter": adapter.name}
        return cls(model, processor, adapter, None, _default_template_name(processor), info)


def load_model(options: ModelOptions, *, device_map: Any = None) -> LoadedModel:
    """Load ``options.model`` (SkinVL through :func:`skinvl.load`, others through the Auto classes).

    ``device_map`` overrides ``options.device_map`` (data-parallel ranks pass their device).
    Raises :class:`ModelError` with a one-line fix for unknown models and missing templates.
    """
    if not options.model:
        raise ModelError("no model: pass --model (preset, folder or Hub id) or --endpoint URL --model-name NAME.")
    device_map = device_map if device_map is not None else options.device_map
    if _model_type(options) in _skinvl_model_types():
        model, processor = _load_skinvl(options, device_map)
        template, template_name = options.template, options.template or _default_template_name(processor)
    else:
        model, processor = _load_auto(options, device_map)
        template, template_name = options.template, options.template or "default"
    model.eval()
    if options.chat_template:
        template, template_name = _read_template_file(options.chat_template), f"file:{Path(options.chat_template).name}"
    adapter = ADAPTERS.get(model.config.model_type, CHAT_TEMPLATE)
    loaded = LoadedModel(model, processor, adapter, template, template_name, {})
    _check_template(loaded, options)
    loaded.info = {
        "model": options.model, "model_type": model.config.model_type, "class": type(model).__name__,
        "revision": options.revision or getattr(model.config, "_commit_hash", None),
        "weights_blake2b": weights_hash(options.model), "adapter": adapter.name,
        "template": template_name, "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    return loaded


def _skinvl_model_types() -> tuple[str, ...]:
    """Model types :func:`skinvl.load` owns: native SkinVL and the authors' format (templates, conversion)."""
    from skinvl import SkinVLConfig
    from skinvl.original_format import LlavaMistralConfig

    return SkinVLConfig.model_type, LlavaMistralConfig.model_type


def _model_type(options: ModelOptions) -> str | None:
    from skinvl.presets import PRESET_NAMES

    if options.model in PRESET_NAMES:
        return "skinvl"
    from transformers import AutoConfig

    import skinvl  # noqa: F401  (registers SkinVL and the authors' format with AutoConfig)

    try:
        config = AutoConfig.from_pretrained(options.model, revision=options.revision,
                                            trust_remote_code=options.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load the config of --model {options.model!r}: {_first_line(err)}") from err
    return config.model_type


def _load_skinvl(options: ModelOptions, device_map: Any):
    import skinvl

    kwargs: dict[str, Any] = {"dtype": options.dtype, "device_map": device_map, "template": options.template}
    for name in ("vision_tower", "revision", "attn_implementation"):  # passed only when set
        if getattr(options, name):
            kwargs[name] = getattr(options, name)
    try:
        return skinvl.load(options.model, **kwargs)
    except TypeError as err:
        raise ModelError(f"--model {options.model!r}: skinvl.load does not take this option ({err}).") from err
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load --model {options.model!r}: {_first_line(err)}") from err


def _load_auto(options: ModelOptions, device_map: Any):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from skinvl.modeling_skinvl import parse_dtype

    common = {"revision": options.revision, "trust_remote_code": options.trust_remote_code}
    try:
        dtype = parse_dtype(options.dtype)
    except ValueError as err:
        raise ModelError(f"--dtype: {err}") from err
    kwargs = {k: v for k, v in (("dtype", dtype), ("device_map", device_map),
                                ("attn_implementation", options.attn_implementation)) if v is not None}
    try:
        model = AutoModelForImageTextToText.from_pretrained(options.model, **common, **kwargs)
        processor = AutoProcessor.from_pretrained(options.model, **common)
    except (OSError, ValueError) as err:
        raise ModelError(
            f"cannot load --model {options.model!r} with AutoModelForImageTextToText + AutoProcessor: "
            f"{_first_line(err)} (a checkpoint with its own code needs --trust-remote-code)"
        ) from err
    if options.template is not None:
        names = sorted(processor.chat_template) if isinstance(processor.chat_template, dict) else []
        if options.template not in names:
            raise ModelError(f"--template {options.template!r}: the processor of {options.model} has the "
                             f"named templates {names}; pass one of them or --chat-template FILE.")
    return model, processor


def _default_template_name(processor) -> str:
    templates = processor.chat_template if isinstance(processor.chat_template, dict) else {}
    default = templates.get("default")
    return next((k for k, v in templates.items() if k != "default" and v == default), "default")


def _read_template_file(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise ModelError(f"--chat-template {path}: no such regular file; pass a Jinja chat template file.")
    return file.read_text(encoding="utf-8")


def _check_template(loaded: LoadedModel, options: ModelOptions) -> None:
    """Render one prompt now, so a model without a chat template fails before any question."""
    try:
        loaded.prompt("?")
    except ValueError as err:
        if "chat template" not in str(err):
            raise
        raise ModelError(
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


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


__all__ = ["ADAPTERS", "MODEL_HELP", "Adapter", "LoadedModel", "LocalAnswerer", "ModelError", "ModelOptions", "chat_prompt",
           "load_model", "weights_hash"]


class LocalAnswerer:
    """Answers rows with a loaded model, batch by batch (the :class:`~skinvl.evaluation.runs.Answerer`)."""

    def __init__(self, loaded: LoadedModel, *, batch_size: int, generate_kwargs: dict[str, Any], seed: int = 0):
        self.loaded, self.batch_size, self.generate_kwargs, self.seed = loaded, batch_size, generate_kwargs, seed

    def answer(self, rows, images):
        """Yield the records of each batch as soon as it is generated."""
        from transformers import set_seed

        from skinvl.generate import iter_answers

        set_seed(self.seed)
        prompts = [self.loaded.prompt(row.question) for row in rows]
        start = 0
        for answers in iter_answers(self.loaded.model, self.loaded.processor, images, prompts,
                                    batch_size=self.batch_size, **self.generate_kwargs):
            yield [row.record(a) for row, a in zip(rows[start : start + len(answers)], answers, strict=True)]
            start += len(answers)
