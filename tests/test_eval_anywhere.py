"""Answers from anywhere: files without an id column are matched to the split by image id and question."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from skinvl.cli import main
from skinvl.evaluation.foreign import Answer, match_rows
from skinvl.evaluation.predictions import PredictionsFileError
from skinvl.evaluation.runs import Row


def _authors_file(path: Path, rows: list[dict], change: dict[int, str] | None = None) -> Path:
    """The authors' VQA_test.py output: image (a release path), question, answer, prediction; no id."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "question", "answer", "prediction"])
        for k, row in reversed(list(enumerate(rows))):  # another order than the split's
            question = (change or {}).get(k, row["question"])
            writer.writerow([f"dataset/{row['image_id']}.png", question, row["answer"], row["answer"][:20]])
    return path


def test_authors_output_is_matched_by_image_and_question(vqa_folder, tmp_path, capsys):
    import datasets

    ds = datasets.load_dataset(str(vqa_folder), "vqa", split="test")
    rows = [ds[i] for i in range(len(ds))]
    path = _authors_file(tmp_path / "VQA_test_output.csv", rows)
    out = tmp_path / "scored"
    assert main(["eval", "score", "--predictions", str(path), "--data", str(vqa_folder), "--out", str(out),
                 "--no-bertscore"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["coverage"]["complete"] and doc["coverage"]["matched_by"] == {"image id and question": len(rows)}
    with (out / "predictions.csv").open() as f:
        assert [r["id"] for r in csv.DictReader(f)] == [r["question_id"] for r in rows]  # ids recovered, split order
    capsys.readouterr()
    bad = _authors_file(tmp_path / "bad.csv", rows, change={3: "Is this a question nobody asked?"})
    assert main(["eval", "score", "--predictions", str(bad), "--data", str(vqa_folder), "--out", str(tmp_path / "b"),
                 "--no-bertscore"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "bad.csv, row" in err and "nobody asked" in err and "None" not in err


def _rows() -> list[Row]:
    fields = {"image_id": "img1", "modality": "clinical"}
    return [Row("a", 0, "Is it raised?", {**fields, "answer": "Yes."}),
            Row("b", 1, "Is it raised?", {**fields, "answer": "Yes."}),  # an exact duplicate of a
            Row("c", 2, "Is it raised?", {**fields, "answer": "No, it is flat."}),
            Row("d", 3, "What is it?", {**fields, "answer": "A nevus."})]


def test_duplicates_in_file_order_and_the_reference_disambiguates():
    answers = [Answer("no", "f, row 1", question="Is it raised?", answer="No, it is flat.", image_id="x/img1.jpg"),
               Answer("yes 1", "f, row 2", question="Is it raised?", answer="Yes.", image_id="img1"),
               Answer("yes 2", "f, row 3", question="Is it  raised?", answer="Yes.", image_id="img1"),
               Answer("nevus", "f, row 4", question="What is it?", image_id="img1")]
    pairs, coverage = match_rows(answers, _rows())
    assert [(row.id, a.prediction) for row, a in pairs] == [("a", "yes 1"), ("b", "yes 2"), ("c", "no"), ("d", "nevus")]
    assert coverage["duplicates_in_file_order"] == 2 and coverage["complete"]
    with pytest.raises(PredictionsFileError, match="answered twice"):
        match_rows([*answers, Answer("again", "f, row 5", question="What is it?", image_id="img1")], _rows())
    with pytest.raises(PredictionsFileError, match="row 9: a row without an id, row number or question"):
        match_rows([Answer("x", "f, row 9")], _rows())
