"""The VQA scorer: paper numbers equal direct library calls; blanks, bad files, local resources."""

from __future__ import annotations

import csv
import json
import random

import pytest

from skinvl.evaluation.predictions import PredictionsFileError, VQASample, read_predictions
from skinvl.evaluation.scoring import PAPER_BLEU_WEIGHTS, ScoreSettings, score_vqa
from skinvl.evaluation.vqa import run_score

REFS = [
    "The image shows a nevus on the back.",
    "Yes, the lesion is raised above the skin surface.",
    "No, the lesion is flat.",
    "The histology shows a basal cell carcinoma with palisading.",
    "It is located on the left cheek of the patient.",
    "Yes. There is ulceration.",
]
PREDS = [
    "The image shows a melanocytic nevus on the back.",
    "Yes, it is raised.",
    "Yes, the lesion is flat.",
    "A basal cell carcinoma with peripheral palisading is seen.",
    "On the cheek.",
    "No",
]
MODALITIES = ["clinical", "clinical", "dermoscopic", "pathology", "clinical", "pathology"]


def _samples(preds=PREDS, refs=REFS, modalities=MODALITIES) -> list[VQASample]:
    return [VQASample(f"q{i}", r, p, m, f"img{i}") for i, (p, r, m) in enumerate(zip(preds, refs, modalities, strict=True))]


NO_BERT = ScoreSettings(bertscore=False)


def test_paper_protocol_equals_direct_library_calls():
    from nltk.translate.bleu_score import corpus_bleu
    from rouge import Rouge

    result = score_vqa(_samples(), ["paper"], NO_BERT)
    got = result.metrics["paper"]["overall"]
    refs_tok = [[r.split()] for r in REFS]
    hyps = [p.split() for p in PREDS]
    for name, weights in PAPER_BLEU_WEIGHTS.items():
        assert got[name] == pytest.approx(corpus_bleu(refs_tok, hyps, weights=weights), rel=1e-12, abs=0)
    assert PAPER_BLEU_WEIGHTS["bleu_3"] == (0.33, 0.33, 0.33, 0.0)
    direct = Rouge().get_scores(PREDS, REFS, avg=True)
    assert got["rouge_1"] == pytest.approx(direct["rouge-1"]["f"], rel=1e-12)
    assert got["rouge_2"] == pytest.approx(direct["rouge-2"]["f"], rel=1e-12)
    assert got["rouge_l"] == pytest.approx(direct["rouge-l"]["f"], rel=1e-12)
    recall = sum(len(set(p.split()) & set(r.split())) / len(set(r.split())) for p, r in zip(PREDS, REFS, strict=True))
    assert got["token_recall"] == pytest.approx(recall / len(REFS))
    # Per modality: corpus BLEU recomputed on the subset, not averaged.
    sub = [i for i, m in enumerate(MODALITIES) if m == "clinical"]
    clinical = result.metrics["paper"]["clinical"]
    assert clinical["n"] == 3
    assert clinical["bleu_1"] == pytest.approx(
        corpus_bleu([refs_tok[i] for i in sub], [hyps[i] for i in sub], weights=(1, 0, 0, 0))
    )
    assert 0 < got["bleu_1"] < 1 and got["rouge_l"] > 0


def test_standard_protocol_matches_libraries_and_scores_yes_no():
    import sacrebleu
    from rouge_score import rouge_scorer

    got = score_vqa(_samples(), ["standard"], NO_BERT).metrics["standard"]["overall"]
    assert got["sacrebleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS]).score / 100)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expect = sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(PREDS, REFS, strict=True)) / len(REFS)
    assert got["rouge_l"] == pytest.approx(expect)
    # Yes/no questions: references 1, 2, 5 (yes, no, yes); predictions yes, yes, no -> 1 of 3.
    assert got["yes_no_count"] == 3
    assert got["yes_no_accuracy"] == pytest.approx(1 / 3)
    assert 0 <= got["yes_no_f1"] <= 1


def test_blank_predictions_are_scored_and_counted_not_crashed():
    from rouge import Rouge

    preds = list(PREDS)
    preds[0] = ""
    preds[2] = "..."  # the rouge package calls this empty too
    with pytest.raises(ValueError, match="Hypothesis is empty"):
        Rouge().get_scores(preds, REFS, avg=True)
    result = score_vqa(_samples(preds), ["paper", "standard"], NO_BERT)
    assert result.empty_predictions == 2
    got = result.metrics["paper"]["overall"]
    keep = [i for i in range(len(REFS)) if i not in (0, 2)]
    direct = Rouge().get_scores([preds[i] for i in keep], [REFS[i] for i in keep], avg=True)
    # Blanks score 0 and stay in the average (over all 6 samples, not the 4 non-blank ones).
    assert got["rouge_l"] == pytest.approx(direct["rouge-l"]["f"] * len(keep) / len(REFS))
    assert result.metrics["paper"]["overall"]["n"] == len(REFS)


def test_missing_resources_are_unavailable_not_zero(tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "no-nltk-data")])
    result = score_vqa(
        _samples(), ["paper", "standard"], ScoreSettings(bertscore_model=str(tmp_path / "no-bert"))
    )
    assert result.metrics["paper"]["overall"]["meteor"] is None
    assert result.metrics["standard"]["overall"]["meteor"] is None
    assert result.metrics["paper"]["overall"]["bertscore_f1"] is None
    assert "nltk.downloader wordnet" in result.unavailable["meteor"]["fix"]
    assert "--bertscore-model" in result.unavailable["bertscore"]["fix"]


