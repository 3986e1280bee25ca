"""The authors' llava_mistral format: parity with the original code's references, conversion, bad input.

The references in ../shared/fixtures/skinvl-original-tiny were computed by the authors' LLaVA code;
matching them (last-position logits to 1e-4, greedy tokens exactly) is the acceptance test. A second
original-format checkpoint with other sizes and layout choices is built in code here.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

import skinvl
from skinvl.convert import convert
from skinvl.original_format import OriginalFormatError

TEMPLATES = {"mistral_instruct": "mistral_instruct", "v1": "vicuna_v1"}
MODES = {"mmskin": "crop", "upstream_pad": "pad"}
ATOL = 1e-4


@pytest.fixture(scope="module")
def fixture_dir(shared_dir) -> Path:
    folder = shared_dir / "fixtures" / "skinvl-original-tiny"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return folder


@pytest.fixture(scope="module")
def reference(fixture_dir):
    from safetensors.torch import load_file

    return json.loads((fixture_dir / "reference.json").read_text()), load_file(fixture_dir / "reference.safetensors")


def _run_cases(model, processor, fixture_dir: Path, cases: list[dict]) -> dict[str, tuple[torch.Tensor, list[int]]]:
    """Last-position logits and 8 greedy tokens per (case, pixel mode), as the references were made."""
    results = {}
    for case in cases:
        image = Image.open(fixture_dir / f"images/{['wide_40x24', 'square_32x32', 'tall_20x44'][case['image_index']]}.png").convert("RGB")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": case["question"]}]}]
        prompt = processor.apply_chat_template(messages, chat_template=TEMPLATES[case["template"]], add_generation_prompt=True)
        assert prompt == case["prompt"]
        for mode, aspect in MODES.items():
            processor.image_processor.do_pad = aspect == "pad"
            inputs = processor(images=[image], text=[prompt], return_tensors="pt")
            with torch.no_grad():
                logits = model(**inputs).logits[0, -1]
                output = model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=True)
            results[f"{case['id']}/{mode}"] = (logits, output[0, inputs["input_ids"].shape[1]:].tolist())
    return results


def _assert_matches_reference(results, reference):
    ref_json, ref_tensors = reference
    worst = 0.0
    for case in ref_json["cases"]:
        for mode in MODES:
            logits, tokens = results[f"{case['id']}/{mode}"]
            expected = ref_tensors[f"last_logits/{case['id']}/{mode}"]
            vocab = expected.shape[0]
            worst = max(worst, (torch.as_tensor(logits)[:vocab] - expected).abs().max().item())
            assert tokens == case["modes"][mode]["greedy_new_token_ids"], (case["id"], mode)
    assert worst <= ATOL, f"max |logit - reference| = {worst}"
    assert len(results) == 2 * len(ref_json["cases"]) == 24


@pytest.fixture(scope="module")
def one_call(fixture_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(fixture_dir), AutoProcessor.from_pretrained(fixture_dir)


def test_processor_reproduces_pixels_and_ids(one_call, fixture_dir, reference):
    _, processor = one_call
    ref_json, ref_tensors = reference
    for image in ref_json["images"]:
        picture = Image.open(fixture_dir / image["file"]).convert("RGB")
        for aspect, key in (("pad", "upstream_pad"), ("crop", "nopad"), ("crop", "mmskin")):
            processor.set_image_aspect_ratio(aspect)
            pixels = processor.image_processor(picture, return_tensors="pt")["pixel_values"]
            assert torch.equal(pixels, ref_tensors[f"pixel_values/img{image['index']}/{key}"]), (image["file"], key)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    for case in ref_json["cases"]:
        ids = processor.tokenizer(case["prompt"]).input_ids
        assert [ref_json["image_token_index"] if i == image_id else i for i in ids] == case["input_ids"], case["id"]


def test_one_call_load_matches_original_code(one_call, fixture_dir, reference):
    model, processor = one_call
    assert isinstance(model, skinvl.SkinVLForConditionalGeneration)
    assert isinstance(processor, skinvl.SkinVLProcessor)
    _assert_matches_reference(_run_cases(model, processor, fixture_dir, reference[0]["cases"]), reference)


def test_convert_skinvl_matches_original_code(fixture_dir, reference, tmp_path):
    convert(fixture_dir, tmp_path / "native", format="skinvl")
    config = json.loads((tmp_path / "native/config.json").read_text())
    assert config["model_type"] == "skinvl" and "AutoModelForImageTextToText" in config["auto_map"]
    model, processor = skinvl.load(str(tmp_path / "native"))
    _assert_matches_reference(_run_cases(model, processor, fixture_dir, reference[0]["cases"]), reference)
    # Re-saving a loaded model keeps native key names (the loading renames are not reverted).
    model.save_pretrained(tmp_path / "resaved")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "resaved/model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert "model.multi_modal_projector.linear_1.weight" in keys
    assert not any("mm_projector" in k for k in keys)


_CHILD = textwrap.dedent("""
    import json, sys
    sys.modules["skinvl"] = None  # installed editable in the venv: make it unimportable
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor
    folder, fixture, out = sys.argv[1:4]
    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    names = ["wide_40x24", "square_32x32", "tall_20x44"]
    cases = json.load(open(fixture + "/reference.json"))["cases"]
    results = {"classes": [type(model).__name__, type(processor).__name__]}
    for case in cases:
        image = Image.open(f"{fixture}/images/{names[case['image_index']]}.png").convert("RGB")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": case["question"]}]}]
        template = {"mistral_instruct": "mistral_instruct", "v1": "vicuna_v1"}[case["template"]]
        prompt = processor.apply_chat_template(messages, chat_template=template, add_generation_prompt=True)
        for mode, pad in (("mmskin", False), ("upstream_pad", True)):
            processor.image_processor.do_pad = pad
            inputs = processor(images=[image], text=[prompt], return_tensors="pt")
            with torch.no_grad():
                logits = model(**inputs).logits[0, -1]
                output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
            results[case["id"] + "/" + mode] = [logits.tolist(), output[0, inputs["input_ids"].shape[1]:].tolist()]
    json.dump(results, open(out, "w"))
