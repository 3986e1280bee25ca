"""The inference core: what the model sees of unusual images, chat templates within limits, the
vision tower a checkpoint may name, any Auto checkpoint through ``skinvl.load``, and ``convert``
taking whatever the loader takes."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_dataset_hostile import _handmade_png

import skinvl
from skinvl.inference.images import LazyImages, decode, open_rgb, to_rgb

# --------------------------------------------------------------------------------------------
# Images (issue 20 item 7): converted once, correctly, whatever the mode
# --------------------------------------------------------------------------------------------


def _png(width: int, height: int, colour_type: int, bit_depth: int, rows: list[bytes]) -> bytes:
    """A PNG written by hand (PIL cannot write 16-bit RGB): filter byte 0 per row."""
    idat = zlib.compress(b"".join(b"\x00" + row for row in rows))
    return _handmade_png(width, height, idat, depth=bit_depth, colour=colour_type)


def _saved(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _grey16() -> tuple[bytes, np.ndarray]:
    values = np.array([[0, 257, 32896], [65535, 12850, 51400]], dtype=">u2")  # 0, 1, 128, 255, 50, 200 in 8 bits
    grey = np.array([[0, 1, 128], [255, 50, 200]])
    return _png(3, 2, 0, 16, [row.tobytes() for row in values]), np.repeat(grey[..., None], 3, axis=-1)


def _rgb16() -> tuple[bytes, np.ndarray]:
    pixel = np.array([[[65535, 32896, 0], [2570, 51400, 65535]]], dtype=">u2")
    return _png(2, 1, 2, 16, [pixel.tobytes()]), np.array([[[255, 128, 0], [10, 200, 255]]])


def _cmyk() -> tuple[bytes, np.ndarray]:
    image = Image.new("CMYK", (2, 1))
    image.putpixel((0, 0), (255, 0, 0, 0))  # cyan
    image.putpixel((1, 0), (0, 0, 0, 255))  # black
    return _saved(image, "TIFF"), np.array([[[0, 255, 255], [0, 0, 0]]])


def _palette_transparent() -> tuple[bytes, np.ndarray]:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    image.putpixel((0, 0), 0)  # index 0 is transparent: its colour (black) must not show
    image.putpixel((1, 0), 1)
    return _saved(image, transparency=0), np.array([[[255, 255, 255], [200, 30, 30]]])


def _grey_alpha() -> tuple[bytes, np.ndarray]:
    image = Image.new("LA", (3, 1))
    for x, pixel in enumerate([(0, 0), (0, 255), (100, 128)]):
        image.putpixel((x, 0), pixel)
    blended = round(100 * 128 / 255 + 255 * (1 - 128 / 255))
    return _saved(image), np.array([[[255] * 3, [0] * 3, [blended] * 3]])


def _grey_alpha16() -> tuple[bytes, np.ndarray]:
    values = np.array([[65535, 0, 0, 65535]], dtype=">u2")  # white transparent, black opaque
    return _png(2, 1, 4, 16, [values.tobytes()]), np.array([[[255] * 3, [0] * 3]])


CASES = {"16-bit grey": _grey16, "16-bit RGB": _rgb16, "CMYK": _cmyk, "palette + transparency": _palette_transparent,
         "LA": _grey_alpha, "16-bit LA": _grey_alpha16}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unusual_images_reach_the_model_as_their_8_bit_rgb(case, tmp_path, tiny):
    data, want = CASES[case]()
    path = tmp_path / "image.bin"
    path.write_bytes(data)
    for image in (decode(data, "x"), open_rgb(path), LazyImages.from_files([path])[0]):
        assert image.mode == "RGB"
        got = np.asarray(image).astype(int)
        assert np.abs(got - want).max() <= 1, (case, got.tolist(), want.tolist())
    # What the model sees: the processor's pixel values equal those of the plain 8-bit image.
    _, processor = tiny
    expected = Image.fromarray(want.astype(np.uint8), "RGB")
    seen = processor.image_processor(images=[decode(data, "x")], return_tensors="np")["pixel_values"]
    reference = processor.image_processor(images=[expected], return_tensors="np")["pixel_values"]
    assert np.abs(seen - reference).max() < 0.05


def test_a_16_bit_png_is_not_white_any_more():
    data, _ = _grey16()
    assert np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).min() == 0  # PIL alone: clipped ...
    assert (np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) == 255).mean() > 0.6  # ... mostly white
    assert (np.asarray(decode(data, "x")) == 255).mean() < 0.2


def test_in_memory_images_go_through_the_same_conversion(tiny):
    """answer_batch gets PIL images from users: a 16-bit one is converted like a file."""
    from skinvl.inference.batching import _as_rgb

    grey = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))
    assert grey.mode.startswith("I;16")
    assert np.asarray(_as_rgb(grey, 0)).max() == 128
    assert np.asarray(to_rgb(Image.fromarray(np.full((2, 2), 0.5, dtype=np.float32)))).max() == 128
    model, processor = tiny
    a = skinvl.answer_batch(model, processor, [grey], ["What is shown?"], max_new_tokens=3)
    b = skinvl.answer_batch(model, processor, [Image.new("RGB", (4, 4), (128, 128, 128))], ["What is shown?"],
                            max_new_tokens=3)
    assert a == b


# --------------------------------------------------------------------------------------------
# Chat templates (issue 20 items 16, 17): limits, one line, exit 2
# --------------------------------------------------------------------------------------------

HOSTILE_TEMPLATES = {
    "nested loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "took over"),
    "huge output": ("{{ 'x' * 3000000 }}", "characters (limit"),
    "sandbox escape": ("{{ ''.__class__.__mro__ }}", "SecurityError"),
    "mutation": ("{{ messages.append(1) }}", "SecurityError"),
    "memory": ("{{ 'x' * (10 ** 14) }}", "ran out of memory"),
    "recursion": ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "RecursionError"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TEMPLATES))
def test_hostile_chat_templates_fail_in_one_line_with_exit_2(name, tmp_path, capsys):
    from skinvl.cli import main

    template, reason = HOSTILE_TEMPLATES[name]
    (tmp_path / "t.jinja").write_text(template)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code = main(["generate", "--model", "skinvl-tiny", "--image", str(tmp_path / "a.png"), "--question", "Q?",
                 "--chat-template", str(tmp_path / "t.jinja"), "--max-new-tokens", "2"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and reason in err and "Traceback" not in err, err


def test_render_limit_stops_a_runaway_template_quickly():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from skinvl.inference.prompts import TemplateError, render_limited

    template = ImmutableSandboxedEnvironment().from_string(HOSTILE_TEMPLATES["nested loops"][0])
    before = sys.gettrace()
    with pytest.raises(TemplateError, match="took over 0.2 s"):
        render_limited(template.render, "t", seconds=0.2)
    assert sys.gettrace() is before  # the tracer is removed again
    assert render_limited(lambda: "ok", "t") == "ok"


def test_a_hostile_template_in_eval_is_one_line_and_exit_2(vqa_folder, tmp_path, capsys):
    from skinvl.cli import main

    (tmp_path / "t.jinja").write_text("{% if messages %}{{ ''.__class__.__mro__ }}{% endif %}")
    code = main(["eval", "vqa", "--model", "skinvl-tiny", "--data", str(vqa_folder), "--limit", "1",
                 "--chat-template", str(tmp_path / "t.jinja"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "SecurityError" in err, err


# --------------------------------------------------------------------------------------------
# The vision tower a checkpoint names (issue 20 item 18)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def original_copy(shared_dir, tmp_path) -> Path:
    """A writable copy of the authors'-format fixture (mm_vision_tower "clip-tiny", inside it)."""
    source = shared_dir / "fixtures" / "skinvl-original-tiny"
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    target = tmp_path / "ckpt"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("images", "reference*"))
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def _set_tower(folder: Path, value: str) -> None:
    data = json.loads((folder / "config.json").read_text())
    data["mm_vision_tower"] = value
    (folder / "config.json").write_text(json.dumps(data))


