"""The blind baseline: the same prompts without the image (served: no image part; local: a uniform grey image)."""

from __future__ import annotations

import json

import numpy as np
from eval_servers import FaultServer
from test_eval_foreign import _label_files

from skinvl.cli import main
from skinvl.evaluation.ask import GREY, blind_images
from skinvl.inference.images import LazyImages

COMMON = ("--no-bertscore", "--retry-backoff", "0")


def test_served_blind_run_sends_no_image_and_compare_shows_the_image_gain(vqa_folder, tmp_path):
    with FaultServer() as server:
        for name, extra in (("seeing", ()), ("blind", ("--blind",))):
            assert main(["eval", "vqa", "--endpoint", server.url, "--model-name", "m", "--data", str(vqa_folder),
                         "--out", str(tmp_path / name), "--name", name, *COMMON, *extra]) == 0
        bodies = [b for seen in server.seen.values() for b in seen]
    kinds = [[c["type"] for c in b["messages"][0]["content"]] for b in bodies]
    assert kinds.count(["text"]) == len(kinds) // 2 and kinds.count(["image_url", "text"]) == len(kinds) // 2
    doc = json.loads((tmp_path / "blind" / "results.json").read_text())
    assert doc["blind"]["image"] == "none" and "blind" not in json.loads((tmp_path / "seeing" / "results.json").read_text())
    text = (tmp_path / "blind" / "results.md").read_text()
    assert "(blind: no image)" in text.splitlines()[0] and "**Blind run**" in text
    assert main(["eval", "compare", str(tmp_path / "seeing"), str(tmp_path / "blind"), "--out", str(tmp_path / "c"),
                 "--resamples", "100"]) == 0
    compared = json.loads((tmp_path / "c" / "results.json").read_text())
    gain = compared["image_gain"]["seeing"]
    assert gain["blind_run"] == "blind" and "rouge_l" in gain["differences"]["standard"]
    assert "Image gain of seeing" in (tmp_path / "c" / "results.md").read_text()


def test_local_blind_run_uses_a_uniform_grey_image(vqa_folder, tmp_path):
    assert main(["eval", "vqa", "--model", "skinvl-tiny", "--data", str(vqa_folder), "--out", str(tmp_path / "b"),
                 "--limit", "2", "--max-new-tokens", "2", "--blind", "--no-bertscore"]) == 0
    doc = json.loads((tmp_path / "b" / "results.json").read_text())
    assert doc["blind"]["image"].startswith("uniform grey") and "cannot run without an image" in doc["blind"]["how"]
    images = blind_images(LazyImages(lambda i: b"never read", 3))
    pixels = np.asarray(images[2])
    assert len(images) == 3 and (pixels == GREY).all()


def test_zeroshot_blind_served(tmp_path):
    csv_path, images = _label_files(tmp_path, n=3)
    with FaultServer() as server:
        assert main(["eval", "zeroshot", "--labels", str(csv_path), "--images", str(images), "--endpoint", server.url,
                     "--model-name", "m", "--out", str(tmp_path / "z"), "--blind", "--retry-backoff", "0"]) == 0
        bodies = [b for seen in server.seen.values() for b in seen]
    assert bodies and all(c["type"] == "text" for b in bodies for c in b["messages"][0]["content"])
    doc = json.loads((tmp_path / "z" / "results.json").read_text())
    assert doc["blind"]["image"] == "none" and "(blind: no image)" in (tmp_path / "z" / "results.md").read_text()