""")


@pytest.mark.slow
def test_convert_llava_loads_in_plain_transformers(fixture_dir, reference, tmp_path):
    convert(fixture_dir, tmp_path / "llava", format="llava")
    config = json.loads((tmp_path / "llava/config.json").read_text())
    assert config["model_type"] == "llava" and "auto_map" not in config
    assert not list((tmp_path / "llava").glob("*.py"))
    (tmp_path / "child.py").write_text(_CHILD)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "child.py"), str(tmp_path / "llava"), str(fixture_dir),
         str(tmp_path / "out.json")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    child = json.loads((tmp_path / "out.json").read_text())
    assert child.pop("classes") == ["LlavaForConditionalGeneration", "LlavaProcessor"]
    _assert_matches_reference({k: (torch.tensor(v[0]), v[1]) for k, v in child.items()}, reference)


# ------------------------------------------------------------------------------------------------
# A second original-format checkpoint, built in code: other sizes, vision tower INSIDE the weights,
# .bin shards with an index, the "linear" projector-type trap in config.json, an absolute
# mm_vision_tower, a rotary inv_freq buffer in the weights.
# ------------------------------------------------------------------------------------------------

_SP_CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "USER: ASSISTANT: [INST] [/INST] What type of lesion is shown in this image?",
    "Erythematous scaly plaque on the elbow; dermoscopy shows dotted vessels 12 mm wide.",
    "Histology: acanthosis, parakeratosis, neutrophils in the stratum corneum. Psoriasis.",
    "Pigmented lesion with an atypical network, blue-white veil and irregular streaks; melanoma.",
] * 4


def _write_sentencepiece(folder: Path) -> int:
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_SP_CORPUS), model_writer=buffer, vocab_size=330, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        split_digits=True, add_dummy_prefix=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, hard_vocab_limit=False, minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(buffer.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>",
        "model_max_length": 2048, "padding_side": "right",
    }))
    return spm.SentencePieceProcessor(model_proto=buffer.getvalue()).get_piece_size()


def _to_original_key(key: str) -> str:
    for old, new in (("model.language_model.", "model."), ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
                     ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
                     ("model.vision_tower.", "model.vision_tower.vision_tower.vision_model.")):
        if key.startswith(old):
            return new + key[len(old):]
    return key


def make_original_checkpoint(folder: Path, *, projector: str = "mlp2x_gelu", seed: int = 7):
    """Write an authors'-format checkpoint; return the SkinVL model it was made from."""
    folder.mkdir(parents=True)
    rows = _write_sentencepiece(folder)
    # Referenced by ABSOLUTE path; holds no weights. Inside the checkpoint: a config may not name
    # a tower outside it (that needs an explicit vision_tower).
    clip = folder / "clip-tower"
    clip.mkdir()
    vision = {"model_type": "clip_vision_model", "hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 2,
              "num_attention_heads": 2, "image_size": 56, "patch_size": 14, "projection_dim": 8}
    (clip / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": vision,
                                                   "text_config": {"model_type": "clip_text_model"}}))
    (clip / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": 56, "size": 56, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3, "feature_extractor_type": "CLIPFeatureExtractor"}))
    text = {"model_type": "mistral", "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 3,
            "num_attention_heads": 3, "num_key_value_heads": 1, "vocab_size": rows + 1, "rms_norm_eps": 1e-5,
            "rope_theta": 1e6, "sliding_window": None, "max_position_embeddings": 256, "initializer_range": 0.2}
    config = skinvl.SkinVLConfig(vision_config={**vision, "initializer_range": 0.2}, text_config=text,
                                 image_token_index=rows, image_seq_length=16,
                                 projector_hidden_act="gelu" if projector == "mlp2x_gelu" else "linear")
    torch.manual_seed(seed)
    model = skinvl.SkinVLForConditionalGeneration(config).eval()
    state = {}
    for key, tensor in model.state_dict().items():
        if projector == "linear" and "linear_2" in key:
            continue
        if key in ("lm_head.weight", "model.language_model.embed_tokens.weight"):
            tensor = tensor[:rows]  # the original vocabulary has no <image> row
        new = _to_original_key(key)
        if projector == "linear":
            new = new.replace("mm_projector.0.", "mm_projector.")
        state[new] = tensor.clone()
    if projector == "linear":
        with torch.no_grad():
            model.model.multi_modal_projector.linear_2.weight.copy_(torch.eye(48))
            model.model.multi_modal_projector.linear_2.bias.zero_()
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # old checkpoints carry these
    keys = sorted(state)
    halves = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    for name, part in halves.items():
        torch.save({k: state[k] for k in part}, folder / name)
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: n for n, part in halves.items() for k in part}}))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlavaMistralForCausalLM"], "model_type": "llava_mistral", **{k: v for k, v in text.items()
                                                                                          if k not in ("model_type", "vocab_size")},
        "vocab_size": rows, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
        "mm_vision_tower": str(clip.resolve()), "mm_projector_type": "linear", "mm_hidden_size": 24,
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_patch_merge_type": "flat",
        "image_aspect_ratio": "pad", "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
        "use_cache": False, "torch_dtype": "float32"}))
    return model