def test_a_tower_outside_the_checkpoint_needs_vision_tower(original_copy, tmp_path, caplog, capsys):
    from skinvl.cli import main
    from skinvl.original_format import OriginalFormatError

    with caplog.at_level(logging.WARNING, logger="skinvl.original_format"):
        skinvl.load(str(original_copy))  # "clip-tiny": inside, accepted, and said
    assert f"using the vision tower {str(original_copy / 'clip-tiny')!r}" in caplog.text
    outside = tmp_path / "outside" / "clip"
    outside.parent.mkdir()
    shutil.move(original_copy / "clip-tiny", outside)
    (original_copy / "clip-link").symlink_to(outside)
    for value in ("../outside/clip", str(outside), "clip-link", "~/clip"):
        _set_tower(original_copy, value)
        with pytest.raises(OriginalFormatError, match=r"neither a Hub id nor a folder inside the checkpoint.*"
                                                      r"--vision-tower"):
            skinvl.load(str(original_copy))
    _set_tower(original_copy, "../outside/clip")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    capsys.readouterr()
    code = main(["generate", "--model", str(original_copy), "--image", str(tmp_path / "a.png"), "--question", "Q?"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--vision-tower" in err, err
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="skinvl.original_format"):
        model, _ = skinvl.load(str(original_copy), vision_tower=str(outside))  # named explicitly: fine
    assert f"using the vision tower {str(outside)!r} (passed as vision_tower)" in caplog.text
    assert model.config.model_type == "skinvl"


# --------------------------------------------------------------------------------------------
# One loader: any AutoModelForImageTextToText checkpoint; convert takes what it takes
# --------------------------------------------------------------------------------------------


def test_skinvl_load_takes_any_image_text_to_text_checkpoint(tmp_path):
    from eval_families import build_gemma3

    folder = build_gemma3(tmp_path / "gemma3")
    model, processor = skinvl.load(str(folder))
    assert model.config.model_type == "gemma3" and not model.training
    answers = skinvl.answer_batch(model, processor, [Image.new("RGB", (32, 32), "red")], ["What is shown?"],
                                  max_new_tokens=3)
    assert len(answers) == 1 and isinstance(answers[0], str)
    with pytest.raises(ValueError, match="applies only to the authors' llava_mistral format"):
        skinvl.load(str(folder), vision_tower="openai/clip-vit-large-patch14-336")

    # template=NAME makes that named template the one a plain apply_chat_template renders
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(folder))
    plain = processor.chat_template if isinstance(processor.chat_template, str) else processor.chat_template["default"]
    processor.chat_template = {"default": plain, "terse": "{% for m in messages %}Q: {{ m.content[-1].text }}{% endfor %}A:"}
    processor.save_pretrained(str(folder))
    _, processor = skinvl.load(str(folder), template="terse")
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Red?"}]}]
    assert processor.apply_chat_template(turn) == "Q: Red?A:"
    with pytest.raises(ValueError, match="has the named templates"):
        skinvl.load(str(folder), template="missing")


