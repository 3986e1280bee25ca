"""Classification metrics and outputs shared by zero-shot and linear-probe classification.

Metrics (scikit-learn): accuracy over all rows (unparseable answers are wrong), macro F1 and
macro precision over the classes, balanced accuracy (= mean per-class recall), per-class recall
and support, the unparseable count, and the confusion matrix with an extra "unparseable" column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skinvl.evaluation import report
from skinvl.evaluation.provenance_header import provenance_header

UNPARSEABLE = "<unparseable>"


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro F1/precision, balanced accuracy, per-class recall, confusion matrix.

    ``None`` predictions are unparseable: wrong for accuracy and recall, a column of their own
    in the confusion matrix.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
    )

    pred = [p if p is not None else UNPARSEABLE for p in y_pred]
    truth = list(y_true)
    recall = recall_score(truth, pred, labels=list(classes), average=None, zero_division=0)
    support = {c: truth.count(c) for c in classes}
    present = [i for i, c in enumerate(classes) if support[c] > 0]
    cm = confusion_matrix(truth, pred, labels=[*classes, UNPARSEABLE])
    return {
        "metrics": {
            "accuracy": float(accuracy_score(truth, pred)),
            "macro_f1": float(f1_score(truth, pred, labels=list(classes), average="macro", zero_division=0)),
            "macro_precision": float(
                precision_score(truth, pred, labels=list(classes), average="macro", zero_division=0)
            ),
            # Mean recall over the classes present in the truth: sklearn's balanced accuracy,
            # computed here so that the extra "unparseable" prediction is not a class.
            "balanced_accuracy": float(sum(recall[i] for i in present) / len(present)),
            "unparseable": int(sum(p == UNPARSEABLE for p in pred)),
            "n": len(truth),
        },
        "per_class": {c: {"recall": float(recall[i]), "support": support[c]} for i, c in enumerate(classes)},
        "confusion_matrix": {
            "rows": list(classes),
            "columns": [*classes, "unparseable"],
            "counts": cm[: len(classes)].tolist(),
        },
    }


def _headline_tables(payload: dict[str, Any]) -> list[str]:
    """The overall metrics: one row per answer parser when a run has several (zero-shot's paper and
    robust parses), the headline one marked; else one row."""
    by_protocol = payload.get("metrics_by_protocol") or {}
    if len(by_protocol) < 2:
        return [report.markdown_table({"all": payload["metrics"]}, list(payload["metrics"]), "")]
    head = payload.get("protocol")
    rows = {f"{p} (headline)" if p == head else p: m for p, m in by_protocol.items()}
    return ["Both parsers read the same answers: `paper` is the authors' rule (first class name found), "
            "`robust` reads whole labels and negation. The per-class table and the confusion matrix are the "
            "headline parser's.", "", report.markdown_table(rows, list(payload["metrics"]), "parser")]


def write_classification_outputs(
    out_dir: Path, payload: dict[str, Any], sample_rows: list[dict], title: str
) -> None:
    """results.json, results.md, predictions.csv and confusion_matrix.png of a classification run."""
    from mm_skin.csv_files import write_rows

    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(sample_rows[0])
    with (out_dir / "predictions.csv").open("w", newline="", encoding="utf-8") as f:
        write_rows(f, columns, ([row.get(c, "") for c in columns] for row in sample_rows))
    report.write_results_json(out_dir, payload)
    cm = payload["confusion_matrix"]
    lines = [
        f"# {title}", "", provenance_header(payload), "",
        *_headline_tables(payload), "",
        "## Per class", "",
        report.markdown_table(payload["per_class"], ["recall", "support"], "class"),
        report.unavailable_notes(payload.get("unavailable", {})),
    ]
    if payload.get("groups"):
        from skinvl.evaluation.groups import groups_markdown

        lines += ["", groups_markdown(payload["groups"])]
    report.write_markdown(out_dir, "\n".join(lines))
    report.plot_confusion(out_dir, cm["counts"], cm["rows"], cm["columns"], title)


__all__ = ["UNPARSEABLE", "classification_metrics", "write_classification_outputs"]
