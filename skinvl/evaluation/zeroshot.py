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

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skinvl.evaluation.ask import AskOptions, ask, blind_images, blind_note
from skinvl.evaluation.benchmark_data import load_classification_split
from skinvl.evaluation.classification import (
    UNPARSEABLE,
    classification_metrics,
    write_classification_outputs,
)
from skinvl.evaluation.foreign import Answer, coverage_of, match_rows, read_answers
from skinvl.evaluation.groups import group_metrics
from skinvl.evaluation.labels import (
    LabelFile,
    LabelFileError,
    image_key,
    read_label_csv,
    resolve_images,
)
from skinvl.evaluation.runs import Row, dataset_info
from skinvl.evaluation.zeroshot_protocols import (
    likelihood_records,
    mcq_rows,
    probability_metrics,
    score_mcq,
    write_protocol_outputs,
)
from skinvl.inference.images import LazyImages
from skinvl.inference.loading import LoadedModel, load_model

PROMPT = "This is a skin lesion image. From the following categories: {classes}, which one is the diagnosis?"
PARSE_PROTOCOLS = ("robust", "paper")
#: every --protocol: the free-text parses, and the protocols of :mod:`skinvl.evaluation.zeroshot_protocols`
PROTOCOLS = (*PARSE_PROTOCOLS, "mcq", "likelihood")

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

    labels: str | None = field(default=None, metadata={
        "help": "label CSV of the authors' family (image, categories); or use --data"})
    images: str | None = field(default=None, metadata={"help": "with --labels: folder the CSV's image paths are relative to"})
    data: str | None = field(default=None, metadata={
        "help": "instead of --labels/--images: a folder built by `mm-skin benchmark build` or its Hub id "
                "(image, label ClassLabel, image_id; its class order is used)"})
    config: str | None = field(default=None, metadata={"help": "with --data: the label set (config; default: the default one)"})
    split: str = field(default="test", metadata={"help": "with --data: the split"})
    group_by: str | None = field(default=None, metadata={
        "metavar": "COLUMN", "help": "with --data: metrics per value of COLUMN (skin_type, sex, ...), with "
                                     "image-resampled intervals and the worst-best gap"})
    protocol: str = field(default="robust", metadata={
        "help": "robust / paper: the paper's question, the answer parsed (whole labels, negation-aware / first "
                "substring); mcq: lettered options in several orders, the letter parsed; likelihood (local model): "
                "each class name scored by its log-likelihood, giving AUROC, log loss and ECE",
        "choices": list(PROTOCOLS)})
    classes: str | None = field(default=None, metadata={"help": "comma-separated class order (default: sorted labels)"})
    max_new_tokens: int | None = field(default=64, metadata={"help": "cap on generated tokens"})
    predictions: str | None = field(default=None, metadata={
        "help": "score answers made elsewhere instead of asking a model: our .jsonl/.csv (id, prediction), an "
        "lmms-eval sample log or a VLMEvalKit .xlsx/.tsv; rows matched by image id (the 'id' --export-prompts "
        "writes, or an image_id column), never by row number"})
    export_prompts: str | None = field(default=None, metadata={
        "help": "write the paper's prompts to this .jsonl (id, image, image_path, prompt per row) and stop"})
    allow_partial: bool = field(default=False, metadata={
        "help": "with --predictions: score answers that cover only part of the rows (coverage is recorded)"})

    def class_list(self) -> list[str] | None:
        """``--classes`` split on commas (None: the sorted labels)."""
        return [c.strip() for c in self.classes.split(",")] if self.classes else None


def image_row_ids(images: Sequence[str]) -> list[str]:
    """Row ids from image ids: the image path as the label file writes it (``./`` and ``\\``
    normalised), ``#2``, ``#3``... added to a repeat, so an id names the same image whatever the
    order of the rows."""
    seen: dict[str, int] = {}
    ids = []
    for image in images:
        key = image_key(image)
        seen[key] = seen.get(key, 0) + 1
        ids.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return ids


