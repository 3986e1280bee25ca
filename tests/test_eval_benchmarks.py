"""``skinvl eval zeroshot`` / ``eval probe`` on benchmark folders (``--data``), ``--group-by``,
and zero-shot answers matched by image id (reordering the label file changes nothing)."""

from __future__ import annotations

import csv
import json

import benchmark_layouts as layouts
import numpy as np
import pytest

from mm_skin.benchmarks.write import build_benchmark
from skinvl.cli import main
from skinvl.evaluation.groups import group_metrics


@pytest.fixture(scope="module")
def ddi_folder(tmp_path_factory):
    """A DDI stand-in built into a benchmark folder: skin types I-II / III-IV / V-VI."""
    root = tmp_path_factory.mktemp("ddi")
    build_benchmark("ddi", layouts.ddi(root / "download", n=60), root / "built", test_fraction=0.5,
                    validation_fraction=0.0)
    return root / "built"


def _answers(prompts_file, truth_of, wrong_when):
    """Answers naming the true class, except where ``wrong_when(prompt)`` (then the other class)."""
    lines = []
    for line in prompts_file.read_text().splitlines():
        p = json.loads(line)
        label = truth_of[p["id"]]
        other = "benign" if label == "malignant" else "malignant"
        lines.append(json.dumps({"id": p["id"], "prediction": f"It is {other if wrong_when(p) else label}."}))
    return "\n".join(lines) + "\n"


def test_zeroshot_on_a_benchmark_folder_grouped_by_skin_type(ddi_folder, tmp_path):
    import datasets

    test = datasets.load_dataset(str(ddi_folder), split="test")
    names = test.features["label"].names
    truth = {r["image_id"]: names[r["label"]] for r in test}
    tone = {r["image_id"]: r["skin_type"] for r in test}
    base = ["eval", "zeroshot", "--data", str(ddi_folder), "--split", "test"]
    prompts = tmp_path / "prompts.jsonl"
    assert main([*base, "--out", str(tmp_path / "x"), "--export-prompts", str(prompts)]) == 0
    # a model that is always right on I-II and wrong on every other V-VI image
    flip = {"n": 0}

    def wrong(p):
        if tone[p["id"]] != "V-VI":
            return False
        flip["n"] += 1
        return flip["n"] % 2 == 0

    answers = tmp_path / "answers.jsonl"
    answers.write_text(_answers(prompts, truth, wrong))
    out = tmp_path / "out"
    assert main([*base, "--out", str(out), "--predictions", str(answers), "--group-by", "skin_type"]) == 0
    doc = json.loads((out / "results.json").read_text())
    groups = doc["groups"]["groups"]
    assert set(groups) == {"I-II", "III-IV", "V-VI"}
    assert groups["I-II"]["accuracy"]["value"] == 1.0 and groups["V-VI"]["accuracy"]["value"] < 1.0
    lo, hi = groups["V-VI"]["accuracy"]["ci"]
    assert lo <= groups["V-VI"]["accuracy"]["value"] <= hi
    gap = doc["groups"]["gaps"]["accuracy"]
    assert gap["worst_group"] == "V-VI" and gap["gap"] == pytest.approx(1.0 - groups["V-VI"]["accuracy"]["value"])
    assert gap["ratio"] == pytest.approx(groups["V-VI"]["accuracy"]["value"])
    assert "## By skin_type" in (out / "results.md").read_text()
    assert main([*base, "--out", str(tmp_path / "y"), "--predictions", str(answers), "--group-by", "nope"]) == 2


def test_zeroshot_with_a_local_model_on_a_benchmark_folder(ddi_folder, tmp_path, tiny):
    from skinvl.evaluation.zeroshot import ZeroShotOptions, run_zeroshot
    from skinvl.inference.loading import LoadedModel

    doc = run_zeroshot(ZeroShotOptions(model="skinvl-tiny", data=str(ddi_folder), split="test", limit=6,
                                       out=str(tmp_path / "out"), max_new_tokens=4, group_by="skin_type"),
                      loaded=LoadedModel.wrap(*tiny, "skinvl-tiny"))
    assert doc["metrics"]["n"] == 6 and doc["classes"] == ["benign", "malignant"]
    assert sum(g["n"] for g in doc["groups"]["groups"].values()) == 6


