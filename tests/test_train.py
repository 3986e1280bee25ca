"""skinvl train: label mask, data loading and mixing, LoRA targeting, overfitting, merge, resume.

Everything runs on CPU with the ``skinvl-tiny`` preset (random weights) and tiny MM-Skin-format
datasets written to tmp_path as Parquet with a README ``configs:`` block, as the release is.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import datasets
import pytest
import torch
from datasets import ClassLabel, Features, Image, List, Value
from PIL import Image as PILImage

import skinvl
from mm_skin.cli import add_subcommands, make_parser, options_from
from skinvl import train as skinvl_train
from skinvl.train import TrainOptions, language_model_lora_targets, lora_config, train
from skinvl.training_data import (
    IGNORE_INDEX,
    load_conversations,
    loss_masking,
    vision_collator,
)
from skinvl.training_record import SETTINGS_FILE

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
ANSWERS = [
    "A melanoma with an atypical pigment network.",
    "A psoriasis plaque with silver scale.",
    "Acanthosis and parakeratosis in the dermis.",
    "A pearly papule with arborizing vessels.",
]
README = """---
configs:
- config_name: vqa
  default: true
  data_files:
  - split: train
    path: vqa/train-*.parquet
- config_name: instruct
  data_files:
  - split: train
    path: instruct/train-*.parquet
---
"""
MESSAGES_FEATURE = List(
    {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
)


def _images() -> list[PILImage.Image]:
    return [PILImage.new("RGB", (40 + 8 * i, 32), c) for i, c in enumerate(COLORS)]


def _instruct_messages(answer: str, index: int) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "text": None},
                {"type": "text", "text": "Describe the lesion."},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        {"role": "user", "content": [{"type": "text", "text": "Is it symmetric?"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Yes." if index % 2 else "No."}],
        },
    ]


def write_release(root: Path, answers: list[str] = ANSWERS) -> Path:
    """A tiny MM-Skin-format folder: vqa + instruct configs, Parquet with embedded images."""
    images = _images()[: len(answers)]
    vqa = datasets.Dataset.from_dict(
        {
            "image": images,
            "image_id": [f"bk1_{i}" for i in range(len(answers))],
            "question": ["What is the diagnosis?"] * len(answers),
            "answer": answers,
            "modality": [i % 3 for i in range(len(answers))],
        },
        features=Features(
            {
                "image": Image(),
                "image_id": Value("string"),
                "question": Value("string"),
                "answer": Value("string"),
                "modality": ClassLabel(names=["clinical", "dermoscopic", "pathology"]),
            }
        ),
    )
    (root / "vqa").mkdir(parents=True)
    vqa.to_parquet(str(root / "vqa" / "train-00000-of-00001.parquet"))
    instruct = datasets.Dataset.from_dict(
        {
            "images": [[image] for image in images],
            "messages": [_instruct_messages(a, i) for i, a in enumerate(answers)],
            "source": ["MM"] * len(answers),
        },
        features=Features(
            {"images": List(Image()), "messages": MESSAGES_FEATURE, "source": Value("string")}
        ),
    )
    (root / "instruct").mkdir()
    instruct.to_parquet(str(root / "instruct" / "train-00000-of-00001.parquet"))
    (root / "README.md").write_text(README)
    return root


def collator(processor, template: str = "vicuna_v1", max_length: int = 2048):
    """TRL's vision-language collator as `skinvl train` sets it up for ``template``."""
    return vision_collator(processor, loss_masking(processor, template), max_length)


def apply_lora(model, *, r: int, alpha: int, dropout: float):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, r=r, alpha=alpha, dropout=dropout))


def train_parser() -> argparse.ArgumentParser:
    parser = make_parser("skinvl", "test", "0")
    skinvl_train.register_cli(add_subcommands(parser))
    return parser


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_release(tmp_path_factory.mktemp("release"))


# ------------------------------------------------------------------ label mask


