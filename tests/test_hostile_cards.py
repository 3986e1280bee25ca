"""Data going into cards (issue 20, item 22): HTML and Markdown from a release's test-CSV file name,
its sample description or a modality value, and from a results.json, are escaped in every card."""

from __future__ import annotations

import json
import re

from test_dataset import make_release

import mm_skin_dataset as mm
from mm_skin.schema import SYNTHETIC_MARKER
from skinvl.model_card import render_model_card

SCRIPT = "<script>alert(1)</script>"
LINK = "[click me](javascript:alert(1))"
IMAGE = "![x](https://evil.example/t.png)"
TICKS = "`</code><img src=x onerror=alert(1)>`"


def _raw_markup(text: str) -> list[str]:
    """Hostile constructs that survived as live HTML or Markdown (inside a code span they are text:
    they count only when a backtick in the data ended the span early)."""
    prose = re.sub(r"`[^`\n]*`", "", text)
    live = [m for m in ("<script", "<img", "<b>") if m in prose]
    # A link or image needs an unescaped "[...]" right before its "(": "\]" is text.
    return live + re.findall(r"(?<!\\)\]\((?:javascript:|https://evil)", prose)


def test_dataset_card_escapes_file_names_descriptions_and_modality_values(tmp_path):
    source = make_release(tmp_path / "release", test=[["dataset/bk1_1_1.png", "What is shown?", "A naevus."]])
    official = source / "Dataframe/test/vqa/MM-Skin_test.csv"
    official.rename(official.with_name("`<img src=x onerror=alert(1)>`|<b>x_test.csv"))  # the only *_test.csv
    (source / SYNTHETIC_MARKER).write_text(json.dumps({"synthetic": True, "description": f"{SCRIPT} {LINK} {IMAGE}"}))
    caption = source / "MM-SkinQA/caption.csv"
    caption.write_text(caption.read_text().replace(",skin\n", ",<b>Skin</b>\n"))
    out = tmp_path / "out"
    mm.build(source, out, modality_map=["<b>Skin</b>=clinical"], overwrite=True)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert _raw_markup(card) == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in card  # the description, shown as text
    assert "`'<img src=x onerror=alert(1)>'\\|<b>x_test.csv`" not in card  # no backtick ends the code span
    assert "\\|" in card.split("Files this folder was built from")[1]  # the pipe cannot split the table row


def test_model_card_escapes_what_a_results_file_says(tmp_path):
    config = {"model_type": "skinvl", "architectures": ["SkinVLForConditionalGeneration"],
              "text_config": {"model_type": "mistral"}, "vision_config": {"model_type": "clip_vision_model"}}
    doc = {"task": "vqa", "dataset": f"{SCRIPT}/x", "config": LINK, "split": TICKS, "template": IMAGE,
           "decoding": {"name": "<b>greedy</b>"}, "n_samples": 2,
           "metrics": {"paper": {"rouge_l": 0.5, f"{LINK}": 0.1}},
           "per_modality": {"paper": {SCRIPT: {"n": 2, "rouge_l": 0.5}}},
           "unavailable": {"meteor": {"reason": f"missing {IMAGE}", "fix": "x"}}}
    card = render_model_card(None, "me/skinvl", config=config, results=[doc],
                             training_settings={"options": {f"lr{SCRIPT}": 1e-4, "data": LINK}})
    body = card.split("---", 2)[2]  # the YAML front matter is dumped (and quoted) by huggingface_hub
    assert _raw_markup(body) == []
    assert "&lt;script&gt;" in body


def test_audit_section_and_audit_md_escape_folder_split_and_image_names():
    from mm_skin.audit_report import render_card_section

    split = {"images": dict.fromkeys(("test", "same_image_id", "exact_twin", "near_twin", "any_twin"), 0),
             "qa_pairs": dict.fromkeys(("test", "image_in_train", "same_question_on_same_or_twin_image",
                                        "same_qa_text", "near_qa_text"), 0)}
    summary = {"splits": {f"{SCRIPT} vs train": split},
               "against": {TICKS: {"images": 3, "twin_in_split": {LINK: {"exact": 1, "near": 0}}}}}
    section = render_card_section(summary, repo_id='x", "vqa"); import os; os.system("id")  # ')
    assert _raw_markup(section) == [] and "&lt;script&gt;" in section
    # the repo id is a Python string literal in the snippet, whatever it holds
    snippet = section.split("```python", 1)[1].split("```", 1)[0]
    compile(snippet, "card-snippet", "exec")
    assert "os.system" not in snippet.replace('\\"', "").split('"vqa"', 1)[1]


def test_benchmark_card_escapes_class_names_from_folder_names(tmp_path):
    import benchmark_layouts as layouts

    from mm_skin.benchmarks.write import build_benchmark

    source = layouts.dermnet(tmp_path / "d")
    hostile = "<b>x | [click](javascript:alert(1))"  # a folder name: no slash
    for split in ("train", "test"):
        (source / split / "Eczema Photos").rename(source / split / hostile)
    build_benchmark("dermnet", source, tmp_path / "out")
    body = (tmp_path / "out" / "README.md").read_text(encoding="utf-8").split("---", 2)[2]
    table = next(line for line in body.splitlines() if line.startswith("| `"))
    assert _raw_markup(body) == [] and "&lt;b&gt;" in table and "\\|" in table
