"""skinvl train on every family: SkinVL, LLaVA, Gemma 3, PaliGemma and Idefics3 / SmolVLM.

Tiny random checkpoints built in code (tests/eval_families.py, the ``skinvl-tiny`` preset) train
for two steps on the built sample (``vqa_folder``), with ``--merge``; one run per family, whose
assertions cover: the loss masking chosen and recorded, LoRA on the language model only, the
projector trained at its own rate, the vision tower untouched, the rows showing test images left
out (and said so), and the merged folder loading with the stock Auto classes and answering.
"""

from __future__ import annotations

import json

import datasets
import pytest
import torch
from eval_families import FAMILIES
from PIL import Image as PILImage
from test_train import write_release

import skinvl
from skinvl.inference.families import family_of
from skinvl.train import TrainOptions, train
from skinvl.training_data import (
    IGNORE_INDEX,
    load_conversations,
    loss_masking,
    to_prompt_completion,
    vision_collator,
)
from skinvl.training_record import SETTINGS_FILE

# family -> (loss masking, what ends a learned answer). The tiny LLaVA, Gemma 3 and Idefics3
# templates have no {% generation %} markers (and are none TRL knows); PaliGemma has no template.
EXPECTED = {
    "skinvl": ("assistant_only", "</s>"),
    "llava": ("completion_only", "</s>"),
    "gemma3": ("completion_only", "<end_of_turn>\n"),
    "paligemma": ("completion_only", "</s>"),
    "idefics3": ("completion_only", "<end_of_utterance> \n"),
}


@pytest.fixture(scope="module")
def family_models(tmp_path_factory) -> dict[str, str]:
    """family name -> what ``--model`` takes for it (a saved folder, or the preset)."""
    root = tmp_path_factory.mktemp("families")
    models = {name: str(build(root / name)) for name, build in FAMILIES.items()}
    return {"skinvl": "skinvl-tiny", **models}


def _learned(processor, batch, row: int) -> str:
    ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
    assert all(label in (IGNORE_INDEX, i) for label, i in zip(labels, ids, strict=True))
    return processor.tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX])


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_answer_is_learned_once_with_the_right_masking(family_models, name, tmp_path):
    """A two-turn instruct row: assistant_only learns both answers in one sequence; completion_only
    makes one prompt-completion example per assistant turn (prompt: everything before it, with the
    images shown so far) and learns exactly that answer and its end-of-turn."""
    model, processor = skinvl.load(family_models[name])
    kind, end = EXPECTED[name]
    bare = family_of(model).prompt == "bare"
    masking = loss_masking(processor, bare=bare)
    assert masking.kind == kind and (masking.template is None) == bare
    rows = load_conversations([str(write_release(tmp_path / "data"))], ["instruct"]).rows.select(range(2))
    answers = [[m["content"][0]["text"] for m in r["messages"] if m["role"] == "assistant"] for r in rows]
    if kind == "completion_only":
        rows = to_prompt_completion(rows, bare=bare)
        assert len(rows) == 4 and [len(r["images"]) for r in rows] == [1, 1, 1, 1]
        if not bare:
            assert [m["role"] for m in rows[1]["prompt"]] == ["user", "assistant", "user"]
        else:
            assert rows[1]["prompt"] == f"Describe the lesion.\n{answers[0][0]}\nIs it symmetric?"
        want = [a + end for pair in answers for a in pair]
    else:
        want = ["".join(a + end for a in pair) for pair in answers]
    batch = vision_collator(processor, masking, max_length=512)(list(rows))
    got = [_learned(processor, batch, i) for i in range(len(rows))]
    assert [g.replace(" ", "") for g in got] == [w.replace(" ", "") for w in want]
    assert batch["input_ids"][0, 0] == processor.tokenizer.bos_token_id or name == "paligemma"