def expected_mask(tokens: list[str], eos: str, pad_from: int) -> list[bool]:
    """Independent rule: a token is learned iff it lies after an 'ASSISTANT:' (vicuna_v1) or
    '[/INST]' (mistral_instruct) marker, up to and including the next eos; the separator space
    right after the marker (a bare '▁' token) belongs to the prompt. ``tokens`` have '▁' -> ' '."""
    mask, learning, text = [], False, ""
    for i, token in enumerate(tokens):
        if i >= pad_from:
            mask.append(False)
            continue
        if learning == "start" and token.strip() == "":
            mask.append(False)
            continue
        mask.append(bool(learning))
        if learning and token == eos:
            learning = False
        text += token
        if text.endswith(("ASSISTANT:", "[/INST]")):
            learning, text = "start", ""
    return mask


def _conversation(image: PILImage.Image) -> dict:
    return {
        "images": [image],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "text": None},
                    {"type": "text", "text": "What type of lesion is shown?"},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "A melanoma."}]},
            {"role": "user", "content": [{"type": "text", "text": "Is it symmetric?"}]},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "No, the border is irregular."}],
            },
        ],
    }


@pytest.mark.parametrize("template", ["vicuna_v1", "mistral_instruct"])
def test_label_mask_multi_turn_token_by_token(tiny, template):
    _, processor = tiny
    tokenizer = processor.tokenizer
    long = _conversation(_images()[0])
    short = {"images": long["images"], "messages": long["messages"][:2]}
    batch = collator(processor, template, max_length=2048)([long, short])

    for row, example in enumerate((long, short)):
        ids = batch["input_ids"][row].tolist()
        labels = batch["labels"][row].tolist()
        tokens = [tokenizer.convert_ids_to_tokens(i).replace("▁", " ") for i in ids]
        length = int(batch["attention_mask"][row].sum())
        want = expected_mask(tokens, tokenizer.eos_token, pad_from=length)
        got = [label != IGNORE_INDEX for label in labels]
        assert got == want, list(zip(tokens, got, want, strict=True))
        # learned tokens carry their own id; the image tokens are never learned
        assert all(label in (IGNORE_INDEX, i) for label, i in zip(labels, ids, strict=True))
        assert processor.image_token_id in ids
        assert all(
            label == IGNORE_INDEX
            for label, i in zip(labels, ids, strict=True)
            if i == processor.image_token_id
        )
        learned = tokenizer.decode([i for i, g in zip(ids, got, strict=True) if g])
        answers = [m["content"][0]["text"] for m in example["messages"] if m["role"] == "assistant"]
        assert learned.replace(" ", "") == "".join(a + "</s>" for a in answers).replace(" ", "")


def test_truncation_keeps_images_and_rejects_cut_images(tiny):
    _, processor = tiny
    example = _conversation(_images()[0])
    full = collator(processor, "vicuna_v1", 2048)([example])
    n = full["input_ids"].shape[1]
    cut = collator(processor, "vicuna_v1", n - 3)([example])
    assert cut["input_ids"].shape[1] == n - 3
    assert torch.equal(cut["labels"], full["labels"][:, : n - 3])
    first_image = full["input_ids"][0].tolist().index(processor.image_token_id)
    with pytest.raises(ValueError, match="image tokens beyond --max-length"):
        collator(processor, "vicuna_v1", first_image + 1)([example])


def test_unknown_template_name_is_refused(tiny):
    _, processor = tiny
    with pytest.raises(ValueError, match="no chat template 'chatml'"):
        loss_masking(processor, "chatml")


def test_training_sequences_start_with_bos_as_inference_does(tiny):
    """TRL tokenizes the rendered chat without special tokens; ours renders the BOS the tokenizer
    adds at inference (the authors' tokenizer_image_token did the same in training)."""
    _, processor = tiny
    example = _conversation(_images()[0])
    ids = collator(processor)([example])["input_ids"][0].tolist()
    prompt = processor.apply_chat_template(example["messages"][:1], chat_template="vicuna_v1",
                                           add_generation_prompt=True)  # fmt: skip
    inference = processor(images=_images()[0], text=prompt)["input_ids"][0]
    assert ids[0] == processor.tokenizer.bos_token_id and ids.count(ids[0]) == 1
    assert ids[: len(inference)] == list(inference)