def zeroshot_inputs(options: ZeroShotOptions) -> tuple[LabelFile, list[Row], LazyImages, list[str]]:
    """Labels, rows, images and a reference per image (file path, or ``DATA/SPLIT#row``), from
    ``--labels``/``--images`` or ``--data`` (rows there carry the ``--group-by`` value as ``group``)."""
    if bool(options.data) == bool(options.labels or options.images):
        raise LabelFileError("give either --data (a benchmark folder or Hub id) or --labels CSV with --images "
                             "FOLDER, not both and not neither.")
    if not options.data:
        if not (options.labels and options.images):
            raise LabelFileError("--labels and --images go together: pass both (or --data instead).")
        if options.group_by:
            raise LabelFileError("--group-by needs --data (a label CSV has no group columns).")
        labels, rows, paths = zeroshot_rows(options)
        return labels, rows, LazyImages.from_files(paths), [str(p) for p in paths]
    split = load_classification_split(options.data, options.config, options.split, options.limit, options.class_list())
    groups = split.column(options.group_by) if options.group_by else None
    prompt = build_prompt(split.labels.classes)
    ids = image_row_ids([r.image for r in split.labels.rows])
    rows = [Row(row_id, k, prompt, {"row": r.row, "image": r.image, "label": r.label,
                                    **({"group": groups[k]} if groups is not None else {})})
            for k, (row_id, r) in enumerate(zip(ids, split.labels.rows, strict=True))]
    return split.labels, rows, split.images, [f"{split.name}#{r.row}" for r in split.labels.rows]


def zeroshot_rows(options: ZeroShotOptions) -> tuple[LabelFile, list[Row], list[Path]]:
    """The label file, one :class:`Row` per image (id: :func:`image_row_ids`, the paper's prompt) and the image paths."""
    labels: LabelFile = read_label_csv(options.labels, options.class_list())
    pairs = resolve_images(labels, options.images, options.limit)
    prompt = build_prompt(labels.classes)
    ids = image_row_ids([r.image for r, _ in pairs])
    rows = [Row(row_id, k, prompt, {"row": r.row, "image": r.image, "label": r.label})
            for k, (row_id, (r, _)) in enumerate(zip(ids, pairs, strict=True))]
    return labels, rows, [p for _, p in pairs]


def answers_by_image(answers: Sequence[Answer]) -> list[Answer]:
    """Answers keyed by image id: ``id`` as written, else the file's ``image_id``; a row with
    neither (matched by row number, which changes when the label file is reordered) is refused."""
    keyed = []
    for answer in answers:
        if answer.id is None and answer.image_id is None:
            raise LabelFileError(
                f"{answer.where}: no id or image_id; zero-shot answers are matched by image id (the label file's "
                "image path, as --export-prompts writes it in 'id'), never by row number, which pairs answers with "
                "other images once the label file is reordered. Add the id to each row.")
        keyed.append(answer if answer.id is not None else dataclasses.replace(answer, id=answer.image_id))
    return keyed


def export_prompts(rows: Sequence[Row], paths: Sequence[str | Path], target: str | Path) -> Path:
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
    pairs, coverage = match_rows(answers_by_image(file.answers), rows, allow_partial=options.allow_partial, source=options.predictions)
    records = [row.record(answer.prediction) for row, answer in pairs]
    meta = {"name": options.name or Path(options.predictions).stem, "predictions_file": str(options.predictions),
            "predictions_format": file.format, "coverage": coverage, "first_prompt": rows[0].question if rows else None}
    return records, meta


def run_zeroshot(options: ZeroShotOptions, *, loaded: LoadedModel | None = None) -> dict[str, Any] | None:
    """``skinvl eval zeroshot``: ask the paper's question for every image (or read answers) and score them.

    Both parsings are computed; ``protocol`` picks the headline ``metrics``, the other one is in
    ``metrics_by_protocol``. Returns the payload on the main process, None on other ranks.
    """
    if options.protocol not in PARSE_PROTOCOLS:
        return run_zeroshot_protocol(options, loaded=loaded)
    labels, rows, images, _ = zeroshot_inputs(options)
    dataset = ({"data": options.data, "config": options.config, "split": options.split, "limit": options.limit}
               if options.data else {"labels": str(options.labels), "images": str(options.images), "limit": options.limit})
    if options.predictions:
        done, meta = _answers_from_file(options, rows)
        answered = {d["id"] for d in done}
        scored = [r for r in rows if r.id in answered]
        meta["dataset_info"] = dataset_info(dataset, scored)
        failed: dict[str, Any] = {"count": 0, "rows": []}
    else:
        answers = ask(options, rows, images, dataset, loaded=loaded, description="eval zeroshot")
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
        "dataset": options.data or str(options.labels), "split": options.split if options.data else "test", "protocol": options.protocol, "classes": labels.classes,
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
    if options.group_by:
        payload["groups"] = group_metrics(truth, [x.label for x in chosen], labels.classes,
                                          [r.get("group") for r in done], [r["image"] for r in done],
                                          column=options.group_by)
        for sample, r in zip(sample_rows, done, strict=True):
            sample[options.group_by] = r.get("group")
    title = f"Zero-shot: {meta.get('name') or Path(options.data or options.labels).stem} ({options.protocol})"
    title += " (blind: no image)" if meta.get("blind") else ""
    write_classification_outputs(Path(options.out), payload, sample_rows, title)
    return payload


