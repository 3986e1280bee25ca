"""``skinvl train``: the SkinVL LoRA recipe (MM-Skin paper) on transformers' Trainer + peft.

The paper's recipe is the default: LoRA r=128, alpha=64, dropout 0.05 on every linear layer of the
language model; the multimodal projector trained fully at its own learning rate (2e-5); the vision
tower frozen; lr 5e-5, weight decay 0.01, 1 epoch, cosine schedule, warmup ratio 0.02, bf16 where
the hardware has it, gradient checkpointing, max length 2048. The loss counts the assistant's
tokens only (the chat template's ``{% generation %}`` spans), in every turn of a conversation.

Distribution is accelerate's job: the same command runs under ``accelerate launch`` with the
configs shipped in ``skinvl/accelerate_configs/`` (DDP, DeepSpeed ZeRO-3, FSDP)::

    mm-skin build examples/mm-skin-sample --out mm-skin      # or your own release
    skinvl train --model skinvl-tiny --data mm-skin --config vqa --output out/lora
    accelerate launch --config_file "$(skinvl train --print-accelerate-config deepspeed_zero3)" \\
        -m skinvl train --model zwq803/SkinVL-PubMM --data my/mm-skin --config vqa --output out/lora --merge

Python use::

    from skinvl.train import TrainOptions, train
    result = train(TrainOptions(model="skinvl-tiny", data=["mm-skin"],
                                configs=["vqa"], output="out/lora", max_steps=10, batch_size=2))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports stay out of ``skinvl --help``
    import datasets
    import torch
    from transformers import ProcessorMixin

logger = logging.getLogger(__name__)

ACCELERATE_CONFIG_DIR = Path(__file__).parent / "accelerate_configs"
ACCELERATE_CONFIGS = ("ddp", "deepspeed_zero3", "fsdp")
TEMPLATES = ("vicuna_v1", "mistral_instruct")
# The projector's module name in transformers' LLaVA (and so in SkinVL, which subclasses it).
PROJECTOR_MODULE = "multi_modal_projector"
LANGUAGE_MODEL_MODULE = "language_model"
IGNORE_INDEX = -100


@dataclasses.dataclass
class TrainOptions:
    """Everything ``skinvl train`` takes; the defaults are the MM-Skin paper's recipe.

    ``data`` lists datasets (local folder, ``save_to_disk`` folder or Hub id); ``configs`` gives one
    config name for all of them or one per dataset; ``mix`` gives sampling proportions (one per
    dataset, interleaved) or ``None`` to concatenate them all once.
    """

    model: str
    data: list[str]
    output: str
    configs: list[str | None] = dataclasses.field(default_factory=lambda: [None])
    split: str = "train"
    mix: list[float] | None = None
    mix_stopping: str = "all_exhausted"
    template: str = "vicuna_v1"
    lora_r: int = 128
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    learning_rate: float = 5e-5
    projector_lr: float = 2e-5
    weight_decay: float = 0.01
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 2048
    warmup_ratio: float = 0.02
    lr_scheduler: str = "cosine"
    bf16: bool | None = None  # None: bf16 when the accelerator supports it (never on CPU)
    gradient_checkpointing: bool = True
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    resume_from_checkpoint: str | bool | None = None
    report_to: str | None = None  # None: tensorboard when installed, else none
    num_workers: int = 0
    seed: int = 42
    merge: bool = False
    merge_output: str | None = None  # default: OUTPUT/merged


@dataclasses.dataclass
class TrainResult:
    """What a run produced: the adapter folder, the merged folder (if any) and the log history."""

    adapter_dir: Path
    merged_dir: Path | None
    log_history: list[dict[str, Any]]
    global_step: int


# --------------------------------------------------------------------------------------------
# Data: every source becomes the canonical conversation schema (images + typed messages)
# --------------------------------------------------------------------------------------------


def conversation_features() -> datasets.Features:
    """The canonical training schema: ``images`` (undecoded) + ``messages`` with typed content."""
    from datasets import Features, Image, List, Value

    content = List({"type": Value("string"), "text": Value("string")})
    return Features(
        {
            "images": List(Image(decode=False)),
            "messages": List({"role": Value("string"), "content": content}),
        }
    )


def load_source(spec: str, config: str | None, split: str) -> datasets.Dataset:
    """Load one dataset split from a Hub id, a data folder, or a ``save_to_disk`` folder.

    A folder without named configs (e.g. plain Parquet) is accepted for any ``config``; its columns
    decide the schema.
    """
    import datasets

    path = Path(spec)
    if path.is_dir() and any((path / f).exists() for f in ("state.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(
                    f"{spec}: no split {split!r} (splits: {sorted(loaded)}); pass --split"
                )
            loaded = loaded[split]
        return loaded
    try:
        return datasets.load_dataset(spec, config, split=split)
    except ValueError as err:
        message = str(err)
        if config is not None and "not found" in message and "'default'" in message:
            # A folder of plain files has only the implicit default config.
            try:
                return datasets.load_dataset(spec, split=split)
            except Exception as fallback:
                raise ValueError(
                    f"{spec}: {message}, and its default config does not load either "
                    f"({type(fallback).__name__}); give the folder a README.md with a `configs:` "
                    "block (as `mm-skin build` writes) or point --data at one config's files"
                ) from fallback
        hint = "; pass --split" if "split" in message.lower() else ""
        raise ValueError(f"{spec} (config {config!r}, split {split!r}): {message}{hint}") from err


def _schema_of(dataset: datasets.Dataset, spec: str) -> str:
    columns = set(dataset.column_names)
    if {"images", "messages"} <= columns:
        return "instruct"
    if {"image", "question", "answer"} <= columns:
        return "vqa"
    raise ValueError(
        f"{spec}: columns {sorted(columns)} match neither the vqa schema (image, question, answer) "
        "nor the instruct schema (images, messages); pass --config vqa or --config instruct"
    )


def _vqa_to_conversation(row: dict[str, Any], index: int, spec: str) -> dict[str, Any]:
    question, answer = row["question"], row["answer"]
    for name, value in (("question", question), ("answer", answer)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                f"{spec}: row {index} has {name}={value!r}; every vqa row needs a non-empty "
                f"{name} (fix or drop the row)"
            )
    if row["image"] is None:
        raise ValueError(f"{spec}: row {index} has no image; drop the row or add its image")
    return {
        "images": [row["image"]],
        "messages": [
            {
                "role": "user",
                # image first, as LLaVA's "<image>\n{question}"
                "content": [{"type": "image", "text": None}, {"type": "text", "text": question}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
    }


def _normalize_instruct(row: dict[str, Any], index: int, spec: str) -> dict[str, Any]:
    images = [image for image in (row["images"] or [])]
    messages = []
    image_items = 0
    for turn, message in enumerate(row["messages"] or []):
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise ValueError(
                f"{spec}: row {index}, message {turn} has role {role!r}; expected system, user "
                "or assistant"
            )
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        items = []
        for item in content or []:
            kind = item.get("type")
            if kind == "image":
                image_items += 1
                items.append({"type": "image", "text": None})
            elif kind == "text":
                items.append({"type": "text", "text": item.get("text") or ""})
            else:
                raise ValueError(
                    f"{spec}: row {index}, message {turn} has a content item of type {kind!r}; "
                    "expected 'image' or 'text'"
                )
        messages.append({"role": role, "content": items})
    if image_items != len(images):
        raise ValueError(
            f"{spec}: row {index} has {len(images)} image(s) but {image_items} image item(s) in "
            "its messages; each image needs one {'type': 'image'} content item, in order"
        )
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{spec}: row {index} has no assistant message, so nothing to learn")
    return {"images": images, "messages": messages}


def to_conversations(dataset: datasets.Dataset, spec: str) -> datasets.Dataset:
    """Turn a vqa- or instruct-schema split into the canonical schema, validating every row.

    Images pass through undecoded (no re-encoding); bad rows raise with the dataset and row index.
    """
    from datasets import Image, List

    schema = _schema_of(dataset, spec)
    if schema == "vqa":
        dataset = dataset.cast_column("image", Image(decode=False))
        convert = _vqa_to_conversation
    else:
        dataset = dataset.cast_column("images", List(Image(decode=False)))
        convert = _normalize_instruct
    converted = dataset.map(
        convert,
        with_indices=True,
        fn_kwargs={"spec": spec},
        remove_columns=dataset.column_names,
        features=conversation_features(),
        desc=f"{spec}: {schema} rows -> conversations",
    )
    return converted.cast_column("images", List(Image()))


def load_conversations(
    data: Sequence[str],
    configs: Sequence[str | None],
    *,
    split: str = "train",
    mix: Sequence[float] | None = None,
    mix_stopping: str = "all_exhausted",
    seed: int = 42,
) -> datasets.Dataset:
    """Load and combine the training datasets as one conversation dataset.

    Without ``mix`` the datasets are concatenated (every row once, as the authors' PubMM mix).
    With ``mix`` (one proportion per dataset, normalised to sum 1) rows are drawn with those
    probabilities by ``datasets.interleave_datasets``; ``mix_stopping="all_exhausted"`` (default)
    goes on until every dataset has been seen in full, oversampling the smaller ones,
    ``"first_exhausted"`` stops when the first runs out.
    """
    import datasets

    if not data:
        raise ValueError("no training data: pass --data at least once")
    if len(configs) == 1:
        configs = list(configs) * len(data)
    if len(configs) != len(data):
        raise ValueError(
            f"{len(configs)} --config values for {len(data)} --data values; give one for all "
            "or one per --data, in the same order"
        )
    parts = [
        to_conversations(load_source(s, c, split), s) for s, c in zip(data, configs, strict=True)
    ]
    for spec, part in zip(data, parts, strict=True):
        if len(part) == 0:
            raise ValueError(f"{spec}: split {split!r} is empty")
    if mix is None:
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    if len(mix) != len(data) or any(p <= 0 for p in mix):
        raise ValueError(
            f"--mix {','.join(map(str, mix))}: need {len(data)} positive proportions (one "
            "per --data, e.g. --mix 0.7,0.3); leave out a dataset you do not want"
        )
    probabilities = [p / sum(mix) for p in mix]
    return datasets.interleave_datasets(
        parts, probabilities=probabilities, seed=seed, stopping_strategy=mix_stopping
    )


# --------------------------------------------------------------------------------------------
# Batches: chat template -> input_ids / labels with the assistant-only mask
# --------------------------------------------------------------------------------------------


def resolve_template(processor: ProcessorMixin, name: str) -> str:
    """Check that ``processor`` has the named chat template with ``{% generation %}`` markers."""
    templates = processor.chat_template
    if not isinstance(templates, dict):
        templates = {"default": templates} if templates else {}
    if name not in templates:
        raise ValueError(
            f"the processor has no chat template {name!r} (it has {sorted(templates) or 'none'}); "
            f"use --template with one of {list(TEMPLATES)} on a SkinVL processor"
        )
    if "{% generation %}" not in templates[name] and "{%- generation %}" not in templates[name]:
        raise ValueError(
            f"chat template {name!r} has no {{% generation %}} markers, so the assistant tokens "
            "cannot be found for the loss mask; use a SkinVL processor's template"
        )
    return name


@dataclasses.dataclass
class ConversationCollator:
    """Tokenize conversations with a chat template; labels are the assistant tokens only.

    Prompt, system, image and padding tokens get label -100. Sequences longer than
    ``max_length`` are cut at the end; a cut through an image's tokens is an error.
    """

    processor: Any
    template: str
    max_length: int = 2048

    def conversation(self, example: dict[str, Any]) -> list[dict[str, Any]]:
        """Rebuild one canonical example as a processor chat with the images in place."""
        images = iter(example["images"] or [])
        messages = []
        for message in example["messages"]:
            content = []
            for item in message["content"]:
                if item["type"] == "image":
                    content.append({"type": "image", "image": next(images).convert("RGB")})
                else:
                    content.append({"type": "text", "text": item["text"]})
            messages.append({"role": message["role"], "content": content})
        return messages

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.processor.apply_chat_template(
            [self.conversation(example) for example in examples],
            chat_template=self.template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "right"},
        )
        assistant = batch.pop("assistant_masks").bool()
        labels = batch["input_ids"].masked_fill(~assistant, IGNORE_INDEX)
        labels = labels.masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        batch["labels"] = labels
        if batch["input_ids"].shape[1] > self.max_length:
            image_token_id = self.processor.image_token_id
            cut = batch["input_ids"][:, self.max_length :]
            if (cut == image_token_id).any():
                row = int((cut == image_token_id).any(dim=1).nonzero()[0])
                raise ValueError(
                    f"a conversation ({int(batch['attention_mask'][row].sum())} tokens) has image "
                    f"tokens beyond --max-length {self.max_length}; raise --max-length or move the "
                    "image to the first turn"
                )
            for key in ("input_ids", "attention_mask", "labels"):
                batch[key] = batch[key][:, : self.max_length]
        unlearned = (batch["labels"] == IGNORE_INDEX).all(dim=1)
        if unlearned.any():
            logger.warning(
                "%d of %d conversations in this batch have no assistant token within "
                "--max-length %d and add nothing to the loss",
                int(unlearned.sum()),
                len(examples),
                self.max_length,
            )
        return dict(batch)


# --------------------------------------------------------------------------------------------
# Model: base loading, LoRA on the language model, projector param group
# --------------------------------------------------------------------------------------------


def load_base_model(name: str, dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """Load model and processor with ``skinvl.load``: a preset name ("skinvl-tiny"), a native
    SkinVL folder, an authors'-format (llava_mistral) folder or a Hub id."""
    import skinvl

    return skinvl.load(name, dtype=dtype)


def language_model_lora_targets(model: torch.nn.Module) -> str:
    """A peft ``target_modules`` regex selecting every linear layer of the language model.

    The vision tower, the projector and the LM head are left out. The regex names the leaf
    modules found in this model (q/k/v/o/gate/up/down_proj for Mistral and Llama), so it stays
    short in adapter_config.json and still matches under peft's ``base_model.model.`` prefix.
    """
    import torch

    leaves = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and f".{LANGUAGE_MODEL_MODULE}." in f".{name}":
            leaves.add(name.rsplit(".", 1)[-1])
    if not leaves:
        raise ValueError(
            f"{type(model).__name__} has no linear layers under a '{LANGUAGE_MODEL_MODULE}' "
            "module; skinvl train expects a LLaVA-family model"
        )
    names = "|".join(sorted(leaves))
    return rf".*\.{LANGUAGE_MODEL_MODULE}\.(?:.*\.)?(?:{names})"


def apply_lora(
    model: Any, *, r: int, alpha: int, dropout: float, fp32_trainable: bool = True
) -> Any:
    """Wrap ``model`` with LoRA on the language model; the projector is trained in full.

    peft freezes everything else (the vision tower included). The projector is a
    ``modules_to_save`` copy, merged back by ``merge_and_unload``. With ``fp32_trainable`` the
    trainable weights (LoRA and projector copy) are kept in fp32 under a bf16 base, so the
    optimizer updates full-precision weights; DeepSpeed and FSDP keep their own fp32 copies, so
    there it is off.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=language_model_lora_targets(model),
        modules_to_save=[PROJECTOR_MODULE],
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    for name, param in peft_model.named_parameters():
        if fp32_trainable and param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()  # fp32 trainable copies (LoRA and projector)
        if "vision_tower" in name and param.requires_grad:
            raise RuntimeError(f"vision tower parameter {name} is trainable; it must stay frozen")
    return peft_model


def _is_projector_param(name: str) -> bool:
    return f"{PROJECTOR_MODULE}." in name


def _make_trainer_class() -> type:
    from transformers import Trainer

    class SkinVLTrainer(Trainer):
        """Trainer whose optimizer gives the projector its own learning rate (LLaVA's mm_projector_lr)."""

        def __init__(self, *args: Any, projector_lr: float | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.projector_lr = projector_lr

        def create_optimizer(self, model: Any = None) -> Any:
            opt_model = self.model if model is None else model
            if self.optimizer is None and self.projector_lr is not None:
                decay = set(self.get_decay_parameter_names(opt_model))
                groups: dict[tuple[bool, bool], list] = {
                    (proj, dec): [] for proj in (False, True) for dec in (True, False)
                }
                for name, param in opt_model.named_parameters():
                    if param.requires_grad:
                        groups[(_is_projector_param(name), name in decay)].append(param)
                # Language-model groups first: the logged learning_rate is param_groups[0]'s.
                param_groups = [
                    {
                        "params": params,
                        "weight_decay": self.args.weight_decay if dec else 0.0,
                        **({"lr": self.projector_lr} if proj else {}),
                    }
                    for (proj, dec), params in groups.items()
                    if params
                ]
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(
                    self.args, opt_model
                )
                self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
            return super().create_optimizer(model)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "learning_rate" in logs and self.projector_lr is not None:
                # Both groups share the schedule's multiplier; scale the logged (group 0) value so
                # the two are taken at the same step.
                scale = self.projector_lr / self.args.learning_rate
                logs["projector_learning_rate"] = logs["learning_rate"] * scale
            super().log(logs, start_time)

    return SkinVLTrainer


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _default_report_to() -> str:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return "none"
    return "tensorboard"


def sharding_engine() -> str | None:
    """Which sharding engine ``accelerate launch`` set up for this process: deepspeed, fsdp or None."""
    import os

    for engine in ("deepspeed", "fsdp"):
        if os.environ.get(f"ACCELERATE_USE_{engine.upper()}", "false").lower() == "true":
            return engine
    return None


def _bf16_supported() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def training_arguments(options: TrainOptions) -> Any:
    """The ``TrainingArguments`` for ``options`` (built before the model, as ZeRO-3 init needs)."""
    import torch
    from transformers import TrainingArguments

    if not 0 <= options.warmup_ratio < 1:
        raise ValueError(f"--warmup-ratio {options.warmup_ratio}: use a fraction in [0, 1)")
    bf16 = _bf16_supported() if options.bf16 is None else options.bf16
    return TrainingArguments(
        output_dir=options.output,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum,
        learning_rate=options.learning_rate,
        weight_decay=options.weight_decay,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        lr_scheduler_type=options.lr_scheduler,
        warmup_steps=options.warmup_ratio,  # a float < 1 is a ratio of the total steps
        bf16=bf16,
        activation_checkpointing=options.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=options.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=options.save_total_limit,
        report_to=options.report_to or _default_report_to(),
        dataloader_num_workers=options.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False,  # the collator needs images + messages
        label_names=["labels"],
        ddp_find_unused_parameters=False,
        seed=options.seed,
        # On a machine without an accelerator, processes started by torchrun / `accelerate launch
        # --multi_gpu` must join as CPU ranks (gloo) rather than as single-process runs.
        use_cpu=not torch.accelerator.is_available(),
    )


def train(options: TrainOptions, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run the LoRA fine-tune described by ``options``; returns where things were written.

    Writes the adapter (plus the trained projector) and the processor to ``options.output``,
    checkpoints to ``options.output/checkpoint-*``, and with ``merge`` a merged checkpoint.
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (timing, early stopping...).
    """
    import torch

    args = training_arguments(options)
    engine = sharding_engine()
    # bf16 base weights as the authors (LLaVA + DeepSpeed) loaded them; FSDP instead shards fp32
    # weights and computes in bf16 through its mixed-precision policy.
    dtype = torch.bfloat16 if args.bf16 and engine != "fsdp" else torch.float32
    model, processor = load_base_model(options.model, dtype=dtype)
    template = resolve_template(processor, options.template)
    with args.main_process_first(desc="preparing the training data"):
        dataset = load_conversations(
            options.data,
            options.configs,
            split=options.split,
            mix=options.mix,
            mix_stopping=options.mix_stopping,
            seed=options.seed,
        )
    # The adapter's base_model_name_or_path: what the user named (presets have no path).
    model.config._name_or_path = model.config._name_or_path or options.model
    for config in (model.config, getattr(model.config, "text_config", None)):
        if config is not None:
            config.use_cache = False  # no KV cache while training (and with checkpointing)
    peft_model = apply_lora(
        model,
        r=options.lora_r,
        alpha=options.lora_alpha,
        dropout=options.lora_dropout,
        fp32_trainable=engine is None,
    )
    if args.process_index == 0:
        peft_model.print_trainable_parameters()
    trainer = _make_trainer_class()(
        model=peft_model,
        args=args,
        train_dataset=dataset,
        data_collator=ConversationCollator(processor, template, options.max_length),
        processing_class=processor,
        projector_lr=options.projector_lr,
        callbacks=list(callbacks) or None,
    )
    trainer.train(resume_from_checkpoint=options.resume_from_checkpoint)
    trainer.save_model(options.output)
    adapter_dir = Path(options.output)
    merged_dir = None
    if options.merge:
        merged_dir = Path(options.merge_output or adapter_dir / "merged")
        if trainer.is_world_process_zero():
            if engine == "deepspeed":
                # The merge reloads the base whole on this one process: no ZeRO-3 partitioning.
                from transformers.integrations.deepspeed import unset_hf_deepspeed_config

                unset_hf_deepspeed_config()
            merge_dtype = torch.bfloat16 if args.bf16 else torch.float32
            merge_adapter(options.model, adapter_dir, merged_dir, dtype=merge_dtype)
        trainer.accelerator.wait_for_everyone()
    return TrainResult(
        adapter_dir=adapter_dir,
        merged_dir=merged_dir,
        log_history=list(trainer.state.log_history),
        global_step=trainer.state.global_step,
    )


def merge_adapter(
    base_model: str, adapter_dir: str | Path, output: str | Path, *, dtype: Any = None
) -> Path:
    """Merge a trained adapter into a fresh copy of its base; save model + processor natively.

    The base is reloaded whole on this process (so this works after DeepSpeed/FSDP sharded
    training), the LoRA deltas are folded in and the trained projector replaces the original.
    The result loads with one ``from_pretrained`` and is ready for ``skinvl push``.
    """
    from peft import PeftModel

    model, processor = load_base_model(base_model, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    output = Path(output)
    merged.save_pretrained(output)
    processor.save_pretrained(output)
    (output / "merge_source.json").write_text(
        json.dumps({"base_model": base_model, "adapter": str(adapter_dir)}, indent=2) + "\n"
    )
    return output


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parse_mix(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--mix {text!r}: expected comma-separated proportions such as 0.7,0.3"
        ) from err


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    defaults = TrainOptions(model="", data=[], output="")
    parser = subparsers.add_parser(
        "train",
        help="LoRA fine-tune SkinVL (the MM-Skin paper's recipe) on MM-Skin-format data",
        description=(
            "LoRA fine-tune with transformers' Trainer and peft. Defaults are the paper's recipe "
            "(LoRA r=128/alpha=64/dropout 0.05 on the language model's linear layers, projector "
            "trained fully at 2e-5, vision tower frozen, lr 5e-5, cosine, warmup 0.02, 1 epoch, "
            "bf16 where supported, gradient checkpointing, max length 2048). Loss on assistant "
            "tokens only. Runs as is on one device, or under `accelerate launch` with "
            "--config_file from --print-accelerate-config {ddp,deepspeed_zero3,fsdp}."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--print-accelerate-config",
        choices=ACCELERATE_CONFIGS,
        metavar="NAME",
        help=f"print the path of a shipped accelerate config ({', '.join(ACCELERATE_CONFIGS)}) and exit",
    )
    add("--model", help="preset name, SkinVL/LLaVA checkpoint folder, authors' folder or Hub id")
    add(
        "--data",
        action="append",
        default=[],
        metavar="DATASET",
        help="dataset folder, save_to_disk folder or Hub id; repeat to mix datasets",
    )
    add(
        "--config",
        action="append",
        default=[],
        metavar="NAME",
        help="dataset config (vqa: image/question/answer; instruct: images/messages); "
        "once for all --data or once per --data",
    )
    add("--split", default=defaults.split, help="dataset split to train on")
    add(
        "--mix",
        type=_parse_mix,
        metavar="P1,P2,...",
        help="sampling proportions, one per --data (interleaved); default: concatenate all",
    )
    add(
        "--mix-stopping",
        default=defaults.mix_stopping,
        choices=("all_exhausted", "first_exhausted", "all_exhausted_without_replacement"),
        help="with --mix: go on until every dataset was seen in full (oversampling the smaller "
        "ones), or stop when the first runs out",
    )
    add(
        "--template",
        default=defaults.template,
        choices=TEMPLATES,
        help="chat template for training (the authors trained with vicuna_v1)",
    )
    add("--output", help="adapter, checkpoints and logs go here")
    add("--lora-r", type=int, default=defaults.lora_r, help="LoRA rank")
    add("--lora-alpha", type=int, default=defaults.lora_alpha, help="LoRA alpha")
    add("--lora-dropout", type=float, default=defaults.lora_dropout, help="LoRA dropout")
    add("--learning-rate", type=float, default=defaults.learning_rate, help="LoRA learning rate")
    add("--projector-lr", type=float, default=defaults.projector_lr, help="projector learning rate")
    add("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW weight decay")
    add("--epochs", type=float, default=defaults.epochs, help="training epochs")
    add("--max-steps", type=int, default=defaults.max_steps, help="overrides --epochs when > 0")
    add("--batch-size", type=int, default=defaults.batch_size, help="per device")
    add("--grad-accum", type=int, default=defaults.grad_accum, help="gradient accumulation steps")
    add(
        "--max-length",
        type=int,
        default=defaults.max_length,
        help="tokens per sequence (image tokens included); longer ones are cut at the end",
    )
    add(
        "--warmup-ratio",
        type=float,
        default=defaults.warmup_ratio,
        help="linear warmup, fraction of all steps (then cosine)",
    )
    add(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: on where the GPU supports bf16, off on CPU",
    )
    add(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=defaults.gradient_checkpointing,
        help="recompute activations in the backward pass (less memory, slower)",
    )
    add(
        "--logging-steps",
        type=int,
        default=defaults.logging_steps,
        help="log loss and learning rates every N steps",
    )
    add(
        "--save-steps",
        type=int,
        default=defaults.save_steps,
        help="write OUTPUT/checkpoint-N every N steps",
    )
    add("--save-total-limit", type=int, default=defaults.save_total_limit, help="checkpoints kept")
    add(
        "--resume-from-checkpoint",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="resume from CHECKPOINT, or from the latest checkpoint in --output when no path",
    )
    add(
        "--report-to",
        default=None,
        help="Trainer report_to (tensorboard, wandb, none...); default: tensorboard when installed",
    )
    add("--num-workers", type=int, default=defaults.num_workers, help="dataloader workers")
    add(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed for initialisation, shuffling and --mix",
    )
    add(
        "--merge",
        action="store_true",
        help="also write a merged SkinVL checkpoint (native format) to --merge-output",
    )
    add("--merge-output", default=None, help="default: OUTPUT/merged")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``skinvl train``."""
    if args.print_accelerate_config:
        print(ACCELERATE_CONFIG_DIR / f"{args.print_accelerate_config}.yaml")
        return 0
    missing = [
        flag
        for flag, value in (
            ("--model", args.model),
            ("--data", args.data),
            ("--output", args.output),
        )
        if not value
    ]
    if missing:
        raise SystemExit(f"skinvl train: {', '.join(missing)} required")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = TrainOptions(
        model=args.model,
        data=list(args.data),
        configs=list(args.config) or [None],
        output=args.output,
        **{
            field.name: getattr(args, field.name)
            for field in dataclasses.fields(TrainOptions)
            if field.name not in ("model", "data", "configs", "output")
            and hasattr(args, field.name)
        },
    )
    result = train(options)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    print(f"adapter: {result.adapter_dir} ({result.global_step} steps)")
    if result.merged_dir is not None:
        print(f"merged checkpoint: {result.merged_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m skinvl.train ...``: the ``train`` sub-command on its own (same options)."""
    parser = argparse.ArgumentParser(prog="skinvl")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