@pytest.fixture(scope="module")
def runs(family_models, vqa_folder, tmp_path_factory):
    """One two-step training run with --merge per family, on the sample's vqa rows plus two-turn
    instruct rows (which have no image_in_test column); records the optimizer's groups."""
    from transformers import TrainerCallback

    class Groups(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kw):
            names = {id(p): n for n, p in model.named_parameters()}
            self.lrs = {names[id(p)]: g["lr"] for g in optimizer.param_groups for p in g["params"]}

    instruct = write_release(tmp_path_factory.mktemp("instruct") / "two-turns")
    results = {}
    for name, model in family_models.items():
        out = tmp_path_factory.mktemp(name) / "lora"
        options = TrainOptions(model=model, data=[str(vqa_folder), str(instruct)], configs=["vqa", "instruct"],
                               output=str(out), lora_r=4, lora_alpha=8, projector_lr=5e-3, merge=True,
                               training_args=dict(per_device_train_batch_size=2, max_steps=2, max_length=256,
                                                  learning_rate=1e-2, warmup_steps=0, logging_steps=1,
                                                  save_steps=100, report_to="none"))  # fmt: skip
        groups = Groups()
        results[name] = (options, train(options, callbacks=[groups]), groups.lrs)
    return results


def _tensors(model, prefix: str) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if f".{prefix}." in f".{n}"}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_family_trains_merges_and_answers(runs, family_models, vqa_folder, name):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    options, result, lrs = runs[name]
    assert result.global_step == 2
    settings = json.loads((result.merged_dir / SETTINGS_FILE).read_text())
    assert settings["loss_masking"] == EXPECTED[name][0]
    assert settings["chat_template_source"].startswith("the model's chat template" if name != "paligemma"
                                                       else "none (bare prompt")  # fmt: skip
    # leak-free by default: the sample's train rows whose image is a test image, counted apart
    train_rows = datasets.load_dataset(str(vqa_folder), "vqa", split="train")
    test_ids = set(datasets.load_dataset(str(vqa_folder), "vqa", split="test")["image_id"])
    shown = sum(i in test_ids for i in train_rows["image_id"])
    assert shown == 10 and settings["test_image_rows_left_out"] == {vqa_folder.name: shown, "two-turns": None}
    assert settings["train_rows"] == len(train_rows) - shown + 4
    # completion_only: one example per assistant turn (the 4 instruct rows have two each)
    assert settings["train_examples"] == settings["train_rows"] + (4 if EXPECTED[name][0] == "completion_only" else 0)
    card = (result.adapter_dir / "README.md").read_text()
    assert ("They make 46 prompt-completion examples" in card) == (EXPECTED[name][0] == "completion_only")

    base, _ = skinvl.load(family_models[name])
    family = family_of(base)
    # LoRA landed on the language model's linear layers only, the projector is saved in full
    adapter = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert f"\\.{family.language_model}\\." in adapter["target_modules"]
    assert adapter["modules_to_save"] == [family.projector]
    lora = {n for n, _ in lrs.items() if "lora_" in n}
    assert lora and all(f".{family.language_model}." in n for n in lora)
    # the projector trained at its own rate, in its own optimizer groups
    assert {lr for n, lr in lrs.items() if f".{family.projector}." in n} == {5e-3}
    assert {lr for n, lr in lrs.items() if n in lora} == {1e-2}
    assert not any(f".{family.vision_tower}." in n for n in lrs)

    merged = AutoModelForImageTextToText.from_pretrained(str(result.merged_dir)).eval()
    assert type(merged) is type(base)
    before, after = (_tensors(m, family.vision_tower) for m in (base, merged))
    assert before and all(torch.equal(before[n], after[n]) for n in before)  # the tower is frozen
    before, after = (_tensors(m, family.projector) for m in (base, merged))
    assert before and any(not torch.equal(before[n], after[n]) for n in before)  # the projector learned
    linear = [n for n, p in base.named_parameters() if f".{family.language_model}." in n and n.endswith("proj.weight")]
    after = dict(merged.named_parameters())
    assert any(not torch.equal(dict(base.named_parameters())[n], after[n]) for n in linear)  # LoRA merged

    processor = AutoProcessor.from_pretrained(str(result.merged_dir))
    question = "What is the diagnosis?"
    if family.prompt == "bare":
        text = question
    else:
        turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = processor.apply_chat_template(turn, add_generation_prompt=True,
                                             **({"chat_template": "vicuna_v1"} if name == "skinvl" else {}))  # fmt: skip
    inputs = processor(images=PILImage.new("RGB", (40, 32), (200, 30, 30)), text=text, return_tensors="pt")
    with torch.no_grad():
        out = merged.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_left_out_rows_are_carded_and_can_be_kept(runs, vqa_folder):
    """The count is said on the command line, in the card beside the adapter; --include-test-images
    keeps every row (and the card says so)."""
    from skinvl.training_record import adapter_card

    _, result, _ = runs["skinvl"]
    card = (result.adapter_dir / "README.md").read_text()
    assert f"`{vqa_folder.name}` (config `vqa`, split `train`; 10 rows whose image is a test image left out)" in card
    assert "`two-turns` (config `instruct`, split `train`; test images not checked: no `image_in_test` column)" in card
    assert "loss on assistant tokens only (`assistant_only`)" in card
    settings = json.loads((result.adapter_dir / SETTINGS_FILE).read_text())
    kept = load_conversations([str(vqa_folder)], ["vqa"], include_test_images=True)
    assert len(kept.rows) == 48 and kept.test_image_rows_left_out == {}
    settings["options"]["include_test_images"], settings["test_image_rows_left_out"] = True, {}
    assert "rows showing test images included (--include-test-images)" in adapter_card(settings)
    # the instruct config has no image_in_test column: said, not silently skipped
    data = load_conversations([str(vqa_folder)], ["instruct"])
    assert data.test_image_rows_left_out == {str(vqa_folder): None}