@pytest.fixture(scope="module")
def second_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("orig-b") / "skinvl-original-b"
    return folder, make_original_checkpoint(folder)


def _logits(model, processor, image, question="Erythematous plaque: what type of lesion?"):
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}], add_generation_prompt=True)
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits[0, -1], inputs


def test_second_format_checkpoint_loads_and_matches_conversion(second_checkpoint, tmp_path, caplog):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder, source = second_checkpoint
    with caplog.at_level(logging.WARNING, logger="skinvl.original_format"):
        model = AutoModelForImageTextToText.from_pretrained(folder)
    assert "mm_projector_type='linear' but the weights are a 'mlp2x_gelu'" in caplog.text
    processor = AutoProcessor.from_pretrained(folder)
    image = Image.new("RGB", (50, 30), (200, 120, 110))
    got, inputs = _logits(model, processor, image)
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == 16
    rows = model.config.image_token_id
    with torch.no_grad():
        want = source(**inputs).logits[0, -1]
    assert torch.allclose(got[:rows], want[:rows], atol=1e-5)
    assert got[rows] < got[:rows].max()  # the <image> row can never win greedy decoding
    convert(folder, tmp_path / "native", format="skinvl", dtype="float32")
    native, native_processor = skinvl.load(str(tmp_path / "native"))
    again, _ = _logits(native, native_processor, image)
    assert torch.allclose(again, got, atol=1e-6)
    assert skinvl.load(str(folder))[0].config.prompt_template == "mistral_instruct"


