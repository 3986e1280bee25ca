"""Generative zero-shot classification with the paper's prompt, and two ways to read the answers.

Prompt (the paper's): "This is a skin lesion image. From the following categories: {classes},
which one is the diagnosis?" with the classes joined by ", " in class order.

Answer parsing
- ``paper``: the authors' rule, the first class name in class order found as a case-insensitive
  substring of the answer. Biased: "malignant" is found inside "non-malignant", "tumor" inside
  "nontumor", and the earlier class in the list wins whatever the answer says first.
- ``robust`` (default): answer and labels are normalised (lowercase; "non-"/"non " prefixes
  joined to the word, so "non-malignant" == "nonmalignant"; other punctuation -> spaces; plural
  endings and a few spelling variants folded, e.g. keratoses -> keratosis, nevi -> nevus,
  tumour -> tumor). A label matches only as whole words. A match inside a longer matching label
  is dropped (the most specific label wins: "non malignant" over "malignant"); a match right
  after a negation ("not", "no", "without", "isn't", "rather than", "excluding", "unlikely") is
  dropped (articles in between are skipped: "not a melanoma"). One label left -> that label. Several -> the one mentioned first, and the answer is
  counted as ``ambiguous``. None -> ``unparseable``: counted as an error, in its own column.

Metrics (scikit-learn): accuracy over all rows (unparseable answers are wrong), macro F1 and
macro precision over the classes, balanced accuracy (= mean per-class recall), per-class recall
and support, the unparseable and ambiguous counts, and the confusion matrix with an extra
"unparseable" column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinvl.evaluation import report
from skinvl.evaluation.labels import LabelFile, read_label_csv, resolve_images

PROMPT = "This is a skin lesion image. From the following categories: {classes}, which one is the diagnosis?"
UNPARSEABLE = "<unparseable>"
PARSE_PROTOCOLS = ("robust", "paper")

_VARIANTS = {
    "nevi": "nevus", "naevus": "nevus", "naevi": "nevus", "tumour": "tumor", "tumours": "tumor",
    "keratoses": "keratosis", "lesions": "lesion", "carcinomas": "carcinoma", "melanomas": "melanoma",
}
_ARTICLES = ("a", "an", "the", "any")
_NEGATIONS = ("not", "no", "without", "isnt", "isn't", "unlikely", "excluding", "except", "than")


def build_prompt(classes: Sequence[str]) -> str:
    """The paper's zero-shot question for a list of classes."""
    return PROMPT.format(classes=", ".join(classes))


def parse_paper(answer: str, classes: Sequence[str]) -> str | None:
    """The authors' rule: first class (in class order) that is a case-insensitive substring."""
    low = answer.lower()
    for c in classes:
        if c.lower() in low:
            return c
    return None


def _fold(word: str) -> str:
    if word in _VARIANTS:
        return _VARIANTS[word]
    if len(word) > 4 and word.endswith("ses"):
        return word[:-3] + "sis"  # keratoses -> keratosis, mycoses -> mycosis
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "is", "us")):
        return word[:-1]
    return word


def normalise(text: str) -> list[str]:
    """Lowercase word tokens with "non-" joined, punctuation dropped, plurals folded."""
    low = text.lower().replace("’", "'")
    low = re.sub(r"\bnon[\s\-_]+", "non", low)
    low = low.replace("'", "")
    return [_fold(w) for w in re.findall(r"[a-z0-9]+", low)]


@dataclass(frozen=True)
class ParsedAnswer:
    """A parsed answer: the class (or None) and status "ok" / "ambiguous" / "unparseable"."""

    label: str | None
    status: str


def _negated(words: list[str], start: int) -> bool:
    """True when the word before ``start`` (articles skipped: "not a melanoma") is a negation."""
    i = start - 1
    while i >= 0 and words[i] in _ARTICLES:
        i -= 1
    return i >= 0 and words[i] in _NEGATIONS


def parse_robust(answer: str, classes: Sequence[str]) -> ParsedAnswer:
    """Whole-label matching after normalisation; see the module docstring for the rules."""
    words = normalise(answer)
    spans: list[tuple[int, int, str]] = []  # (start, end, class)
    for c in classes:
        label = normalise(c)
        if not label:
            continue
        n = len(label)
        for i in range(len(words) - n + 1):
            if words[i : i + n] == label:
                spans.append((i, i + n, c))
    # Most specific wins: drop a match lying inside a longer match of another label.
    kept = [
        s for s in spans
        if not any(o is not s and o[0] <= s[0] and s[1] <= o[1] and (o[1] - o[0]) > (s[1] - s[0]) for o in spans)
    ]
    # Negated mentions ("not melanoma", "rather than nevus") are not the answer.
    kept = [s for s in kept if not _negated(words, s[0])]
    if not kept:
        return ParsedAnswer(None, "unparseable")
    kept.sort()
    distinct = {s[2] for s in kept}
    return ParsedAnswer(kept[0][2], "ok" if len(distinct) == 1 else "ambiguous")


