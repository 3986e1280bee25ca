"""``skinvl train``: the SkinVL LoRA recipe (MM-Skin paper) on TRL's ``SFTTrainer`` + peft.

TRL does the training: ``SFTTrainer`` with peft's ``LoraConfig`` and TRL's vision-language collator
(``DataCollatorForVisionLanguageModeling``), whose loss counts the answers only. What is
SkinVL's own is here: the paper's defaults (LoRA r=128, alpha=64, dropout 0.05 on every linear
layer of the language model; the multimodal projector trained fully at its own learning rate,
2e-5; the vision tower frozen; lr 5e-5, weight decay 0.01, 1 epoch, cosine, warmup ratio 0.02,
batch 16 per device, bf16 where the hardware has it, gradient checkpointing, max length 2048,
template vicuna_v1), the projector's optimizer group, the merge, and the record of the run
(``training_settings.json`` and a model card beside the adapter and the merged weights).

Any ``AutoModelForImageTextToText`` trains the same way, with no template edit: SkinVL, LLaVA,
Gemma 3, PaliGemma and Idefics3 / SmolVLM are tested. Which modules are the language model, the
projector and the vision tower comes from the family table (``skinvl.inference.families``). The
loss masking follows the chat template (``--chat-template FILE`` replaces the model's):

* ``assistant_only``: the template marks assistant turns with ``{% generation %}`` (SkinVL's do,
  and TRL supplies marked versions of the templates it knows); every assistant turn is learned.
* ``completion_only``: no markers, so each assistant turn becomes a prompt-completion pair
  (prompt: every message before it, with the images shown so far) and TRL's completion-only
  loss learns the answer and its end-of-turn. A model prompted with bare text and no template
  (PaliGemma) trains on its processor's prefix/suffix format.

``training_settings.json`` records which masking ran and where the template came from.

Training on the ``vqa`` config leaves out the rows whose image is also a test image (the
``image_in_test`` column), prints how many per dataset and records it in
``training_settings.json`` and the adapter's card; ``--include-test-images`` keeps them.

Distribution is accelerate's job: the same command runs under ``accelerate launch`` with the
configs shipped in ``skinvl/accelerate_configs/`` (DDP, DeepSpeed ZeRO-3, FSDP)::

    mm-skin build examples/mm-skin-sample --out mm-skin      # or your own release
    skinvl train --model skinvl-tiny --data mm-skin --config vqa --output out/lora
    accelerate launch --config_file "$(skinvl train --print-accelerate-config deepspeed_zero3)" \\
        -m skinvl train --model zwq803/SkinVL-PubMM --data my/mm-skin --config vqa --output out/lora --merge

Python use::

    from skinvl.train import TrainOptions, train
    result = train(TrainOptions(model="skinvl-tiny", data=["mm-skin"], configs=["vqa"],
                                output="out/lora",
                                training_args={"max_steps": 10, "per_device_train_batch_size": 2}))

The trainer's options are TRL's ``SFTConfig`` fields (``training_args`` here, flags on the command
line); the paper's values ship as a recipe, ``skinvl/recipes/mm_skin_paper.yaml``, and
``--recipe FILE.yaml`` layers another over it (:mod:`skinvl.training_recipe`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mm_skin.cli import ExitCode, add_command, print_problem

from .inference.families import family_of
from .inference.prompts import read_template_file
from .processing_skinvl import PROMPT_TEMPLATES, TRAINING_TEMPLATE
from .training_data import (
    MIX_STOPPING,
    load_conversations,
    loss_masking,
    to_prompt_completion,
    vision_collator,
)
from .training_recipe import (
    apply_env,
    paper_recipe,
    read_recipe,
    sft_values,
    split_recipe,
    train_parser_class,
)
from .training_record import merge_adapter, write_run_record

logger = logging.getLogger(__name__)

ACCELERATE_CONFIG_DIR = Path(__file__).parent / "accelerate_configs"
ACCELERATE_CONFIGS = ("ddp", "deepspeed_zero3", "fsdp")
LATEST = "latest"  # --resume-from-checkpoint without a path
_PAPER = paper_recipe()  # the paper's values are the defaults of the options below


class Proportions(tuple):
    """Sampling proportions, one per ``--data``; on the command line ``0.7,0.3``."""

    def __new__(cls, value: str | Sequence[float] = ()) -> Proportions:
        if isinstance(value, str):
            try:
                value = [float(part) for part in value.split(",")]
            except ValueError as err:
                raise argparse.ArgumentTypeError(
                    f"--mix {value!r}: expected comma-separated proportions such as 0.7,0.3"
                ) from err
        return super().__new__(cls, (float(p) for p in value))


def _opt(default: Any = dataclasses.MISSING, help: str = "", **metadata: Any) -> Any:
    """A dataclass field with its ``--help`` text (and other argparse settings) in metadata."""
    if isinstance(default, list | dict):
        factory = lambda: type(default)(default)  # noqa: E731
        return dataclasses.field(default_factory=factory, metadata={"help": help, **metadata})
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


@dataclasses.dataclass(kw_only=True)
class TrainOptions:
    """Everything ``skinvl train`` takes; the defaults are the MM-Skin paper's recipe.

    ``data`` lists datasets (local folder, ``save_to_disk`` folder or Hub id); ``configs`` gives one
    config name for all of them or one per dataset; ``mix`` gives sampling proportions (one per
    dataset, interleaved) or ``None`` to concatenate them all once.
    """

    model: str = _opt(help="preset name, SkinVL/LLaVA checkpoint folder, authors' folder or Hub id "
                      "(any AutoModelForImageTextToText)", metavar="MODEL")  # fmt: skip
    data: list[str] = _opt(help="dataset folder, save_to_disk folder or Hub id; repeat to mix "
                           "datasets", metavar="DATASET")  # fmt: skip
    output: str = _opt(help="adapter, checkpoints, logs and training_settings.json go here",
                       metavar="DIR")  # fmt: skip
    configs: list[str] = _opt([], "dataset config (vqa: image/question/answer; instruct: "
                              "images/messages); once for all --data or once per --data",
                              aliases=["--config"], metavar="NAME")  # fmt: skip
    split: str = _opt("train", "dataset split to train on")
    mix: Proportions | None = _opt(None, "sampling proportions, one per --data (interleaved); "
                                   "default: concatenate all", metavar="P1,P2,...")  # fmt: skip
    mix_stopping: str = _opt("all_exhausted", "with --mix: go on until every dataset was seen in "
                             "full (oversampling the smaller ones), or stop when the first runs "
                             "out", choices=MIX_STOPPING)  # fmt: skip
    template: str = _opt(TRAINING_TEMPLATE, "the processor's named chat template to train with "
                         f"(SkinVL: {' or '.join(PROMPT_TEMPLATES)}; the authors trained with "
                         f"{TRAINING_TEMPLATE}); a processor with one template uses it")  # fmt: skip
    chat_template: str | None = _opt(None, "a .jinja chat template to train with instead of the "
                                     "model's; with {%% generation %%} markers the loss is on "
                                     "every assistant turn, without them on each turn as a "
                                     "prompt-completion pair", metavar="FILE")  # fmt: skip
    include_test_images: bool = _opt(False, "also train on rows whose image is a test image "
                                     "(image_in_test, vqa config); left out by default")  # fmt: skip
    lora_r: int = _opt(_PAPER["lora_r"], "LoRA rank")
    lora_alpha: int = _opt(_PAPER["lora_alpha"], "LoRA alpha")
    lora_dropout: float = _opt(_PAPER["lora_dropout"], "LoRA dropout")
    projector_lr: float = _opt(_PAPER["projector_lr"], "learning rate of the projector (trained "
                               "in full; --learning-rate is the LoRA weights')")  # fmt: skip
    resume_from_checkpoint: str | None = _opt(None, "resume from CHECKPOINT, or from the latest "
                                              "checkpoint in --output when no path is given",
                                              nargs="?", const=LATEST, metavar="CHECKPOINT")  # fmt: skip
    merge: bool = _opt(False, "also write a merged checkpoint (native format) to --merge-output")
    merge_output: str | None = _opt(None, "where --merge writes; default: OUTPUT/merged",
                                    metavar="DIR")  # fmt: skip
    recipe: str | None = _opt(None, "a YAML recipe (as TRL's --config files: these options and "
                              "TRL SFTConfig fields) over the paper's (mm_skin_paper); flags win; "
                              "--config FILE.yaml also reads one", metavar="FILE")  # fmt: skip
    training_args: dict[str, Any] = _opt({}, "TRL SFTConfig fields over the recipe's "
                                         "(max_steps, per_device_train_batch_size...)", cli=False)  # fmt: skip


def recipe_options(recipe: str | Path | None = None, **options: Any) -> TrainOptions:
    """:class:`TrainOptions` from a recipe, as ``skinvl train --recipe`` builds them.

    The paper's values, then the recipe's, then ``options`` (``training_args`` merged over the
    recipe's SFTConfig fields).
    """
    own, trainer = {}, {}
    if recipe is not None:
        recipe_values = read_recipe(recipe)
        apply_env(recipe_values, recipe)
        own, trainer = split_recipe(recipe_values, TrainOptions, recipe)
    training_args = {**trainer, **options.pop("training_args", {})}
    return TrainOptions(**{**own, **options, "training_args": training_args,
                           "recipe": None if recipe is None else str(recipe)})  # fmt: skip



@dataclasses.dataclass
class TrainResult:
    """What a run produced: the adapter folder, the merged folder (if any) and the log history."""

    adapter_dir: Path
    merged_dir: Path | None
    log_history: list[dict[str, Any]]
    global_step: int


# --------------------------------------------------------------------------------------------
# LoRA on the language model, the projector's param group
# --------------------------------------------------------------------------------------------


def language_model_lora_targets(model: Any) -> str:
    """A peft ``target_modules`` regex selecting every linear layer of the language model.

    The language model is the family's module (``family_of(model).language_model``:
    ``language_model`` in LLaVA, SkinVL, Gemma 3 and PaliGemma, ``text_model`` in Idefics3 /
    SmolVLM). The vision tower, the projector and the LM head are left out. The regex names the
    leaf modules found in this model (q/k/v/o/gate/up/down_proj for Mistral, Llama and Gemma), so
    it stays short in adapter_config.json and still matches under peft's ``base_model.model.``
    prefix.
    """
    import torch

    language_model = family_of(model).language_model
    leaves = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and f".{language_model}." in f".{name}":
            leaves.add(name.rsplit(".", 1)[-1])
    if not leaves:
        raise ValueError(
            f"{type(model).__name__} has no linear layers under a '{language_model}' module; "
            "skinvl train expects an image-text-to-text model with a language model"
        )
    return rf".*\.{language_model}\.(?:.*\.)?(?:{'|'.join(sorted(leaves))})"


def lora_config(model: Any, *, r: int, alpha: int, dropout: float) -> Any:
    """peft's ``LoraConfig``: LoRA on the language model's linears, the projector trained in full.

    peft freezes everything else (the vision tower included). The projector (the family's
    module: ``multi_modal_projector``, Idefics3's ``connector``) is a ``modules_to_save`` copy,
    merged back by ``merge_and_unload``; a model without one trains its LoRA weights only.
    """
    from peft import LoraConfig

    projector = family_of(model).projector
    has_projector = any(name.rsplit(".", 1)[-1] == projector for name, _ in model.named_modules())
    if not has_projector:
        logger.warning("%s has no %s: only the LoRA weights are trained", type(model).__name__, projector)
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=language_model_lora_targets(model),
        modules_to_save=[projector] if has_projector else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _check_trainable(model: Any, fp32: bool) -> None:
    """The vision tower stays frozen; with ``fp32`` the trainable weights (LoRA and projector copy)
    are kept in fp32 under a bf16 base, so the optimizer updates full-precision weights
    (DeepSpeed and FSDP keep their own fp32 copies)."""
    import torch

    tower = f".{family_of(model).vision_tower}."
    for name, param in model.named_parameters():
        if fp32 and param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
        if tower in f".{name}" and param.requires_grad:
            raise RuntimeError(f"vision tower parameter {name} is trainable; it must stay frozen")


def trainer_class() -> type:
    """``SFTTrainer`` whose optimizer gives the projector its own learning rate (LLaVA's
    ``mm_projector_lr``) and whose logs carry ``projector_learning_rate``."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class NoGradsIntoFrozenInputs(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
            model.disable_input_require_grads()  # the hooks Trainer added just before

    class SkinVLTrainer(SFTTrainer):
        def __init__(self, *args: Any, projector_lr: float | None = None,
                     run_facts: dict[str, Any] | None = None, **kwargs: Any) -> None:  # fmt: skip
            super().__init__(*args, **kwargs)
            self.projector_lr = projector_lr
            self.run_facts = run_facts or {}  # what training_settings.json records beyond args
            if not (self.args.activation_checkpointing_kwargs or {}).get("use_reentrant"):
                # With checkpointing, TRL (here) and Trainer (at train) hook every input embedding
                # to require grad, the frozen vision tower's too, so the backward pass ran through
                # the whole tower for nothing; non-reentrant checkpointing needs no such hooks.
                self.model.disable_input_require_grads()
                self.add_callback(NoGradsIntoFrozenInputs())

        def create_optimizer(self, model: Any = None) -> Any:
            opt_model = self.model if model is None else model
            if self.optimizer is None and self.projector_lr is not None:
                decay = set(self.get_decay_parameter_names(opt_model))
                projector = f".{family_of(opt_model).projector}."
                groups: dict[tuple[bool, bool], list] = {}
                for name, param in opt_model.named_parameters():
                    if param.requires_grad:
                        key = (projector in f".{name}", name not in decay)
                        groups.setdefault(key, []).append(param)
                # Language-model groups first: the logged learning_rate is param_groups[0]'s.
                param_groups = [
                    {"params": params, "weight_decay": 0.0 if no_decay else self.args.weight_decay,
                     **({"lr": self.projector_lr} if projector else {})}
                    for (projector, no_decay), params in sorted(groups.items())
                ]  # fmt: skip
                optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
                self.optimizer = optimizer_cls(param_groups, **kwargs)
            return super().create_optimizer(model)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "learning_rate" in logs and self.projector_lr is not None:
                # Both groups share the schedule's multiplier; scale the logged (group 0) value.
                scale = self.projector_lr / self.args.learning_rate
                logs["projector_learning_rate"] = logs["learning_rate"] * scale
            super().log(logs, start_time)

    return SkinVLTrainer


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _default_report_to() -> str:
    from transformers.integrations import is_tensorboard_available

    return "tensorboard" if is_tensorboard_available() else "none"


def sharding_engine() -> str | None:
    """The sharding engine ``accelerate launch`` set up here: deepspeed, fsdp or None."""
    for engine in ("deepspeed", "fsdp"):
        if os.environ.get(f"ACCELERATE_USE_{engine.upper()}", "false").lower() == "true":
            return engine
    return None


def sft_config(options: TrainOptions) -> Any:
    """TRL's ``SFTConfig`` for ``options`` (built before the model, as ZeRO-3 init needs).

    Its fields are the paper recipe's, then ``options.recipe``'s, then ``options.training_args``;
    what none of them sets and depends on the machine is decided here (bf16 where the GPU has it,
    TensorBoard logs when installed, CPU ranks when there is no accelerator).
    """
    import torch
    from trl import SFTConfig

    values = sft_values(options)
    warmup = values.get("warmup_steps", 0)
    if not 0 <= warmup < 1 and not float(warmup).is_integer():
        raise ValueError(f"--warmup-steps {warmup}: use a fraction in [0, 1) or a whole number of steps")
    machine = {
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "report_to": _default_report_to(),
        "dataloader_pin_memory": torch.cuda.is_available(),
        # On a machine without an accelerator, processes started by torchrun / `accelerate launch
        # --multi_gpu` must join as CPU ranks (gloo) rather than as single-process runs.
        "use_cpu": not torch.accelerator.is_available(),
    }
    values.update({key: value for key, value in machine.items() if values.get(key) is None})
    values.setdefault("activation_checkpointing_kwargs", {"use_reentrant": False})
    values.setdefault("logging_first_step", True)
    return SFTConfig(output_dir=options.output, assistant_only_loss=True, **values)


def build_trainer(options: TrainOptions, callbacks: Sequence[Any] = ()) -> Any:
    """Load the base model and the data and return the ready ``SFTTrainer`` (not yet trained)."""
    import torch

    import skinvl

    engine = sharding_engine()
    if engine == "fsdp" and not torch.accelerator.is_available():
        # accelerate would fall back to plain data parallel and the run would not be sharded.
        raise ValueError(
            "FSDP needs GPUs (or another torch accelerator) and none is here; on CPU launch with "
            "--config_file \"$(skinvl train --print-accelerate-config ddp)\" or deepspeed_zero3"
        )
    args = sft_config(options)
    # bf16 base weights as the authors (LLaVA + DeepSpeed) loaded them; FSDP instead shards fp32
    # weights and computes in bf16 through its mixed-precision policy.
    dtype = torch.bfloat16 if args.bf16 and engine != "fsdp" else torch.float32
    model, processor = skinvl.load(options.model, dtype=dtype)
    bare = family_of(model).prompt == "bare"
    masking = loss_masking(processor, options.template, options.chat_template, bare=bare)
    args.assistant_only_loss = masking.kind == "assistant_only"
    args.completion_only_loss = masking.kind == "completion_only"
    if options.chat_template:  # TRL's checks see it, and the saved processor carries it
        processor.chat_template = read_template_file(options.chat_template)  # checked: regular, UTF-8, <= 1 MB
    with args.main_process_first(desc="preparing the training data"):
        data = load_conversations(
            options.data, options.configs, split=options.split, mix=options.mix,
            mix_stopping=options.mix_stopping, seed=args.seed,
            include_test_images=options.include_test_images,
        )  # fmt: skip
        rows = data.rows if args.assistant_only_loss else to_prompt_completion(data.rows, bare=bare)
    if args.process_index == 0:
        _say_what_was_left_out(data.test_image_rows_left_out)
    # The adapter's base_model_name_or_path: what the user named (presets have no path).
    model.config._name_or_path = model.config._name_or_path or options.model
    trainer = trainer_class()(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=vision_collator(processor, masking, args.max_length),
        processing_class=processor,
        peft_config=lora_config(
            model, r=options.lora_r, alpha=options.lora_alpha, dropout=options.lora_dropout
        ),
        projector_lr=options.projector_lr,
        run_facts={
            "train_rows": len(data.rows),
            "loss_masking": masking.kind,
            "chat_template_source": masking.source,
            "test_image_rows_left_out": data.test_image_rows_left_out,
        },
        callbacks=list(callbacks) or None,
    )
    _check_trainable(trainer.model, fp32=engine is None)
    if args.process_index == 0:
        trainer.model.print_trainable_parameters()
    return trainer


def _say_what_was_left_out(left_out: dict[str, int | None]) -> None:
    """One line per --data: rows left out for showing a test image (the run record keeps them)."""
    for spec, count in left_out.items():
        if count is None:
            print(f"{spec}: no image_in_test column, so rows showing test images cannot be left out")
        else:
            print(f"{spec}: left out {count} rows whose image is a test image "
                  "(--include-test-images keeps them)")  # fmt: skip


def train(options: TrainOptions, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run the LoRA fine-tune described by ``options``; returns where things were written.

    Writes the adapter (plus the trained projector), the processor, ``training_settings.json`` and
    a README to ``options.output``, checkpoints to ``options.output/checkpoint-*``, and with
    ``merge`` a merged checkpoint (with the same settings file). ``callbacks`` are extra
    ``transformers.TrainerCallback`` objects (timing, early stopping...).
    """
    import torch

    # The trainer fields set by the recipe or the user, read once now: the recipe file may be
    # edited or gone when the run ends hours later.
    fields = sorted(sft_values(options))
    trainer = build_trainer(options, callbacks)
    resume = options.resume_from_checkpoint
    output = trainer.train(resume_from_checkpoint=True if resume == LATEST else resume)
    trainer.save_model(options.output)
    adapter_dir, merged_dir = Path(options.output), None
    if trainer.is_world_process_zero():
        write_run_record(options, trainer, output.metrics, fields)
    if options.merge:
        merged_dir = Path(options.merge_output or adapter_dir / "merged")
        if trainer.is_world_process_zero():
            if sharding_engine() == "deepspeed":
                # The merge reloads the base whole on this one process: no ZeRO-3 partitioning.
                from transformers.integrations.deepspeed import unset_hf_deepspeed_config

                unset_hf_deepspeed_config()
            dtype = torch.bfloat16 if trainer.args.bf16 else torch.float32
            template = options.chat_template
            merge_adapter(options.model, adapter_dir, merged_dir, dtype=dtype, chat_template=template)
        trainer.accelerator.wait_for_everyone()
    return TrainResult(
        adapter_dir=adapter_dir,
        merged_dir=merged_dir,
        log_history=list(trainer.state.log_history),
        global_step=trainer.state.global_step,
    )


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


class _PrintAccelerateConfig(argparse.Action):
    """``--print-accelerate-config NAME``: print a shipped config's path and exit (as --version)."""

    def __call__(self, parser: Any, namespace: Any, value: Any, option: Any = None) -> None:
        print(ACCELERATE_CONFIG_DIR / f"{value}.yaml")
        parser.exit(ExitCode.OK)


def run_cli(options: TrainOptions) -> int:
    """Handler of ``skinvl train``: train, then print where the adapter (and merge) went."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .extras import extra_problem

    problem = extra_problem("train", "skinvl train")
    if problem:  # before the model loads
        print_problem(problem, "skinvl train")
        return ExitCode.BAD_INPUT
    try:
        result = train(options)
    except ValueError as err:  # bad data, template or option: the message names it and the fix
        print_problem(err, "skinvl train")
        return ExitCode.BAD_INPUT
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"adapter: {result.adapter_dir} ({result.global_step} steps)")
        if result.merged_dir is not None:
            print(f"merged checkpoint: {result.merged_dir}")
    return ExitCode.OK


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command, derived from :class:`TrainOptions`."""
    parser = add_command(
        subparsers, "train", TrainOptions, run_cli,
        help="LoRA fine-tune SkinVL or any image-text-to-text model (the MM-Skin paper's recipe) "
        "on MM-Skin-format data",
        description=(
            "LoRA fine-tune with TRL's SFTTrainer and peft. Defaults are the paper's recipe "
            "(LoRA r=128/alpha=64/dropout 0.05 on the language model's linear layers, projector "
            "trained fully at 2e-5, vision tower frozen, lr 5e-5, cosine, warmup 0.02, 1 epoch, "
            "batch 16, bf16 where supported, gradient checkpointing, max length 2048). Any "
            "AutoModelForImageTextToText trains (SkinVL, LLaVA, Gemma 3, PaliGemma, Idefics3 / "
            "SmolVLM tested). Loss on the answers only: assistant turns where the chat template "
            "has {% generation %} markers, else one prompt-completion pair per assistant turn. "
            "vqa rows whose image is a test image are left out unless --include-test-images. "
            "Runs as is on one device, or under `accelerate launch` with --config_file from "
            "--print-accelerate-config {ddp,deepspeed_zero3,fsdp}. The trainer options are TRL's "
            "SFTConfig fields (listed last); --recipe FILE.yaml (or TRL's --config FILE.yaml) sets "
            "any option from a YAML recipe over the paper's."
        ),
        parser_class=train_parser_class(TrainOptions),
    )  # fmt: skip
    parser.add_argument(
        "--print-accelerate-config", action=_PrintAccelerateConfig, choices=ACCELERATE_CONFIGS,
        metavar="NAME",
        help=f"print the path of a shipped accelerate config ({', '.join(ACCELERATE_CONFIGS)}) "
        "and exit",
    )  # fmt: skip