def test_template_without_markers_trains_completions_and_a_marked_file_restores_turns(tiny, tmp_path):
    """Without {% generation %} markers each assistant turn becomes a prompt-completion pair that
    learns the same answer tokens; a marked --chat-template file brings back assistant_only."""
    import copy

    from skinvl.training_data import to_prompt_completion

    _, processor = tiny
    plain = copy.deepcopy(processor)
    unmarked = processor.chat_template["vicuna_v1"].replace("{% generation %}", "")
    plain.chat_template = unmarked.replace("{% endgeneration %}", "")
    masking = loss_masking(plain, "vicuna_v1")
    assert (masking.kind, masking.source) == ("completion_only", "the model's chat template")
    single = _conversation(_images()[0])
    single["messages"] = single["messages"][:2]
    want = collator(processor)([single])
    pairs = to_prompt_completion(datasets.Dataset.from_list([single]))
    got = vision_collator(plain, masking)(list(pairs))
    assert torch.equal(got["input_ids"], want["input_ids"])
    assert torch.equal(got["labels"], want["labels"])
    (tmp_path / "plain.jinja").write_text(plain.chat_template)
    from_file = loss_masking(plain, file=str(tmp_path / "plain.jinja"))
    assert (from_file.kind, from_file.source) == ("completion_only", "--chat-template plain.jinja")
    marked = tmp_path / "marked.jinja"
    marked.write_text(processor.chat_template["vicuna_v1"])
    masking = loss_masking(plain, file=str(marked))
    assert masking.kind == "assistant_only"
    got = vision_collator(plain, masking)([_conversation(_images()[0])])
    assert torch.equal(got["labels"], collator(processor)([_conversation(_images()[0])])["labels"])


# ------------------------------------------------------------------ data


def test_vqa_and_instruct_become_conversations(release):
    vqa = load_conversations([str(release)], ["vqa"]).rows
    instruct = load_conversations([str(release)], ["instruct"]).rows
    assert vqa.column_names == instruct.column_names == ["images", "messages"]
    assert len(vqa) == len(instruct) == 4
    row = vqa[1]
    assert isinstance(row["images"][0], PILImage.Image) and row["images"][0].size == (48, 32)
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert row["messages"][0]["content"][0]["type"] == "image"
    assert row["messages"][0]["content"][1]["text"] == "What is the diagnosis?"
    assert row["messages"][1]["content"][0]["text"] == ANSWERS[1]
    assert [m["role"] for m in instruct[2]["messages"]] == ["user", "assistant"] * 2


def test_mix_concatenates_or_interleaves_with_proportions(release, tmp_path):
    other = write_release(tmp_path / "other", answers=[f"Answer {i}." for i in range(4)])
    both = load_conversations([str(release), str(other)], ["vqa"]).rows
    assert len(both) == 8
    ours = {f"Answer {i}." for i in range(4)}

    def from_other(rows) -> int:
        return sum(r["messages"][1]["content"][0]["text"] in ours for r in rows)

    skewed = load_conversations([str(release), str(other)], ["vqa"], mix=[1, 9], seed=0).rows
    assert len(skewed) >= 8 and from_other(skewed) > len(skewed) - from_other(skewed)
    first = load_conversations(
        [str(release), str(other)], ["vqa"], mix=[1, 9], seed=0, mix_stopping="first_exhausted"
    ).rows
    assert len(first) <= 8 and from_other(first) == 4  # stopped when `other` ran out
    mixed = load_conversations(
        [str(release), str(other)], ["vqa", "instruct"], mix=[0.5, 0.5], seed=0
    ).rows
    turns = {len(r["messages"]) for r in mixed}
    assert turns == {2, 4}  # vqa rows from one, multi-turn instruct rows from the other
    with pytest.raises(ValueError, match="one per --data"):
        load_conversations([str(release), str(other)], ["vqa"], mix=[1.0])
    with pytest.raises(ValueError, match="positive proportions"):
        load_conversations([str(release), str(other)], ["vqa"], mix=[0, 1])