def test_linear_projector_is_translated_exactly(tmp_path):
    folder = tmp_path / "linear"
    source = make_original_checkpoint(folder, projector="linear", seed=3)
    model, processor = skinvl.load(str(folder))
    assert model.config.projector_hidden_act == "linear"
    image = Image.new("RGB", (40, 40), (90, 60, 50))
    got, inputs = _logits(model, processor, image)
    with torch.no_grad():
        want = source(**inputs).logits[0, -1]
    rows = model.config.image_token_id
    assert torch.allclose(got[:rows], want[:rows], atol=1e-5)


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bad"
    shutil.copytree(folder, target)
    _edit_config(target, mm_vision_tower=str(target / "clip-tower"))  # the copy's own tower, by absolute path
    return target


def _edit_config(folder: Path, **changes):
    data = json.loads((folder / "config.json").read_text())
    data.update(changes)
    (folder / "config.json").write_text(json.dumps(data))


def test_bad_inputs_fail_clearly(second_checkpoint, tmp_path):
    folder, _ = second_checkpoint
    # Not a checkpoint in either format.
    (tmp_path / "other").mkdir()
    (tmp_path / "other/config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"other/config.json.*'bert'"):
        skinvl.load(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="no config.json"):
        skinvl.load(str(tmp_path))
    # Missing tokenizer.
    bad = _copy(folder, tmp_path)
    (bad / "tokenizer.model").unlink()
    with pytest.raises(OriginalFormatError, match="no tokenizer"):
        skinvl.load(str(bad))
    shutil.rmtree(bad)
    # Missing vision tower: no weights inside and mm_vision_tower unreachable (offline Hub id).
    bad = _copy(folder, tmp_path)
    _edit_config(bad, mm_vision_tower="nobody/no-such-clip")
    with pytest.raises(OriginalFormatError, match="vision tower config"):
        skinvl.load(str(bad))
    shutil.rmtree(bad)
    # Unsupported projector (a 3-layer MLP).
    bad = _copy(folder, tmp_path)
    extra = torch.load(bad / "pytorch_model-00001-of-00002.bin", weights_only=True)
    extra["model.mm_projector.4.weight"] = torch.zeros(48, 48)
    torch.save(extra, bad / "pytorch_model-00001-of-00002.bin")
    index = json.loads((bad / "pytorch_model.bin.index.json").read_text())
    index["weight_map"]["model.mm_projector.4.weight"] = "pytorch_model-00001-of-00002.bin"
    (bad / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with pytest.raises(OriginalFormatError, match="match neither 'mlp2x_gelu'"):
        skinvl.load(str(bad))
    shutil.rmtree(bad)
    # Shapes that disagree with config.json.
    bad = _copy(folder, tmp_path)
    _edit_config(bad, intermediate_size=64)
    with pytest.raises(OriginalFormatError, match=r"pytorch_model-0000\d-of-00002.bin: tensor 'model.layers.\d.mlp"):
        skinvl.load(str(bad))
    with pytest.raises(OriginalFormatError, match="mlp"):
        convert(bad, tmp_path / "never", format="skinvl")
    assert not (tmp_path / "never").exists()


# ------------------------------------------------------------------------------------------------
# Hostile and careless input (issue 10): every file stays inside its folder, conversion never
# mixes old and new outputs, broken files are one clear line, and the authors' loader is followed.
# ------------------------------------------------------------------------------------------------

MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What type of lesion?"}]}]


def _writable_copy(fixture_dir: Path, target: Path) -> Path:
    """The fixture's checkpoint files (without the references), writable (the fixture is read-only)."""
    for path in fixture_dir.rglob("*"):
        relative = path.relative_to(fixture_dir)
        if path.is_file() and relative.parts[0] not in ("images", "README.md", "reference.json",
                                                        "reference.safetensors"):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / relative)
    return target


def _cli(*argv: str) -> int:
    from skinvl.cli import main

    return main(list(argv))


def test_index_may_only_name_shards_inside_the_folder(second_checkpoint, tmp_path):
    folder, _ = second_checkpoint
    shard = "pytorch_model-00002-of-00002.bin"
    for name in ("../outside.bin", str(tmp_path / "outside.bin"), "link.bin"):
        bad = _copy(folder, tmp_path)
        (bad / shard).rename(tmp_path / "outside.bin")
        (bad / "link.bin").symlink_to(tmp_path / "outside.bin")
        index = json.loads((bad / "pytorch_model.bin.index.json").read_text())
        index["weight_map"] = {k: name if v == shard else v for k, v in index["weight_map"].items()}
        (bad / "pytorch_model.bin.index.json").write_text(json.dumps(index))
        with pytest.raises(OriginalFormatError, match=rf"index.json names '{name}', which lies outside"):
            skinvl.load(str(bad))
        with pytest.raises(OriginalFormatError, match="lies outside"):
            convert(bad, tmp_path / "never")
        shutil.rmtree(bad)
        (tmp_path / "outside.bin").unlink()
    assert not (tmp_path / "never").exists()


def test_convert_replaces_dst_whole_and_never_its_source(fixture_dir, tmp_path, monkeypatch):
    import skinvl.convert as convert_module

    dst = tmp_path / "out"
    convert(fixture_dir, dst, max_shard_size=10**9)
    assert (dst / "model.safetensors").is_file()
    convert(fixture_dir, dst, max_shard_size=200_000, overwrite=True)
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    assert sorted(p.name for p in dst.glob("*.safetensors")) == sorted(set(index["weight_map"].values()))
    assert not list(tmp_path.glob(".out.*"))  # no temporary or old folder is left behind
    # A failure late in the conversion leaves DST exactly as it was.
    before = sorted(p.name for p in dst.iterdir())
    monkeypatch.setattr(convert_module, "_write_config_and_processor", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        convert(fixture_dir, dst, overwrite=True)
    assert sorted(p.name for p in dst.iterdir()) == before and not list(tmp_path.glob(".out.*"))
    monkeypatch.undo()
    # SRC == DST (or one inside the other) is refused before anything is written.
    source = _writable_copy(fixture_dir, tmp_path / "src")
    config = (source / "config.json").read_text()
    for target in (source, source / "converted", tmp_path):
        with pytest.raises(ValueError, match="is, contains or lies inside the source folder"):
            convert(source, target, overwrite=True)
    assert (source / "config.json").read_text() == config and not (source / "converted").exists()
    assert _cli("convert", str(source), str(source), "--overwrite") == 2


def _truncate(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


BROKEN_FILES = {
    "truncated safetensors": ("model.safetensors", _truncate, "not a readable safetensors file"),
    "empty safetensors": ("model.safetensors", lambda f: (f / "model.safetensors").write_bytes(b""),
                          "not a readable safetensors file"),
    "huge header": ("model.safetensors", lambda f: (f / "model.safetensors").write_bytes(
        (2**60).to_bytes(8, "little") + b"{}"), "not a readable safetensors file"),
    "config is a list": ("config.json", lambda f: (f / "config.json").write_text("[1, 2]"),
                         "holds a JSON list, expected a JSON object"),
    "config is not JSON": ("config.json", lambda f: (f / "config.json").write_text("{'model_type': 1"),
                           "not valid JSON"),
    "tokenizer config is not JSON": ("tokenizer_config.json",
                                     lambda f: (f / "tokenizer_config.json").write_text("{"), "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_broken_files_are_one_line_and_bad_input(fixture_dir, tmp_path, capsys, case):
    name, breaker, reason = BROKEN_FILES[case]
    source = _writable_copy(fixture_dir, tmp_path / "src")
    breaker(source)
    assert _cli("convert", str(source), str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{source / name}: {reason}" in err, err
    assert not (tmp_path / "out").exists()


def test_pickle_bin_is_refused_and_legacy_torch_format_loads(second_checkpoint, tmp_path, capsys):
    import pickle

    folder, _ = second_checkpoint
    shard = "pytorch_model-00001-of-00002.bin"
    legacy = _copy(folder, tmp_path)
    state = torch.load(legacy / shard, weights_only=True)
    torch.save(state, legacy / shard, _use_new_zipfile_serialization=False)
    assert skinvl.load(str(legacy))[0].config.model_type == "skinvl"
    capsys.readouterr()
    (legacy / shard).write_bytes(pickle.dumps({"model.norm.weight": [1.0, 2.0]}))
    assert _cli("convert", str(legacy), str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{legacy / shard}: not a tensor state dict" in err, err


def test_load_takes_vision_tower(fixture_dir, one_call, tmp_path):
    source = _writable_copy(fixture_dir, tmp_path / "src")
    _edit_config(source, mm_vision_tower="/nowhere/clip-vit-large-patch14-336")
    with pytest.raises(OriginalFormatError, match="pass vision_tower"):
        skinvl.load(str(source))
    model, processor = skinvl.load(str(source), vision_tower=str(source / "clip-tiny"))
    image = Image.open(fixture_dir / "images/square_32x32.png").convert("RGB")
    got, _ = _logits(model, processor, image)
    want, _ = _logits(*one_call, image)
    assert torch.equal(got, want)
    # A converted checkpoint carries its tower (taken from the CLIP folder passed to convert).
    convert(source, tmp_path / "native", vision_tower=str(source / "clip-tiny"))
    assert torch.equal(_logits(*skinvl.load(str(tmp_path / "native")), image)[0], want)
    with pytest.raises(ValueError, match="applies only to the authors' llava_mistral format"):
        skinvl.load(str(tmp_path / "native"), vision_tower=str(source / "clip-tiny"))
    with pytest.raises(ValueError, match="not to the preset 'skinvl-tiny'"):
        skinvl.load("skinvl-tiny", vision_tower=str(source / "clip-tiny"))


def test_mm_vision_tower_replaces_the_checkpoint_tower_as_in_the_original(tmp_path, caplog):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    folder = tmp_path / "inside"
    make_original_checkpoint(folder, seed=5)  # tower inside the weights; mm_vision_tower has none
    with caplog.at_level(logging.WARNING, logger="skinvl.original_format"):
        fallback = skinvl.load(str(folder))[0]
    assert "so the vision tower saved in the checkpoint is used" in caplog.text
    clip_folder = Path(json.loads((folder / "config.json").read_text())["mm_vision_tower"])
    torch.manual_seed(11)
    clip = CLIPVisionModel(CLIPVisionConfig.from_pretrained(clip_folder)).eval()
    clip.save_pretrained(clip_folder)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="skinvl.original_format"):
        model = skinvl.load(str(folder))[0]
    assert f"using the vision tower {str(clip_folder)!r} (as the original code does)" in caplog.text
    convert(folder, tmp_path / "native")
    native = skinvl.load(str(tmp_path / "native"))[0]
    for key, want in clip.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[key], want), key
        assert torch.equal(native.model.vision_tower.state_dict()[key], want), key
    key = "embeddings.patch_embedding.weight"
    assert not torch.equal(fallback.model.vision_tower.state_dict()[key], clip.state_dict()[key])


LLAVA_MED_TRAINING_KEYS = {
    "feature_outs": "encoder+decoder", "img_size": 640, "proj_vis_to_txt_tokens": False,
    "prompt_segtok_w_instruct": False, "segtok_posembed": "sincos", "tune_vision_tokenizer": "none",
    "vision_backbone": "convnext-large", "vision_tokenizer_lr": None,
}


def test_llava_training_keys_do_not_reach_the_text_config(fixture_dir, tmp_path):
    source = _writable_copy(fixture_dir, tmp_path / "src")
    _edit_config(source, **LLAVA_MED_TRAINING_KEYS)
    convert(source, tmp_path / "out")
    text = json.loads((tmp_path / "out/config.json").read_text())["text_config"]
    assert not set(LLAVA_MED_TRAINING_KEYS) & set(text)
    assert not [k for k in text if k.startswith(("mm_", "tokenizer_", "image_"))]
    assert text["rope_parameters"]["rope_theta"] == 1e6 and text["num_key_value_heads"] == 2
    loaded = skinvl.load(str(source))[0].config.text_config.to_dict()
    assert not set(LLAVA_MED_TRAINING_KEYS) & set(loaded)


MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
)


def test_tokenizer_template_agrees_with_the_processor(fixture_dir, tmp_path):
    source = _writable_copy(fixture_dir, tmp_path / "src")
    tokenizer_config = json.loads((source / "tokenizer_config.json").read_text())
    (source / "tokenizer_config.json").write_text(json.dumps({**tokenizer_config, "chat_template": MISTRAL_TEMPLATE}))
    convert(source, tmp_path / "out")
    for folder in (source, tmp_path / "out"):
        processor = skinvl.load(str(folder), template="vicuna_v1")[1]
        for template in (None, "mistral_instruct"):
            want = processor.apply_chat_template(MESSAGES, chat_template=template, add_generation_prompt=True)
            got = processor.tokenizer.apply_chat_template(MESSAGES, chat_template=template, tokenize=False,
                                                          add_generation_prompt=True)
            assert got == want, (folder, template)


def test_offline_conversion_records_no_hub_options(fixture_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    convert(fixture_dir, tmp_path / "out")
    assert "local_files_only" not in json.loads((tmp_path / "out/tokenizer_config.json").read_text())
