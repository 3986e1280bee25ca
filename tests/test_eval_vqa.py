"""``skinvl eval vqa`` end to end: the sample dataset, the tiny model, generation, scoring, files."""

from __future__ import annotations

import csv
import json


def test_eval_vqa_end_to_end(vqa_folder, tiny, tmp_path):
    from skinvl.evaluation.scoring import ScoreSettings
    from skinvl.evaluation.vqa import VQAOptions, load_vqa_split, run_vqa
    from skinvl.inference.loading import LoadedModel

    out = tmp_path / "out"
    doc = run_vqa(
        VQAOptions(model="skinvl-tiny", data=str(vqa_folder), out=str(out), batch_size=4, max_new_tokens=6,
                   no_bertscore=True), loaded=LoadedModel.wrap(*tiny, "skinvl-tiny"),
    )
    assert doc["task"] == "vqa" and doc["split"] == "test" and doc["config"] == "vqa"
    assert doc["decoding"]["name"] == "greedy" and doc["decoding"]["do_sample"] is False
    assert set(doc["metrics"]) == {"paper", "standard"}
    assert set(doc["per_modality"]["paper"]) == {"clinical", "dermoscopic", "pathology"}
    assert doc["metrics"]["paper"]["meteor"] is None or "meteor" not in doc["unavailable"]
    rows = list(csv.DictReader((out / "predictions.csv").open(encoding="utf-8")))
    assert len(rows) == doc["n_samples"] == 12
    assert all(r["modality"] in {"clinical", "dermoscopic", "pathology"} for r in rows)
    assert json.loads((out / "results.json").read_text())["n_samples"] == 12
    # Rows carry the dataset's question ids; the run is labelled and its coverage recorded.
    assert [r["id"] for r in rows] == list(load_vqa_split(str(vqa_folder))["question_id"])
    assert doc["name"] == "skinvl-tiny" and doc["coverage"]["complete"] and doc["coverage"]["answered"] == 12
    assert (out / "vqa_scores.png").read_bytes()[:4] == b"\x89PNG"
    # The dataset's answer types reach the predictions files and the per-type table.
    types = list(load_vqa_split(str(vqa_folder))["answer_type"])
    assert [r["answer_type"] for r in rows] == types
    log = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["answer_type"] for r in log] == types
    assert set(doc["per_answer_type"]["standard"]) == {"closed", "open"}
    assert "## Protocol `standard` per answer type" in (out / "results.md").read_text()

    # The raw predictions file is exactly what `eval score` reads: scoring it again agrees.
    from skinvl.evaluation.vqa import run_score

    again = run_score(out / "predictions_raw.csv", tmp_path / "rescored", settings=ScoreSettings(bertscore=False))
    assert again["metrics"] == doc["metrics"]

    # Batched greedy answers equal one-at-a-time answers (left padding done right).
    from skinvl.evaluation.vqa import generate_predictions

    ds = load_vqa_split(str(vqa_folder), limit=4)
    single = generate_predictions(*tiny, ds, batch_size=1, max_new_tokens=6)
    assert [s.prediction for s in single] == [r["prediction"] for r in rows[:4]]


def test_paper_decoding_is_seeded(vqa_folder, tiny):
    from skinvl.evaluation.vqa import decoding_kwargs, generate_predictions, load_vqa_split

    kwargs = decoding_kwargs("paper")
    assert kwargs == {"do_sample": True, "temperature": 0.2, "top_p": 0.9, "num_beams": 5,
                      "min_new_tokens": 20, "max_new_tokens": 256}
    assert decoding_kwargs("paper", 4)["min_new_tokens"] == 4
    ds = load_vqa_split(str(vqa_folder), limit=2)
    a = generate_predictions(*tiny, ds, batch_size=2, decoding="paper", max_new_tokens=4, seed=3)
    b = generate_predictions(*tiny, ds, batch_size=2, decoding="paper", max_new_tokens=4, seed=3)
    assert [s.prediction for s in a] == [s.prediction for s in b]