def test_save_to_disk_folder_and_plain_parquet_folder(release, tmp_path):
    ds = datasets.load_dataset(str(release), "vqa", split="train")
    ds.save_to_disk(str(tmp_path / "disk"))
    assert len(load_conversations([str(tmp_path / "disk")], ["vqa"]).rows) == 4
    plain = tmp_path / "plain"
    plain.mkdir()
    ds.to_parquet(str(plain / "train.parquet"))
    assert len(load_conversations([str(plain)], ["vqa"]).rows) == 4  # no configs: columns decide


def test_bad_rows_are_reported_with_their_index(tmp_path):
    root = write_release(tmp_path / "bad", answers=["Fine.", "  ", "Fine.", "Fine."])
    with pytest.raises(ValueError, match=r"row 1 has answer='  '"):
        load_conversations([str(root)], ["vqa"])
    ds = datasets.Dataset.from_dict(
        {"images": [[], []], "messages": [_instruct_messages("a", 0)] * 2},
        features=Features({"images": List(Image()), "messages": MESSAGES_FEATURE}),
    )
    ds.save_to_disk(str(tmp_path / "noimg"))
    with pytest.raises(ValueError, match=r"row 0 has 0 image\(s\) but 1 image item"):
        load_conversations([str(tmp_path / "noimg")], ["instruct"])
    with pytest.raises(ValueError, match="match neither the vqa schema"):
        datasets.Dataset.from_dict({"text": ["x"]}).save_to_disk(str(tmp_path / "text"))
        load_conversations([str(tmp_path / "text")], [None])


# ------------------------------------------------------------------ LoRA and optimizer


def test_lora_on_language_model_linears_only_projector_full_vision_frozen():
    model, _ = skinvl.load("skinvl-tiny")
    lm_linears = {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".language_model." in f".{name}"
    }
    assert {n.rsplit(".", 1)[-1] for n in lm_linears} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert "language_model" in language_model_lora_targets(model)
    peft_model = apply_lora(model, r=8, alpha=16, dropout=0.05)
    wrapped = {
        name.removeprefix("base_model.model.")
        for name, module in peft_model.named_modules()
        if hasattr(module, "lora_A")
    }
    assert wrapped == lm_linears
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(
        ("lora_" in n and ".language_model." in n) or "multi_modal_projector.modules_to_save" in n
        for n in trainable
    )
    assert any("multi_modal_projector" in n for n in trainable)
    assert not any("vision_tower" in n for n in trainable)
    assert not any("lm_head" in n or "embed_tokens" in n for n in trainable)


def test_backward_skips_the_frozen_vision_tower(release, tmp_path):
    """Gradients reach LoRA and the projector, never the vision tower's activations."""
    options = TrainOptions(model="skinvl-tiny", data=[str(release)], configs=["vqa"],
                           output=str(tmp_path), lora_r=8, lora_alpha=16,
                           training_args=dict(per_device_train_batch_size=2, max_steps=1,
                                              report_to="none", save_steps=10, warmup_steps=0))  # fmt: skip
    trainer = skinvl_train.build_trainer(options)
    tower = trainer.model.get_base_model().model.vision_tower
    flags = []
    tower.register_forward_hook(lambda m, i, o: flags.append(o.last_hidden_state.requires_grad))
    trainer.train()
    assert flags == [False]  # with activation checkpointing on (the default)
    assert all(p.grad is None for p in tower.parameters())
    projector = trainer.model.get_base_model().model.multi_modal_projector
    trained = projector.modules_to_save["default"].linear_1.weight
    assert not torch.equal(trained, projector.original_module.linear_1.weight)  # it learned


