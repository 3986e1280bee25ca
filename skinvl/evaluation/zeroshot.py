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

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skinvl.evaluation.ask import AskOptions, ask
from skinvl.evaluation.classification import (
    UNPARSEABLE,
    classification_metrics,
    write_classification_outputs,
)
from skinvl.evaluation.foreign import coverage_of, match_rows, read_answers
from skinvl.evaluation.labels import LabelFile, LabelFileError, read_label_csv, resolve_images
from skinvl.evaluation.runs import Row, dataset_info
from skinvl.inference.images import LazyImages
from skinvl.inference.loading import LoadedModel

PROMPT = "This is a skin lesion image. From the following categories: {classes}, which one is the diagnosis?"
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


@dataclass(kw_only=True)
class ZeroShotOptions(AskOptions):
    """``skinvl eval zeroshot``: a model (local or served) or answers made elsewhere, a label CSV and its images."""

    labels: str = field(metadata={"help": "label CSV of the authors' family (image, categories)"})
    images: str = field(metadata={"help": "folder the CSV's image paths are relative to"})
    protocol: str = field(default="robust", metadata={
        "help": "answer parsing: robust (whole labels, negation-aware) or paper (first substring)",
        "choices": list(PARSE_PROTOCOLS)})
    classes: str | None = field(default=None, metadata={"help": "comma-separated class order (default: sorted labels)"})
    max_new_tokens: int | None = field(default=64, metadata={"help": "cap on generated tokens"})
    predictions: str | None = field(default=None, metadata={
        "help": "score answers made elsewhere instead of asking a model: our .jsonl/.csv (id, prediction), an "
        "lmms-eval sample log or a VLMEvalKit .xlsx/.tsv; rows matched by id (as in --export-prompts) or position"})
    export_prompts: str | None = field(default=None, metadata={
        "help": "write the paper's prompts to this .jsonl (id, image, image_path, prompt per row) and stop"})
    allow_partial: bool = field(default=False, metadata={
        "help": "with --predictions: score answers that cover only part of the rows (coverage is recorded)"})

    def class_list(self) -> list[str] | None:
        """``--classes`` split on commas (None: the sorted labels)."""
        return [c.strip() for c in self.classes.split(",")] if self.classes else None


def zeroshot_rows(options: ZeroShotOptions) -> tuple[LabelFile, list[Row], list[Path]]:
    """The label file, one :class:`Row` per image (id ``row-{csv row}``, the paper's prompt) and the image paths."""
    labels: LabelFile = read_label_csv(options.labels, options.class_list())
    pairs = resolve_images(labels, options.images, options.limit)
    prompt = build_prompt(labels.classes)
    rows = [Row(f"row-{r.row}", k, prompt, {"row": r.row, "image": r.image, "label": r.label})
            for k, (r, _) in enumerate(pairs)]
    return labels, rows, [p for _, p in pairs]


def export_prompts(rows: Sequence[Row], paths: Sequence[Path], target: str | Path) -> Path:
    """Write the exact prompts, one JSON object per row: ``id``, ``image`` (as in the CSV), ``image_path``, ``prompt``.

    Answers written back with the same ``id`` and a ``prediction`` are what ``--predictions`` scores.
    """
    target = Path(target)
    if target.suffix.lower() != ".jsonl":
        raise LabelFileError(f"{target}: --export-prompts writes JSON lines; give a file name ending in .jsonl.")
    if target.exists():
        raise LabelFileError(f"{target} exists; choose another --export-prompts file (it is never overwritten).")
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as f:
        for row, path in zip(rows, paths, strict=True):
            record = {"id": row.id, "index": row.index, "image": row.fields["image"], "image_path": str(path),
                      "prompt": row.question}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return target


