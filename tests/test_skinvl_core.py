"""SkinVL package core: presets, processor templates, save/load (native and remote code), generation."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import skinvl
from mm_skin.cli import add_subcommands
from skinvl.generate import answer_batch, build_prompt
from skinvl.presets import build_tiny, preset_config
from skinvl.processing_skinvl import VICUNA_V1_SYSTEM

QUESTION = "What type of lesion is shown in this image?"


def _image(seed: int, width: int, height: int) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(height, width, 3) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def saved_tiny(tiny, tmp_path_factory):
    model, processor = tiny
    folder = tmp_path_factory.mktemp("skinvl-tiny")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_build_tiny_is_seeded_and_random():
    # How fast it builds is a benchmark matter (speed targets live in bench/, not in tests).
    model_a, processor = build_tiny(seed=0)
    model_b, _ = build_tiny(seed=0)
    model_c, _ = build_tiny(seed=1)
    a, b, c = (m.state_dict() for m in (model_a, model_b, model_c))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["lm_head.weight"], c["lm_head.weight"])
    assert isinstance(model_a, skinvl.SkinVLForConditionalGeneration)
    assert isinstance(processor, skinvl.SkinVLProcessor)
    assert model_a.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<image>")
    assert model_a.config.text_config.vocab_size == len(processor.tokenizer)


def test_skinvl_7b_preset_is_the_real_architecture():
    config = preset_config("skinvl-7b")
    assert config.model_type == "skinvl"
    assert config.text_config.model_type == "mistral"
    assert config.text_config.rope_parameters["rope_theta"] == 1e6
    assert config.text_config.sliding_window is None
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (4096, 32)
    assert config.vision_config.image_size // config.vision_config.patch_size == 24
    assert config.image_seq_length == 576
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-2, "default")
    assert config.projector_hidden_act == "gelu"
    with pytest.raises(ValueError, match="configuration only"):
        skinvl.load("skinvl-7b")


def test_templates_render_the_original_prompts(tiny):
    _, processor = tiny
    assert build_prompt(processor, QUESTION) == f"[INST] <image>\n{QUESTION} [/INST]"
    assert build_prompt(processor, QUESTION, template="vicuna_v1") == (
        f"{VICUNA_V1_SYSTEM} USER: <image>\n{QUESTION} ASSISTANT:"
    )
    turns = [
        {"role": "user", "content": [{"type": "text", "text": "Q1"}, {"type": "image"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A1"}]},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"},
    ]
    assert processor.apply_chat_template(turns) == "[INST] <image>\nQ1 [/INST] A1</s>[INST] Q2 [/INST] A2</s>"
    assert processor.apply_chat_template(turns, chat_template="vicuna_v1") == (
        f"{VICUNA_V1_SYSTEM} USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>"
    )
    with_system = [{"role": "system", "content": "Be brief."}] + turns[:2]
    assert processor.apply_chat_template(with_system, chat_template="vicuna_v1").startswith("Be brief. USER:")
    assert processor.apply_chat_template(with_system).startswith("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n<image>")
    with pytest.raises(ValueError, match="Unknown chat template"):
        processor.set_default_template("chatml")


@pytest.mark.parametrize("template", ["mistral_instruct", "vicuna_v1"])
def test_assistant_mask_covers_answers_and_eos(tiny, template):
    _, processor = tiny
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A pink plaque."}]},
        {"role": "user", "content": [{"type": "text", "text": "Border?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Irregular."}]},
    ]
    out = processor.apply_chat_template(
        messages, chat_template=template, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True, processor_kwargs={"images": [_image(0, 30, 20)]},
    )
    ids, mask = out["input_ids"][0], out["assistant_masks"][0]
    masked = processor.tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert masked.replace(" ", "") == "Apinkplaque.</s>Irregular.</s>"
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert list(ids).count(image_id) == 4  # (28 // 14) ** 2 patches, CLS dropped


def test_processor_expands_image_and_keeps_dummy_prefix(tiny):
    _, processor = tiny
    inputs = processor(images=[_image(1, 40, 24)], text=[build_prompt(processor, QUESTION)], return_tensors="pt")
    tokens = processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    assert tokens[:3] == ["<s>", "▁[INST]", "▁"]
    assert tokens[3:7] == ["<image>"] * 4 and tokens[7:9] == ["▁", "<0x0A>"]
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 28, 28)


def test_answer_batch_left_pads_and_matches_single(tiny):
    model, processor = tiny
    images = [_image(i, 20 + 10 * i, 50) for i in range(3)]
    questions = [QUESTION, "Describe the color.", "Is the lesion symmetric or irregular at the border?"]
    batched = answer_batch(model, processor, images, questions, batch_size=3, max_new_tokens=6)
    single = [answer_batch(model, processor, [i], [q], max_new_tokens=6)[0] for i, q in zip(images, questions, strict=True)]
    assert batched == single
    assert all(isinstance(a, str) and a == a.strip() for a in batched)
    assert processor.tokenizer.padding_side == "left"
    with pytest.raises(ValueError, match="one question per image"):
        answer_batch(model, processor, images, questions[:2])
    with pytest.raises(TypeError, match=r"images\[0\]"):
        answer_batch(model, processor, ["not-an-image"], [QUESTION])


def test_save_load_roundtrip_with_auto_classes(tiny, saved_tiny):
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

    model, processor = tiny
    config = json.loads((saved_tiny / "config.json").read_text())
    assert config["model_type"] == "skinvl"
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForImageTextToText", "AutoProcessor"}
    for name in ("configuration_skinvl.py", "modeling_skinvl.py", "processing_skinvl.py"):
        assert (saved_tiny / name).is_file()
    assert isinstance(AutoConfig.from_pretrained(saved_tiny), skinvl.SkinVLConfig)
    loaded = AutoModelForImageTextToText.from_pretrained(saved_tiny)
    loaded_processor = AutoProcessor.from_pretrained(saved_tiny)
    assert isinstance(AutoModel.from_pretrained(saved_tiny), skinvl.SkinVLModel)
    assert isinstance(loaded_processor, skinvl.SkinVLProcessor)
    assert loaded_processor.tokenizer.legacy is True
    images, questions = [_image(3, 33, 21)], [QUESTION]
    assert answer_batch(loaded, loaded_processor, images, questions, max_new_tokens=6) == answer_batch(
        model, processor, images, questions, max_new_tokens=6
    )
    loaded_vicuna = skinvl.load(str(saved_tiny), template="vicuna_v1")[1]
    assert build_prompt(loaded_vicuna, QUESTION).startswith(VICUNA_V1_SYSTEM)


def test_pipeline_image_text_to_text(saved_tiny):
    from transformers import pipeline

    pipe = pipeline("image-text-to-text", model=str(saved_tiny))
    messages = [{"role": "user", "content": [{"type": "image", "image": _image(4, 30, 30)},
                                             {"type": "text", "text": QUESTION}]}]
    out = pipe(text=messages, max_new_tokens=4, do_sample=False)
    assert isinstance(out[0]["generated_text"], list)
    assert out[0]["generated_text"][-1]["role"] == "assistant"


@pytest.mark.slow
def test_trust_remote_code_without_the_package(saved_tiny, tiny, tmp_path):
    """A fresh interpreter where `skinvl` cannot be imported loads the checkpoint as remote code."""
    model, processor = tiny
    image = _image(5, 26, 31)
    image.save(tmp_path / "img.png")
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(f"""
        import sys, json
        sys.modules["skinvl"] = None  # the package is installed editable: block it
        import torch
        from PIL import Image
        from transformers import AutoModelForImageTextToText, AutoProcessor, AutoModel
        folder = {str(saved_tiny)!r}
        model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        base = AutoModel.from_pretrained(folder, trust_remote_code=True)
        prompt = processor.apply_chat_template(
            [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": {QUESTION!r}}}]}}],
            add_generation_prompt=True)
        inputs = processor(images=[Image.open({str(tmp_path / "img.png")!r})], text=[prompt], return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        print(json.dumps({{"classes": [type(model).__module__, type(processor).__name__, type(base).__name__],
                           "prompt": prompt, "logits": logits.tolist()}}))
    """))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    child = json.loads(result.stdout.strip().splitlines()[-1])
    assert child["classes"][0].startswith("transformers_modules.")
    assert child["classes"][1:] == ["SkinVLProcessor", "SkinVLModel"]
    prompt = build_prompt(processor, QUESTION)
    assert child["prompt"] == prompt
    inputs = processor(images=[Image.open(tmp_path / "img.png")], text=[prompt], return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).logits[0, -1]
    assert torch.allclose(torch.tensor(child["logits"]), expected, atol=1e-5)


def test_generate_cli_says_weights_are_random(tmp_path, capsys):
    from skinvl import generate

    _image(6, 40, 30).save(tmp_path / "sample.png")
    parser = argparse.ArgumentParser()
    generate.register_cli(add_subcommands(parser))
    args = parser.parse_args(["generate", "--model", "skinvl-tiny", "--image", str(tmp_path / "sample.png"),
                              "--question", QUESTION, "--max-new-tokens", "5"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out
    assert len(out.strip().splitlines()) == 2
    bad = parser.parse_args(["generate", "--model", "skinvl-tiny", "--image", str(tmp_path / "missing.png"),
                             "--question", QUESTION])
    assert bad.func(bad) == 2
    assert "missing.png does not exist" in capsys.readouterr().err
