"""lmms-eval hooks of the ``mmskin_vqa`` task: prompts, per-document records, and skinvl's scoring.

lmms-eval imports this file by path (``!function utils.NAME`` in mmskin_vqa.yaml); it needs
``skinvl`` (with the ``eval`` extra) installed in lmms-eval's environment. ``process_results``
returns the same record (question id, question, reference, prediction) under every metric name;
each aggregation scores the whole list once with :func:`skinvl.evaluation.scoring.score_vqa`
(cached, so the nine metrics cost one scoring run) and returns its metric. A metric that cannot
run here (BERTScore without bert-base-uncased, METEOR without WordNet) is NaN, never 0; run
``skinvl eval score --data ... logs/..._samples_mmskin_vqa.jsonl`` for the full report.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from skinvl.evaluation.predictions import VQASample
from skinvl.evaluation.scoring import HEADLINE_METRICS, PROTOCOLS, ScoreResult, score_vqa

# The standard protocol's METEOR and BERTScore are left out here: they need WordNet / a BERT checkpoint.
METRICS = {"paper": HEADLINE_METRICS["paper"], "standard": ("sacrebleu", "rouge_l", "yes_no_accuracy")}
_cache: dict[tuple, ScoreResult] = {}


def mmskin_doc_to_visual(doc: dict[str, Any]) -> list:
    """The question's image, RGB."""
    return [doc["image"].convert("RGB")]


def mmskin_doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, str] | None = None) -> str:
    """The paper's prompt: the question itself (optional pre/post prompt from the YAML)."""
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


def mmskin_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    """One record per document under every metric name; the aggregations score the corpus."""
    record = {"question_id": doc.get("question_id"), "question": doc["question"], "answer": doc["answer"],
              "prediction": results[0] if results else ""}
    return {f"{protocol}_{metric}": record for protocol, names in METRICS.items() for metric in names}


def _score(records: list[dict[str, Any]]) -> ScoreResult:
    key = tuple((r["question_id"], r["answer"], r["prediction"]) for r in records)
    if key not in _cache:
        _cache.clear()  # one task's list at a time
        samples = [VQASample(r["question"], r["answer"], r["prediction"], id=r["question_id"]) for r in records]
        _cache[key] = score_vqa(samples, PROTOCOLS)
        for metric, why in _cache[key].unavailable.items():
            print(f"mmskin_vqa: {metric} unavailable ({why['reason']}) Fix: {why['fix']}", file=sys.stderr)
    return _cache[key]


def _aggregation(protocol: str, metric: str):
    def aggregate(records: list[dict[str, Any]]) -> float:
        value = _score(records).metrics[protocol]["overall"][metric]
        return math.nan if value is None else float(value)

    aggregate.__name__ = f"{protocol}_{metric}"
    aggregate.__doc__ = f"Corpus {metric} of the {protocol} protocol over all documents (NaN if unavailable)."
    return aggregate


paper_bleu_1 = _aggregation("paper", "bleu_1")
paper_bleu_4 = _aggregation("paper", "bleu_4")
paper_rouge_l = _aggregation("paper", "rouge_l")
paper_meteor = _aggregation("paper", "meteor")
paper_bertscore_f1 = _aggregation("paper", "bertscore_f1")
paper_token_recall = _aggregation("paper", "token_recall")
standard_sacrebleu = _aggregation("standard", "sacrebleu")
standard_rouge_l = _aggregation("standard", "rouge_l")
standard_yes_no_accuracy = _aggregation("standard", "yes_no_accuracy")