def parse_answer(answer: str, classes: Sequence[str], protocol: str = "robust") -> ParsedAnswer:
    """Parse one generated answer into a class with the named protocol ("robust" or "paper")."""
    if protocol == "paper":
        label = parse_paper(answer, classes)
        return ParsedAnswer(label, "ok" if label else "unparseable")
    if protocol == "robust":
        return parse_robust(answer, classes)
    raise ValueError(f"unknown parsing protocol {protocol!r}; choose from {list(PARSE_PROTOCOLS)}")


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


def write_classification_outputs(
    out_dir: Path, payload: dict[str, Any], sample_rows: list[dict], title: str
) -> None:
    """results.json, results.md, predictions.csv and confusion_matrix.png of a classification run."""
    import csv

    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "predictions.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(sample_rows[0]))
        writer.writeheader()
        writer.writerows(sample_rows)
    report.write_results_json(out_dir, payload)
    cm = payload["confusion_matrix"]
    lines = [
        f"# {title}", "",
        report.markdown_table({"all": payload["metrics"]}, list(payload["metrics"]), ""), "",
        "## Per class", "",
        report.markdown_table(payload["per_class"], ["recall", "support"], "class"),
        report.unavailable_notes(payload.get("unavailable", {})),
    ]
    report.write_markdown(out_dir, "\n".join(lines))
    report.plot_confusion(out_dir, cm["counts"], cm["rows"], cm["columns"], title)


def run_zeroshot(
    model_name: str,
    labels_csv: str | Path,
    images_root: str | Path,
    out_dir: str | Path,
    *,
    protocol: str = "robust",
    classes: list[str] | None = None,
    batch_size: int = 8,
    decoding: str = "greedy",
    max_new_tokens: int | None = 64,
    limit: int | None = None,
    template: str | None = None,
    seed: int = 0,
    dtype: str | None = None,
    device_map: str | None = None,
    model_and_processor: tuple | None = None,
) -> dict[str, Any]:
    """``skinvl eval zeroshot``: ask the paper's question for every image and score the answers.

    Both parsings are computed; ``protocol`` picks the headline ``metrics``, the other one is in
    ``metrics_by_protocol``.
    """
    from PIL import Image

    from skinvl.evaluation.vqa import answer_questions, decoding_kwargs

    if protocol not in PARSE_PROTOCOLS:
        raise ValueError(f"unknown parsing protocol {protocol!r}; choose from {list(PARSE_PROTOCOLS)}")
    labels: LabelFile = read_label_csv(labels_csv, classes)
    pairs = resolve_images(labels, images_root, limit)
    if model_and_processor is None:
        import skinvl

        model_and_processor = skinvl.load(model_name, dtype=dtype, device_map=device_map, template=template)
    model, processor = model_and_processor
    prompt = build_prompt(labels.classes)
    images = _LazyFiles([p for _, p in pairs], Image)
    answers = answer_questions(
        model, processor, images, [prompt] * len(pairs), batch_size=batch_size, template=template,
        decoding=decoding, max_new_tokens=max_new_tokens, seed=seed, description="eval zeroshot",
    )
    truth = [r.label for r, _ in pairs]
    parsed = {p: [parse_answer(a, labels.classes, p) for a in answers] for p in PARSE_PROTOCOLS}
    by_protocol = {p: classification_metrics(truth, [x.label for x in parsed[p]], labels.classes) for p in PARSE_PROTOCOLS}
    for p in PARSE_PROTOCOLS:
        by_protocol[p]["metrics"]["ambiguous"] = sum(x.status == "ambiguous" for x in parsed[p])
    head = by_protocol[protocol]
    payload = {
        "task": "zero-shot-classification",
        "model": model_name,
        "dataset": str(labels_csv),
        "split": "test",
        "protocol": protocol,
        "classes": labels.classes,
        "prompt": prompt,
        "metrics": head["metrics"],
        "per_class": head["per_class"],
        "confusion_matrix": head["confusion_matrix"],
        "metrics_by_protocol": {p: v["metrics"] for p, v in by_protocol.items()},
        "labels": labels.summary(),
        "limit": limit,
        "decoding": {"name": decoding, **decoding_kwargs(decoding, max_new_tokens), "seed": seed},
        "unavailable": {},
        "files": {"predictions": "predictions.csv", "markdown": "results.md", "figure": "confusion_matrix.png"},
    }
    rows = [
        {
            "row": r.row, "image": r.image, "label": r.label, "answer": a,
            "prediction": (parsed[protocol][i].label or ""), "status": parsed[protocol][i].status,
            "correct": parsed[protocol][i].label == r.label,
            "prediction_paper": parsed["paper"][i].label or "", "prediction_robust": parsed["robust"][i].label or "",
        }
        for i, ((r, _), a) in enumerate(zip(pairs, answers, strict=True))
    ]
    write_classification_outputs(Path(out_dir), payload, rows, f"Zero-shot: {Path(labels_csv).stem} ({protocol})")
    return payload


class _LazyFiles:
    """Slice-able list of image files opened (RGB) only when a batch needs them."""

    def __init__(self, paths: list[Path], image_module):
        self._paths = paths
        self._image = image_module

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, item):
        paths = self._paths[item] if isinstance(item, slice) else [self._paths[item]]
        images = []
        for p in paths:
            with self._image.open(p) as im:
                images.append(im.convert("RGB"))
        return images if isinstance(item, slice) else images[0]