def test_paper_recipe_defaults_and_projector_param_group(release, tmp_path):
    options = TrainOptions(model="skinvl-tiny", data=[str(release)], output=str(tmp_path))
    assert (options.lora_r, options.lora_alpha, options.lora_dropout) == (128, 64, 0.05)
    assert options.projector_lr == 2e-5 and options.template == "vicuna_v1"
    args = skinvl_train.sft_config(options)  # the shipped paper recipe's SFTConfig fields
    assert (args.learning_rate, args.weight_decay, args.num_train_epochs) == (5e-5, 0.01, 1.0)
    assert (args.warmup_steps, args.max_length, args.per_device_train_batch_size) == (0.02, 2048, 16)
    assert args.lr_scheduler_type == "cosine" and args.activation_checkpointing
    assert args.bf16 is False  # CPU has no bf16 training here
    assert args.assistant_only_loss and args.max_length == 2048
    model, processor = skinvl.load("skinvl-tiny")
    trainer = skinvl_train.trainer_class()(
        model=model,
        args=args,
        train_dataset=load_conversations([str(release)], ["vqa"]).rows,
        data_collator=collator(processor),
        processing_class=processor,
        peft_config=lora_config(model, r=8, alpha=16, dropout=0.0),
        projector_lr=2e-5,
    )
    peft_model = trainer.model
    optimizer = trainer.create_optimizer()
    lrs = {}
    names = {id(p): n for n, p in peft_model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            lrs[names[id(p)]] = (group["lr"], group["weight_decay"])
    assert {lr for n, (lr, _) in lrs.items() if "multi_modal_projector" in n} == {2e-5}
    assert {lr for n, (lr, _) in lrs.items() if "lora_" in n} == {5e-5}
    assert {wd for n, (_, wd) in lrs.items() if n.endswith("bias")} == {0.0}
    assert len(lrs) == sum(p.requires_grad for p in peft_model.parameters())


# ------------------------------------------------------------------ training, merge, resume


@pytest.fixture(scope="module")
def trained(release, tmp_path_factory):
    output = tmp_path_factory.mktemp("run") / "lora"
    options = TrainOptions(
        model="skinvl-tiny",
        data=[str(release)],
        configs=["vqa"],
        output=str(output),
        projector_lr=2.5e-3,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        training_args=dict(per_device_train_batch_size=2, max_steps=16, learning_rate=5e-3,
                           warmup_steps=0, logging_steps=1, save_steps=8, report_to="none"),
        merge=True,
    )
    return options, train(options)


def test_overfits_a_handful_of_samples(trained):
    _, result = trained
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert result.global_step == 16 and len(losses) == 16
    assert sum(losses[-4:]) / 4 <= 0.5 * losses[0], losses
    for entry in result.log_history[:-1]:  # the projector follows the schedule at half the lr
        assert entry["projector_learning_rate"] == pytest.approx(entry["learning_rate"] / 2)


def test_merged_logits_equal_peft_logits_and_merged_folder_generates(trained, release):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    options, result = trained
    base, processor = skinvl.load("skinvl-tiny")
    base_projector = base.model.multi_modal_projector.linear_1.weight.detach().clone()
    peft_model = PeftModel.from_pretrained(base, str(result.adapter_dir)).eval()
    batch = collator(processor)(list(load_conversations([str(release)], ["vqa"]).rows))
    batch.pop("labels")
    with torch.no_grad():
        lora_logits = peft_model(**batch).logits
        plain_logits = peft_model.get_base_model()
        with peft_model.disable_adapter():
            base_logits = plain_logits(**batch).logits

    merged = AutoModelForImageTextToText.from_pretrained(str(result.merged_dir)).eval()
    assert type(merged).__name__ == "SkinVLForConditionalGeneration"
    assert not torch.equal(merged.model.multi_modal_projector.linear_1.weight, base_projector)
    with torch.no_grad():
        merged_logits = merged(**batch).logits
    assert not torch.allclose(lora_logits, base_logits, atol=1e-3)  # training changed the model
    torch.testing.assert_close(merged_logits, lora_logits, atol=1e-4, rtol=1e-4)

    merged_processor = AutoProcessor.from_pretrained(str(result.merged_dir))
    prompt = merged_processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Diagnosis?"}]}],
        chat_template="vicuna_v1",
        add_generation_prompt=True,
    )
    inputs = merged_processor(images=_images()[0], text=prompt, return_tensors="pt")
    out = merged.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_run_record_beside_adapter_and_merged_weights(trained):
    """training_settings.json (the run's own settings, base model, versions, rows and steps) and
    a real adapter README instead of peft's template."""
    import json

    options, result = trained
    for folder in (result.adapter_dir, result.merged_dir):
        settings = json.loads((folder / SETTINGS_FILE).read_text())
        assert settings["options"]["lora_r"] == 16 and settings["options"]["per_device_train_batch_size"] == 2
        # published with the weights: absolute local paths keep only their last part
        assert settings["options"]["data"] == [Path(options.data[0]).name]
        assert settings["options"]["output"] == "lora"
        assert settings["base_model"] == "skinvl-tiny" and settings["base_model_kind"] == "preset"
        assert settings["train_rows"] == 4 and settings["global_step"] == 16
        assert settings["epochs_run"] == 8 and settings["effective_batch_size"] == 2
        assert settings["library_versions"]["trl"] and settings["library_versions"]["peft"]
        assert settings["train_loss"] > 0
    card = (result.adapter_dir / "README.md").read_text()
    assert "More Information Needed" not in card and "text-generation" not in card
    assert "pipeline_tag: image-text-to-text" in card and "library_name: peft" in card
    assert "skinvl-tiny" in card and "r 16, alpha 32" in card and "16 steps" in card
    assert "PeftModel.from_pretrained" in card and "4 training rows" in card
    assert str(result.adapter_dir.parent) not in card


