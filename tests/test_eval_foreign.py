"""Answers made elsewhere: lmms-eval sample logs, VLMEvalKit sheets, API JSONL; coverage; zero-shot files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from skinvl.cli import main


def _split(folder: Path) -> list[dict]:
    import datasets

    ds = datasets.load_dataset(str(folder), "vqa", split="test")
    return [ds[i] for i in range(len(ds))]


def model_answers(rows: list[dict], style: str = "short") -> list[str]:
    """Deterministic answers of a pretend model: exact, truncated, or a bare yes/no."""
    if style == "exact":
        return [r["answer"] for r in rows]
    return [r["answer"] if i % 3 == 0 else ("Yes." if i % 3 == 1 else " ".join(r["answer"].split()[:3]))
            for i, r in enumerate(rows)]


def write_lmms_eval_log(path: Path, rows: list[dict], answers: list[str], keep=None) -> Path:
    """A sample log exactly as lmms-eval's evaluate() writes it with --log_samples (one line per doc)."""
    from skinvl.evaluation.lmms_eval_task import utils

    with path.open("w", encoding="utf-8") as f:
        for doc_id, (row, answer) in enumerate(zip(rows, answers, strict=True)):
            if keep is not None and doc_id not in keep:
                continue
            doc = {k: v for k, v in row.items() if "image" not in k}  # lmms-eval drops image columns
            context = utils.mmskin_doc_to_text(row, {"pre_prompt": "", "post_prompt": ""})
            example = {"doc_id": doc_id, "doc": doc, "target": row["answer"],
                       "arguments": [context, {"max_new_tokens": 256, "until": ["\n\n"]}, doc_id, "mmskin_vqa", "test"],
                       "resps": [[answer]], "filtered_resps": [answer], "doc_hash": f"{doc_id:064x}",
                       "prompt_hash": "0" * 64, "target_hash": "1" * 64}
            example.update(utils.mmskin_process_results(row, [answer]))
            f.write(json.dumps(example, ensure_ascii=False) + "\n")
    return path


def vlmevalkit_frame(rows: list[dict], answers: list[str]):
    """VLMEvalKit's result sheet: the dataset TSV's columns + prediction, image dropped."""
    import pandas as pd

    modality = ["clinical", "dermoscopic", "pathology"]
    return pd.DataFrame({"index": list(range(len(rows))), "question": [r["question"] for r in rows],
                         "answer": [r["answer"] for r in rows], "category": [modality[r["modality"]] for r in rows],
                         "prediction": answers})


def _score(tmp_path, predictions, folder, *extra) -> tuple[int, dict | None]:
    out = tmp_path / Path(predictions).stem
    code = main(["eval", "score", "--predictions", str(predictions), "--data", str(folder), "--out", str(out),
                 "--no-bertscore", *extra])
    doc = json.loads((out / "results.json").read_text()) if code == 0 else None
    return code, doc


