"""lmms-eval hooks of the ``mmskin_vqa`` task: prompts, per-document records, and skinvl's scoring.

lmms-eval imports this file by path (``!function utils.NAME`` in mmskin_vqa.yaml); it needs
``skinvl`` (with the ``eval`` extra) installed in lmms-eval's environment. ``process_results``
returns the same record (question id, question, reference, prediction) under every metric name;
each aggregation asks :func:`skinvl.evaluation.lmms_eval_task.scores.score_records` for the whole
list, which scores it once per run (its cache lives in that module, not in this file, which
lmms-eval loads once per ``!function`` tag) and returns its metric, on the 0-1 scale of
``skinvl eval``'s results.json. A metric that cannot
run here (BERTScore without bert-base-uncased, METEOR without WordNet) is NaN, never 0; run
``skinvl eval score --data ... logs/..._samples_mmskin_vqa.jsonl`` for the full report.
"""

from __future__ import annotations

import math
from typing import Any

from skinvl.evaluation.lmms_eval_task.scores import score_records
from skinvl.evaluation.scoring import HEADLINE_METRICS

# The standard protocol's METEOR and BERTScore are left out here: they need WordNet / a BERT checkpoint.
METRICS = {"paper": HEADLINE_METRICS["paper"], "standard": ("sacrebleu", "rouge_l", "yes_no_accuracy")}


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


def _aggregation(protocol: str, metric: str):
    def aggregate(records: list[dict[str, Any]]) -> float:
        value = score_records(records).metrics[protocol]["overall"][metric]
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