def test_checkpoints_and_resume_through_the_cli(trained, tmp_path):
    options, result = trained
    assert sorted(p.name for p in result.adapter_dir.glob("checkpoint-*")) == [
        "checkpoint-16",
        "checkpoint-8",
    ]
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    parser = train_parser()
    argv = [
        "train", "--model", "skinvl-tiny", "--data", options.data[0], "--config", "vqa",
        "--output", str(tmp_path / "resumed"), "--batch-size", "2", "--max-steps", "16",
        "--learning-rate", "5e-3", "--projector-lr", "2.5e-3", "--lora-r", "16",
        "--lora-alpha", "32", "--lora-dropout", "0", "--warmup-ratio", "0", "--logging-steps",
        "1", "--save-steps", "8", "--report-to", "none",
        "--resume-from-checkpoint", str(result.adapter_dir / "checkpoint-8"),
    ]  # fmt: skip
    args = parser.parse_args(argv)
    seen = {}
    original = skinvl_train.train

    def spy(opts):
        seen["result"] = original(opts)
        return seen["result"]

    skinvl_train.train = spy
    try:
        assert args.func(args) == 0
    finally:
        skinvl_train.train = original
    resumed = seen["result"]
    assert resumed.global_step == 16
    steps = [e["step"] for e in resumed.log_history if "loss" in e]
    assert steps == list(range(1, 17))  # steps 1-8 restored from the checkpoint's state
    first = {e["step"]: e["loss"] for e in result.log_history if "loss" in e}
    again = {e["step"]: e["loss"] for e in resumed.log_history if "loss" in e}
    assert again[9] == pytest.approx(first[9], rel=1e-4)  # same state, same data order


def test_cli_help_and_accelerate_config_path(capsys):
    parser = train_parser()
    with pytest.raises(SystemExit) as done:  # prints and exits like --version
        parser.parse_args(["train", "--print-accelerate-config", "deepspeed_zero3"])
    assert done.value.code == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == "deepspeed_zero3.yaml" and path.is_file()
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["train"])
    assert done.value.code == 2
    assert "required: --model, --data, --output" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(required)" in text and "(default: None)" not in text
    for default in ("LoRA rank (default: 128)", "(default: 5e-05)", "(default: 2e-05)",
                    "(default: vicuna_v1)", "(default: 2048)", "(default: cosine)"):
        assert default in text, default  # fmt: skip
    # what tests/test_train_families.py checks run by run
    for claim in ("Any AutoModelForImageTextToText trains (SkinVL, LLaVA, Gemma 3, PaliGemma, Idefics3 / SmolVLM",
                  "else one prompt-completion pair per assistant turn",
                  "vqa rows whose image is a test image are left out unless --include-test-images",
                  "--include-test-images also train on rows whose image is a test image"):
        assert claim in text.replace("- ", "-"), claim  # argparse wraps at hyphens  # fmt: skip