def test_lmms_eval_vlmevalkit_and_api_files_score_alike(vqa_folder, tmp_path):
    rows = _split(vqa_folder)
    answers = model_answers(rows)
    log = write_lmms_eval_log(tmp_path / "20260101_120000_samples_mmskin_vqa.jsonl", rows, answers)
    code, lmms = _score(tmp_path, log, vqa_folder, "--name", "LLaVA (lmms-eval)")
    assert code == 0 and lmms["name"] == "LLaVA (lmms-eval)" and lmms["predictions_format"] == "lmms-eval"
    assert lmms["coverage"]["complete"] and lmms["coverage"]["answered"] == 12
    assert set(lmms["per_modality"]["paper"]) == {"clinical", "dermoscopic", "pathology"}

    frame = vlmevalkit_frame(rows, answers)
    tsv = tmp_path / "LLaVA_MMSkin.tsv"
    frame.to_csv(tsv, sep="\t", index=False, encoding="utf-8")  # VLMEvalKit's dump() for .tsv
    xlsx = tmp_path / "LLaVA_MMSkin.xlsx"
    shuffled = frame.assign(question_id=[r["question_id"] for r in rows]).sample(frac=1.0, random_state=0)
    shuffled.to_excel(xlsx, index=False)  # rows out of order: matched by question_id
    api = tmp_path / "gpt.jsonl"
    api.write_text("".join(json.dumps({"id": r["question_id"], "prediction": a}) + "\n" for r, a in zip(rows, answers, strict=True)))
    for path, fmt in ((tsv, "vlmevalkit"), (xlsx, "vlmevalkit"), (api, "skinvl")):
        code, doc = _score(tmp_path, path, vqa_folder)
        assert code == 0 and doc["predictions_format"] == fmt, path
        assert doc["metrics"] == lmms["metrics"] and doc["per_modality"] == lmms["per_modality"], path
        assert doc["dataset_info"]["row_ids_blake2b"] == lmms["dataset_info"]["row_ids_blake2b"]

    # Without --data the log's own doc/target are scored; coverage is recorded as unchecked.
    out = tmp_path / "nodata"
    assert main(["eval", "score", "--predictions", str(log), "--out", str(out), "--no-bertscore"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["coverage"]["checked"] is False and doc["metrics"] == lmms["metrics"]


def test_partial_answers_are_refused_unless_allowed(vqa_folder, tmp_path, capsys):
    rows = _split(vqa_folder)
    log = write_lmms_eval_log(tmp_path / "x_samples_mmskin_vqa.jsonl", rows, model_answers(rows), keep={0, 2, 4, 6, 8})
    code, _ = _score(tmp_path, log, vqa_folder)
    err = capsys.readouterr().err
    assert code == 2 and "cover 5 of the split's 12 rows" in err and "--allow-partial" in err
    code, doc = _score(tmp_path, log, vqa_folder, "--allow-partial")
    assert code == 0 and doc["n_samples"] == 5 and "scored 5 of 12 rows" in capsys.readouterr().err
    assert doc["coverage"]["fraction"] == pytest.approx(5 / 12) and doc["coverage"]["missing_count"] == 7
    assert doc["coverage"]["missing_ids"][0] == rows[1]["question_id"]


@pytest.mark.parametrize("damage", ["shifted", "failed", "duplicate", "other_split", "answer_type"])
def test_misaligned_or_failed_answers_are_one_line_errors(damage, vqa_folder, tmp_path, capsys):
    rows = _split(vqa_folder)
    frame = vlmevalkit_frame(rows, model_answers(rows))
    if damage == "shifted":  # answers one row off: the question no longer matches
        frame["index"] = frame["index"].shift(-1).fillna(11).astype(int)
    elif damage == "failed":
        frame.loc[3, "prediction"] = "Failed to obtain answer via API."
    elif damage == "duplicate":
        frame.loc[3, "index"] = 2
    elif damage == "answer_type":  # the file's answer types disagree with the dataset's
        frame["answer_type"] = ["open"] * len(frame)
    else:
        frame["question_id"] = [f"other-{i}" for i in range(len(frame))]
    path = tmp_path / "bad.tsv"
    frame.to_csv(path, sep="\t", index=False)
    code, _ = _score(tmp_path, path, vqa_folder)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err and str(path) in err
    expected = {"shifted": "differs from row", "failed": "could not get an answer", "duplicate": "answered twice",
                "other_split": "is not in the split", "answer_type": "the answer_type 'open' differs from row"}[damage]
    assert expected in err


def _label_files(tmp_path: Path, n: int = 9) -> tuple[Path, Path]:
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    labels = ["Melanoma", "Nevus", "Basal Cell Carcinoma"]
    lines = ["image,atributes,categories"]
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 20 * i, dtype=np.uint8)).save(images / f"img{i}.png")
        lines.append(f"img{i}.png,x,\"['{labels[i % 3]}']\"")
    csv_path = tmp_path / "toy_test.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path, images


def zeroshot_answers(prompts: list[dict], labels: list[str], good: int) -> list[str]:
    """The first ``good`` answers name the true class in a sentence; the rest are negated/off."""
    return [f"It is most likely {label.lower()}." if i < good else f"Not {label.lower()}, maybe something else."
            for i, (_, label) in enumerate(zip(prompts, labels, strict=True))]


