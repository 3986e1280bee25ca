"""Label CSVs of the authors' family, answer parsing, zero-shot and linear-probe runs end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from skinvl.evaluation.labels import LabelFileError, read_label_csv
from skinvl.evaluation.zeroshot import (
    build_prompt,
    classification_metrics,
    parse_answer,
    parse_paper,
    parse_robust,
)

# ------------------------------------------------------------------------------ label files


def test_label_family_variations(tmp_path):
    f = tmp_path / "variant_test.csv"
    f.write_text(
        "Image_Path,Attributes,CATEGORIES,split\n"
        "a/1.png,[],['Nevus'],test\n"
        "a/2.png,['x'],\"['Melanoma', 'Nevus']\",test\n"
        "a/3.png,[],[],test\n"
        "a/4.png,[],Basal Cell Carcinoma,test\n"
    )
    labels = read_label_csv(f)
    assert [r.label for r in labels.rows] == ["Nevus", "Melanoma", "Basal Cell Carcinoma"]
    assert labels.classes == ["Basal Cell Carcinoma", "Melanoma", "Nevus"]
    summary = labels.summary()
    assert summary["multi_label_count"] == 1 and summary["multi_label_rows"][0]["used"] == "Melanoma"
    assert summary["skipped_rows"] == [{"row": 3, "image": "a/3.png", "reason": "no category"}]
    with pytest.raises(LabelFileError, match=r"row 1: label 'Nevus' is not one of the classes"):
        read_label_csv(f, classes=["Melanoma"])
    bad = tmp_path / "bad.csv"
    bad.write_text("image,categories\nx.png,\"['Nevus'\"\n")
    with pytest.raises(LabelFileError, match=r"bad.csv, row 1: categories value \"\['Nevus'\" is not a Python list"):
        read_label_csv(bad)
    nolabel = tmp_path / "nolabel.csv"
    nolabel.write_text("image,whatever\nx.png,1\n")
    with pytest.raises(LabelFileError, match="no label \\(categories\\) column"):
        read_label_csv(nolabel)


@pytest.mark.shared
def test_real_label_files_parse(shared_dir):
    folder = shared_dir / "mmskin-release" / "Dataframe" / "test" / "classification"
    ham = read_label_csv(folder / "HAM10000_test.csv")
    assert len(ham.rows) == 1511 and len(ham.classes) == 7
    assert ham.classes[0] == "Actinic Keratoses" and ham.classes[-1] == "Vascular lesions"
    ddi = read_label_csv(folder / "DDI_2class_test.csv")
    assert ddi.classes == ["Malignant", "Non-Malignant"] and len(ddi.rows) == 132


# ---------------------------------------------------------------------------- answer parsing


def test_paper_rule_is_reproduced_with_its_bias():
    classes = ["Malignant", "Non-Malignant"]
    assert parse_paper("This lesion is non-malignant.", classes) == "Malignant"  # the paper's bias
    assert parse_paper("nothing useful", classes) is None
    assert parse_paper("It is a Nevus, not a melanoma", ["Melanoma", "Nevus"]) == "Melanoma"


@pytest.mark.parametrize(
    ("answer", "classes", "expected", "status"),
    [
        ("This lesion is non-malignant.", ["Malignant", "Non-Malignant"], "Non-Malignant", "ok"),
        ("Non malignant", ["Malignant", "Non-Malignant"], "Non-Malignant", "ok"),
        ("The lesion is malignant.", ["Malignant", "Non-Malignant"], "Malignant", "ok"),
        ("nontumor tissue", ["Tumor", "Stroma"], None, "unparseable"),
        ("The lesion is non-malignant.", ["Malignant", "Benign"], None, "unparseable"),
        ("It is a nevus, not a melanoma.", ["Melanoma", "Nevus"], "Nevus", "ok"),
        ("These are actinic keratoses", ["Actinic Keratoses", "Nevus"], "Actinic Keratoses", "ok"),
        ("an actinic keratosis", ["Actinic Keratoses", "Nevus"], "Actinic Keratoses", "ok"),
        ("Benign keratosis-like lesion", ["Benign Keratosis", "Keratosis"], "Benign Keratosis", "ok"),
        ("Melanoma or nevus", ["Melanoma", "Nevus"], "Melanoma", "ambiguous"),
        ("I cannot tell.", ["Melanoma", "Nevus"], None, "unparseable"),
        ("Nevi are common.", ["Melanoma", "Nevus"], "Nevus", "ok"),
    ],
)
def test_robust_parsing(answer, classes, expected, status):
    parsed = parse_robust(answer, classes)
    assert (parsed.label, parsed.status) == (expected, status)


def test_metrics_count_unparseable_as_errors_in_their_own_column():
    truth = ["A", "A", "B", "B"]
    pred = ["A", None, "B", "A"]
    m = classification_metrics(truth, pred, ["A", "B"])
    assert m["metrics"]["accuracy"] == pytest.approx(0.5)
    assert m["metrics"]["unparseable"] == 1
    assert m["metrics"]["balanced_accuracy"] == pytest.approx(0.5)
    assert m["per_class"]["A"] == {"recall": 0.5, "support": 2}
    assert m["confusion_matrix"]["columns"] == ["A", "B", "unparseable"]
    assert m["confusion_matrix"]["counts"] == [[1, 0, 1], [1, 1, 0]]
    assert parse_answer("x", ["A"], "paper").status == "unparseable"
    assert build_prompt(["A", "B"]) == (
        "This is a skin lesion image. From the following categories: A, B, which one is the diagnosis?"
    )


# ------------------------------------------------------------------------------ end to end


def _placeholder_images(root, relative_paths, seed=0):
    rng = np.random.default_rng(seed)
    for rel in relative_paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)


@pytest.mark.shared
def test_zeroshot_on_a_real_label_file_with_placeholder_images(shared_dir, tmp_path, tiny):
    from skinvl.evaluation.zeroshot import ZeroShotOptions, run_zeroshot
    from skinvl.inference.loading import LoadedModel

    labels_csv = shared_dir / "mmskin-release" / "Dataframe" / "test" / "classification" / "HAM10000_test.csv"
    with labels_csv.open() as f:
        first = [row["image"] for _, row in zip(range(6), csv.DictReader(f), strict=False)]
    _placeholder_images(tmp_path / "images", first)
    out = tmp_path / "out"
    loaded = LoadedModel.wrap(*tiny, "skinvl-tiny")
    doc = run_zeroshot(
        ZeroShotOptions(model="skinvl-tiny", labels=str(labels_csv), images=str(tmp_path / "images"), out=str(out),
                        limit=6, batch_size=3, max_new_tokens=6), loaded=loaded,
    )
    assert doc["task"] == "zero-shot-classification" and doc["protocol"] == "robust"
    assert doc["metrics"]["n"] == 6 and len(doc["classes"]) == 7
    assert set(doc["metrics_by_protocol"]) == {"robust", "paper"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"]["unparseable"] == doc["metrics"]["unparseable"]
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [r["image"] for r in rows] == first
    assert {"answer", "prediction", "status", "prediction_paper"} <= set(rows[0])
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # Images the CSV names but the root lacks: a clear error, not a silent skip.
    with pytest.raises(LabelFileError, match="row 7: image .* not found"):
        run_zeroshot(ZeroShotOptions(model="skinvl-tiny", labels=str(labels_csv), images=str(tmp_path / "images"),
                                     out=str(out), limit=8), loaded=loaded)


def _probe_files(tmp_path):
    """Two well separated classes (reddish vs bluish images), 12 train and 5 test each."""
    rng = np.random.default_rng(1)
    images = tmp_path / "images"
    images.mkdir()
    splits = {"train": 12, "test": 5}
    files = {}
    for split, n in splits.items():
        rows = []
        for label, colour in (("Melanoma", (200, 40, 40)), ("Nevus", (40, 40, 200))):
            for i in range(n):
                arr = np.clip(rng.normal(colour, 25, (28, 28, 3)), 0, 255).astype(np.uint8)
                rel = f"{split}/{label}_{i}.png"
                (images / split).mkdir(exist_ok=True)
                Image.fromarray(arr).save(images / rel)
                rows.append((rel, label))
        f = tmp_path / f"{split}.csv"
        with f.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "atributes", "categories"])
            w.writerows((rel, "[]", repr([label])) for rel, label in rows)
        files[split] = f
    return files, images


def test_probe_end_to_end_and_feature_cache(tmp_path, tiny):
    import torch

    from skinvl.evaluation.probe import ProbeOptions, extract_features, run_probe
    from skinvl.inference.loading import LoadedModel

    model, processor = tiny
    files, images = _probe_files(tmp_path)
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    loaded = LoadedModel.wrap(*tiny, "skinvl-tiny")
    common = {"model": "skinvl-tiny", "train_labels": str(files["train"]), "test_labels": str(files["test"]),
              "images": str(images), "cache_dir": str(cache)}
    doc = run_probe(ProbeOptions(**common, out=str(out), batch_size=8), loaded=loaded)
    assert doc["feature_cache"]["train"] == {"cached": 0, "computed": 24}
    m = doc["metrics"]
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "auroc", "ece"):
        assert m[key] is not None and 0 <= m[key] <= 1
    assert np.isclose(10 ** np.linspace(-5, 1, 10), doc["best_C"]).any()
    assert (out / "confusion_matrix.png").is_file() and (out / "predictions.csv").is_file()

    # Second run: every vector comes from the cache and the numbers are identical.
    again = run_probe(ProbeOptions(**common, out=str(tmp_path / "out2")), loaded=loaded)
    assert again["feature_cache"]["train"] == {"cached": 24, "computed": 0}
    assert again["feature_cache"]["test"] == {"cached": 10, "computed": 0}
    assert again["metrics"] == doc["metrics"]

    # The cached vector is the mean over patch tokens of the projector output.
    path = images / "test" / "Nevus_0.png"
    cached, _ = extract_features(model, processor, [path], cache_dir=cache)
    with Image.open(path) as im:
        pv = processor.image_processor([im.convert("RGB")], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        feats = model.get_image_features(pixel_values=pv).pooler_output
    direct = torch.stack(list(feats)).mean(dim=1)[0].numpy()
    np.testing.assert_allclose(cached[0], direct, rtol=1e-5, atol=1e-6)

    # A different model (other weights) does not reuse the cache.
    import skinvl.presets

    other = skinvl.presets.build_tiny(seed=1)
    _, info = extract_features(*other, [path], cache_dir=cache)
    assert info == {"cached": 0, "computed": 1}


def test_probe_needs_five_training_images_per_class(tmp_path):
    from skinvl.evaluation.probe import fit_probe

    x = np.random.default_rng(0).normal(size=(8, 4))
    with pytest.raises(ValueError, match="at least 5 images per class"):
        fit_probe(x, ["A"] * 5 + ["B"] * 3, x, ["A"] * 8, ["A", "B"])