def test_cli_bad_data_is_one_line_and_exit_code_2(tmp_path, capsys):
    root = write_release(tmp_path / "bad", answers=["Fine.", "  ", "Fine.", "Fine."])
    args = train_parser().parse_args(["train", "--model", "skinvl-tiny", "--data", str(root),
                                      "--config", "vqa", "--output", str(tmp_path / "out")])  # fmt: skip
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("skinvl train: ") and "row 1 has answer='  '" in err[-1]


def test_cli_options_are_the_dataclass_fields():
    """Every TrainOptions field is a flag, every trainer field is TRL's SFTConfig's; repeated
    --data/--config gather, --mix takes 0.7,0.3; the flags of earlier releases still work."""
    import dataclasses

    args = train_parser().parse_args([
        "train", "--model", "m", "--data", "a", "--data", "b", "--config", "vqa", "--config",
        "instruct", "--output", "o", "--mix", "0.7,0.3", "--no-gradient-checkpointing", "--bf16",
        "--resume-from-checkpoint", "--merge", "--batch-size", "3", "--epochs", "2",
        "--grad-accum", "4", "--warmup-ratio", "0.1", "--lr-scheduler", "linear",
        "--dataloader-drop-last", "--optim", "adafactor",
    ])  # fmt: skip
    options = options_from(args, TrainOptions)
    assert options.data == ["a", "b"] and options.configs == ["vqa", "instruct"]
    assert list(options.mix) == [0.7, 0.3] and options.merge
    assert options.resume_from_checkpoint == skinvl_train.LATEST
    given = options.training_args
    assert given["bf16"] is True and given["activation_checkpointing"] is False
    assert (given["per_device_train_batch_size"], given["num_train_epochs"]) == (3, 2.0)
    assert (given["gradient_accumulation_steps"], given["warmup_steps"]) == (4, 0.1)
    assert given["lr_scheduler_type"] == "linear" and given["dataloader_drop_last"] is True
    assert given["optim"] == "adafactor" and given["learning_rate"] == 5e-5  # the paper's
    sft = skinvl_train.sft_config(options)
    assert sft.optim == "adafactor" and sft.per_device_train_batch_size == 3
    defaults = TrainOptions(model="m", data=["a"], output="o")
    for field in dataclasses.fields(TrainOptions):
        if field.name not in ("data", "configs", "mix", "resume_from_checkpoint", "merge", "model",
                              "output", "training_args"):  # fmt: skip
            assert getattr(options, field.name) == getattr(defaults, field.name), field.name
    with pytest.raises(SystemExit):
        train_parser().parse_args(["train", "--model", "m", "--data", "a", "--output", "o",
                                   "--mix", "0.7;0.3"])  # fmt: skip


def test_recipe_files_as_trl_reads_them(tmp_path, monkeypatch, capsys):
    """--recipe FILE (or TRL's --config FILE.yaml) sets own and SFTConfig options over the paper's
    recipe; flags win; env is exported; an unknown key is a one-line error; the parser forgets a
    recipe between parses."""
    from skinvl.train import recipe_options
    from skinvl.training_recipe import PAPER_RECIPE, read_recipe

    recipe = tmp_path / "short.yaml"
    recipe.write_text("lora_r: 8\nlearning_rate: 1.0e-3\nmax_steps: 5\nenv:\n  SKINVL_RECIPE_TEST: yes-please\n")
    monkeypatch.delenv("SKINVL_RECIPE_TEST", raising=False)
    base = ["train", "--model", "m", "--data", "a", "--output", "o"]
    for spelling in (["--recipe", str(recipe)], ["--config", str(recipe), "--config", "vqa"]):
        args = train_parser().parse_args([*base, *spelling, "--max-steps", "7"])
        options = options_from(args, TrainOptions)
        assert options.lora_r == 8 and options.lora_alpha == 64 and options.recipe == str(recipe)
        sft = skinvl_train.sft_config(options)
        assert (sft.learning_rate, sft.max_steps, sft.weight_decay) == (1e-3, 7, 0.01)
    assert options.configs == ["vqa"]  # --config vqa still names the dataset config
    assert os.environ["SKINVL_RECIPE_TEST"] == "yes-please"
    parser = train_parser()
    parser.parse_args([*base, "--recipe", str(recipe)])
    again = options_from(parser.parse_args(base), TrainOptions)
    assert again.lora_r == 128 and skinvl_train.sft_config(again).max_steps == -1
    python = recipe_options(recipe, model="m", data=["a"], output="o", training_args={"max_steps": 9})
    assert python.lora_r == 8 and skinvl_train.sft_config(python).max_steps == 9
    assert skinvl_train.sft_config(python).learning_rate == 1e-3
    assert read_recipe("mm_skin_paper") == read_recipe(PAPER_RECIPE)  # a shipped recipe by name
    (tmp_path / "typo.yaml").write_text("learning_rat: 1.0e-3\n")
    with pytest.raises(SystemExit) as done:
        train_parser().parse_args([*base, "--recipe", str(tmp_path / "typo.yaml")])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "typo.yaml" in err and "'learning_rat'" in err and "SFTConfig" in err