# ------------------------------------------------------------------ locally built resources


def _write_minimal_wordnet(root) -> None:
    """A WordNet that nltk's WordNetCorpusReader loads: one noun synset {tumor, tumour, growth}."""
    wn = root / "corpora" / "wordnet"
    wn.mkdir(parents=True)
    (wn / "lexnames").write_text("00\tnoun.Tops\t1\n")
    line = "00000000 00 n 03 tumor 0 tumour 0 growth 0 000 | an abnormal mass of tissue\n"
    (wn / "data.noun").write_text(line)
    (wn / "index.noun").write_text(
        "".join(f"{w} n 1 0 1 0 00000000  \n" for w in ("growth", "tumor", "tumour"))
    )
    for pos in ("adj", "adv", "verb"):
        (wn / f"index.{pos}").write_text("")
        (wn / f"data.{pos}").write_text("")
    for pos in ("adj", "adv", "noun", "verb"):
        (wn / f"{pos}.exc").write_text("")
    (wn / "index.sense").write_text("")


def test_meteor_with_a_locally_built_wordnet(tmp_path, monkeypatch):
    import nltk

    _write_minimal_wordnet(tmp_path / "nltk_data")
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    preds = ["the mass is a tumour of the skin", "a growth on the arm", ""]
    refs = ["the mass is a tumor of the skin", "a tumor on the arm", "no"]
    result = score_vqa(
        _samples(preds, refs, [None] * 3), ["paper", "standard"],
        ScoreSettings(bertscore=False, nltk_data=[str(tmp_path / "nltk_data")]),
    )
    assert "meteor" not in result.unavailable
    from nltk.corpus import wordnet
    from nltk.translate.meteor_score import meteor_score

    assert {lemma.name() for lemma in wordnet.synsets("tumour")[0].lemmas()} == {"tumor", "tumour", "growth"}
    direct = [meteor_score([r.split()], p.split()) for p, r in zip(preds, refs, strict=True)]
    assert result.metrics["paper"]["overall"]["meteor"] == pytest.approx(sum(direct) / 3)
    # The synonym counts: "tumour" vs "tumor" scores higher than an unrelated word would.
    assert direct[0] > meteor_score([refs[0].split()], "the mass is a cyst of the skin".split())
    assert result.metrics["standard"]["overall"]["meteor"] > 0


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 9-layer BERT (so the paper's layer 9 exists) with a WordPiece tokenizer, saved locally."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w.strip(".,").lower() for text in REFS + PREDS for w in text.split()} - {""})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *words]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, model_max_length=64)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=9, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_bertscore_with_a_local_checkpoint_equals_direct_call(tiny_bert):
    import bert_score

    preds = list(PREDS)
    preds[1] = "   "  # blank: bert_score's own rule gives 0
    result = score_vqa(_samples(preds), ["paper", "standard"], ScoreSettings(bertscore_model=str(tiny_bert)))
    assert "bertscore" not in result.unavailable
    keep = [i for i in range(len(preds)) if i != 1]
    p, r, f = bert_score.score(
        [preds[i] for i in keep], [REFS[i] for i in keep], model_type=str(tiny_bert), num_layers=9,
        idf=False, rescale_with_baseline=False, use_fast_tokenizer=True,
    )
    got = result.metrics["paper"]["overall"]
    assert got["bertscore_f1"] == pytest.approx(f.sum().item() / len(preds), rel=1e-5)
    assert got["bertscore_precision"] == pytest.approx(p.sum().item() / len(preds), rel=1e-5)
    assert got["bertscore_recall"] == pytest.approx(r.sum().item() / len(preds), rel=1e-5)
    assert result.metrics["standard"]["overall"]["bertscore_f1"] == got["bertscore_f1"]


# ----------------------------------------------------------------------- predictions files


def test_predictions_file_validation(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nq,a\n")
    with pytest.raises(PredictionsFileError, match=r"bad.csv: missing column\(s\) \['prediction'\]"):
        read_predictions(bad)
    blank_ref = tmp_path / "blank.csv"
    blank_ref.write_text("question,answer,prediction\nq1,a,b\nq2,  ,b\n")
    with pytest.raises(PredictionsFileError, match="blank.csv, row 2: the reference 'answer' is blank"):
        read_predictions(blank_ref)
    jl = tmp_path / "p.jsonl"
    jl.write_text(json.dumps({"question": "q", "answer": "a", "prediction": "a"}) + "\n{oops\n")
    with pytest.raises(PredictionsFileError, match="p.jsonl, line 2: not valid JSON"):
        read_predictions(jl)
    jl.write_text(json.dumps({"question": "q", "answer": "a", "prediction": None}) + "\n")
    with pytest.raises(PredictionsFileError, match="line 1: column 'prediction' is missing or null"):
        read_predictions(jl)
    (tmp_path / "x.txt").write_text("question,answer,prediction\n")
    with pytest.raises(PredictionsFileError, match="unknown extension '.txt'"):
        read_predictions(tmp_path / "x.txt")


def test_answer_type_column_is_validated_and_needs_the_standard_protocol(tmp_path):
    typed = tmp_path / "typed.csv"
    typed.write_text("question,answer,prediction,answer_type\nIs it raised?,Yes.,No.,Closed \nWhat?,A nevus.,A nevus.,\n")
    samples = read_predictions(typed)
    assert [s.answer_type for s in samples] == ["closed", None]  # case and spaces ignored; blank = unknown
    result = score_vqa(samples, ["paper", "standard"], NO_BERT)
    assert set(result.per_answer_type) == {"standard"} and set(result.per_answer_type["standard"]) == {"closed", "unknown"}
    assert result.per_answer_type["standard"]["closed"]["yes_no_accuracy"] == 0.0
    assert score_vqa(samples, ["paper"], NO_BERT).per_answer_type == {}  # per type is a standard-protocol table
    typed.write_text("question,answer,prediction,answer_type\nIs it raised?,Yes.,No.,yes-no\n")
    with pytest.raises(PredictionsFileError, match=r"typed.csv, row 1: answer_type 'yes-no' is not recognised"):
        read_predictions(typed)


def test_eval_score_command_writes_all_outputs(tmp_path):
    from skinvl.evaluation.cli import register_cli

    pred_file = tmp_path / "preds.jsonl"
    with pred_file.open("w") as f:
        for s in _samples():
            f.write(json.dumps({"question": s.question, "answer": s.answer, "prediction": s.prediction,
                                "modality": s.modality, "image_id": s.image_id, "extra": 1}) + "\n")
    import argparse

    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    args = parser.parse_args(["eval", "score", "--predictions", str(pred_file), "--out", str(out), "--no-bertscore"])
    assert args.func(args) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["task"] == "vqa" and doc["protocol"] == "both" and doc["schema_version"] == 1
    assert set(doc["metrics"]) == {"paper", "standard"}
    assert set(doc["per_modality"]["paper"]) == {"clinical", "dermoscopic", "pathology"}
    assert doc["metrics"]["paper"]["bertscore_f1"] is None and "bertscore" in doc["unavailable"]
    assert (out / "vqa_scores.png").read_bytes()[:4] == b"\x89PNG"
    assert "| overall |" in (out / "results.md").read_text()
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == len(REFS) and rows[0]["prediction"] == PREDS[0]
    # A bad file is exit code 2 with the message, not a traceback.
    bad = tmp_path / "bad.csv"
    bad.write_text("q,a\n1,2\n")
    args = parser.parse_args(["eval", "score", "--predictions", str(bad), "--out", str(out)])
    assert args.func(args) == 2


@pytest.mark.shared
def test_real_test_answers_go_through_the_scorer(shared_dir, tmp_path):
    source = shared_dir / "mmskin-release" / "Dataframe" / "test" / "vqa" / "MM-Skin_test.csv"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    with source.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5452
    shuffled = [r["answer"] for r in rows]
    random.Random(0).shuffle(shuffled)
    pred_file = tmp_path / "preds.csv"
    with pred_file.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "question", "answer", "prediction"])
        for r, p in zip(rows, shuffled, strict=True):
            writer.writerow([r["image"], r["question"], r["answer"], p])
    # All rows with the paper protocol (what the paper reports); the slower standard one
    # (Porter-stemmed ROUGE) on the first 400 to keep the suite fast.
    doc = run_score(pred_file, tmp_path / "out", protocols=("paper",), settings=NO_BERT)
    assert doc["n_samples"] == 5452
    paper = doc["metrics"]["paper"]
    assert 0 < paper["bleu_1"] < 1 and 0 < paper["rouge_l"] < 1 and 0 < paper["token_recall"] < 1
    head = [VQASample(r["question"], r["answer"], p) for r, p in zip(rows[:400], shuffled[:400], strict=True)]
    standard = score_vqa(head, ["standard"], NO_BERT).metrics["standard"]["overall"]
    assert standard["yes_no_count"] > 40 and 0 < standard["rouge_l"] < 1
    # References against themselves: every overlap metric is perfect.
    same = [VQASample(r["question"], r["answer"], r["answer"]) for r in rows[:300]]
    perfect = score_vqa(same, ["paper"], NO_BERT).metrics["paper"]["overall"]
    assert perfect["bleu_1"] == pytest.approx(1.0) and perfect["token_recall"] == pytest.approx(1.0)
