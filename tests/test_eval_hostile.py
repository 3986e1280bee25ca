"""Hostile or careless input to ``skinvl eval`` (issue 10, items 11 and 12): one line and exit 2, or a
recorded warning, never a traceback or a silently wrong number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mm_skin.cli import ExitCode
from skinvl.cli import main
from skinvl.evaluation.labels import LabelFileError, read_label_csv

SCORE = ["--no-bertscore", "--protocol", "paper"]


def _score(tmp_path: Path, predictions: Path, capsys) -> tuple[int, str]:
    code = main(["eval", "score", "--predictions", str(predictions), "--out", str(tmp_path / "out"), *SCORE])
    return code, capsys.readouterr().err.strip()


# ------------------------------------------------------------------------------ encodings (item 11)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_non_utf8_predictions_file_is_one_line_naming_the_line(tmp_path, capsys, suffix):
    f = tmp_path / f"preds{suffix}"
    if suffix == ".csv":
        f.write_bytes(b"question,answer,prediction\nIs it raised?,Yes.,Yes.\nWhat is it?,A nevus.,Un n\xe6vus\n")
    else:
        good = json.dumps({"question": "q", "answer": "a", "prediction": "p"}).encode()
        f.write_bytes(good + b"\n" + good.replace(b'"p"', b'"\xe6"') + b"\n")
    code, err = _score(tmp_path, f, capsys)
    assert code == ExitCode.BAD_INPUT
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{f}, line 3: not UTF-8" in err or f"{f}, line 2: not UTF-8" in err
    assert "0xe6" in err and "re-save the file as UTF-8" in err


def test_bom_in_predictions_csv_is_accepted(tmp_path, capsys):
    f = tmp_path / "excel.csv"
    f.write_bytes("question,answer,prediction\r\nIs it raised?,\"Yes, it is.\",Yes.\r\n".encode("utf-8-sig"))
    code, err = _score(tmp_path, f, capsys)
    assert code == ExitCode.OK, err
    assert json.loads((tmp_path / "out" / "results.json").read_text())["n_samples"] == 1


def test_non_utf8_label_csv_is_one_line(tmp_path, capsys):
    f = tmp_path / "latin1_test.csv"
    f.write_bytes("image,categories\na.png,['Nevus']\nb.png,['Naevus é']\n".encode("latin-1"))
    with pytest.raises(LabelFileError, match=r"latin1_test.csv, line 3: not UTF-8 text \(byte 0xe9"):
        read_label_csv(f)
    code = main(["eval", "zeroshot", "--labels", str(f), "--images", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--export-prompts", str(tmp_path / "p.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.BAD_INPUT and len(err.splitlines()) == 1 and "line 3: not UTF-8" in err


def test_truncated_probe_cache_is_recomputed_and_replaced(tmp_path, tiny):
    from skinvl.evaluation.probe import extract_features

    model, processor = tiny
    image = tmp_path / "a.png"
    Image.new("RGB", (20, 20), (200, 30, 30)).save(image)
    cache = tmp_path / "cache"
    first, info = extract_features(model, processor, [image], cache_dir=cache)
    assert info == {"cached": 0, "computed": 1}
    [file] = [f for f in cache.rglob("*") if f.is_file()]  # written by rename: no temporary file is left
    assert file.suffix == ".npy"
    file.write_bytes(file.read_bytes()[:100])  # a run killed mid-write (before atomic writes) or a bad disk
    again, info = extract_features(model, processor, [image], cache_dir=cache)
    assert info == {"cached": 0, "computed": 1, "replaced": [str(file)]}
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(np.load(file), first[0])  # replaced by a good vector
    assert [f for f in cache.rglob("*") if f.is_file()] == [file]
    from skinvl.evaluation.probe import _cache_warnings

    [line] = _cache_warnings(info)
    assert str(file) in line and "recomputed and replaced" in line
    _, info = extract_features(model, processor, [image], cache_dir=cache)
    assert info == {"cached": 1, "computed": 0}


# ------------------------------------------------------------------------------ quiet inconsistencies (item 12)


@pytest.mark.parametrize("header", ["question,answer,prediction,prediction", "question,answer,Prediction,prediction "])
def test_duplicate_header_in_predictions_csv_is_refused(tmp_path, capsys, header):
    f = tmp_path / "twice.csv"
    f.write_text(f"{header}\nIs it raised?,Yes.,No.,Yes.\n")
    code, err = _score(tmp_path, f, capsys)
    assert code == ExitCode.BAD_INPUT and len(err.splitlines()) == 1
    assert f"{f}, header: duplicate header column(s)" in err and "rename or delete all but one" in err


def test_duplicate_header_in_vlmevalkit_tsv_is_refused(tmp_path, capsys):
    f = tmp_path / "Model_MMSkin.tsv"
    f.write_text("index\tquestion\tanswer\tprediction\tprediction\n0\tq\ta\tp\tp2\n")
    code, err = _score(tmp_path, f, capsys)
    assert code == ExitCode.BAD_INPUT and "duplicate header column(s) 'prediction'" in err


def test_duplicate_header_in_label_csv_is_refused_like_the_builder(tmp_path):
    from mm_skin.release import read_csv
    from mm_skin.report import ReleaseError

    f = tmp_path / "dup_test.csv"
    f.write_text("image,categories,Image\na.png,['Nevus'],b.png\n")
    with pytest.raises(LabelFileError, match=r"dup_test.csv, header: duplicate header column\(s\) 'Image', 'image'"):
        read_label_csv(f)
    with pytest.raises(ReleaseError, match=r"duplicate header column\(s\) 'Image', 'image'"):  # the same rule
        read_csv(f, "dup_test.csv", ["image"])


def test_label_columns_use_the_builders_matcher(tmp_path):
    f = tmp_path / "spelled_test.csv"
    f.write_text("Image-Path,Atributes, CATEGORIES \na.png,[],['Nevus']\n")
    assert [(r.image, r.label) for r in read_label_csv(f).rows] == [("a.png", "Nevus")]


def test_modality_spellings_are_one_group_and_unknown_ones_refused(tmp_path, capsys):
    f = tmp_path / "preds.csv"
    f.write_text("question,answer,prediction,modality\n"
                 "Is it raised?,Yes.,Yes.,Skin\nIs it red?,Yes.,No.,clinical\nIs it flat?,No.,No., skin\n"
                 "Pigment network?,Yes.,Yes.,Dermoscopy\n")
    code, err = _score(tmp_path, f, capsys)
    assert code == ExitCode.OK, err
    per = json.loads((tmp_path / "out" / "results.json").read_text())["per_modality"]["paper"]
    assert set(per) == {"clinical", "dermoscopic"} and per["clinical"]["n"] == 3

    f.write_text("question,answer,prediction,modality\nIs it raised?,Yes.,Yes.,clinical\nIs it?,Yes.,No.,X-ray\n")
    code, err = _score(tmp_path, f, capsys)
    assert code == ExitCode.BAD_INPUT and len(err.splitlines()) == 1
    assert f"{f}, row 2: modality 'X-ray' is not recognised" in err


def test_same_image_with_two_labels_is_reported(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(images / name)
    labels = tmp_path / "conflict_test.csv"
    labels.write_text("image,categories\na.png,['Nevus']\nb.png,['Nevus']\n./a.png,['Melanoma']\n")
    summary = read_label_csv(labels).summary()
    assert summary["conflicting_labels_count"] == 1
    assert summary["conflicting_labels"] == [{"image": "a.png", "rows": [{"row": 1, "label": "Nevus"},
                                                                          {"row": 3, "label": "Melanoma"}]}]
    base = ["eval", "zeroshot", "--labels", str(labels), "--images", str(images)]
    prompts = tmp_path / "prompts.jsonl"
    assert main([*base, "--out", str(tmp_path / "x"), "--export-prompts", str(prompts)]) == ExitCode.OK
    warning = "conflict_test.csv, rows 1 and 3: image 'a.png' is labelled 'Nevus' and 'Melanoma'"
    assert warning in capsys.readouterr().err
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"id": json.loads(line)["id"], "prediction": "Nevus"}) + "\n"
                               for line in prompts.read_text().splitlines()))
    out = tmp_path / "out"
    assert main([*base, "--out", str(out), "--predictions", str(answers)]) == ExitCode.OK
    assert warning in capsys.readouterr().err
    doc = json.loads((out / "results.json").read_text())
    assert doc["labels"]["conflicting_labels_count"] == 1 and warning in doc["warnings"][0]
    assert doc["metrics"]["n"] == 3  # every row is still evaluated, as the authors' protocol does


def test_dataset_image_path_leaving_the_root_is_refused(tmp_path):
    import datasets

    from skinvl.inference.images import ImageFileError, LazyImages

    root = tmp_path / "release"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")  # exists, but outside the root
    ds = datasets.Dataset.from_dict({"image": [{"bytes": None, "path": "../x.png"}]},
                                    features=datasets.Features({"image": datasets.Image()}))
    images = LazyImages.from_dataset(ds, root=root)
    with pytest.raises(ImageFileError, match="leaves"):
        images.raw(0)
    with pytest.raises(ImageFileError, match="leaves"):
        images[0]