def test_cli_parses_all_eval_commands():
    import argparse

    from skinvl.evaluation import register_cli

    parser = argparse.ArgumentParser(prog="skinvl")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "vqa", "--model", "m", "--data", "d", "--out", "o", "--decoding", "paper"])
    assert args.decoding == "paper" and args.config == "vqa" and args.split == "test" and args.protocol == "both"
    args = parser.parse_args(["eval", "zeroshot", "--model", "m", "--labels", "l.csv", "--images", "i", "--out", "o"])
    assert args.protocol == "robust" and args.max_new_tokens == 64
    args = parser.parse_args(["eval", "probe", "--model", "m", "--train-labels", "a", "--test-labels", "b",
                              "--images", "i", "--out", "o"])
    assert callable(args.func)
    args = parser.parse_args(["eval", "score", "--predictions", "p.csv", "--out", "o", "--bertscore-model", "/x"])
    assert args.bertscore_model == "/x" and args.bertscore_layer == 9


def test_skinvl_console_command_runs_eval_score(tmp_path):
    """The `skinvl` entry point (skinvl.cli) wires `eval score` to this package."""
    from skinvl.cli import main

    pred = tmp_path / "p.csv"
    pred.write_text("question,answer,prediction,modality\nIs it raised?,\"Yes, it is.\",Yes.,clinical\n"
                    "What is it?,A nevus.,,pathology\n")
    out = tmp_path / "out"
    assert main(["eval", "score", "--predictions", str(pred), "--out", str(out), "--no-bertscore",
                 "--protocol", "paper"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["protocol"] == "paper" and doc["empty_predictions"] == 1
    assert doc["name"] == "p" and doc["coverage"]["checked"] is False  # no --data: coverage unknown, and said so
    assert set(doc["per_modality"]["paper"]) == {"clinical", "pathology"}


def _closed_open_predictions(ds) -> list[str]:
    """Deterministic answers: every other closed question answered wrong, open ones cut short."""
    out: list[str] = []
    closed = 0
    for answer, kind in zip(ds["answer"], ds["answer_type"], strict=True):
        if kind == "closed":
            closed += 1
            out.append(("No." if answer.lower().startswith("yes") else "Yes.") if closed % 2 else answer)
        else:
            out.append(" ".join(answer.split()[:3]))
    return out


def test_per_answer_type_scores_equal_scoring_each_subset(vqa_folder, tmp_path):
    """``eval score`` on the built sample's train split (6 closed, 42 open questions): the per-type numbers
    are the standard protocol on each subset."""
    from skinvl.evaluation.predictions import VQASample
    from skinvl.evaluation.scoring import ScoreSettings, score_vqa
    from skinvl.evaluation.vqa import CoverageOptions, load_vqa_split, run_score

    data = vqa_folder
    ds = load_vqa_split(str(data), split="train")
    preds = _closed_open_predictions(ds)
    settings = ScoreSettings(bertscore=False)
    expected = {}
    for kind in ("closed", "open"):
        subset = [VQASample(q, a, p) for q, a, p, t in zip(ds["question"], ds["answer"], preds, ds["answer_type"], strict=True)
                  if t == kind]
        assert subset, f"the sample split has no {kind} question"
        expected[kind] = score_vqa(subset, ["standard"], settings).metrics["standard"]["overall"]
    # The closed subset really is the yes/no one: its yes/no accuracy is over all its questions.
    assert expected["closed"]["yes_no_count"] == expected["closed"]["n"] and 0 < expected["closed"]["yes_no_accuracy"] < 1

    plain = tmp_path / "plain.jsonl"  # ids only: the types come from --data
    plain.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in zip(ds["question_id"], preds, strict=True)))
    typed = tmp_path / "typed.csv"  # the file's own answer_type column, no --data
    with typed.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("question", "answer", "prediction", "answer_type"),
                                 *zip(ds["question"], ds["answer"], preds, ds["answer_type"], strict=True)])
    by_data = run_score(plain, tmp_path / "by_data", settings=settings, split=CoverageOptions(data=str(data), split="train"))
    by_file = run_score(typed, tmp_path / "by_file", settings=settings)
    for doc in (by_data, by_file):
        assert doc["per_answer_type"] == {"standard": expected}
        assert doc["metrics"] == by_data["metrics"]  # additive: the overall numbers do not move

    # No answer type anywhere: no per-type section, no error.
    untyped = tmp_path / "untyped.csv"
    with untyped.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("question", "answer", "prediction"), *zip(ds["question"], ds["answer"], preds, strict=True)])
    doc = run_score(untyped, tmp_path / "untyped", settings=settings)
    assert "per_answer_type" not in doc and doc["metrics"] == by_data["metrics"]
    assert "answer type" not in (tmp_path / "untyped" / "results.md").read_text()
    assert "answer_type" not in (tmp_path / "untyped" / "predictions.csv").read_text().splitlines()[0]
