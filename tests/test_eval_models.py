"""``skinvl eval vqa`` on other families: LLaVA, Gemma 3, PaliGemma and Idefics3 tiny checkpoints.

Each family is saved with save_pretrained and run through the real CLI (``skinvl.cli.main``):
its predictions must equal a direct ``model.generate`` on the same prompt, written out here
literally, token for token; batch 1 must equal batch 4; a model without a chat template fails
with one line naming the fix, and ``--chat-template FILE`` repairs it.
"""

from __future__ import annotations

import json

import pytest
from eval_families import FAMILIES, LLAVA_TEMPLATE, build_llava

from skinvl.cli import main

LIMIT, NEW_TOKENS = 5, 5
# The prompt each family's processor gets, and whether the tokenizer adds <bos> to it.
EXPECTED_PROMPT = {
    "llava": (lambda q: f"USER: <image>\n{q} ASSISTANT:", True),
    "gemma3": (lambda q: f"<s><start_of_turn>user\n<start_of_image>{q}<end_of_turn>\n<start_of_turn>model\n", False),
    "paligemma": (lambda q: q, True),  # the processor adds the image tokens, <bos> and "\n"
    "idefics3": (lambda q: f"<|im_start|>User:<image>{q}<end_of_utterance>\nAssistant:", True),
}


def _eval(model: str, data, out, *extra: str) -> int:
    return main(["eval", "vqa", "--model", model, "--data", str(data), "--out", str(out), "--limit", str(LIMIT),
                 "--max-new-tokens", str(NEW_TOKENS), "--no-bertscore", "--protocol", "standard", *extra])


def _records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def _direct_answers(folder, data) -> tuple[list[str], list[str]]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from skinvl.evaluation.vqa import load_vqa_split

    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    render, add_bos = EXPECTED_PROMPT[folder.name]
    answers, prompts = [], []
    for row in load_vqa_split(str(data), limit=LIMIT):
        prompts.append(render(row["question"]))
        inputs = processor(images=[row["image"].convert("RGB")], text=[prompts[-1]], return_tensors="pt",
                           add_special_tokens=add_bos)
        inputs.pop("labels", None)
        ids = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)[0, inputs["input_ids"].shape[1]:]
        answers.append(processor.tokenizer.decode(ids, skip_special_tokens=True).strip())
    return answers, prompts


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_eval_vqa_on_family_equals_direct_generate(family, vqa_folder, tmp_path):
    folder = FAMILIES[family](tmp_path / family)
    assert _eval(str(folder), vqa_folder, tmp_path / "b4", "--batch-size", "4", "--name", f"tiny {family}") == 0
    batched = _records(tmp_path / "b4")
    direct, prompts = _direct_answers(folder, vqa_folder)
    assert [r["prediction"] for r in batched] == direct
    assert all(r["status"] == "ok" for r in batched) and len(batched) == LIMIT

    doc = json.loads((tmp_path / "b4" / "results.json").read_text())
    assert doc["model_info"]["model_type"] == family and doc["first_prompt"] == prompts[0]
    assert doc["model_info"]["adapter"] == ("paligemma" if family == "paligemma" else "chat_template")
    assert len(doc["model_info"]["weights_blake2b"]) == 32 and doc["dataset_info"]["rows"] == LIMIT
    assert doc["name"] == f"tiny {family}" and doc["decoding"]["do_sample"] is False and doc["decoding"]["seed"] == 0
    assert doc["dataset_info"]["split"] == "test" and doc["packages"]["transformers"]
    assert doc["started_at"] <= doc["finished_at"]

    # Greedy answers do not depend on the batch size (left padding + attention mask).
    assert _eval(str(folder), vqa_folder, tmp_path / "b1", "--batch-size", "1") == 0
    assert _records(tmp_path / "b1") == batched


def test_model_without_chat_template_names_the_fix(vqa_folder, tmp_path, capsys):
    folder = build_llava(tmp_path / "llava")
    reference = tmp_path / "reference"
    assert _eval(str(folder), vqa_folder, reference) == 0
    for name in ("chat_template.jinja", "chat_template.json"):
        (folder / name).unlink(missing_ok=True)
    config = json.loads((folder / "processor_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "processor_config.json").write_text(json.dumps(config))

    capsys.readouterr()
    assert _eval(str(folder), vqa_folder, tmp_path / "none") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error", "Traceback"))]
    assert len(err) == 1 and "no chat template" in err[0] and "--chat-template FILE" in err[0], err

    template = tmp_path / "llava.jinja"
    template.write_text(LLAVA_TEMPLATE)
    assert _eval(str(folder), vqa_folder, tmp_path / "file", "--chat-template", str(template)) == 0
    assert _records(tmp_path / "file") == _records(reference)
    assert json.loads((tmp_path / "file" / "results.json").read_text())["model_info"]["template"] == "file:llava.jinja"
