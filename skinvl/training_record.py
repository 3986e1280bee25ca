"""What a ``skinvl train`` run leaves beside its weights, and the merge.

``training_settings.json`` records the run as it was actually done: its own options, the base model
(``--model`` as given, what kind it resolved to, the Hub revision), the library versions, the
rows, steps and epochs actually run, the loss masking used (``assistant_only`` or
``completion_only``, and where the chat template came from) and how many rows showing a test
image were left out per dataset. It is written beside the adapter and beside the merged
weights, where ``skinvl push`` renders the model card from it. The adapter folder also gets a short
README (base, data, settings, how to load and merge) instead of peft's blank template.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.metadata
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SETTINGS_FILE = "training_settings.json"
LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "mm-skin")


def _base_model_kind(model: str) -> str:
    from .presets import PRESET_NAMES

    if model in PRESET_NAMES:
        return "preset"
    return "local folder" if Path(model).is_dir() else "hub"


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _without_local_roots(value: Any) -> Any:
    """An absolute local path becomes its last part: the record is published with the weights."""
    if isinstance(value, list):
        return [_without_local_roots(item) for item in value]
    if isinstance(value, str) and Path(value).is_absolute():
        return Path(value).name
    return value


def _without_local_roots_in_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_without_local_roots(key): item for key, item in value.items()}
    return value


def _recorded_options(options: Any, args: Any, fields: Sequence[str]) -> dict[str, Any]:
    """skinvl train's own options, then ``fields`` (the trainer fields the recipe or the user set), as run."""
    own = dataclasses.asdict(options)
    del own["training_args"]  # recorded below as the values that ran (SFTConfig normalizes some)
    for name in fields:
        value = getattr(args, name)
        own[name] = value.value if isinstance(value, enum.Enum) else value
    return {name: _without_local_roots(value)
            for name, value in json.loads(json.dumps(own, default=str)).items()}  # fmt: skip


def distributed_facts(trainer: Any) -> dict[str, Any]:
    """How the run was distributed, as accelerate actually set it up (not as asked)."""
    state = trainer.accelerator.state
    facts = {
        "distributed_backend": str(state.distributed_type.value),  # NO, MULTI_CPU, DEEPSPEED, FSDP...
        "num_processes": state.num_processes,
        "mixed_precision": str(state.mixed_precision),
        "device": str(state.device.type),
    }
    if state.deepspeed_plugin is not None:
        facts["deepspeed_zero_stage"] = state.deepspeed_plugin.zero_stage
    if getattr(state, "fsdp_plugin", None) is not None:
        facts["fsdp_version"] = state.fsdp_plugin.fsdp_version
    return facts


def training_settings(options: Any, trainer: Any, metrics: dict[str, float],
                      fields: Sequence[str] | None = None) -> dict[str, Any]:
    """The record of a finished run (JSON-ready): options, base model, versions, what was run.

    Options are recorded as given (trainer fields: ``fields``, the recipe's and the user's, as
    run; default: read now with :func:`~skinvl.training_recipe.sft_values`), except that absolute
    local paths keep only their last part.
    """
    if fields is None:
        from .training_recipe import sft_values

        fields = sorted(sft_values(options))
    args, state = trainer.args, trainer.state
    base = getattr(trainer.model, "get_base_model", lambda: trainer.model)()
    kind = _base_model_kind(options.model)
    revision = getattr(base.config, "_commit_hash", None) if kind == "hub" else None
    return {
        "options": _recorded_options(options, args, fields),
        "base_model": _without_local_roots(options.model),
        "base_model_kind": kind,
        "base_model_revision": revision,
        "base_model_class": type(base).__name__,
        # train_rows (conversations, after the test-image filter), loss_masking,
        # chat_template_source, test_image_rows_left_out: see skinvl.train.build_trainer
        **{key: _without_local_roots_in_keys(value) for key, value in trainer.run_facts.items()},
        "train_examples": len(trainer.train_dataset),  # one per assistant turn if completion_only
        "global_step": state.global_step,
        "epochs_run": round(float(state.epoch or 0.0), 4),
        **distributed_facts(trainer),
        "effective_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps
        * args.world_size,
        "bf16": bool(args.bf16),
        "train_loss": None if "train_loss" not in metrics else round(metrics["train_loss"], 4),
        "library_versions": _versions(),
    }


def _left_out(count: int | None) -> str:
    if count is None:
        return "; test images not checked: no `image_in_test` column"
    return f"; {count} rows whose image is a test image left out"