def zeroshot_run(tmp_path: Path, csv_path: Path, images: Path, name: str, good: int, *extra: str) -> dict:
    """Export the prompts, answer them like an API script would, score with --predictions; results.json."""
    prompts_file = tmp_path / f"{name}-prompts.jsonl"
    assert main(["eval", "zeroshot", "--labels", str(csv_path), "--images", str(images), "--out", str(tmp_path / "x"),
                 "--export-prompts", str(prompts_file)]) == 0
    prompts = [json.loads(line) for line in prompts_file.read_text().splitlines()]
    truth = [["Melanoma", "Nevus", "Basal Cell Carcinoma"][i % 3] for i in range(len(prompts))]
    answers = tmp_path / f"{name}.jsonl"
    answers.write_text("".join(json.dumps({"id": p["id"], "prediction": a}) + "\n"
                               for p, a in zip(prompts, zeroshot_answers(prompts, truth, good), strict=True)))
    out = tmp_path / name
    assert main(["eval", "zeroshot", "--labels", str(csv_path), "--images", str(images), "--out", str(out),
                 "--predictions", str(answers), "--name", name, *extra]) == 0
    return json.loads((out / "results.json").read_text())


def test_zeroshot_prompts_out_answers_in(tmp_path, capsys):
    from skinvl.evaluation.zeroshot import build_prompt

    csv_path, images = _label_files(tmp_path)
    doc = zeroshot_run(tmp_path, csv_path, images, "api-model", good=6)
    prompts = [json.loads(line) for line in (tmp_path / "api-model-prompts.jsonl").read_text().splitlines()]
    assert [p["id"] for p in prompts] == [f"img{i}.png" for i in range(9)]  # image ids, not row numbers
    assert all(Path(p["image_path"]).is_file() for p in prompts)
    assert prompts[0]["prompt"] == build_prompt(["Basal Cell Carcinoma", "Melanoma", "Nevus"])
    assert doc["name"] == "api-model" and doc["coverage"]["complete"] and doc["metrics"]["n"] == 9
    assert doc["metrics"]["accuracy"] == pytest.approx(6 / 9)  # robust: "not X" is not an answer X
    assert doc["metrics_by_protocol"]["paper"]["accuracy"] == 1.0  # the paper's substring rule is fooled
    # results.md shows both parsers of the same answers, the headline one marked.
    table = {line.split("|")[1].strip(): line.split("|")[2:-1]
             for line in (tmp_path / "api-model" / "results.md").read_text().splitlines() if line.startswith("| ")}
    accuracy = table["parser"].index(" accuracy ")
    assert table["robust (headline)"][accuracy].strip() == "66.67" and table["paper"][accuracy].strip() == "100.00"

    # The same answers as a VLMEvalKit sheet (index = image id) score the same; row numbers are refused.
    import pandas as pd

    answers = [json.loads(line)["prediction"] for line in (tmp_path / "api-model.jsonl").read_text().splitlines()]
    sheet = tmp_path / "Model_MMSkinZS.xlsx"
    pd.DataFrame({"index": [p["id"] for p in prompts], "question": [p["prompt"] for p in prompts],
                  "prediction": answers}).to_excel(sheet, index=False)
    by_number = tmp_path / "ByNumber_MMSkinZS.xlsx"
    pd.DataFrame({"index": range(9), "prediction": answers}).to_excel(by_number, index=False)
    assert main(["eval", "zeroshot", "--labels", str(csv_path), "--images", str(images), "--out",
                 str(tmp_path / "n"), "--predictions", str(by_number)]) == 2
    assert "matched by image id" in capsys.readouterr().err
    out = tmp_path / "sheet"
    assert main(["eval", "zeroshot", "--labels", str(csv_path), "--images", str(images), "--out", str(out),
                 "--predictions", str(sheet)]) == 0
    assert json.loads((out / "results.json").read_text())["metrics_by_protocol"] == doc["metrics_by_protocol"]

    # A prompts file is never overwritten; a model and --predictions together are refused; a subset too.
    base = ["eval", "zeroshot", "--labels", str(csv_path), "--images", str(images), "--out", str(tmp_path / "y")]
    assert main([*base, "--export-prompts", str(tmp_path / "api-model-prompts.jsonl")]) == 2
    assert main([*base, "--predictions", str(sheet), "--model", "m"]) == 2
    (tmp_path / "part.jsonl").write_text(json.dumps({"id": "img0.png", "prediction": "melanoma"}) + "\n")
    assert main([*base, "--predictions", str(tmp_path / "part.jsonl")]) == 2
    assert "cover 1 of the split's 9 rows" in capsys.readouterr().err