def test_reordering_the_label_file_changes_nothing(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(8):
        (images / f"img{i}.png").write_bytes(layouts.image_bytes(i, "PNG"))
        rows.append((f"img{i}.png", ["Melanoma", "Nevus"][i % 2]))
    ordered = layouts.authors_test_file(tmp_path / "a_test.csv", rows)
    shuffled = layouts.authors_test_file(tmp_path / "b_test.csv", rows[::-1])
    prompts = tmp_path / "prompts.jsonl"
    assert main(["eval", "zeroshot", "--labels", str(ordered), "--images", str(images), "--out", str(tmp_path / "x"),
                 "--export-prompts", str(prompts)]) == 0
    truth = dict(rows)
    answers = tmp_path / "perfect.jsonl"
    answers.write_text("".join(json.dumps({"id": json.loads(line)["id"], "prediction": truth[json.loads(line)["id"]]})
                               + "\n" for line in prompts.read_text().splitlines()))
    accuracy = []
    for labels in (ordered, shuffled):
        out = tmp_path / labels.stem
        assert main(["eval", "zeroshot", "--labels", str(labels), "--images", str(images), "--out", str(out),
                     "--predictions", str(answers)]) == 0
        accuracy.append(json.loads((out / "results.json").read_text())["metrics"]["accuracy"])
    assert accuracy == [1.0, 1.0]
    # an answer naming an image the label file does not have is refused, not dropped
    (tmp_path / "extra.jsonl").write_text(answers.read_text() + json.dumps({"id": "img99.png", "prediction": "x"}) + "\n")
    assert main(["eval", "zeroshot", "--labels", str(shuffled), "--images", str(images), "--out",
                 str(tmp_path / "z"), "--predictions", str(tmp_path / "extra.jsonl")]) == 2


def test_group_metrics_resample_images_and_auroc():
    truth = ["a", "b"] * 20
    proba = np.array([[0.9, 0.1], [0.2, 0.8]] * 20)
    pred = ["a", "b"] * 20
    groups = ["x"] * 20 + ["y"] * 20
    result = group_metrics(truth, pred, ["a", "b"], groups, [f"i{k}" for k in range(40)], proba, column="g")
    assert result["groups"]["x"]["auroc"]["value"] == 1.0
    assert result["gaps"]["accuracy"]["gap"] == 0.0 and result["gaps"]["accuracy"]["ratio"] == 1.0
    # the same image listed twice is resampled as one: the group counts 20 rows of 10 images
    twice = group_metrics(truth[:20], pred[:20], ["a", "b"], ["x"] * 20, [f"i{k // 2}" for k in range(20)],
                          column="g")
    assert twice["groups"]["x"]["images"] == 10 and twice["groups"]["x"]["n"] == 20


def test_probe_on_a_benchmark_folder_grouped_by_skin_type(ddi_folder, tmp_path, tiny):
    from skinvl.evaluation.probe import ProbeOptions, run_probe
    from skinvl.inference.loading import LoadedModel

    doc = run_probe(ProbeOptions(model="skinvl-tiny", data=str(ddi_folder), out=str(tmp_path / "out"),
                                 cache_dir=str(tmp_path / "cache"), group_by="skin_type"),
                    loaded=LoadedModel.wrap(*tiny, "skinvl-tiny"))
    groups = doc["groups"]["groups"]
    assert set(groups) == {"I-II", "III-IV", "V-VI"}
    assert all("auroc" in g for g in groups.values())  # the probe has class probabilities
    assert sum(g["n"] for g in groups.values()) == doc["metrics"]["n"]
    assert {"accuracy", "balanced_accuracy", "auroc"} <= set(doc["groups"]["gaps"])
    again = run_probe(ProbeOptions(model="skinvl-tiny", data=str(ddi_folder), out=str(tmp_path / "again"),
                                   cache_dir=str(tmp_path / "cache")), loaded=LoadedModel.wrap(*tiny, "skinvl-tiny"))
    assert again["feature_cache"]["test"]["computed"] == 0  # features cached by the images' bytes


def test_mcq_prompts_out_letters_in_with_rotated_orders(ddi_folder, tmp_path):
    from skinvl.evaluation.zeroshot_protocols import orders

    base = ["eval", "zeroshot", "--data", str(ddi_folder), "--protocol", "mcq"]
    prompts = tmp_path / "mcq.jsonl"
    assert main([*base, "--out", str(tmp_path / "x"), "--export-prompts", str(prompts)]) == 0
    asked = [json.loads(line) for line in prompts.read_text().splitlines()]
    assert orders(2) == [[0, 1], [1, 0]] and len({p["prompt"] for p in asked}) == 2
    import datasets

    test = datasets.load_dataset(str(ddi_folder), split="test")
    truth = {r["image_id"]: test.features["label"].names[r["label"]] for r in test}
    lines = []
    for k, p in enumerate(asked):
        image_id, order = p["id"].split("#mcq")
        options = [line.split(". ", 1)[1] for line in p["prompt"].splitlines() if line[:2] in ("A.", "B.")]
        letter = "AB"[options.index(truth[image_id])]
        lines.append({"id": p["id"], "prediction": "I cannot tell." if k == 0 else f"{letter}. {truth[image_id]}"})
    answers = tmp_path / "letters.jsonl"
    answers.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    assert main([*base, "--out", str(out), "--predictions", str(answers), "--group-by", "skin_type"]) == 0
    doc = json.loads((out / "results.json").read_text())
    details = doc["protocol_details"]
    assert doc["protocol"] == "mcq" and doc["metrics"]["accuracy"] == 1.0  # the other order still votes right
    assert details["unparseable_rate"] == pytest.approx(1 / len(asked))
    assert details["consistent_share"] == pytest.approx(1 - 1 / len(test))
    # likelihood cannot score answers made elsewhere: mcq is run, and the results say so
    assert main(["eval", "zeroshot", "--data", str(ddi_folder), "--protocol", "likelihood", "--out",
                 str(tmp_path / "l"), "--predictions", str(answers)]) == 0
    doc = json.loads((tmp_path / "l" / "results.json").read_text())
    assert doc["protocol"] == "mcq" and "likelihood needs a local model" in doc["warnings"][-1]


def test_likelihood_protocol_gives_probabilities_auroc_log_loss_ece(ddi_folder, tmp_path, tiny):
    from skinvl.evaluation.zeroshot import ZeroShotOptions, run_zeroshot
    from skinvl.evaluation.zeroshot_protocols import class_log_likelihoods
    from skinvl.inference.loading import LoadedModel

    loaded = LoadedModel.wrap(*tiny, "skinvl-tiny")
    doc = run_zeroshot(ZeroShotOptions(model="skinvl-tiny", data=str(ddi_folder), limit=8, out=str(tmp_path / "out"),
                                       protocol="likelihood", group_by="skin_type"), loaded=loaded)
    m = doc["metrics"]
    assert doc["protocol"] == "likelihood" and m["n"] == 8
    assert m["log_loss"] > 0 and 0 <= m["ece"] <= 1 and (m["auroc"] is None or 0 <= m["auroc"] <= 1)
    assert "length_normalisation" in doc["protocol_details"]
    assert all("auroc" in g for g in doc["groups"]["groups"].values())
    # the score is the model's: the same image and classes give the same numbers; the token counts differ by name
    from PIL import Image

    image = Image.new("RGB", (32, 32), (120, 30, 30))
    totals, counts = class_log_likelihoods(loaded, image, "Which?", ["benign", "malignant melanoma"])
    again, _ = class_log_likelihoods(loaded, image, "Which?", ["benign", "malignant melanoma"])
    assert np.allclose(totals, again) and (totals < 0).all() and counts[1] > counts[0]
    # --blind: every image the model scores is the same grey one (so one prediction for all), and the results say so
    blind = run_zeroshot(ZeroShotOptions(model="skinvl-tiny", data=str(ddi_folder), limit=4, out=str(tmp_path / "blind"),
                                         protocol="likelihood", blind=True), loaded=loaded)
    assert blind["blind"]["image"].startswith("uniform grey") and blind["metrics"]["n"] == 4
    assert "(blind: no image)" in (tmp_path / "blind" / "results.md").read_text()
    with open(tmp_path / "blind" / "predictions.csv", newline="") as f:
        assert len({row["prediction"] for row in csv.DictReader(f)}) == 1


def test_mcq_with_a_local_model_runs_every_order(ddi_folder, tmp_path, tiny):
    from skinvl.evaluation.zeroshot import ZeroShotOptions, run_zeroshot
    from skinvl.inference.loading import LoadedModel

    doc = run_zeroshot(ZeroShotOptions(model="skinvl-tiny", data=str(ddi_folder), limit=3, out=str(tmp_path / "out"),
                                       protocol="mcq", max_new_tokens=3), loaded=LoadedModel.wrap(*tiny, "skinvl-tiny"))
    assert doc["protocol_details"]["answers"] == 6 and doc["metrics"]["n"] == 3
    assert 0 <= doc["protocol_details"]["unparseable_rate"] <= 1


def test_likelihood_with_a_served_model_runs_mcq_over_the_loopback_server(ddi_folder, tmp_path):
    from eval_servers import FaultServer

    with FaultServer() as server:
        code = main(["eval", "zeroshot", "--endpoint", f"{server.url}/v1", "--model-name", "m", "--data",
                     str(ddi_folder), "--limit", "3", "--protocol", "likelihood", "--out", str(tmp_path / "out")])
        asked = sorted(server.seen)
    assert code == 0
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["protocol"] == "mcq" and "likelihood needs a local model" in doc["warnings"][-1]
    assert len(asked) == 2 and all("A. " in q and "B. " in q for q in asked)  # two option orders
    # the server echoes the question, which names no option letter: every answer is unparseable
    assert doc["protocol_details"]["answers"] == 6 and doc["protocol_details"]["unparseable_rate"] == 1.0


def test_a_row_without_a_label_is_refused_not_read_as_the_last_class(tmp_path):
    import datasets

    from skinvl.evaluation.benchmark_data import load_classification_split
    from skinvl.evaluation.labels import LabelFileError

    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["benign", "malignant"])})
    png = layouts.image_bytes(1, "PNG")
    ds = datasets.Dataset.from_dict({"image": [{"bytes": png, "path": None}] * 2, "image_id": ["a", "b"],
                                     "label": [0, -1]}, features=features)
    ds.to_parquet(str(tmp_path / "test.parquet"))
    with pytest.raises(LabelFileError, match=r"row 2 \(b\) has no label"):
        load_classification_split(str(tmp_path), None, "test")