def _data_lines(options: dict[str, Any], rows: int, left_out: dict[str, int | None]) -> str:
    configs = options["configs"] or [None]
    configs = configs * len(options["data"]) if len(configs) == 1 else configs
    kept = "; rows showing test images included (--include-test-images)"
    lines = [
        f"- `{spec}` (config `{config or 'default'}`, split `{options['split']}`"
        f"{_left_out(left_out[spec]) if spec in left_out else kept})"
        for spec, config in zip(options["data"], configs, strict=True)
    ]
    how = f"sampled in proportions {options['mix']}" if options["mix"] else "concatenated"
    return "\n".join(lines) + f"\n\n{rows} training rows ({how})."


def _examples(settings: dict[str, Any]) -> str:
    if settings["train_examples"] == settings["train_rows"]:
        return ""
    return f" They make {settings['train_examples']} prompt-completion examples, one per assistant turn."


def adapter_card(settings: dict[str, Any]) -> str:
    """The adapter folder's README.md: what base, what data, what settings, how to load and merge."""
    from huggingface_hub import ModelCard, ModelCardData

    o = settings["options"]
    base = settings["base_model"]
    data = ModelCardData(
        library_name="peft", pipeline_tag="image-text-to-text", tags=["skinvl", "lora", "trl", "sft"],
        base_model=base if settings["base_model_kind"] == "hub" else None,
    )  # fmt: skip
    loss = ("on assistant tokens only" if settings["loss_masking"] == "assistant_only"
            else "on completions only (one prompt-completion pair per assistant turn)")  # fmt: skip
    body = f"""
# LoRA adapter for `{base}` ({settings["base_model_kind"]})

Trained with `skinvl train` (TRL's SFTTrainer with a peft LoRA adapter) on:

{_data_lines(o, settings["train_rows"], settings["test_image_rows_left_out"])}{_examples(settings)}

## Settings

| setting | value |
|---|---|
| LoRA | r {o["lora_r"]}, alpha {o["lora_alpha"]}, dropout {o["lora_dropout"]}, on every linear layer of the language model |
| projector | trained in full, learning rate {o["projector_lr"]} |
| vision tower | frozen |
| optimizer | AdamW, learning rate {o["learning_rate"]}, weight decay {o["weight_decay"]}, {o["lr_scheduler_type"]} schedule, warmup {o["warmup_steps"]} |
| run | {settings["global_step"]} steps, {settings["epochs_run"]} epochs, batch {settings["effective_batch_size"]} ({o["per_device_train_batch_size"]} per device x {settings["num_processes"]} processes x {o["gradient_accumulation_steps"]} accumulation) |
| sequences | max length {o["max_length"]}, chat template: {settings["chat_template_source"]}, loss {loss} (`{settings["loss_masking"]}`) |
| precision | {settings["mixed_precision"]} mixed precision ({"bf16" if settings["bf16"] else "fp32"} trainer), activation checkpointing {"on" if o["activation_checkpointing"] else "off"} |
| final training loss | {settings["train_loss"]} |

All settings, the library versions and the base model's revision are in `{SETTINGS_FILE}`.

## Use

```python
import skinvl
from peft import PeftModel

model, processor = skinvl.load("{base}")
model = PeftModel.from_pretrained(model, "path/to/this/folder")
merged = model.merge_and_unload()  # or train with --merge for a merged checkpoint
```
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def write_run_record(options: Any, trainer: Any, metrics: dict[str, float],
                     fields: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``training_settings.json`` and the README into the adapter folder; returns them."""
    settings = training_settings(options, trainer, metrics, fields)
    folder = Path(options.output)
    (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(adapter_card(settings), encoding="utf-8")  # replaces peft's
    return settings


def merge_adapter(
    base_model: str,
    adapter_dir: str | Path,
    output: str | Path,
    *,
    dtype: Any = None,
    chat_template: str | None = None,
) -> Path:
    """Merge a trained adapter into a fresh copy of its base; save model + processor natively.

    The base is reloaded whole on this process (so this works after DeepSpeed/FSDP sharded
    training), the LoRA deltas are folded in and the trained projector replaces the original.
    The adapter's ``training_settings.json`` goes along; ``chat_template`` (a .jinja file, the
    one trained with) replaces the base processor's templates.
    The result loads with one ``from_pretrained`` and is ready for ``skinvl push``.
    """
    from peft import PeftModel

    import skinvl

    model, processor = skinvl.load(base_model, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    output = Path(output)
    merged.save_pretrained(output)
    settings_file = Path(adapter_dir) / SETTINGS_FILE
    if settings_file.is_file():
        (output / SETTINGS_FILE).write_bytes(settings_file.read_bytes())
    if chat_template is not None:
        processor.chat_template = Path(chat_template).read_text(encoding="utf-8")
    processor.save_pretrained(output)
    return output