@pytest.mark.parametrize(
    ("name", "distributed_type"),
    [("ddp", "MULTI_GPU"), ("deepspeed_zero3", "DEEPSPEED"), ("fsdp", "FSDP")],
)
def test_shipped_accelerate_configs_parse(name, distributed_type):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(skinvl_train.ACCELERATE_CONFIG_DIR / f"{name}.yaml"))
    assert str(config.distributed_type).endswith(distributed_type)
    assert config.mixed_precision == "bf16" and config.num_machines == 1
    if name == "deepspeed_zero3":
        assert config.deepspeed_config["zero_stage"] == 3
        assert config.deepspeed_config["zero3_save_16bit_model"] is True
    if name == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_the_built_sample_release_feeds_training(vqa_folder):
    """The sample release, built with `mm-skin build`, in both training schemas."""
    _, processor = skinvl.load("skinvl-tiny")
    collate = collator(processor)
    vqa = load_conversations([str(vqa_folder)], ["vqa"]).rows
    instruct = load_conversations([str(vqa_folder)], ["instruct"]).rows
    reference = datasets.load_dataset(str(vqa_folder), "vqa", split="train")
    reference = reference.filter(lambda row: not row["image_in_test"])
    assert len(vqa) == len(reference) and len(instruct) > 0
    for rows in (vqa.select(range(2)), instruct.select(range(2))):
        batch = collate(list(rows))
        assert (batch["labels"] != IGNORE_INDEX).any(dim=1).all()
        assert batch["pixel_values"].shape[0] == sum(len(r["images"]) for r in rows)
    first = reference[0]["answer"]
    assert vqa[0]["messages"][1]["content"][0]["text"] == first


def test_fsdp_without_an_accelerator_refuses_at_start(tmp_path, monkeypatch, capsys):
    """accelerate launch with the FSDP config on CPU: exit 2 naming the fix, not a DDP run."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    args = train_parser().parse_args(["train", "--model", "skinvl-tiny", "--data", "nowhere",
                                      "--output", str(tmp_path / "out")])  # fmt: skip
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("skinvl train: FSDP needs GPUs") and "print-accelerate-config ddp" in err
    assert not (tmp_path / "out").exists()


def test_the_record_keeps_the_recipe_read_at_the_start(release, tmp_path):
    """The recipe file may be edited or deleted while a run trains: the record says what ran."""
    from transformers import TrainerCallback

    recipe = tmp_path / "mine.yaml"
    recipe.write_text("weight_decay: 0.02\nmax_steps: 1\n")

    class DeleteRecipe(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            recipe.unlink()

    options = TrainOptions(model="skinvl-tiny", data=[str(release)], configs=["vqa"], output=str(tmp_path / "lora"),
                           recipe=str(recipe), training_args=dict(per_device_train_batch_size=2, report_to="none"))
    train(options, callbacks=[DeleteRecipe()])
    import json

    settings = json.loads((tmp_path / "lora" / "training_settings.json").read_text())
    assert not recipe.exists() and settings["options"]["weight_decay"] == 0.02 and settings["options"]["max_steps"] == 1