def test_cli_says_how_many_rows_were_left_out(vqa_folder, tmp_path, capsys):
    from test_train import train_parser

    argv = ["train", "--model", "skinvl-tiny", "--data", str(vqa_folder), "--config", "vqa", "--output",
            str(tmp_path / "out"), "--max-steps", "1", "--batch-size", "1", "--max-length", "128",
            "--lora-r", "2", "--report-to", "none"]  # fmt: skip
    args = train_parser().parse_args(argv)
    assert args.func(args) == 0
    assert f"{vqa_folder}: left out 10 rows whose image is a test image" in capsys.readouterr().out
    assert train_parser().parse_args([*argv, "--include-test-images"]).include_test_images is True


def test_a_model_without_any_chat_template_or_bare_prompt_is_refused(family_models):
    _, processor = skinvl.load(family_models["paligemma"])
    with pytest.raises(ValueError, match="no chat template"):
        loss_masking(processor)  # not prompted bare: nothing renders its rows



def test_a_released_template_trl_knows_is_swapped_for_its_marked_version(family_models, tmp_path):
    """Gemma 3's released chat template (as TRL ships it) has no markers; TRL's training version
    of it has, so the run is assistant_only and learns both answers of a two-turn row."""
    from importlib.resources import files

    _, processor = skinvl.load(family_models["gemma3"])
    processor.chat_template = (files("trl") / "chat_templates" / "gemma3.jinja").read_text()
    masking = loss_masking(processor)
    assert masking.kind == "assistant_only"
    assert masking.source == "TRL's training version of the model's chat template"
    row = load_conversations([str(write_release(tmp_path / "data"))], ["instruct"]).rows[0]
    batch = vision_collator(processor, masking, max_length=512)([row])
    answers = [m["content"][0]["text"] for m in row["messages"] if m["role"] == "assistant"]
    assert _learned(processor, batch, 0).replace(" ", "") == "".join(a + "<end_of_turn>\n" for a in answers).replace(" ", "")