def _answers_from_file(options: ZeroShotOptions, rows: Sequence[Row]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records (as a run logs them) for the answers in ``--predictions``, and their coverage."""
    if options.model or options.endpoint:
        raise LabelFileError("pass either --predictions FILE (answers made elsewhere) or a model to ask, not both.")
    file = read_answers(options.predictions)
    # The prompt is the question of every row: a file's own question must equal it (checked in match_rows).
    pairs, coverage = match_rows(file.answers, rows, allow_partial=options.allow_partial, source=options.predictions)
    records = [row.record(answer.prediction) for row, answer in pairs]
    meta = {"name": options.name or Path(options.predictions).stem, "predictions_file": str(options.predictions),
            "predictions_format": file.format, "coverage": coverage, "first_prompt": rows[0].question if rows else None}
    return records, meta


def run_zeroshot(options: ZeroShotOptions, *, loaded: LoadedModel | None = None) -> dict[str, Any] | None:
    """``skinvl eval zeroshot``: ask the paper's question for every image (or read answers) and score them.

    Both parsings are computed; ``protocol`` picks the headline ``metrics``, the other one is in
    ``metrics_by_protocol``. Returns the payload on the main process, None on other ranks.
    """
    labels, rows, paths = zeroshot_rows(options)
    dataset = {"labels": str(options.labels), "images": str(options.images), "limit": options.limit}
    if options.predictions:
        done, meta = _answers_from_file(options, rows)
        answered = {d["id"] for d in done}
        scored = [r for r in rows if r.id in answered]
        meta["dataset_info"] = dataset_info(dataset, scored)
        failed: dict[str, Any] = {"count": 0, "rows": []}
    else:
        answers = ask(options, rows, LazyImages.from_files(paths), dataset, loaded=loaded, description="eval zeroshot")
        if answers is None:
            return None
        done = answers.answered()
        meta, failed = answers.meta, answers.failure_summary()
        meta["coverage"] = coverage_of(rows, (r["id"] for r in done))
    return score_zeroshot(done, labels, options, {**meta, "failed": failed})


def score_zeroshot(done: list[dict[str, Any]], labels: LabelFile, options: ZeroShotOptions,
                   meta: dict[str, Any]) -> dict[str, Any]:
    """Parse answered records with both protocols, compute the metrics, write the outputs; the payload."""
    parsed = {p: [parse_answer(r["prediction"], labels.classes, p) for r in done] for p in PARSE_PROTOCOLS}
    truth = [r["label"] for r in done]
    by_protocol = {p: classification_metrics(truth, [x.label for x in parsed[p]], labels.classes) for p in PARSE_PROTOCOLS}
    for p in PARSE_PROTOCOLS:
        by_protocol[p]["metrics"]["ambiguous"] = sum(x.status == "ambiguous" for x in parsed[p])
    head = by_protocol[options.protocol]
    payload = {
        "task": "zero-shot-classification", "model": options.model or options.model_name,
        "dataset": str(options.labels), "split": "test", "protocol": options.protocol, "classes": labels.classes,
        "prompt": build_prompt(labels.classes), "metrics": head["metrics"], "per_class": head["per_class"],
        "confusion_matrix": head["confusion_matrix"],
        "metrics_by_protocol": {p: v["metrics"] for p, v in by_protocol.items()},
        "labels": labels.summary(), "warnings": labels.warnings(), "limit": options.limit, **meta, "unavailable": {},
        "files": {"predictions": "predictions.csv", "markdown": "results.md", "figure": "confusion_matrix.png",
                  **({} if options.predictions else {"log": "predictions.jsonl"})},
    }
    chosen = parsed[options.protocol]
    sample_rows = [
        {"id": r["id"], "row": r["row"], "image": r["image"], "label": r["label"], "answer": r["prediction"],
         "prediction": chosen[i].label or "", "status": chosen[i].status, "correct": chosen[i].label == r["label"],
         "prediction_paper": parsed["paper"][i].label or "", "prediction_robust": parsed["robust"][i].label or ""}
        for i, r in enumerate(done)
    ]
    title = f"Zero-shot: {meta.get('name') or Path(options.labels).stem} ({options.protocol})"
    write_classification_outputs(Path(options.out), payload, sample_rows, title)
    return payload


__all__ = ["PROMPT", "ParsedAnswer", "UNPARSEABLE", "ZeroShotOptions", "build_prompt", "classification_metrics",
           "export_prompts", "parse_answer", "parse_paper", "parse_robust", "run_zeroshot", "score_zeroshot",
           "zeroshot_rows"]