def run_zeroshot_protocol(options: ZeroShotOptions, *, loaded: LoadedModel | None = None) -> dict[str, Any] | None:
    """``--protocol mcq`` or ``likelihood`` (:mod:`~skinvl.evaluation.zeroshot_protocols`): ask, score, write."""
    labels, rows, images, _ = zeroshot_inputs(options)
    classes = labels.classes
    dataset = ({"data": options.data, "config": options.config, "split": options.split, "limit": options.limit}
               if options.data else {"labels": str(options.labels), "images": str(options.images), "limit": options.limit})
    protocol, notes, proba, extra = options.protocol, [], None, {}
    if protocol == "likelihood" and (options.endpoint or options.predictions):
        protocol = "mcq"
        notes.append("likelihood needs a local model (a chat API returns log-probabilities of generated tokens "
                     "only, not of a given class name): mcq was run instead")
    if protocol == "likelihood":
        loaded = loaded or load_model(options)
        seen = blind_images(images) if options.blind else images
        records, proba, normalised = likelihood_records(loaded, rows, seen, classes, build_prompt(classes))
        meta: dict[str, Any] = {"name": options.name or options.model or loaded.info.get("model"),
                                "model_info": loaded.info, "failed": {"count": 0, "rows": []}}
        if options.blind:
            meta["blind"] = blind_note(served=False)
        extra = {"length_normalisation": "none: the total log-likelihood of each class name; probabilities = "
                                         "softmax over the classes' totals",
                 "accuracy_per_token_mean": float(np.mean([p == r["label"] for p, r in zip(normalised, records, strict=True)])),
                 **probability_metrics([r["label"] for r in records], proba, classes)}
    else:
        asked = mcq_rows(rows, classes)
        if options.predictions:
            done, meta = _answers_from_file(options, asked)
            meta["failed"] = {"count": 0, "rows": []}
        else:
            answers = ask(options, asked, images, dataset, loaded=loaded, description="eval zeroshot (mcq)")
            if answers is None:
                return None
            done, meta = answers.answered(), {**answers.meta, "failed": answers.failure_summary()}
        records, extra = score_mcq(done, classes)
    result = classification_metrics([r["label"] for r in records], [r["prediction"] for r in records], classes)
    payload = {"task": "zero-shot-classification", "model": options.model or options.model_name,
               "dataset": options.data or str(options.labels), "split": options.split if options.data else "test",
               "protocol": protocol, "classes": classes, "metrics": {**result["metrics"], **{
                   k: v for k, v in extra.items() if k in ("auroc", "log_loss", "ece")}},
               "per_class": result["per_class"], "confusion_matrix": result["confusion_matrix"],
               "protocol_details": {k: v for k, v in extra.items() if k not in ("auroc", "log_loss", "ece")},
               "labels": labels.summary(), "warnings": labels.warnings() + notes, "limit": options.limit, **meta,
               "unavailable": {}, "files": {"predictions": "predictions.csv", "markdown": "results.md",
                                            "figure": "confusion_matrix.png"}}
    if options.group_by:
        payload["groups"] = group_metrics([r["label"] for r in records], [r["prediction"] for r in records], classes,
                                          [r.get("group") for r in records], [r["image"] for r in records], proba,
                                          column=options.group_by)
    title = f"Zero-shot: {meta.get('name') or Path(options.data or options.labels).stem} ({protocol})"
    title += " (blind: no image)" if meta.get("blind") else ""
    write_protocol_outputs(Path(options.out), payload, records, title, options.group_by)
    return payload


__all__ = ["PROMPT", "PROTOCOLS", "ParsedAnswer", "UNPARSEABLE", "ZeroShotOptions", "build_prompt", "classification_metrics",
           "export_prompts", "image_row_ids", "parse_answer", "parse_paper", "parse_robust", "run_zeroshot", "run_zeroshot_protocol", "score_zeroshot",
           "zeroshot_inputs", "zeroshot_rows"]