_STOCK_LOAD = """
import json, sys
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
folder = sys.argv[1]
model = AutoModelForImageTextToText.from_pretrained(folder).eval()
processor = AutoProcessor.from_pretrained(folder)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What type of lesion?"}]}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=[Image.new("RGB", (40, 30), (200, 40, 40))], text=[prompt], return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
answer = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
print(json.dumps({"class": type(model).__name__, "processor": type(processor).__name__,
                  "skinvl": any(m.split(".")[0] == "skinvl" for m in sys.modules), "answer": answer}))
"""


def test_convert_a_preset_to_stock_llava_that_loads_without_skinvl(tmp_path, tiny, capsys):
    from skinvl.cli import main

    out = tmp_path / "tiny-llava"
    assert main(["convert", "skinvl-tiny", str(out), "--format", "llava"]) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["model_type"] == "llava"
    assert not list(out.glob("*.py"))  # stock: no custom code
    done = subprocess.run([sys.executable, "-c", _STOCK_LOAD, str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["class"] == "LlavaForConditionalGeneration" and got["processor"] == "LlavaProcessor"
    assert got["skinvl"] is False
    model, processor = tiny
    want = skinvl.answer_batch(model, processor, [Image.new("RGB", (40, 30), (200, 40, 40))],
                               ["What type of lesion?"], max_new_tokens=6)
    assert got["answer"] == want[0]  # same weights, same prompt, same pixels


def test_convert_a_preset_to_native_skinvl_and_refuse_other_families(tmp_path, tiny, capsys):
    from eval_families import build_gemma3

    from skinvl.cli import main

    out = tmp_path / "tiny-native"
    assert main(["convert", "skinvl-tiny", str(out), "--template", "vicuna_v1"]) == 0
    model, processor = skinvl.load(str(out))
    assert model.config.prompt_template == "vicuna_v1"
    image = [Image.new("RGB", (40, 30), (20, 140, 40))]
    assert skinvl.answer_batch(model, processor, image, ["Q?"], template="mistral_instruct", max_new_tokens=4) == \
        skinvl.answer_batch(*tiny, image, ["Q?"], max_new_tokens=4)
    capsys.readouterr()
    gemma = build_gemma3(tmp_path / "gemma3")
    capsys.readouterr()
    assert main(["convert", str(gemma), str(tmp_path / "never"), "--format", "llava"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'gemma3' checkpoint" in err and "needs no conversion" in err
    assert main(["convert", "skinvl-tiny", str(tmp_path / "never"), "--vision-tower", "x/y"]) == 2
    assert "not to the preset" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_a_16_bit_png_builds_with_a_warning_and_reaches_the_model_scaled(tmp_path):
    """The build keeps the original bytes and says so; skinvl's reader scales them (not white)."""
    import datasets
    from test_dataset import _png, make_release

    import mm_skin_dataset as mm
    from mm_skin.images import HIGH_BIT_DEPTH_NOTE, high_bit_depth_note

    grey16, want = _grey16()
    images = {"dataset/bk1_1.png": _png(), "dataset/bk1_2.png": grey16}
    assert high_bit_depth_note(grey16) == HIGH_BIT_DEPTH_NOTE and high_bit_depth_note(_png()) is None
    captions = [[key, f"c{i}", "skin"] for i, key in enumerate(images)]
    result = mm.build(make_release(tmp_path / "rel", captions=captions, vqa=[], images=images), tmp_path / "out")
    warned = [w for w in result.report.warnings if w.reason == HIGH_BIT_DEPTH_NOTE]
    assert [w.value for w in warned] == ["dataset/bk1_2.png"]
    ds = datasets.load_dataset(str(tmp_path / "out"), "clinical", split="train", cache_dir=str(tmp_path / "c"))
    row = next(i for i, image_id in enumerate(ds["image_id"]) if image_id.endswith("bk1_2"))
    seen = np.asarray(LazyImages.from_dataset(ds, root=tmp_path / "out")[row]).astype(int)
    assert np.abs(seen - want).max() <= 1


def test_the_one_translation_of_the_authors_format():
    """The pieces the loader and the converter share (both are checked against the authors' outputs
    in test_skinvl_original.py)."""
    import torch

    from skinvl.original_translation import (
        identity_projector,
        vision_tower_key,
        with_image_token_rows,
    )

    weight = torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.bfloat16)
    grown = with_image_token_rows(weight, 4)
    assert grown.dtype == torch.bfloat16 and grown.tolist() == [[1, 2], [3, 6], [2, 4], [2, 4]]
    assert with_image_token_rows(weight, 2) is weight
    identity = identity_projector(3, torch.float16)
    assert torch.equal(identity["model.multi_modal_projector.linear_2.weight"], torch.eye(3, dtype=torch.float16))
    assert not identity["model.multi_modal_projector.linear_2.bias"].any()
    assert vision_tower_key("vision_model.encoder.layers.0.mlp.fc1.weight") == \
        "model.vision_tower.encoder.layers.0.mlp.fc1.weight"
    assert vision_tower_key("encoder.layers.0.mlp.fc1.weight") == "model.vision_tower.encoder.layers.0.mlp.fc1.weight"
    for not_tower in ("text_model.embeddings.token_embedding.weight", "logit_scale", "visual_projection.weight",
                      "vision_model.embeddings.position_ids"):
        assert vision_tower_key(not_tower) is None


def test_chat_template_files_are_checked_before_use(tmp_path):
    from skinvl.inference.prompts import TEMPLATE_FILE_MAX_BYTES, TemplateError, read_template_file

    big, latin = tmp_path / "big.jinja", tmp_path / "latin.jinja"
    big.write_text("x" * (TEMPLATE_FILE_MAX_BYTES + 1))
    latin.write_bytes("{{ 'caf\xe9' }}".encode("latin-1"))
    for path, reason in ((big, "over 1,000,000 bytes"), (latin, "not UTF-8"), (tmp_path, "no such regular file")):
        with pytest.raises(TemplateError, match=reason):
            read_template_file(str(path))


def test_a_decompression_bomb_is_a_one_line_error(tmp_path):
    from skinvl.inference.images import ImageFileError

    big = tmp_path / "bomb.png"
    Image.new("1", (20000, 10000)).save(big)  # 200 M pixels, a few KB on disk
    with pytest.raises(ImageFileError, match="cannot decode"):
        open_rgb(big)
